"""Cap the browser's CPU with a cgroup of its own (BROWSER_CPUS cores), so the miner keeps its cycles.

Why not nice alone: beside a miner on every core, a browser at nice 19 (or even 10) is not merely
slow, it stalls. The scheduler gives a nice-19 thread about 1.5 % of a core in rare slices, and a
page load is thousands of hand-offs between Chromium's threads, each waiting for the miner's slice to
end. Measured here (XMRig on both cores): one realistic page did not load in 300 s at nice 19; at
nice 10, 2 of 5 pages failed and the rest took 170 s (BENCHMARKS.md, issue 13). A cgroup with a quota
instead lets the browser run at full speed in short bursts until its share of each 100 ms is spent:
the analysis finishes in a bounded time and the miner loses at most BROWSER_CPUS cores meanwhile.
That is what a container's `cpus:` does for the whole manager; this does it for the browser alone,
also when the daemon runs on the host.

The group is `smartminer-browser-<pid>` below this process's own cpu cgroup (cgroup v1's cpu
controller, or cgroup v2 where this process's group lets a child use the cpu controller). When that
is impossible (no write access, an unprivileged container, cgroup v2 with processes in our group),
`confine` raises CapError and the browser runs at BROWSER_NICE only.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

PERIOD_US = 100_000  # the kernel's default CFS period


class CapError(OSError):
    """The browser's CPU cannot be capped here; one line saying why."""


@dataclass(frozen=True)
class Hierarchy:
    """Where this process's cpu cgroup is in the file system, and which kind it is."""

    directory: str  # our own cgroup's folder
    v2: bool


# --- finding our cgroup (pure: the texts of /proc/self/cgroup and /proc/self/mountinfo) -------------
def own_path(cgroup_text: str) -> tuple[str, bool] | None:
    """Our cgroup path for the cpu controller: cgroup v1's "cpu" line, else v2's "0::" line."""
    unified = None
    for line in cgroup_text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if "cpu" in parts[1].split(","):
            return parts[2], False
        if parts[0] == "0" and parts[1] == "":
            unified = parts[2]
    return (unified, True) if unified is not None else None


def mount_of(mountinfo_text: str, v2: bool) -> tuple[str, str] | None:
    """(root within the hierarchy, mount point) of the cpu controller's mount (v1) or of cgroup2."""
    for line in mountinfo_text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        fstype, options = tail[0], tail[2].split(",")
        if (v2 and fstype == "cgroup2") or (not v2 and fstype == "cgroup" and "cpu" in options):
            return fields[3], fields[4]
    return None


def resolve(cgroup_text: str, mountinfo_text: str) -> Hierarchy | None:
    """Our cpu cgroup's folder. A container sees its own group as the mount's root, hence the mapping."""
    own = own_path(cgroup_text)
    if own is None:
        return None
    path, v2 = own
    mount = mount_of(mountinfo_text, v2)
    if mount is None:
        return None
    root, point = mount
    if root != "/" and (path == root or path.startswith(root + "/")):
        path = path[len(root):]
    return Hierarchy(os.path.join(point, path.lstrip("/")).rstrip("/"), v2)


def quota_us(cpus: float) -> int:
    """Microseconds of CPU per period for `cpus` cores (the kernel refuses less than 1 ms)."""
    return max(1000, round(cpus * PERIOD_US))


# --- the group --------------------------------------------------------------------------------------
def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="ascii") as fh:
        fh.write(text)


def _read(path: str) -> str:
    with open(path, encoding="ascii") as fh:
        return fh.read()


def hierarchy() -> Hierarchy:
    """This process's cpu cgroup. Raises CapError when there is none to use."""
    try:
        found = resolve(_read("/proc/self/cgroup"), _read("/proc/self/mountinfo"))
    except OSError as exc:
        raise CapError(f"cannot read this process's cgroups: {exc.strerror or exc}") from None
    if found is None or not os.path.isdir(found.directory):
        raise CapError("no cpu cgroup mounted for this process")
    return found


def group_dir(h: Hierarchy) -> str:
    return os.path.join(h.directory, f"smartminer-browser-{os.getpid()}")


def prepare(h: Hierarchy, cpus: float) -> str:
    """Make (or reuse) the browser's group with its quota; its folder. Raises CapError."""
    group = group_dir(h)
    try:
        if h.v2:
            controllers = _read(os.path.join(h.directory, "cgroup.subtree_control")).split()
            if "cpu" not in controllers:
                _write(os.path.join(h.directory, "cgroup.subtree_control"), "+cpu")
        os.makedirs(group, exist_ok=True)
        if h.v2:
            _write(os.path.join(group, "cpu.max"), f"{quota_us(cpus)} {PERIOD_US}")
        else:
            _write(os.path.join(group, "cpu.cfs_period_us"), str(PERIOD_US))
            _write(os.path.join(group, "cpu.cfs_quota_us"), str(quota_us(cpus)))
    except OSError as exc:
        raise CapError(f"cannot make a cpu cgroup under {h.directory}: {exc.strerror or exc}") from None
    return group


def confine(pid: int, cpus: float) -> str:
    """Move process `pid` (chromedriver, before it starts Chromium, which inherits the group) into the
    browser's group capped at `cpus` cores. The group's folder. Raises CapError."""
    group = prepare(hierarchy(), cpus)
    try:
        _write(os.path.join(group, "cgroup.procs"), str(pid))
    except OSError as exc:
        raise CapError(f"cannot move the browser into {group}: {exc.strerror or exc}") from None
    return group


def release(group: str) -> None:
    """Remove the browser's group once no process is left in it (the kernel refuses otherwise)."""
    try:
        os.rmdir(group)
    except OSError:
        pass


def cpu_stat(group: str) -> dict[str, int]:
    """The group's cpu.stat counters."""
    out = {}
    for line in _read(os.path.join(group, "cpu.stat")).splitlines():
        name, _, value = line.partition(" ")
        out[name] = int(value)
    return out


def throttled(group: str) -> int:
    """How many periods the kernel has held the group back at its quota (cpu.stat nr_throttled)."""
    return cpu_stat(group).get("nr_throttled", 0)


def throttled_seconds(group: str) -> float:
    """How long the group was held back at its quota, summed over CPUs (v1 throttled_time in ns,
    v2 throttled_usec)."""
    stat = cpu_stat(group)
    if "throttled_usec" in stat:
        return stat["throttled_usec"] / 1e6
    return stat.get("throttled_time", 0) / 1e9
