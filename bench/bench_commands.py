"""Benchmark of the control paths: the command FIFO and the Discord service (against the local stand-in).

Run: .venv/bin/python bench/bench_commands.py
Prints figures; stops by itself (about 15 s). Everything runs on 127.0.0.1 and in a temp folder.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import commands  # noqa: E402
import config  # noqa: E402
from discord_service import DiscordService  # noqa: E402
from tests.discord_standin import DiscordStandIn  # noqa: E402

OWNER = 123456789012345678


class Counter:
    """Wraps commands.execute to count executed lines and wake a waiter."""

    def __init__(self) -> None:
        self.n = 0
        self.cond = threading.Condition()
        self.real = commands.execute
        commands.execute = self

    def __call__(self, text: str, source: str = "pipe") -> str:
        reply = self.real(text, source)
        with self.cond:
            self.n += 1
            self.cond.notify_all()
        return reply

    def wait(self, n: int, timeout: float = 60) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: self.n >= n, timeout):
                raise RuntimeError(f"only {self.n} of {n} commands arrived")


def thread_cpu(tid: int) -> float:
    with open(f"/proc/self/task/{tid}/stat") as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def bench_pipe() -> None:
    folder = tempfile.mkdtemp(prefix="bench-pipe-")
    path = os.path.join(folder, "miner_comm")
    counter = Counter()
    stop = threading.Event()
    tids: list[int] = []

    def run() -> None:
        tids.append(threading.get_native_id())
        commands.listen_for_commands(stop=stop, path=path)

    reader = threading.Thread(target=run, daemon=True)
    reader.start()
    while not os.path.exists(path):
        time.sleep(0.01)
    try:
        # latency: one writer, one command, wait until executed
        lat = []
        for _ in range(50):
            target = counter.n + 1
            t0 = time.perf_counter()
            write(path, b"logs on\n")
            counter.wait(target)
            lat.append((time.perf_counter() - t0) * 1000)
        print(f"pipe: single command write->executed, median {statistics.median(lat):.2f} ms, "
              f"max {max(lat):.2f} ms (n=50)")
        # throughput: 4 writers x 2500 lines
        base, per, writers = counter.n, 2500, 4
        t0 = time.perf_counter()
        threads = [threading.Thread(target=write, args=(path, b"logs on\n" * per)) for _ in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        counter.wait(base + per * writers)
        dt = time.perf_counter() - t0
        print(f"pipe: {per * writers} commands from {writers} concurrent writers in {dt:.2f} s "
              f"= {per * writers / dt:,.0f} commands/s")
        # idle CPU of the reader thread
        before = thread_cpu(tids[0])
        time.sleep(5)
        used = thread_cpu(tids[0]) - before
        print(f"pipe: idle reader CPU {used * 1000:.0f} ms over 5 s ({used / 5 * 100:.2f} % of a core)")
    finally:
        commands.execute = counter.real
        stop.set()
        reader.join(5)
        os.unlink(path)
        os.rmdir(folder)


def bench_discord() -> None:
    with DiscordStandIn() as dc, dc.patched():
        svc = DiscordService(token="bench.token", user_id=str(OWNER), guild_ready_timeout=0.05)
        t0 = time.perf_counter()
        svc.start()
        svc.ready.wait(15)
        print(f"discord: start() to ready {(time.perf_counter() - t0) * 1000:.0f} ms (stand-in, guild wait 50 ms)")
        try:
            n = 100  # the queue's bound: more would drop the oldest, by design
            t0 = time.perf_counter()
            for i in range(n):
                svc.send_dm(f"bench {i}")
            call_us = (time.perf_counter() - t0) / n * 1e6
            if len(dc.wait_dms(n, timeout=60)) < n:
                raise RuntimeError(f"only {len(dc.sent)} of {n} DMs arrived")
            dt = time.perf_counter() - t0
            ok = [m.content for m in dc.sent[:n]] == [f"bench {i}" for i in range(n)]
            print(f"discord: send_dm() call {call_us:.1f} us mean; {n} DMs delivered in {dt:.2f} s "
                  f"= {n / dt:,.0f} DMs/s, in order: {ok}")
            lat = []
            for _ in range(20):
                target = len(dc.sent) + 1
                t0 = time.perf_counter()
                dc.inject_message("status", OWNER)
                if len(dc.wait_dms(target, timeout=30)) < target:
                    raise RuntimeError("no reply to a DM command")
                lat.append((time.perf_counter() - t0) * 1000)
            print(f"discord: owner DM 'status' -> reply delivered, median {statistics.median(lat):.1f} ms, "
                  f"max {max(lat):.1f} ms (n=20)")
        finally:
            svc.stop()


def main() -> None:
    config.set_settings(config.load_settings(environ={}, env_file=None))
    print(f"bench_commands on {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    bench_pipe()
    bench_discord()


if __name__ == "__main__":
    main()
