"""An API stand-in for the dashboard until the daemon serves it: a tiny HTTP server on 127.0.0.1 that
serves the page through dashboard.route, /status from a callable, and /history through history.answer
on a real HistoryStore. Also a history simulator and a Chromium helper, shared by the tests and
bench/bench_history.py.
"""
from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import urlsplit

import dashboard
import history
from coin import Coin

RENDERED_JS = "return document.documentElement.dataset.rendered === '1' ? window.dashboardRenderedAt : null;"


class ApiStandin:
    """`status()` gives /status's body; `store` answers /history. Stop it with `close()`."""

    def __init__(self, status: Callable[[], dict], store: history.HistoryStore) -> None:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                status, body, ctype = standin.answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

        self.status = status
        self.store = store
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def answer(self, target: str) -> tuple[int, bytes, str]:
        """What the daemon's API will answer for these paths (the wiring the report describes)."""
        parts = urlsplit(target)
        if parts.path in dashboard.PATHS:
            return dashboard.route(parts.path)
        if parts.path == "/status":
            return 200, json.dumps(self.status()).encode(), dashboard.JSON
        if parts.path == "/history":
            code, body = history.answer(self.store, parts.query)
            return code, body, dashboard.JSON
        return 404, json.dumps({"error": f"not found: {parts.path}"}).encode(), dashboard.JSON

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def sim_coin(key: str, income: float, hashrate_hs: float = 17300.0) -> Coin:
    return Coin(key=key, name=key.capitalize(), symbol=key[:4].upper(), url=f"https://miningpoolstats.stream/{key}",
                wallet="W", pool="127.0.0.1:3333", price_usd=1.0, nethash_hs=1e9, emission_24h=100.0,
                coins_per_day=income, income_usd=income, hashrate_hs=hashrate_hs)


def simulate(store: history.HistoryStore, days: float, keys: list[str], now: float, analyses_per_day: int = 3,
             sample_seconds: float = 300.0, batch: int = 5000) -> dict[str, int]:
    """Fill `store` with `days` of a rig's life ending at `now`: analyses of `keys` (incomes that drift
    with time), a switch whenever the best coin changes, a hashrate sample every `sample_seconds`."""
    start = now - days * 86400
    counts = {"analyses": 0, "switches": 0, "samples": 0}
    mining: Coin | None = None
    pending = 0
    step = 86400 / analyses_per_day
    t = start + 60
    next_analysis = t
    while t < now:
        if t >= next_analysis:
            coins = [sim_coin(k, 0.10 + 0.05 * (1 + math.sin(t / 86400 / (i + 1.7) + i))) for i, k in enumerate(keys)]
            coins.sort(key=lambda c: -c.income_usd)
            store.record_analysis(coins, [{"coin": "Etica", "url": "https://miningpoolstats.stream/etica",
                                           "reason": "no wallet for Etica"}], when=t)
            if mining is None or coins[0].key != mining.key:
                store.record_switch(mining, coins[0], "better coin" if mining else "start", 12.5 if mining else None, when=t + 1)
                mining = coins[0]
                counts["switches"] += 1
            counts["analyses"] += 1
            pending += 2
            next_analysis += step
        store.record_hashrate(mining.key if mining else None, 17300.0 + 400 * math.sin(t / 3600), when=t)
        counts["samples"] += 1
        pending += 1
        if pending >= batch:  # the queue is bounded: let the writer catch up
            store.flush(60)
            pending = 0
        t += sample_seconds
    store.flush(60)
    return counts


def wait_rendered(driver: Any, timeout: float = 30.0) -> float:
    """Wait until the dashboard marks both charts drawn; the milliseconds from navigation start.
    Raises AssertionError (with the page's problems line) when it does not happen in `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        at = driver.execute_script(RENDERED_JS)
        if at is not None:
            return float(at)
        time.sleep(0.05)
    problems = driver.execute_script("const p = document.getElementById('problems'); return p ? p.textContent : '';")
    raise AssertionError(f"dashboard did not render both charts within {timeout:g} s; page says: {problems!r}")
