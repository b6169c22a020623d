"""Reap orphaned child processes when this process is PID 1 or a child subreaper.

In a container without an init the daemon is PID 1, and every process whose parent dies is handed to
it: Chromium's crashpad handlers (they double-fork) and the Chromium processes left when chromedriver
exits. Nobody waits for them, so each analysis left zombies behind (8 after start-up, 8 more per
analysis). The image runs tini as PID 1 (Dockerfile), so this is the second line of defence: `docker
run --init=false`, a compose file without `init`, `unshare --pid --fork`, or a subreaper wrapper.

The one hazard is stealing: a child we started with `subprocess.Popen` (Selenium's chromedriver) and
that a thread is about to wait for. If the reaper collected it first, Popen would get ECHILD and report
exit status 0. So children are told apart:

- a zombie that belongs to a tracked Popen (`track()`) is collected through `popen.poll()`, which
  stores its real exit status on the Popen (a thread blocked in `wait()` holds the Popen's lock, and
  then the reaper leaves it to that thread);
- any other zombie child is an adopted orphan: `os.waitpid(pid, WNOHANG)` collects it.

Code that starts a child with Popen inside the daemon therefore does it inside `spawning()` and hands
the Popen to `track()`: no reaping pass runs between the fork and the tracking (jsTrigger does this
for chromedriver, the daemon's only Popen). Adopted orphans are never Popen children of ours.

Cost between analyses: one `waitid(..., WNOWAIT)` system call a second, which looks without reaping;
only when it reports a dead child are /proc's children lists read.

PR_SET_CHILD_SUBREAPER is not set here: under tini (the image) or systemd (a host install) the orphans
go to a process that already reaps them, and making the daemon a subreaper would only move that work
(and its zombies, should the reaper thread ever stop) into the daemon.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import subprocess
import threading
from typing import Iterator

from utils import log

INTERVAL_SECONDS = 1.0
PR_GET_CHILD_SUBREAPER = 37  # <linux/prctl.h>

_lock = threading.RLock()  # held by a reaping pass, and by spawning() while a child starts
_tracked: dict[int, subprocess.Popen] = {}


# --- when reaping is our job ---------------------------------------------------------------------
def is_subreaper() -> bool:
    """Whether this process is marked a child subreaper (prctl PR_GET_CHILD_SUBREAPER)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        flag = ctypes.c_int(0)
        if libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) != 0:
            return False
        return flag.value != 0
    except (OSError, AttributeError):  # no libc prctl (not Linux)
        return False


def orphans_come_here() -> bool:
    """True when orphaned processes are re-parented to this process: PID 1 of its namespace, or a subreaper."""
    return os.getpid() == 1 or is_subreaper()


# --- our own Popen children -----------------------------------------------------------------------
@contextlib.contextmanager
def spawning() -> Iterator[None]:
    """Hold off reaping while a child is started and tracked, so its exit status cannot be taken first."""
    with _lock:
        yield


def track(popen: subprocess.Popen) -> None:
    """A Popen whose exit status belongs to its owner: the reaper collects it only through `poll()`."""
    with _lock:
        _tracked[popen.pid] = popen


def tracked() -> set[int]:
    """The pids of the Popen children tracked now."""
    with _lock:
        return set(_tracked)


def untrack(popen: subprocess.Popen) -> None:
    with _lock:
        if _tracked.get(popen.pid) is popen:
            del _tracked[popen.pid]


# --- finding and collecting zombie children --------------------------------------------------------
def any_child_exited() -> bool:
    """Whether some child has exited and waits to be collected; collects nothing (WNOWAIT)."""
    try:
        return os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # no children at all
        return False


def child_pids() -> set[int]:
    """Our children's pids, from every thread's /proc children list (an orphan's new parent may be
    any of our threads), or by scanning /proc where the kernel lacks those lists."""
    pids: set[int] = set()
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        tids = []
    found_list = False
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/children", encoding="ascii") as fh:
                pids.update(int(p) for p in fh.read().split())
            found_list = True
        except (OSError, ValueError):
            continue
    return pids if found_list else _scan_for_children(os.getpid())


def _scan_for_children(me: int) -> set[int]:
    pids = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = read_stat(int(name))
            if stat is not None and stat[1] == me:
                pids.add(int(name))
    return pids


def read_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) from /proc/PID/stat, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()  # the command name may hold spaces and parentheses
    try:
        return fields[0], int(fields[1])
    except (IndexError, ValueError):
        return None


def zombie_children() -> list[int]:
    zombies = []
    for pid in sorted(child_pids()):
        stat = read_stat(pid)
        if stat is not None and stat[0] == "Z":
            zombies.append(pid)
    return zombies


def collect(pid: int) -> bool:
    """Collect one zombie child: through its Popen when tracked, else with waitpid. True when gone."""
    popen = _tracked.get(pid)
    if popen is not None:
        if popen.poll() is None:  # its owner is waiting for it right now: leave it to the owner
            return False
        del _tracked[pid]
        return True
    try:
        done, _status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # already collected (by its owner)
        return True
    except OSError as exc:
        if exc.errno == errno.EINTR:
            return False
        raise
    return done == pid


def reap_once() -> list[int]:
    """One pass: collect every zombie child as above. Returns the pids collected."""
    if not any_child_exited():
        return []
    with _lock:
        return [pid for pid in zombie_children() if collect(pid)]


# --- the thread -----------------------------------------------------------------------------------
def run(stop: threading.Event, interval: float = INTERVAL_SECONDS) -> None:
    """Reap every `interval` seconds until `stop` is set, then once more."""
    total = 0
    while True:
        try:
            total += len(reap_once())
        except OSError as exc:  # never fatal: the daemon and the miner go on
            log(f"[WARN] Reaping orphaned processes failed: {exc}")
        if stop.wait(interval):
            break
    total += len(reap_once())
    log(f"[DEBUG] Reaper stopped after collecting {total} orphaned process(es)")


def start(stop: threading.Event, interval: float = INTERVAL_SECONDS) -> threading.Thread | None:
    """Start the reaper thread when orphans are re-parented to this process; else do nothing (None)."""
    if not orphans_come_here():
        return None
    thread = threading.Thread(target=run, args=(stop, interval), name="reaper", daemon=True)
    thread.start()
    log(f"[INFO] Running as {'PID 1' if os.getpid() == 1 else 'a child subreaper'}: "
        "orphaned processes (Chromium's helpers) are reaped", force=True)
    return thread
