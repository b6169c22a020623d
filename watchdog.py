"""The watchdog: between analyses, keep the worker healthy or give up on its coin.

A worker that exited, died or restarts in a loop, or that has reported 0 H/s for
ZERO_HASHRATE_MINUTES, is restarted: at once the first time, then after a growing backoff. After
WATCHDOG_MAX_FAILURES its coin is marked failing (`config.state.failing_coins`) and the next analysis
takes the next best coin. A worker healthy for long enough has its failure record forgotten.

XMRig's hashrate comes from the reader it is given (`xmrig.read_summary` in the daemon), read
without holding the controller's lock; only a restart or a stop takes the lock.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Callable

import config
import utils
from engine import EngineDown
from worker_backend import Worker, WorkerBackend
from xmrig import Summary

MAX_BACKOFF_SECONDS = 3600.0
FORGIVE_SECONDS = 6 * 3600.0  # healthy this long: past watchdog failures are forgotten
LOG_TAIL_LINES = 20
FAILING_INCIDENT = "worker-failing:"

SummaryReader = Callable[[], Summary | None]
ReadingHook = Callable[[Worker, Summary, float], None]


# --- rules (pure) --------------------------------------------------------------------------------
def backoff_seconds(failures: int, base: float) -> float:
    """Wait before the watchdog's restart number `failures`: none for the first, then base, 2x base..."""
    if failures <= 1:
        return 0.0
    return min(base * 2 ** (failures - 2), MAX_BACKOFF_SECONDS)


def forgive_after(s: config.Settings) -> float:
    """How long a worker must stay healthy before its failure count starts again from 0."""
    return max(FORGIVE_SECONDS, 3 * s.ZERO_HASHRATE_MINUTES * 60, 3 * s.WATCHDOG_SECONDS)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ERRORISH = re.compile(r"error|unrecognized|illegal|invalid|unknown|failed|no valid|not found|refused|denied", re.I)


def error_line(lines: list[str]) -> str | None:
    """The line of a worker's output that says why it stopped: the last one that reads like an
    error (XMRig: "xmrig: unrecognized option '--foo'"), else the last non-empty one."""
    clean = [_ANSI.sub("", line).strip() for line in lines]
    clean = [line for line in clean if line]
    if not clean:
        return None
    return next((line for line in reversed(clean) if _ERRORISH.search(line)), clean[-1])[:300]


def state_fault(worker: Worker, restarts_seen: int) -> str | None:
    """Why the worker's state needs a restart (None when it is running or not the watchdog's
    business, e.g. paused by hand). `restarts_seen`: the restart count at the last look."""
    if worker.state == "restarting" or worker.restarts > restarts_seen:
        return f"restarting in a loop ({worker.restarts} restarts)"
    if worker.state in ("exited", "dead", "created"):
        return f"{worker.state} (exit code {worker.exit_code})"
    return None


# --- memory --------------------------------------------------------------------------------------
@dataclass
class Failures:
    count: int = 0
    retry_at: float | None = None  # a restart is due at this time (None: none pending)
    last_fault: float = 0.0
    given_up: bool = False  # its coin was marked failing: the next analysis replaces the worker


@dataclass
class Memory:
    """What the watchdog remembers between ticks (creating it does no I/O)."""

    failures: dict[str, Failures] = field(default_factory=dict)  # coin key -> record
    restarts_seen: dict[str, int] = field(default_factory=dict)  # worker ident -> restart count
    zero_since: dict[str, float] = field(default_factory=dict)  # worker ident -> first 0 H/s seen


# XMRig's 10 s average is null until it has data; past this much uptime a null means it is not mining.
WARM_UP_SECONDS = 60.0


def mining_rate(summary: Summary | None) -> float | None:
    """The worker's 10 s hashrate; None while that says nothing yet (no summary, or XMRig warming up).

    XMRig whose pool is gone reports `[null, null, null]`, not zeros: once it has been up past the
    warm-up, a null counts as 0 H/s, so a dead pool is seen."""
    if summary is None:
        return None
    if summary.hashrate_10s is not None:
        return summary.hashrate_10s
    if summary.uptime is not None and summary.uptime >= WARM_UP_SECONDS:
        return 0.0
    return None


class Watchdog:
    """Checks the worker through `backend`; `lock` is the controller's lock for worker changes."""

    def __init__(self, backend: WorkerBackend, lock: threading.RLock, read_summary: SummaryReader,
                 on_reading: ReadingHook | None = None) -> None:
        self.backend = backend
        self.lock = lock
        self.read_summary = read_summary
        self.on_reading = on_reading  # told every reading of a healthy running worker (measured hashrate)
        self.memory = Memory()

    def reset(self) -> None:
        """Forget every failure record; each coin's `worker-failing:` incident ends too (the owner is
        told it will be tried again)."""
        self.memory = Memory()
        for key in utils.incidents.open_keys():
            if key.startswith(FAILING_INCIDENT):
                coin = key[len(FAILING_INCIDENT):]
                utils.incidents.clear(key, f"Watchdog record for {coin} reset: it will be tried again")

    def forget(self, key: str) -> None:
        """A worker for `key` was just started afresh: its past failures no longer count."""
        self.memory.failures.pop(key, None)
        utils.incidents.clear(f"{FAILING_INCIDENT}{key}", f"Worker for {key} started again")

    def check(self, now: float, s: config.Settings) -> str:
        """One look at the worker: "missing" (none), "ok", or "fault" (handled: restarted, waiting
        for its backoff, or given up on). Engine faults are raised to the caller's guard."""
        worker = self.backend.find()
        if worker is None:
            return "missing"
        key = worker.coin_key or "unknown"
        record = self.memory.failures.get(key)
        if record is not None and record.given_up:
            return "fault"  # already given up on; the next analysis replaces it
        fault, summary = self._fault(worker, now, s)
        if fault is None:
            self._forgive(key, now, s)
            if summary is not None and self.on_reading is not None:
                self.on_reading(worker, summary, now)
            return "ok"
        with self.lock:
            current = self.backend.find()
            if current is None or current.ident != worker.ident:
                return "ok"  # replaced meanwhile (a switch, a command): the next tick looks at the new one
            self._handle(current, key, fault, now, s)
        return "fault"

    def _fault(self, worker: Worker, now: float, s: config.Settings) -> tuple[str | None, Summary | None]:
        """Why this worker needs a restart (None when healthy), and XMRig's summary when read."""
        seen = self.memory.restarts_seen.get(worker.ident, 0)
        self.memory.restarts_seen[worker.ident] = worker.restarts
        fault = state_fault(worker, seen)
        if fault is not None:
            why = error_line(self.backend.log_tail(worker, LOG_TAIL_LINES))
            return (f"{fault}: {why}" if why else fault), None
        if not worker.running:
            return None, None  # paused by hand, or being removed: not the watchdog's business
        summary = self.read_summary()
        zero = self._zero_for(worker, summary, now)
        if zero is not None and zero >= s.ZERO_HASHRATE_MINUTES * 60:
            return f"0 H/s for {zero / 60:.1f} min", summary
        return None, summary

    def _zero_for(self, worker: Worker, summary: Summary | None, now: float) -> float | None:
        """Seconds this running worker has reported 0 H/s, None while it mines (or says nothing)."""
        rate = mining_rate(summary)
        if rate is None:
            return None
        if rate > 0:
            self.memory.zero_since.pop(worker.ident, None)
            return None
        return now - self.memory.zero_since.setdefault(worker.ident, now)

    def _handle(self, worker: Worker, key: str, fault: str, now: float, s: config.Settings) -> None:
        """Count a new fault, then restart now, later (backoff) or never (too many failures)."""
        record = self.memory.failures.setdefault(key, Failures())
        record.last_fault = now
        if record.retry_at is None:  # a new fault, not one already waiting for its restart
            record.count += 1
            if record.count >= s.WATCHDOG_MAX_FAILURES:
                self._give_up(worker, key, fault, record, s)
                return
            record.retry_at = now + backoff_seconds(record.count, s.WATCHDOG_SECONDS)
        if now < record.retry_at:
            utils.log(f"[WARN] Watchdog: worker for {key} is {fault}; restart in {record.retry_at - now:.0f}s (backoff)")
            return
        utils.log(f"[WARN] Watchdog: worker for {key} is {fault}; restarting (failure {record.count} of {s.WATCHDOG_MAX_FAILURES})")
        restarted = self.backend.restart(worker)
        self.memory.restarts_seen[restarted.ident] = restarted.restarts
        self.memory.zero_since.pop(restarted.ident, None)
        record.retry_at = None

    def _give_up(self, worker: Worker, key: str, fault: str, record: Failures, s: config.Settings) -> None:
        text = (f"Worker for {key} failed {s.WATCHDOG_MAX_FAILURES} times ({fault}); "
                f"giving up on {key}, the next analysis takes the next best coin")
        utils.log(f"[ERROR] {text}")
        try:
            self.backend.stop(worker)
        except EngineDown:
            raise
        except Exception as exc:  # still give up: the next analysis replaces the worker anyway
            utils.log(f"[WARN] Could not stop the failing worker: {type(exc).__name__}: {exc}")
        record.given_up = True
        config.state.change("failing_coins", lambda failing: set(failing) | {key})
        utils.incidents.raise_(f"{FAILING_INCIDENT}{key}", text)
        config.state.request_wake(check=True)

    def _forgive(self, key: str, now: float, s: config.Settings) -> None:
        """A worker that failed long ago and is healthy since starts again with a clean record."""
        record = self.memory.failures.get(key)
        if record and record.retry_at is None and now - record.last_fault >= forgive_after(s):
            del self.memory.failures[key]
            utils.incidents.clear(f"{FAILING_INCIDENT}{key}", f"Worker for {key} healthy again: its failure record is cleared")
