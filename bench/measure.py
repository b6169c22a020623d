"""What the benchmarks measure, and how: CPU-seconds, wall time, peak memory, zombies, load.

- tree CPU-seconds: this process's own CPU plus that of every descendant, once collected (rusage
  SELF + CHILDREN). This process is made a child subreaper, so Chromium's orphans are re-parented to
  it and counted too. Other users of the machine do not enter this figure.
- machine CPU-seconds: every busy jiffy of /proc/stat (all processes on the machine, ours included);
  the issue's measure, exact only on a quiet machine: the load average is printed beside it.
- zombies: the orphans that died re-parented to us, counted before we collect them: what a PID 1
  without a reaper would keep.
- the market is served from a process of its own (MarketProcess), so serving pages is not counted
  in the tree figure.
"""
from __future__ import annotations

import ctypes
import os
import resource
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import psutil

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SNAPSHOT = os.path.join(ROOT, "demo", "snapshot.json")
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def tree_cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def machine_cpu() -> float:
    """Busy CPU-seconds of the whole machine since boot (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat", encoding="ascii") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / os.sysconf("SC_CLK_TCK")


def load1() -> float:
    with open("/proc/loadavg", encoding="ascii") as fh:
        return float(fh.read().split()[0])


class MarketProcess:
    """demo/market.py serving the snapshot in a child process; `url(slug)`; `close()`."""

    def __init__(self, realistic: bool) -> None:
        args = [sys.executable, "-m", "demo.market", SNAPSHOT] + (["--realistic"] if realistic else [])
        self.proc = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())
        from demo.market import load_snapshot

        self.slugs = list(load_snapshot(SNAPSHOT))

    def url(self, slug: str) -> str:
        return f"http://127.0.0.1:{self.port}/{slug}"

    def urls(self) -> list[str]:
        return [self.url(s) for s in self.slugs]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(10)


class Tree:
    """Our descendants, minus the helper processes we keep running (market servers, miners)."""

    def __init__(self) -> None:
        self.keep: set[int] = set()

    def descendants(self) -> list[psutil.Process]:
        out = []
        for p in psutil.Process().children(recursive=True):
            if p.pid in self.keep:
                continue
            try:
                if any(a.pid in self.keep for a in p.parents()):
                    continue
            except psutil.Error:
                continue
            out.append(p)
        return out

    def wait_exited(self, timeout: float = 20.0) -> None:
        """Wait until every descendant has exited (or is a zombie)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alive = [p for p in self.descendants() if _status(p) not in (psutil.STATUS_ZOMBIE, None)]
            if not alive:
                return
            time.sleep(0.05)

    def settle(self, timeout: float = 20.0) -> int:
        """Wait until every descendant has exited; collect the zombies. Returns how many there were."""
        self.wait_exited(timeout)
        zombies = [p.pid for p in psutil.Process().children() if p.pid not in self.keep and _status(p) == psutil.STATUS_ZOMBIE]
        for pid in zombies:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        return len(zombies)


def _status(p: psutil.Process) -> str | None:
    try:
        return p.status()
    except psutil.Error:
        return None


@dataclass
class Run:
    wall: float
    cpu: float  # tree CPU-seconds
    machine: float  # machine CPU-seconds
    load: float  # 1-minute load average at the start
    zombies: int  # orphans left dead, re-parented to us
    value: Any = None


def measure(tree: Tree, fn: Callable[[], Any]) -> Run:
    """One call of `fn`, from a settled tree to a settled tree."""
    tree.settle()
    load = load1()
    c0, m0, t0 = tree_cpu(), machine_cpu(), time.monotonic()
    value = fn()
    wall = time.monotonic() - t0
    zombies = tree.settle()
    return Run(wall, tree_cpu() - c0, machine_cpu() - m0, load, zombies, value)


class PeakMemory:
    """Samples, every `interval` s, the RSS and PSS sums of our descendants (the browsers)."""

    def __init__(self, tree: Tree, interval: float = 0.1) -> None:
        self.tree = tree
        self.interval = interval
        self.rss = 0
        self.pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        rss = pss = 0
        for p in self.tree.descendants():
            try:
                with open(f"/proc/{p.pid}/smaps_rollup", encoding="ascii") as fh:
                    for line in fh:
                        if line.startswith("Rss:"):
                            rss += int(line.split()[1]) * 1024
                        elif line.startswith("Pss:"):
                            pss += int(line.split()[1]) * 1024
            except (OSError, ValueError):
                continue
        self.rss = max(self.rss, rss)
        self.pss = max(self.pss, pss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
