"""The history store: every analysis, switch, hashrate sample and incident, in SQLite (WAL) at PATH_DB.

Why it is shaped like this:
- The profit loop, the watchdog and the API must never wait on the disk. `record_*` only puts a row on a
  bounded queue (never blocks, never raises); one writer thread owns the only writing connection and
  commits in short transactions. Readers (the API) borrow their own connections from a small pool, so
  WAL lets them read while the writer writes.
- History is a convenience; mining is the job. A corrupt, locked or unwritable file gives one error line
  (`utils.incidents`, key "history"), the store is off, and the writer tries again every RETRY_SECONDS
  or as soon as the file changes. Rows recorded while it is off are dropped. A database is never
  deleted or recreated: what to do with a bad file is the owner's decision.
- The schema carries its version in `PRAGMA user_version`; `migrate` upgrades an older file step by step.
- /history for 90 days must answer in milliseconds: SQLite hands back JSON text (history_db), and the
  same window asked again before the next write is answered from memory.

Times are epoch seconds (whole seconds in answers), like /status's `current_since` and `last_analysis`.
"""
from __future__ import annotations

import json
import math
import os
import queue
import sqlite3
import threading
import time
from typing import Any, Callable, Iterable, Mapping, TypeVar
from urllib.parse import parse_qs

import history_db as db
import utils
from coin import Coin

T = TypeVar("T")

DEFAULT_HOURS = 24.0
RETRY_SECONDS = 300.0  # an off store tries its file again this often (or at once when the file changes)
PRUNE_SECONDS = 86400.0
TICK_SECONDS = 60.0  # the idle writer wakes this often to see whether a prune or a retry is due
QUEUE_MAX = 10_000
BATCH_MAX = 500  # rows per write transaction
READERS_MAX = 4
ANSWERS_MAX = 8  # /history answers kept until the next write (a dashboard polls the same window)
INCIDENT_KEY = "history"
QUEUE_INCIDENT_KEY = "history-queue"
INPUT_INCIDENT_KEY = "history-input"


def describe_fault(path: str, exc: BaseException) -> str:
    """The one line that says the store is off, why, and what the owner can do about it."""
    text = str(exc) or type(exc).__name__
    low = text.lower()
    if isinstance(exc, db.SchemaTooNew):
        fix = "Upgrade SmartMiner, or point PATH_DB at another file"
    elif "locked" in low or "busy" in low:
        fix = "Another program holds it locked: close that program"
    elif isinstance(exc, OSError) or any(w in low for w in ("readonly", "read-only", "unable to open", "disk i/o", "full")):
        fix = "Make the file and its folder writable (and check the disk is not full)"
    elif isinstance(exc, sqlite3.DatabaseError):
        fix = "The file is damaged or not a SmartMiner database: move it aside and a new one is started"
    else:
        fix = "This is a bug: please report it"
    return f"History store off: {path}: {text}. {fix}. Mining goes on; retried every {RETRY_SECONDS / 60:g} min."


def _signature(path: str) -> tuple:
    """What changes when the owner fixes the file or its folder (replaced, restored, permissions)."""
    def stat(p: str) -> tuple | None:
        try:
            st = os.stat(p)
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode, st.st_uid
    return stat(path), stat(os.path.dirname(os.path.abspath(path)))

# --- the API's side (pure) -----------------------------------------------------------------------
def parse_hours(query: str, max_hours: float) -> tuple[float | None, str | None]:
    """`hours` from a query string: (hours, None), or (None, the reason for a 400).

    Absent: DEFAULT_HOURS. A positive number; above the retention it is cut to `max_hours`."""
    values = parse_qs(query or "", keep_blank_values=True).get("hours")
    if not values:
        return min(DEFAULT_HOURS, max_hours), None
    if len(values) > 1:
        return None, "give hours once"
    raw = values[0].strip()
    try:
        hours = float(raw) if len(raw) <= 20 else math.nan
    except ValueError:
        hours = math.nan
    if not math.isfinite(hours) or hours <= 0:
        return None, f"hours must be a positive number of hours (at most {max_hours:g}), got {values[0][:40]!r}"
    return min(hours, max_hours), None


def answer(store: "HistoryStore", query: str) -> tuple[int, bytes]:
    """GET /history?<query>: (HTTP status, JSON body). 400 with the reason for a bad `hours`, 503 with
    the reason while the store is off."""
    hours, reason = parse_hours(query, store.max_hours)
    if reason is not None:
        return 400, json.dumps({"error": "bad hours", "reason": reason}).encode()
    text, error = store.query_json(hours or DEFAULT_HOURS)
    if error is not None:
        return 503, json.dumps({"error": "history unavailable", "reason": error}).encode()
    return 200, text.encode()


def status_lines(last: dict | None, avg_income: float | None, now: float) -> list[str]:
    """The `status` command's history lines (pipe and Discord)."""
    if last is None:
        switch = "Last switch: none recorded"
    else:
        ago = max(0.0, now - last["time"]) / 3600
        gain = f", +{last['gain_pct']:.1f}%" if last.get("gain_pct") is not None else ""
        switch = (f"Last switch: {last['from_name'] or 'nothing'} -> {last['to_name'] or 'nothing'}, "
                  f"{ago:.1f} h ago ({last['reason'] or 'no reason given'}{gain})")
    income = f"${avg_income:.4f}/day" if avg_income is not None else "no hashrate samples yet"
    return [switch, f"24 h average income: {income}"]


# --- the store -----------------------------------------------------------------------------------
_NOOP, _STOP = object(), object()


class HistoryStore:
    """`start()` it, record into it from any thread, read from any thread, `close()` it at shutdown."""

    def __init__(self, path: str, days: float, clock: Callable[[], float] = time.time, queue_max: int = QUEUE_MAX,
                 cache_answers: bool = True) -> None:
        self.path = path
        self.days = days
        self._clock = clock
        self._queue: queue.Queue = queue.Queue(queue_max)
        self._lock = threading.Lock()
        self._state = "starting"  # starting | on | off | closed
        self._reason: str | None = None
        self._generation = 0  # bumped when the store goes on or off: older reader connections are dropped
        self._readers: list[tuple[int, sqlite3.Connection]] = []
        self._thread: threading.Thread | None = None
        self._writer: sqlite3.Connection | None = None
        self._writer_generation = -1
        self._retry_at = 0.0
        self._file_signature: tuple = ()
        self._next_prune = 0.0
        self.dropped = 0  # rows dropped: store off, or queue full
        self._writes = 0  # committed write transactions: an answer cached before the last one is stale
        self._answers: dict[tuple, str] | None = {} if cache_answers else None

    @property
    def max_hours(self) -> float:
        return self.days * 24.0

    @property
    def on(self) -> bool:
        return self._state == "on"

    @property
    def reason(self) -> str | None:
        """Why the store is off (None while on)."""
        return self._reason

    # --- life cycle ---
    def start(self) -> None:
        """Start the writer thread; it opens (and migrates) the database itself, so this never waits."""
        if self._thread is not None:
            return
        self._queue.put_nowait(_NOOP)  # `flush()` returns once the open is done
        self._thread = threading.Thread(target=self._run, name="history-writer", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (up to `timeout`), stop the writer, close every connection."""
        thread, self._thread = self._thread, None
        if thread is not None:
            try:
                self._queue.put(_STOP, timeout=timeout)
            except queue.Full:
                pass
            thread.join(timeout)
        with self._lock:
            self._state = "closed"
            self._generation += 1  # a read in progress does not put its connection back
            readers, self._readers = self._readers, []
        for _, conn in readers:
            conn.close()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything recorded so far is written (or dropped); tests, benchmarks and shutdown."""
        done = self._queue.all_tasks_done
        with done:
            return done.wait_for(lambda: self._queue.unfinished_tasks == 0, timeout)

    def request_prune(self) -> None:
        """Prune at the writer's next step instead of waiting for the day to pass."""
        self._next_prune = 0.0
        self._enqueue(_NOOP)

    # --- writes: never block, never raise ---
    def record_analysis(self, coins: Iterable[Coin], skipped: Iterable[Mapping[str, Any]] = (), when: float | None = None) -> None:
        """One analysis: its ranked coins (best first) and the coins it skipped ({"coin", "url", "reason"})."""
        self._record(db.write_analysis, lambda: (self._when(when), [db.coin_row(c) for c in coins],
                                                 [db.skipped_row(s) for s in skipped]))

    def record_switch(self, from_coin: Coin | str | None, to_coin: Coin | str | None, reason: str,
                      gain_pct: float | None = None, when: float | None = None) -> None:
        """A switch from one coin to another (a Coin, a coin key, or None for nothing mining)."""
        self._record(db.write_switch, lambda: (self._when(when), *db.who(from_coin), *db.who(to_coin), str(reason),
                                               db.num(gain_pct)))

    def record_hashrate(self, coin: str | None, hs: float | None, when: float | None = None) -> None:
        """A hashrate sample of the worker mining `coin` (a coin key); 0 when it is down or paused."""
        self._record(db.write_hashrate, lambda: (self._when(when), str(coin) if coin else None, db.num(hs)))

    def incident_started(self, key: str, text: str, when: float | None = None) -> None:
        self._record(db.write_incident_start, lambda: (self._when(when), str(key), str(text)))

    def incident_cleared(self, key: str, when: float | None = None) -> None:
        self._record(db.write_incident_clear, lambda: (self._when(when), str(key)))

    def _when(self, when: float | None) -> float:
        return float(when) if when is not None else self._clock()

    def _record(self, write: Callable[..., None], row: Callable[[], tuple]) -> None:
        """Queue `write(conn, *row())`; a row that cannot be built (a caller's bug) is dropped and said once."""
        try:
            args = row()
        except Exception as exc:
            self.dropped += 1
            utils.incidents.raise_(INPUT_INCIDENT_KEY, f"History store: a record was dropped ({type(exc).__name__}: {exc})",
                                   notify=False)
            return
        self._enqueue((write, args))

    def _enqueue(self, item: Any) -> None:
        if self._state == "closed":
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            utils.incidents.raise_(QUEUE_INCIDENT_KEY, f"History store: write queue full ({self._queue.maxsize});"
                                   " dropping records until it catches up", notify=False)

    # --- reads: never raise ---
    def query_json(self, hours: float) -> tuple[str, str | None]:
        """The /history body for the last `hours` (cut to the retention) as JSON text, and None; while
        the store is off, a body with empty lists and "error", and the reason.

        The window starts at a hashrate slot boundary (at most one slot earlier than asked), so that
        the same window asked again before the next write is answered from memory."""
        hours = min(float(hours), self.max_hours)
        bucket = db.bucket_seconds(hours)
        since = math.floor((self._clock() - hours * 3600) / bucket) * bucket
        key = (hours, since, self._generation, self._writes)
        with self._lock:
            cached = self._answers.get(key) if self._answers is not None else None
        if cached is not None:
            return cached, None

        def read(conn: sqlite3.Connection) -> str:
            conn.execute("BEGIN")  # one snapshot for the three lists
            try:
                return (f'{{"hours":{json.dumps(hours)},"hashrate_bucket_s":{json.dumps(bucket)},'
                        f'"analyses":{db.read_analyses_json(conn, since)},"switches":{db.read_switches_json(conn, since)},'
                        f'"hashrate":{db.read_hashrate_json(conn, since, bucket)}}}')
            finally:
                conn.execute("COMMIT")

        text, error = self._read(read, "")
        if error:
            return json.dumps({"hours": hours, "analyses": [], "switches": [], "hashrate": [], "error": error}), error
        with self._lock:
            if self._answers is not None:
                if len(self._answers) >= ANSWERS_MAX:
                    self._answers.clear()
                self._answers[key] = text
        return text, None

    def query(self, hours: float) -> dict:
        """`query_json` as a dict ("error" set while the store is off)."""
        return json.loads(self.query_json(hours)[0])

    def last_switch(self) -> dict | None:
        return self._read(db.read_last_switch, None)[0]

    def average_income(self, hours: float = 24.0) -> float | None:
        since = self._clock() - hours * 3600
        return self._read(lambda conn: db.read_average_income(conn, since), None)[0]

    def _read(self, fn: Callable[[sqlite3.Connection], T], empty: T) -> tuple[T, str | None]:
        with self._lock:
            if self._state != "on":
                return empty, self._reason or f"history store is {self._state}"
            generation = self._generation
            conn = self._readers.pop()[1] if self._readers else None
        try:
            if conn is None:
                conn = db.connect(self.path, db.READER_BUSY_MS, reader=True)
            result = fn(conn)
        except (sqlite3.Error, OSError) as exc:
            if conn is not None:
                conn.close()
            self._mark_off(describe_fault(self.path, exc), generation)
            return empty, self._reason
        with self._lock:
            if generation == self._generation and len(self._readers) < READERS_MAX:
                self._readers.append((generation, conn))
                conn = None
        if conn is not None:
            conn.close()
        return result, None

    # --- on and off ---
    def _mark_off(self, text: str, generation: int) -> None:
        """Any thread: the store is off (said once). Pooled readers go; the writer drops its connection."""
        with self._lock:
            if self._state not in ("on", "starting") or generation != self._generation:
                return  # already off or closed, or a stale reader of an earlier generation
            self._state, self._reason = "off", text
            self._generation += 1
            readers, self._readers = self._readers, []
        for _, conn in readers:
            conn.close()
        self._retry_at = self._clock() + RETRY_SECONDS
        self._file_signature = _signature(self.path)
        utils.incidents.raise_(INCIDENT_KEY, text, notify=False)

    def _try_open(self) -> None:
        with self._lock:
            generation = self._generation
        try:
            conn, (old, new) = db.open_writer(self.path)
        except (sqlite3.Error, OSError) as exc:
            with self._lock:
                if self._state == "off":  # still off: wait for the next retry, say nothing again
                    self._retry_at = self._clock() + RETRY_SECONDS
                    self._file_signature = _signature(self.path)
                    return
            self._mark_off(describe_fault(self.path, exc), generation)
            return
        with self._lock:
            was_off = self._state == "off"
            self._state, self._reason = "on", None
            self._generation += 1
            self._writer, self._writer_generation = conn, self._generation
        self._next_prune = 0.0
        if old and old != new:
            utils.log(f"[INFO] History store {self.path}: schema upgraded from version {old} to {new}")
        if was_off:
            utils.incidents.clear(INCIDENT_KEY, f"History store on again: {self.path}", notify=False)

    # --- the writer thread ---
    def _run(self) -> None:
        self._try_open()
        while True:
            try:
                batch = [self._queue.get(timeout=TICK_SECONDS)]
            except queue.Empty:
                batch = []
            while batch and len(batch) < BATCH_MAX and batch[-1] is not _STOP:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._housekeeping()
            self._write([item for item in batch if isinstance(item, tuple)])
            for _ in batch:
                self._queue.task_done()
            if self._queue.empty():
                utils.incidents.clear(QUEUE_INCIDENT_KEY, "History store: write queue drained", notify=False)
            if batch and batch[-1] is _STOP:
                break
        self._drop_writer()

    def _housekeeping(self) -> None:
        if self._writer is not None and self._writer_generation != self._generation:
            self._drop_writer()  # a reader found the file bad: this connection goes too
        if self._state == "off" and (self._clock() >= self._retry_at or _signature(self.path) != self._file_signature):
            self._try_open()
        if self._writer is not None and self._clock() >= self._next_prune:
            self._next_prune = self._clock() + PRUNE_SECONDS
            self._guarded(lambda conn: self._prune(conn))

    def _prune(self, conn: sqlite3.Connection) -> None:
        deleted = db.prune(conn, self._clock() - self.days * 86400)
        self._writes += 1
        if deleted:
            utils.log(f"[INFO] History store: pruned {deleted} rows older than {self.days:g} days")

    def _write(self, records: list[tuple]) -> None:
        if not records:
            return
        if self._writer is None:
            self.dropped += len(records)
            return

        def transaction(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for fn, args in records:
                    fn(conn, *args)
                conn.execute("COMMIT")
                self._writes += 1  # only this thread writes it; readers compare it to their cached key
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        if not self._guarded(transaction):
            self.dropped += len(records)

    def _guarded(self, fn: Callable[[sqlite3.Connection], None]) -> bool:
        """Run `fn` on the writer's connection; a database fault turns the store off (said once)."""
        try:
            fn(self._writer)
            return True
        except Exception as exc:  # a database fault (or a bug) turns history off, never the daemon
            self._mark_off(describe_fault(self.path, exc), self._writer_generation)
            self._drop_writer()
            return False

    def _drop_writer(self) -> None:
        conn, self._writer = self._writer, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                pass
