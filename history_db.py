"""The history store's SQLite side: schema and migrations, opening, rows, prune and the queries.

Plain functions on a connection, no threads and no state: `history.HistoryStore` owns the connections
and decides when each runs. Times are stored as REAL epoch seconds and answered as whole seconds.
"""
from __future__ import annotations

import json
import math
import os
import sqlite3
from typing import Any, Mapping
from urllib.parse import quote

from coin import Coin, slug_of

PRUNE_CHUNK = 5_000  # rows per prune transaction
WRITER_BUSY_MS = 2_000
READER_BUSY_MS = 500
MAX_POINTS = 1_500  # hashrate points per coin in one answer: longer windows are averaged into buckets

# Each entry upgrades the schema by one version, in one transaction. Only add: never drop what a user has.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # v1: analyses with their coins, switches, hashrate samples, incidents
        "CREATE TABLE analyses (id INTEGER PRIMARY KEY, time REAL NOT NULL)",
        "CREATE INDEX analyses_time ON analyses (time)",
        "CREATE TABLE analysis_coins (analysis_id INTEGER NOT NULL, key TEXT NOT NULL, coin TEXT, symbol TEXT,"
        " income_usd REAL, profit_usd REAL, hashrate_hs REAL, price_usd REAL, nethash_hs REAL)",
        "CREATE INDEX analysis_coins_analysis ON analysis_coins (analysis_id)",
        "CREATE TABLE switches (time REAL NOT NULL, from_key TEXT, to_key TEXT, reason TEXT, gain_pct REAL)",
        "CREATE INDEX switches_time ON switches (time)",
        "CREATE TABLE hashrate (time REAL NOT NULL, coin TEXT, hs REAL)",
        "CREATE INDEX hashrate_time ON hashrate (time)",
        "CREATE TABLE incidents (id INTEGER PRIMARY KEY, key TEXT NOT NULL, text TEXT, started REAL NOT NULL, cleared REAL)",
    ),
    (  # v2: each coin's emission, skipped coins with their reasons, readable names beside switch keys
        "ALTER TABLE analysis_coins ADD COLUMN emission REAL",
        "CREATE INDEX analysis_coins_key ON analysis_coins (key, analysis_id)",
        "CREATE TABLE skipped (analysis_id INTEGER NOT NULL, key TEXT, coin TEXT, reason TEXT)",
        "CREATE INDEX skipped_analysis ON skipped (analysis_id)",
        "ALTER TABLE switches ADD COLUMN from_name TEXT",
        "ALTER TABLE switches ADD COLUMN to_name TEXT",
        "CREATE INDEX incidents_key ON incidents (key, cleared)",
        # each analysis as /history shows it, rendered once when written: answers only join these texts
        "ALTER TABLE analyses ADD COLUMN doc TEXT",
        "UPDATE analyses SET doc = json_object('time', CAST(round(time) AS INTEGER), 'coins', json((SELECT"
        " json_group_array(json(j)) FROM (SELECT json_object('key', c.key, 'coin', c.coin, 'symbol', c.symbol,"
        " 'income_usd', c.income_usd, 'profit_usd', c.profit_usd, 'hashrate_hs', c.hashrate_hs, 'price_usd', c.price_usd,"
        " 'nethash_hs', c.nethash_hs) AS j FROM analysis_coins c WHERE c.analysis_id = analyses.id ORDER BY c.rowid))),"
        " 'skipped', json('[]'))",
        # hashrate per coin and hour, kept up to date with each sample: long windows read ~2000 rows, not ~26000
        "CREATE TABLE hashrate_hourly (hour INTEGER NOT NULL, coin TEXT NOT NULL, n INTEGER NOT NULL,"
        " sum_hs REAL NOT NULL, sum_time REAL NOT NULL, PRIMARY KEY (hour, coin)) WITHOUT ROWID",
        "INSERT INTO hashrate_hourly SELECT CAST(time / 3600 AS INTEGER), coalesce(coin, ''), count(*), sum(hs), sum(time)"
        " FROM hashrate WHERE hs IS NOT NULL GROUP BY 1, 2",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(sqlite3.DatabaseError):
    """The file was written by a newer SmartMiner: it is left alone, never downgraded."""


# --- schema --------------------------------------------------------------------------------------
def migrate(conn: sqlite3.Connection) -> tuple[int, int]:
    """Bring the database (autocommit connection) up to SCHEMA_VERSION; returns (from, to) versions."""
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        raise SchemaTooNew(f"schema version {found} is newer than this SmartMiner's {SCHEMA_VERSION}")
    for version in range(found, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return found, SCHEMA_VERSION


def connect(path: str, busy_ms: int, reader: bool = False) -> sqlite3.Connection:
    """An autocommit connection usable from any thread (one at a time). A reader's is query-only and
    never creates the file (the owner may have moved it aside)."""
    target = f"file:{quote(os.path.abspath(path))}?mode=rw" if reader else path
    conn = sqlite3.connect(target, uri=reader, timeout=busy_ms / 1000, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
        if reader:
            conn.execute("PRAGMA query_only = 1")
    except BaseException:
        conn.close()
        raise
    return conn


def open_writer(path: str) -> tuple[sqlite3.Connection, tuple[int, int]]:
    """The writing connection: WAL, checked, migrated. Raises sqlite3.Error or OSError."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    conn = connect(path, WRITER_BUSY_MS)
    try:
        # Judge the file before changing anything in it (journal mode included).
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(f"schema version {version} is newer than this SmartMiner's {SCHEMA_VERSION}")
        check = [row[0] for row in conn.execute("PRAGMA quick_check(3)")]
        if check != ["ok"]:
            raise sqlite3.DatabaseError(f"database disk image is malformed ({'; '.join(check)[:160]})")
        if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # only before the first table: prunes give pages back
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn, migrate(conn)
    except BaseException:
        conn.close()
        raise


# --- rows (pure) ---------------------------------------------------------------------------------
def num(value: Any) -> float | None:
    """A finite number or None: SQLite and JSON have no use for NaN or infinity."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def coin_row(c: Coin) -> tuple:
    return (c.key, c.name, c.symbol, num(c.income_usd), num(c.profit_usd), num(c.hashrate_hs),
            num(c.price_usd), num(c.nethash_hs), num(c.emission_24h))


def skipped_row(item: Mapping[str, Any]) -> tuple:
    """A skipped coin in `config.state.last_skipped`'s shape: {"coin", "url", "reason"}."""
    url = str(item.get("url") or "")
    return (slug_of(url) if url else None, str(item.get("coin") or ""), str(item.get("reason") or ""))


def who(coin: Coin | str | None) -> tuple[str | None, str | None]:
    """(key, readable name) of a switch end: a Coin, a coin key, or None (nothing was mining)."""
    if isinstance(coin, Coin):
        return coin.key, coin.label
    return (coin, coin) if coin else (None, None)


# --- writes, run by the writer thread inside its transaction ------------------------------------
COIN_FIELDS = ("key", "coin", "symbol", "income_usd", "profit_usd", "hashrate_hs", "price_usd", "nethash_hs")
SKIPPED_FIELDS = ("key", "coin", "reason")


def analysis_doc(when: float, coins: list[tuple], skipped: list[tuple]) -> str:
    """One analysis as /history shows it (coin_row's and skipped_row's tuples in), as compact JSON."""
    return json.dumps({"time": round(when), "coins": [dict(zip(COIN_FIELDS, row)) for row in coins],
                       "skipped": [dict(zip(SKIPPED_FIELDS, row)) for row in skipped]}, separators=(",", ":"), allow_nan=False)


def write_analysis(conn: sqlite3.Connection, when: float, coins: list[tuple], skipped: list[tuple]) -> None:
    analysis = conn.execute("INSERT INTO analyses (time, doc) VALUES (?, ?)", (when, analysis_doc(when, coins, skipped))).lastrowid
    conn.executemany("INSERT INTO analysis_coins (analysis_id, key, coin, symbol, income_usd, profit_usd, hashrate_hs,"
                     " price_usd, nethash_hs, emission) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     [(analysis, *row) for row in coins])
    conn.executemany("INSERT INTO skipped (analysis_id, key, coin, reason) VALUES (?, ?, ?, ?)",
                     [(analysis, *row) for row in skipped])


def write_switch(conn: sqlite3.Connection, *row: Any) -> None:
    conn.execute("INSERT INTO switches (time, from_key, from_name, to_key, to_name, reason, gain_pct)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?)", row)


def write_hashrate(conn: sqlite3.Connection, when: float, coin: str | None, hs: float | None) -> None:
    conn.execute("INSERT INTO hashrate (time, coin, hs) VALUES (?, ?, ?)", (when, coin, hs))
    if hs is not None:
        conn.execute("INSERT INTO hashrate_hourly VALUES (?, ?, 1, ?, ?) ON CONFLICT (hour, coin) DO UPDATE SET"
                     " n = n + 1, sum_hs = sum_hs + excluded.sum_hs, sum_time = sum_time + excluded.sum_time",
                     (int(when // 3600), coin or "", hs, when))


def write_incident_start(conn: sqlite3.Connection, *row: Any) -> None:
    conn.execute("INSERT INTO incidents (started, key, text) VALUES (?, ?, ?)", row)


def write_incident_clear(conn: sqlite3.Connection, when: float, key: str) -> None:
    conn.execute("UPDATE incidents SET cleared = ? WHERE key = ? AND cleared IS NULL", (when, key))


# Oldest first, children before their analysis, each chunk its own short transaction.
_PRUNE_STEPS = (
    "DELETE FROM hashrate WHERE rowid IN (SELECT rowid FROM hashrate WHERE time < :cut LIMIT :n)",
    "DELETE FROM analysis_coins WHERE rowid IN (SELECT c.rowid FROM analysis_coins c JOIN analyses a"
    " ON a.id = c.analysis_id WHERE a.time < :cut LIMIT :n)",
    "DELETE FROM skipped WHERE rowid IN (SELECT s.rowid FROM skipped s JOIN analyses a"
    " ON a.id = s.analysis_id WHERE a.time < :cut LIMIT :n)",
    "DELETE FROM analyses WHERE id IN (SELECT id FROM analyses WHERE time < :cut LIMIT :n)",
    "DELETE FROM switches WHERE rowid IN (SELECT rowid FROM switches WHERE time < :cut LIMIT :n)",
    "DELETE FROM incidents WHERE id IN (SELECT id FROM incidents WHERE cleared < :cut LIMIT :n)",
    "DELETE FROM hashrate_hourly WHERE (hour, coin) IN (SELECT hour, coin FROM hashrate_hourly"
    " WHERE hour < CAST(:cut / 3600 AS INTEGER) LIMIT :n)",
)


def prune(conn: sqlite3.Connection, cutoff: float) -> int:
    """Delete what is older than `cutoff` (open incidents stay); returns the number of rows deleted."""
    deleted = 0
    for statement in _PRUNE_STEPS:
        while True:
            conn.execute("BEGIN IMMEDIATE")
            count = conn.execute(statement, {"cut": cutoff, "n": PRUNE_CHUNK}).rowcount
            conn.execute("COMMIT")
            deleted += count
            if count < PRUNE_CHUNK:
                break
    if deleted:
        conn.execute("PRAGMA incremental_vacuum")
    return deleted


# --- reads (pure on a connection) ----------------------------------------------------------------
# The /history lists come out of SQLite as JSON text (analyses rendered when written, switches and
# hashrate points by SQLite's JSON functions); Python only joins them. For 90 days that is several times
# faster than building dicts and running json.dumps. Times are whole epoch seconds.
_SWITCH_JSON = ("json_object('time', CAST(round(time) AS INTEGER), 'from', from_key, 'to', to_key,"
                " 'from_name', coalesce(from_name, from_key), 'to_name', coalesce(to_name, to_key),"
                " 'reason', reason, 'gain_pct', gain_pct)")


def read_analyses_json(conn: sqlite3.Connection, since: float) -> str:
    """[{time, coins: [{key, coin, symbol, income_usd, profit_usd, hashrate_hs, price_usd, nethash_hs}],
    skipped: [{key, coin, reason}]}] since `since`, oldest first, coins in ranking order."""
    rows = conn.execute("SELECT doc FROM analyses WHERE time >= ? ORDER BY time, id", (since,))
    return "[" + ",".join(row[0] for row in rows) + "]"


def read_switches_json(conn: sqlite3.Connection, since: float) -> str:
    """[{time, from, to, from_name, to_name, reason, gain_pct}] since `since`, oldest first."""
    rows = conn.execute(f"SELECT {_SWITCH_JSON} FROM switches WHERE time >= ? ORDER BY time, rowid", (since,))
    return "[" + ",".join(row[0] for row in rows) + "]"


def read_last_switch(conn: sqlite3.Connection) -> dict | None:
    row = conn.execute(f"SELECT {_SWITCH_JSON} FROM switches ORDER BY time DESC, rowid DESC LIMIT 1").fetchone()
    return json.loads(row[0]) if row else None


def read_hashrate_json(conn: sqlite3.Connection, since: float, bucket: float) -> str:
    """[{time, coin, hs}] since `since`: per coin, the mean over `bucket`-second slots (a slot with one
    sample gives it as it is), at the slots' mean sample time. Slots of an hour or more come from the
    hourly roll-up."""
    if bucket >= 3600:
        hours = int(bucket // 3600)
        rows = conn.execute(
            "SELECT json_object('time', CAST(round(sum(sum_time) / sum(n)) AS INTEGER), 'coin', nullif(coin, ''),"
            " 'hs', sum(sum_hs) / sum(n)) FROM hashrate_hourly WHERE hour >= CAST(? / 3600 AS INTEGER)"
            " GROUP BY hour / ?, coin ORDER BY sum(sum_time) / sum(n)", (since, hours))
    else:
        rows = conn.execute(
            "SELECT json_object('time', CAST(round(avg(time)) AS INTEGER), 'coin', coin, 'hs', avg(hs)) FROM hashrate"
            " WHERE time >= ? GROUP BY CAST(time / ? AS INTEGER), coin ORDER BY avg(time)", (since, bucket))
    return "[" + ",".join(row[0] for row in rows) + "]"


def read_average_income(conn: sqlite3.Connection, since: float) -> float | None:
    """What the rig earned per day on average since `since`: each hashrate sample (what the worker
    really mined, at its measured speed) priced at its coin's income per H/s in the latest analysis
    before it. A sample of 0 H/s (worker down or paused) counts as earning nothing. (Analyses are
    written in time order, so "the latest before" is found by id, through the indexes.)"""
    row = conn.execute(
        "SELECT avg(h.hs * (SELECT c.income_usd / c.hashrate_hs FROM analysis_coins c WHERE c.key = h.coin"
        " AND c.hashrate_hs > 0 AND c.analysis_id <= (SELECT a.id FROM analyses a WHERE a.time <= h.time"
        " ORDER BY a.time DESC LIMIT 1) ORDER BY c.analysis_id DESC LIMIT 1)) FROM hashrate h WHERE h.time >= ?",
        (since,)).fetchone()
    return row[0] if row and row[0] is not None else None


def bucket_seconds(hours: float) -> float:
    """Slot width that keeps a coin's hashrate series to about MAX_POINTS points: whole hours from an
    hour up (the roll-up's unit), else whole seconds."""
    seconds = max(1, math.ceil(hours * 3600 / MAX_POINTS))
    return 3600.0 * math.ceil(seconds / 3600) if seconds >= 3600 else float(seconds)
