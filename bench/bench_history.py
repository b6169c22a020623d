"""History benchmark: 90 days of a rig's life in the store, then what the owner waits for.

Simulates 90 days ending now (5 coins, 3 analyses a day, a switch whenever the best coin changes, a
hashrate sample every 5 minutes) through the store's own writer, then measures:
  1. history.answer("hours=2160") in process (what the API route will call: validation, the read, the
     JSON text), p50/p99 over --queries, every answer read from SQLite (the store's answer cache off);
  2. GET /history?hours=2160 over real HTTP (a ThreadingHTTPServer answering through history.answer, as
     the daemon's route will; a fresh connection per GET): p50/p99 and the answer's size, with the
     cache off (every answer read) and on (as served: a repeated window is answered from memory until
     the next write);
  3. the database's size on disk after the 90 days (file after a checkpoint, and with its WAL);
  4. the dashboard's first full render in real Chromium (navigation start to both charts drawn, the
     page's own mark `window.dashboardRenderedAt`), first load in a fresh browser and the median of
     --loads further reloads, at the 90-day range and at the default 7-day range.
Targets (issue 11): p99 <= 50 ms, <= 20 MB, render <= 1 s.

Run: .venv/bin/python bench/bench_history.py [--queries 200] [--loads 5]
"""
from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import api_bodies  # noqa: E402
import config  # noqa: E402
import history  # noqa: E402
import jsTrigger  # noqa: E402
from tests.dashboard_standin import ApiStandin, sim_coin, simulate, wait_rendered  # noqa: E402

DAYS = 90
HOURS = DAYS * 24
COINS = ["monero", "zephyr", "salvium", "wownero", "tari"]


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]


def bench_query(store: history.HistoryStore, n: int) -> tuple[float, float, int]:
    """history.answer (what the route calls: validation, read, JSON text) in process."""
    for _ in range(5):
        history.answer(store, f"hours={HOURS}")
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        status, body = history.answer(store, f"hours={HOURS}")
        times.append((time.perf_counter() - t0) * 1000)
        assert status == 200
    p50, p99 = percentiles(times)
    return p50, p99, len(body)


def bench_http(api: ApiStandin, n: int) -> tuple[float, float, int]:
    host, port = api.base.removeprefix("http://").split(":")
    times, size = [], 0
    for i in range(n + 5):
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", f"/history?hours={HOURS}", headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        if resp.status != 200:
            raise SystemExit(f"/history answered {resp.status}: {body[:200]!r}")
        if i >= 5:  # the first few warm up
            times.append((time.perf_counter() - t0) * 1000)
        size = len(body)
    p50, p99 = percentiles(times)
    return p50, p99, size


def db_size(path: str) -> tuple[int, int]:
    """(file, file + WAL + shm) in bytes."""
    def size(p: str) -> int:
        return os.path.getsize(p) if os.path.exists(p) else 0
    return size(path), size(path) + size(path + "-wal") + size(path + "-shm")


def bench_render(api: ApiStandin, path: str, loads: int) -> tuple[float, float]:
    browser = jsTrigger.start_browser()
    try:
        driver = browser.driver
        driver.get(api.base + path)
        first = wait_rendered(driver)
        again = []
        for _ in range(loads):
            driver.refresh()
            again.append(wait_rendered(driver))
        return first, statistics.median(again)
    finally:
        browser.close()


def status_source(store: history.HistoryStore):
    """/status as the daemon answers it, for the rig the simulation left."""
    ranking = [sim_coin(row["key"], row["income_usd"]) for row in store.query(24)["analyses"][-1]["coins"]]
    config.state.update(last_ranking=ranking, current_coin=ranking[0].key, current_since=time.time() - 3600,
                        current_income_usd=ranking[0].income_usd, next_analysis=time.time() + 8 * 3600)
    return lambda: api_bodies.status_body(config.state.snapshot(), {"name": "active_miner_worker", "state": "running"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()
    config.set_settings(config.load_settings(environ={}, env_file=None))
    folder = tempfile.mkdtemp(prefix="bench-history-")
    path = os.path.join(folder, "smartminer.db")
    try:
        store = history.HistoryStore(path, DAYS)
        store.start()
        store.flush()
        t0 = time.perf_counter()
        counts = simulate(store, DAYS, COINS, time.time(), analyses_per_day=3, sample_seconds=300)
        fill = time.perf_counter() - t0
        store.close()  # checkpoints the WAL into the file
        size_file, _ = db_size(path)
        store = history.HistoryStore(path, DAYS)
        uncached = history.HistoryStore(path, DAYS, cache_answers=False)
        for s in (store, uncached):
            s.start()
            s.flush()
        print(f"simulated {DAYS} days: {counts['analyses']} analyses x {len(COINS)} coins, {counts['switches']} switches, "
              f"{counts['samples']} hashrate samples, written in {fill:.1f} s")
        q50, q99, qsize = bench_query(uncached, args.queries)
        print(f"history.answer(hours={HOURS}) in process, read every time, {args.queries} runs: p50 {q50:.1f} ms, "
              f"p99 {q99:.1f} ms (answer {qsize / 1024:.0f} KiB)   target p99 <= 50 ms: {'OK' if q99 <= 50 else 'MISSED'}")
        api = ApiStandin(status_source(store), uncached)
        try:
            for label in ("read every time", "as served, answer cache on"):
                h50, h99, hsize = bench_http(api, args.queries)
                print(f"GET /history?hours={HOURS} over HTTP, fresh connection each, {label}, {args.queries} runs: "
                      f"p50 {h50:.1f} ms, p99 {h99:.1f} ms ({hsize / 1024:.0f} KiB)   target p99 <= 50 ms: "
                      f"{'OK' if h99 <= 50 else 'MISSED'}")
                api.store = store
            _, size_all = db_size(path)
            print(f"database after {DAYS} days: {size_file / 1e6:.2f} MB (with WAL while open: {size_all / 1e6:.2f} MB)"
                  f"   target <= 20 MB: {'OK' if max(size_file, size_all) <= 20e6 else 'MISSED'}")
            for label, page in ((f"{DAYS} days", f"/?hours={HOURS}"), ("7 days (default)", "/")):
                first, median = bench_render(api, page, args.loads)
                print(f"dashboard first full render in Chromium, {label}: first load {first:.0f} ms, "
                      f"median of {args.loads} reloads {median:.0f} ms   target <= 1000 ms: {'OK' if first <= 1000 else 'MISSED'}")
        finally:
            api.close()
            store.close()
            uncached.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
