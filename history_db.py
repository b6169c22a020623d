"""The history store's SQLite side: schema and migrations, opening, rows, prune and the queries.

Plain functions on a connection, no threads and no state: `history.HistoryStore` owns the connections
and decides when each runs. Times are stored as REAL epoch seconds and answered as whole seconds.
"""
from __future__ import annotations

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
def write_analysis(conn: sqlite3.Connection, when: float, coins: list[tuple], skipped: list[tuple]) -> None:
    analysis = conn.execute("INSERT INTO analyses (time) VALUES (?)", (when,)).lastrowid
    conn.executemany("INSERT INTO analysis_coins (analysis_id, key, coin, symbol, income_usd, profit_usd, hashrate_hs,"
                     " price_usd, nethash_hs, emission) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     [(analysis, *row) for row in coins])
    conn.executemany("INSERT INTO skipped (analysis_id, key, coin, reason) VALUES (?, ?, ?, ?)",
                     [(analysis, *row) for row in skipped])


def write_switch(conn: sqlite3.Connection, *row: Any) -> None:
    conn.execute("INSERT INTO switches (time, from_key, from_name, to_key, to_name, reason, gain_pct)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?)", row)


def write_hashrate(conn: sqlite3.Connection, *row: Any) -> None:
    conn.execute("INSERT INTO hashrate (time, coin, hs) VALUES (?, ?, ?)", row)


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
def read_analyses(conn: sqlite3.Connection, since: float) -> list[dict]:
    out: dict[int, dict] = {}
    for aid, when, key, name, symbol, income, profit, rate, price, nethash in conn.execute(
            "SELECT a.id, a.time, c.key, c.coin, c.symbol, c.income_usd, c.profit_usd, c.hashrate_hs, c.price_usd,"
            " c.nethash_hs FROM analyses a LEFT JOIN analysis_coins c ON c.analysis_id = a.id"
            " WHERE a.time >= ? ORDER BY a.time, a.id, c.rowid", (since,)):
        entry = out.setdefault(aid, {"time": round(when), "coins": [], "skipped": []})
        if key is not None:
            entry["coins"].append({"key": key, "coin": name, "symbol": symbol, "income_usd": income, "profit_usd": profit,
                                   "hashrate_hs": rate, "price_usd": price, "nethash_hs": nethash})
    for aid, key, name, reason in conn.execute(
            "SELECT s.analysis_id, s.key, s.coin, s.reason FROM skipped s JOIN analyses a ON a.id = s.analysis_id"
            " WHERE a.time >= ? ORDER BY s.rowid", (since,)):
        if aid in out:
            out[aid]["skipped"].append({"key": key, "coin": name, "reason": reason})
    return list(out.values())


_SWITCH_COLUMNS = "time, from_key, from_name, to_key, to_name, reason, gain_pct"


def _switch(row: tuple) -> dict:
    when, from_key, from_name, to_key, to_name, reason, gain = row
    return {"time": round(when), "from": from_key, "to": to_key, "from_name": from_name or from_key,
            "to_name": to_name or to_key, "reason": reason, "gain_pct": gain}


def read_switches(conn: sqlite3.Connection, since: float) -> list[dict]:
    rows = conn.execute(f"SELECT {_SWITCH_COLUMNS} FROM switches WHERE time >= ? ORDER BY time, rowid", (since,))
    return [_switch(row) for row in rows]


def read_last_switch(conn: sqlite3.Connection) -> dict | None:
    row = conn.execute(f"SELECT {_SWITCH_COLUMNS} FROM switches ORDER BY time DESC, rowid DESC LIMIT 1").fetchone()
    return _switch(row) if row else None


def read_hashrate(conn: sqlite3.Connection, since: float, bucket: float) -> list[dict]:
    """Samples since `since`, averaged per coin over `bucket`-second slots (one sample per slot: as is)."""
    rows = conn.execute("SELECT avg(time), coin, avg(hs) FROM hashrate WHERE time >= ?"
                        " GROUP BY CAST(time / ? AS INTEGER), coin ORDER BY 1", (since, bucket))
    return [{"time": round(when), "coin": coin, "hs": hs} for when, coin, hs in rows]


def read_average_income(conn: sqlite3.Connection, since: float) -> float | None:
    """What the rig earned per day on average since `since`: each hashrate sample (what the worker
    really mined, at its measured speed) priced at its coin's income per H/s in the latest analysis
    before it. A sample of 0 H/s (worker down or paused) counts as earning nothing."""
    row = conn.execute(
        "SELECT avg(h.hs * (SELECT c.income_usd / c.hashrate_hs FROM analysis_coins c JOIN analyses a"
        " ON a.id = c.analysis_id WHERE c.key = h.coin AND a.time <= h.time AND c.hashrate_hs > 0"
        " ORDER BY a.time DESC LIMIT 1)) FROM hashrate h WHERE h.time >= ?", (since,)).fetchone()
    return row[0] if row and row[0] is not None else None


def bucket_seconds(hours: float) -> float:
    """Slot width that keeps a coin's hashrate series to about MAX_POINTS points."""
    return max(1.0, math.ceil(hours * 3600 / MAX_POINTS))
