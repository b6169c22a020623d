"""cpu_cap: finding this process's cpu cgroup (pure parsing), and the real cap on a real Chromium."""
from __future__ import annotations

import os
import time

import psutil
import pytest

import browser
import config
import cpu_cap
import jsTrigger
from tests.fixtures_chromium import chromium, chromium_descendants  # noqa: F401 (fixture)
from tests.log_capture import captured_log, messages

HOST_V1 = "9:name=systemd:/\n4:memory:/\n2:cpuacct:/\n1:cpu:/user.slice\n0::/\n"
CONTAINER_V1 = "1:cpu,cpuacct:/docker/abc123\n0::/\n"
V2_ONLY = "0::/system.slice/smartminer.service\n"
MOUNTS_V1 = (
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
)
MOUNTS_IN_CONTAINER = "700 690 0:29 /docker/abc123 /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct\n"
MOUNTS_V2 = "30 23 0:27 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"


def test_our_cgroup_on_a_v1_host_is_the_cpu_controllers_line():
    assert cpu_cap.resolve(HOST_V1, MOUNTS_V1) == cpu_cap.Hierarchy("/sys/fs/cgroup/cpu/user.slice", False)
    assert cpu_cap.resolve("1:cpu:/\n", MOUNTS_V1) == cpu_cap.Hierarchy("/sys/fs/cgroup/cpu", False)


def test_in_a_container_the_mount_root_is_our_own_group():
    assert cpu_cap.resolve(CONTAINER_V1, MOUNTS_IN_CONTAINER) == cpu_cap.Hierarchy("/sys/fs/cgroup/cpu,cpuacct", False)


def test_cgroup_v2_uses_the_unified_line_and_mount():
    assert cpu_cap.resolve(V2_ONLY, MOUNTS_V2) == cpu_cap.Hierarchy("/sys/fs/cgroup/system.slice/smartminer.service", True)


def test_no_cpu_cgroup_anywhere_is_none():
    assert cpu_cap.resolve("4:memory:/\n", MOUNTS_V1) is None
    assert cpu_cap.resolve(HOST_V1, "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n") is None
    assert cpu_cap.resolve("", "") is None


@pytest.mark.parametrize("cpus, quota", [(0.1, 10_000), (0.25, 25_000), (2, 200_000), (0.001, 1000)])
def test_quota_per_100_ms_period(cpus, quota):
    assert cpu_cap.quota_us(cpus) == quota


def group_of(pid: int) -> str:
    with open(f"/proc/{pid}/cgroup", encoding="ascii") as fh:
        return fh.read()


@pytest.mark.slow
def test_the_browser_runs_in_its_capped_group_the_kernel_holds_it_there_and_the_group_goes_with_it(chromium):
    try:
        h = cpu_cap.hierarchy()
    except cpu_cap.CapError as exc:
        pytest.fail(f"this machine gives no cpu cgroup to cap the browser with ({exc}); run the tests as root")
    config.override(BROWSER_CPUS=0.1)
    group = cpu_cap.group_dir(h)
    b = jsTrigger.start_browser()
    try:
        b.remember_tree()
        name = os.path.basename(group)
        chromiums = [p for p in b.procs.values() if p.name().startswith("chrom")]
        assert chromiums and all(name in group_of(p.pid) for p in chromiums)  # chromedriver and Chromium, which inherited it
        assert name not in group_of(os.getpid())  # the daemon itself is not capped
        quota = "cpu.max" if h.v2 else "cpu.cfs_quota_us"
        with open(os.path.join(group, quota), encoding="ascii") as fh:
            assert fh.read().split()[0] == "10000"
        # About 0.3 CPU-s of script: at 0.1 of a core the kernel must hold the browser back many times.
        b.driver.get("data:text/html,<script>let x=0;for(let i=0;i<1e8;i++)x+=i%7;document.title='done'</script>")
        deadline = time.monotonic() + 120
        while b.driver.title != "done" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert b.driver.title == "done"
        assert cpu_cap.throttled(group) > 0
        # Time held back at the quota counts as waiting for CPU: page deadlines move on by it.
        assert b.cpu_wait() >= cpu_cap.throttled_seconds(group) > 0
    finally:
        b.close()
    assert not os.path.exists(group)  # removed with the last browser in it
    assert chromium_descendants() == []


@pytest.mark.slow
def test_where_no_group_can_be_made_the_browser_runs_at_its_nice_and_says_so_once(chromium, monkeypatch):
    def no_cgroup() -> cpu_cap.Hierarchy:
        raise cpu_cap.CapError("no cpu cgroup mounted for this process")

    monkeypatch.setattr(cpu_cap, "hierarchy", no_cgroup)
    browser._uncapped.cache_clear()
    config.override(BROWSER_CPUS=0.1)
    with captured_log() as records:
        for _ in range(2):
            b = jsTrigger.start_browser()
            try:
                assert b.driver.execute_script("return 6 * 7") == 42
                pid = b.driver.service.process.pid
                assert psutil.Process(pid).nice() == config.settings().BROWSER_NICE
            finally:
                b.close()
    said = [m for m in messages(records) if "Browser CPU not capped" in m]
    assert said == ["Browser CPU not capped at BROWSER_CPUS=0.1 (no cpu cgroup mounted for this process): "
                    "it runs at nice 19 only; in a container, cap the manager with compose's `cpus`"]
    assert chromium_descendants() == []
