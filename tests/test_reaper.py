"""reaper: orphans are collected when the daemon is PID 1, and our own children's exit status is never taken.

The slow test runs the real daemon as PID 1 of a fresh PID namespace, as a container without an init
runs it (`unshare --pid --fork --mount-proc python main.py --dry-run`), drives three analyses of the
market pages with real Chromium, and counts the zombies left in that namespace.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

import psutil
import pytest

import reaper
from tests.conftest import require

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def zombie_state(pid: int) -> bool:
    stat = reaper.read_stat(pid)
    return stat is not None and stat[0] == "Z"


def wait_until(predicate, timeout: float, interval: float = 0.05):
    """Poll `predicate` until truthy or `timeout` passes; its last value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


# --- fast: the stealing hazard and the orphan rule ------------------------------------------------
def test_a_tracked_popen_keeps_its_exit_status():
    with reaper.spawning():
        proc = subprocess.Popen(["sh", "-c", "exit 7"])
        reaper.track(proc)
    try:
        assert wait_until(lambda: zombie_state(proc.pid), 10)
        assert reaper.reap_once() == [proc.pid]  # collected, through the Popen
        assert proc.returncode == 7
        assert proc.wait(5) == 7
    finally:
        reaper.untrack(proc)


def test_a_thread_waiting_for_its_child_gets_the_status_while_the_reaper_runs():
    """Popen turns ECHILD into exit status 0: a reaper that stole the child would make this 0."""
    with reaper.spawning():
        proc = subprocess.Popen(["sh", "-c", "sleep 0.3; exit 3"])
        reaper.track(proc)
    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(proc.wait(10)))
    waiter.start()
    try:
        while waiter.is_alive():
            reaper.reap_once()
        waiter.join()
        assert got == [3]
    finally:
        reaper.untrack(proc)


def test_an_untracked_child_is_collected_as_an_orphan():
    """What an adopted orphan looks like to us: a zombie child that no Popen of ours owns."""
    pid = os.posix_spawn("/bin/sh", ["sh", "-c", "exit 0"], dict(os.environ))
    assert wait_until(lambda: zombie_state(pid), 10)
    assert pid in reaper.zombie_children()
    assert pid in reaper.reap_once()
    assert reaper.read_stat(pid) is None  # gone from /proc: collected
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_read_stat_survives_odd_command_names(tmp_path):
    """The command name in /proc/PID/stat may hold spaces and parentheses."""
    odd = tmp_path / "odd) (name"
    odd.symlink_to("/bin/sleep")
    proc = subprocess.Popen([str(odd), "5"])
    try:
        assert wait_until(lambda: reaper.read_stat(proc.pid) == ("S", os.getpid()), 10)
    finally:
        proc.kill()
        proc.wait(5)


def test_start_does_nothing_when_orphans_go_elsewhere():
    assert os.getpid() != 1 and not reaper.is_subreaper()  # pytest is neither PID 1 nor a subreaper
    assert reaper.start(threading.Event()) is None


# --- slow: the daemon as PID 1 --------------------------------------------------------------------
def namespace_processes(unshare: psutil.Process) -> list[psutil.Process]:
    """Every process of the PID namespace: the descendants of `unshare --fork`."""
    return unshare.children(recursive=True)


def zombies_in(unshare: psutil.Process) -> list[str]:
    out = []
    for proc in namespace_processes(unshare):
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                out.append(f"{proc.pid} {proc.name()} (parent {proc.ppid()})")
        except psutil.Error:
            continue
    return out


def last_analysis(api: str) -> float | None:
    with urllib.request.urlopen(f"{api}/status", timeout=5) as resp:
        return json.loads(resp.read()).get("last_analysis")


def ns_pid(pid: int) -> list[str]:
    """The pid as seen from each namespace level (NSpid line), outermost first."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("NSpid:"):
                return line.split()[1:]
    return []


@pytest.fixture
def pid1_daemon():
    for prog, what in (("unshare", "util-linux's unshare"), ("/usr/bin/chromium", "Chromium"),
                       ("/usr/bin/chromedriver", "ChromeDriver")):
        require(prog, what)
    from demo.rig import build_rig

    rig = build_rig(with_docker=False, PAGE_TIMEOUT="20")
    log_path = os.path.join(rig.workdir, "daemon.log")
    log = open(log_path, "wb")
    # --kill-child: SIGTERM to unshare reaches the daemon (unshare does not forward signals itself)
    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child=SIGTERM",
         sys.executable, os.path.join(ROOT, "main.py"), "--dry-run"],
        cwd=rig.workdir, env=rig.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    try:
        yield rig, proc, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
            proc.wait(10)
        log.close()
        rig.close()


@pytest.mark.slow
def test_the_daemon_as_pid_1_leaves_no_zombies_after_three_analyses(pid1_daemon):
    rig, proc, log_path = pid1_daemon
    unshare = psutil.Process(proc.pid)

    def log_tail() -> str:
        with open(log_path, encoding="utf-8", errors="replace") as fh:
            return "\n".join(fh.read().splitlines()[-30:])

    def analysed_after(previous):
        def check():
            try:
                stamp = last_analysis(rig.api)
            except OSError:
                return None
            return stamp if stamp and stamp != previous else None
        return check

    stamp = None
    for n in range(3):
        if n:
            rig.send("check")
        stamp = wait_until(analysed_after(stamp), 120, interval=0.3)
        assert stamp, f"analysis {n + 1} did not finish\n{log_tail()}"
    daemon = [p for p in namespace_processes(unshare) if p.ppid() == unshare.pid]
    assert len(daemon) == 1 and ns_pid(daemon[0].pid)[-1] == "1", "the daemon is not PID 1 of its namespace"
    ranking = rig.get_json("/status").get("ranking") or []
    assert ranking, f"the analyses rendered no coin, so Chromium proved nothing\n{log_tail()}"

    # Chromium's helpers exit a moment after the browser quits; the reaper runs every second.
    left = wait_until(lambda: not zombies_in(unshare), 15, interval=0.5)
    assert left, f"zombies left in the namespace: {zombies_in(unshare)}\n{log_tail()}"
    assert "reaped" in open(log_path, encoding="utf-8", errors="replace").read()  # the reaper said it runs
