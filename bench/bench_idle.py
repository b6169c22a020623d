"""Idle cost of the daemon between analyses: CPU share of one core and memory, no Chromium alive.

Runs the real daemon on the demo rig (market snapshot on loopback, private dockerd, stand-in worker),
waits for the first analysis and worker start, lets it settle, then samples the daemon's whole
process tree for --seconds. A dashboard-like poller can be added with --poll (GET /1/summary every
N seconds), as on a rig that a dashboard watches.

    .venv/bin/python bench/bench_idle.py --seconds 60
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import psutil  # noqa: E402

from demo.rig import build_rig  # noqa: E402


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def rss_mib(procs: list[psutil.Process]) -> float:
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def chromium_alive(procs: list[psutil.Process]) -> int:
    return sum(1 for p in procs if "chrom" in (p.name() or "").lower())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="sampling window")
    ap.add_argument("--settle", type=float, default=10.0, help="wait after the worker starts")
    ap.add_argument("--poll", type=float, default=0.0, help="GET /1/summary every N s during the window (0: none)")
    args = ap.parse_args()

    rig = build_rig(with_docker=True)
    try:
        rig.start_daemon()
        rig.wait_for(lambda: rig.get_json("/status").get("current_coin"), 180, "the first worker")
        time.sleep(args.settle)
        procs = tree(rig.proc.pid)
        threads = psutil.Process(rig.proc.pid).num_threads()
        c0, t0 = cpu_seconds(procs), time.monotonic()
        polls = 0
        while time.monotonic() - t0 < args.seconds:
            if args.poll:
                urllib.request.urlopen(rig.api + "/1/summary", timeout=2).read()
                polls += 1
                time.sleep(args.poll)
            else:
                time.sleep(min(1.0, args.seconds))
        procs = tree(rig.proc.pid)
        used = cpu_seconds(procs) - c0
        wall = time.monotonic() - t0
        print(f"window            : {wall:.1f} s" + (f", {polls} GET /1/summary" if polls else ", no API clients"))
        print(f"daemon CPU        : {used:.3f} s = {100 * used / wall:.3f}% of one core (target < 1%)")
        print(f"daemon memory     : {rss_mib(procs):.1f} MiB RSS, {threads} threads, {len(procs)} process(es)")
        print(f"chromium processes: {chromium_alive(procs)} (target 0)")
    finally:
        rig.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
