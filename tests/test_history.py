"""The history store on a real SQLite file: schema and migration, records and queries, pruning, and the
faults that turn it off (corrupt, newer, locked, read-only) without ever raising into the caller."""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sqlite3
import subprocess
import threading

import pytest

import history
import history_db
from tests.conftest import make_coin, require
from tests.log_capture import captured_log, messages

NOW = 1_750_000_000.0
DAY = 86400.0


class Clock:
    """A settable clock for the store (epoch seconds)."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "json" / "smartminer.db")


@contextlib.contextmanager
def opened(path: str, clock: Clock, days: float = 90, **kw):
    store = history.HistoryStore(path, days, clock=clock, **kw)
    store.start()
    assert store.flush()
    try:
        yield store
    finally:
        store.close()


def off_lines(records) -> list[str]:
    return [m for m in messages(records, logging.WARNING) if "History store off" in m]


def table_counts(path: str) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("analyses", "analysis_coins", "switches", "hashrate", "hashrate_hourly", "incidents")}
    finally:
        conn.close()


# --- schema -------------------------------------------------------------------------------------
def test_a_new_database_has_the_current_schema_in_wal_mode(db_path, clock):
    with opened(db_path, clock) as store:
        assert store.on and store.reason is None
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == history_db.SCHEMA_VERSION == 2
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"analyses", "analysis_coins", "skipped", "switches", "hashrate", "incidents"} <= tables


# The first schema as it was written, frozen here so that the test keeps an old file's real shape.
V1_SCHEMA = """
CREATE TABLE analyses (id INTEGER PRIMARY KEY, time REAL NOT NULL);
CREATE INDEX analyses_time ON analyses (time);
CREATE TABLE analysis_coins (analysis_id INTEGER NOT NULL, key TEXT NOT NULL, coin TEXT, symbol TEXT,
  income_usd REAL, profit_usd REAL, hashrate_hs REAL, price_usd REAL, nethash_hs REAL);
CREATE INDEX analysis_coins_analysis ON analysis_coins (analysis_id);
CREATE TABLE switches (time REAL NOT NULL, from_key TEXT, to_key TEXT, reason TEXT, gain_pct REAL);
CREATE INDEX switches_time ON switches (time);
CREATE TABLE hashrate (time REAL NOT NULL, coin TEXT, hs REAL);
CREATE INDEX hashrate_time ON hashrate (time);
CREATE TABLE incidents (id INTEGER PRIMARY KEY, key TEXT NOT NULL, text TEXT, started REAL NOT NULL, cleared REAL);
INSERT INTO analyses VALUES (1, 1749990000.0);
INSERT INTO analysis_coins VALUES (1, 'monero', 'Monero', 'XMR', 0.21, NULL, 17300, 160.5, 5.1e9);
INSERT INTO switches VALUES (1749990001.0, NULL, 'monero', 'start', NULL);
INSERT INTO hashrate VALUES (1749990300.0, 'monero', 17100);
INSERT INTO incidents VALUES (1, 'engine', 'Docker engine unreachable', 1749990100.0, NULL);
PRAGMA user_version = 1;
"""


def test_a_version_1_database_is_migrated_and_keeps_its_rows(db_path, clock):
    os.makedirs(os.path.dirname(db_path))
    conn = sqlite3.connect(db_path)
    conn.executescript(V1_SCHEMA)
    conn.close()
    with captured_log() as records, opened(db_path, clock) as store:
        body = store.query(24)
        store.record_analysis([make_coin("zephyr", 0.3, emission_24h=7000.0)],
                              [{"coin": "Etica", "url": "https://miningpoolstats.stream/etica", "reason": "no wallet"}], when=NOW - 10)
        store.incident_cleared("engine", when=NOW - 5)
        assert store.flush()
        after = store.query(24)
    assert any("schema upgraded from version 1 to 2" in m for m in messages(records))
    assert body["analyses"] == [{"time": 1749990000, "skipped": [], "coins": [
        {"key": "monero", "coin": "Monero", "symbol": "XMR", "income_usd": 0.21, "profit_usd": None,
         "hashrate_hs": 17300.0, "price_usd": 160.5, "nethash_hs": 5.1e9}]}]
    assert body["switches"] == [{"time": 1749990001, "from": None, "to": "monero", "from_name": None, "to_name": "monero",
                                 "reason": "start", "gain_pct": None}]
    assert body["hashrate"] == [{"time": 1749990300, "coin": "monero", "hs": 17100.0}]
    assert store_longest(db_path, clock)["hashrate"] == body["hashrate"]  # the roll-up was filled from v1's samples
    assert after["analyses"][-1]["skipped"] == [{"key": "etica", "coin": "Etica", "reason": "no wallet"}]
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    assert conn.execute("SELECT emission FROM analysis_coins WHERE key = 'zephyr'").fetchone()[0] == 7000.0
    assert conn.execute("SELECT cleared FROM incidents WHERE key = 'engine'").fetchone()[0] == NOW - 5
    assert table_counts(db_path)["analysis_coins"] == 2


def store_longest(path: str, clock: Clock) -> dict:
    with opened(path, clock) as store:
        body = store.query(store.max_hours)
    assert body["hashrate_bucket_s"] >= 3600
    return body


def test_a_database_from_a_newer_smartminer_is_left_alone(db_path, clock):
    os.makedirs(os.path.dirname(db_path))
    conn = sqlite3.connect(db_path)
    conn.executescript("CREATE TABLE future (x); PRAGMA user_version = 7;")
    conn.close()
    before = open(db_path, "rb").read()
    with captured_log() as records, opened(db_path, clock) as store:
        store.record_hashrate("monero", 1.0)
        assert store.flush()
        assert not store.on
    lines = off_lines(records)
    assert len(lines) == 1 and "schema version 7 is newer" in lines[0] and "Upgrade SmartMiner" in lines[0]
    assert open(db_path, "rb").read() == before


# --- records and queries ------------------------------------------------------------------------
def test_what_is_recorded_comes_back_from_query(db_path, clock):
    monero = make_coin("monero", 0.25, name="Monero", symbol="XMR", price_usd=160.0, nethash_hs=5e9)
    zephyr = make_coin("zephyr", 0.31, name="Zephyr", symbol="ZEPH", profit=0.2, hashrate_hs=16000.0)
    with opened(db_path, clock) as store:
        store.record_analysis([monero], when=NOW - 30 * 3600)  # outside a 24 h window
        store.record_analysis([zephyr, monero], [{"coin": "Etica", "url": "https://miningpoolstats.stream/etica",
                                                  "reason": "page did not load"}], when=NOW - 3600)
        store.record_switch(monero, zephyr, "better coin", 24.0, when=NOW - 3590)
        store.record_hashrate("zephyr", 15900.5, when=NOW - 600)
        assert store.flush()
        day, two = store.query(24), store.query(48)
    assert day["hours"] == 24 and len(two["analyses"]) == 2
    assert day["analyses"] == [{"time": round(NOW - 3600), "coins": [
        {"key": "zephyr", "coin": "Zephyr", "symbol": "ZEPH", "income_usd": 0.31, "profit_usd": 0.2, "hashrate_hs": 16000.0,
         "price_usd": 1.0, "nethash_hs": 1e9},
        {"key": "monero", "coin": "Monero", "symbol": "XMR", "income_usd": 0.25, "profit_usd": None, "hashrate_hs": 17300.0,
         "price_usd": 160.0, "nethash_hs": 5e9}],
        "skipped": [{"key": "etica", "coin": "Etica", "reason": "page did not load"}]}]
    assert day["switches"] == [{"time": round(NOW - 3590), "from": "monero", "to": "zephyr", "from_name": "Monero (XMR)",
                                "to_name": "Zephyr (ZEPH)", "reason": "better coin", "gain_pct": 24.0}]
    assert day["hashrate"] == [{"time": round(NOW - 600), "coin": "zephyr", "hs": 15900.5}]
    json.dumps(day, allow_nan=False)


def test_an_answer_is_reused_until_the_next_write(db_path, clock):
    with opened(db_path, clock) as store:
        store.record_hashrate("monero", 1.0, when=NOW - 60)
        assert store.flush()
        first, again = store.query_json(24)[0], store.query_json(24)[0]
        assert again is first  # the same window, nothing written since: from memory
        store.record_hashrate("monero", 2.0, when=NOW - 30)
        assert store.flush()
        assert [p["hs"] for p in store.query(24)["hashrate"]] == [1.0, 2.0]
    with opened(db_path, clock, cache_answers=False) as uncached:
        assert uncached.query_json(24)[0] is not uncached.query_json(24)[0]


def test_history_survives_a_restart(db_path, clock):
    with opened(db_path, clock) as store:
        store.record_switch(None, make_coin("monero", 0.2), "start", when=NOW - 60)
    # close() wrote what was queued; a new store on the same file sees it
    with opened(db_path, clock) as again:
        assert again.last_switch()["to"] == "monero"


def test_numbers_that_are_not_finite_are_stored_as_null(db_path, clock):
    with opened(db_path, clock) as store:
        store.record_analysis([make_coin("monero", math.nan, price_usd=math.inf)], when=NOW - 10)
        store.record_hashrate("monero", math.nan, when=NOW - 5)
        store.record_switch("monero", "zephyr", "better coin", math.inf, when=NOW - 1)
        assert store.flush()
        body = store.query(1)
    coin = body["analyses"][0]["coins"][0]
    assert coin["income_usd"] is None and coin["price_usd"] is None
    assert body["hashrate"][0]["hs"] is None and body["switches"][0]["gain_pct"] is None
    json.dumps(body, allow_nan=False)


def test_long_windows_average_the_hashrate_into_buckets(db_path, clock):
    start = 600 * math.floor((NOW - 10 * DAY) / 600)  # slots of 600 s start on a multiple of 600
    samples = 10 * 288  # ten days of 5-minute samples per coin
    with opened(db_path, clock) as store:
        for i in range(samples):
            for coin, base in (("monero", 100.0), ("zephyr", 200.0)):
                store.record_hashrate(coin, base + (1 if i % 2 else -1), when=start + i * 300)
            if i % 2000 == 0:
                store.flush()
        assert store.flush()
        body, longest = store.query(240), store.query(2160)
    bucket = body["hashrate_bucket_s"]
    assert bucket == math.ceil(240 * 3600 / history_db.MAX_POINTS) > 300
    for coin in ("monero", "zephyr"):
        points = [p for p in body["hashrate"] if p["coin"] == coin]
        assert 0 < len(points) <= history_db.MAX_POINTS + 1 < samples
    conn = sqlite3.connect(db_path)
    slots = json.loads(history_db.read_hashrate_json(conn, start, 600))  # two samples a slot: 99 and 101 average to 100
    conn.close()
    assert {p["hs"] for p in slots if p["coin"] == "monero"} == {100.0}
    assert {p["hs"] for p in slots if p["coin"] == "zephyr"} == {200.0}
    assert [p["time"] for p in slots[:4]] == [start + 150] * 2 + [start + 750] * 2
    # 90 days: two-hour slots from the hourly roll-up, the same means
    assert longest["hashrate_bucket_s"] == 7200
    for coin, mean in (("monero", 100.0), ("zephyr", 200.0)):
        points = [p for p in longest["hashrate"] if p["coin"] == coin]
        assert len(points) in (120, 121) and {p["hs"] for p in points[1:-1]} == {mean}
        assert all(a["time"] < b["time"] for a, b in zip(points, points[1:]))


def test_last_switch_average_income_and_the_status_lines(db_path, clock):
    with opened(db_path, clock) as store:
        assert store.last_switch() is None and store.average_income() is None
        store.record_analysis([make_coin("monero", 0.2, hashrate_hs=20000.0)], when=NOW - 3 * 3600)
        store.record_switch(None, make_coin("monero", 0.2, name="Monero", symbol="XMR"), "start", when=NOW - 3 * 3600 + 1)
        store.record_analysis([make_coin("zephyr", 9.0), make_coin("monero", 0.4, hashrate_hs=20000.0)], when=NOW - 1.75 * 3600)
        for hs, ago in ((10000.0, 2), (20000.0, 1.5), (0.0, 1)):  # the last: worker down, earns nothing
            store.record_hashrate("monero", hs, when=NOW - ago * 3600)
        store.record_hashrate("monero", 99999.0, when=NOW - 30 * 3600)  # older than 24 h: not counted
        assert store.flush()
        last, avg = store.last_switch(), store.average_income()
    assert last["to_name"] == "Monero (XMR)" and last["time"] == round(NOW - 3 * 3600 + 1)
    # 10 kH/s at the first analysis' $0.2 per 20 kH/s, 20 kH/s at the second's $0.4 per 20 kH/s, then 0
    assert avg == pytest.approx((0.1 + 0.4 + 0.0) / 3)
    assert history.status_lines(last, avg, NOW) == [
        "Last switch: nothing -> Monero (XMR), 3.0 h ago (start)", "24 h average income: $0.1667/day"]
    assert history.status_lines(None, None, NOW) == ["Last switch: none recorded", "24 h average income: no hashrate samples yet"]


# --- pruning ------------------------------------------------------------------------------------
def test_prune_keeps_history_days_and_open_incidents(db_path, clock):
    with opened(db_path, clock, days=90) as store:
        for when in (NOW - 100 * DAY, NOW - 10 * DAY):
            store.record_analysis([make_coin("monero", 0.2)], [{"coin": "E", "url": "u/etica", "reason": "r"}], when=when)
            store.record_switch("a", "b", "better coin", 10.0, when=when)
            store.record_hashrate("monero", 1.0, when=when)
        store.incident_started("old-open", "still going", when=NOW - 200 * DAY)
        store.incident_started("old-closed", "over", when=NOW - 200 * DAY)
        store.incident_cleared("old-closed", when=NOW - 150 * DAY)
        assert store.flush()
        store.request_prune()
        assert store.flush()
        body = store.query(10_000)
    assert body["hours"] == 90 * 24
    assert [a["time"] for a in body["analyses"]] == [round(NOW - 10 * DAY)]
    assert len(body["switches"]) == 1 and len(body["hashrate"]) == 1
    assert table_counts(db_path) == {"analyses": 1, "analysis_coins": 1, "switches": 1, "hashrate": 1, "hashrate_hourly": 1,
                                     "incidents": 1}


def test_the_writer_prunes_once_a_day_by_itself(db_path, clock):
    with opened(db_path, clock, days=1) as store:
        store.record_hashrate("monero", 1.0, when=NOW - 3600)
        assert store.flush()
        clock.now += 2 * DAY  # the sample is now two days old; the last prune was at open
        store.record_hashrate("monero", 2.0)  # any work wakes the writer, which sees the day has passed
        assert store.flush()
    assert table_counts(db_path)["hashrate"] == 1


# --- faults: one line, store off, never raises, back when fixed ---------------------------------
def test_a_corrupt_file_is_one_error_line_history_off_and_the_file_kept(db_path, clock):
    os.makedirs(os.path.dirname(db_path))
    garbage = b"this is not a database" * 200
    with open(db_path, "wb") as fh:
        fh.write(garbage)
    with captured_log() as records, opened(db_path, clock) as store:
        for _ in range(3):  # the loop and the API go on using it
            store.record_analysis([make_coin("monero", 0.2)])
            store.record_hashrate("monero", 1.0)
            assert store.flush()
            assert store.query(24)["error"].startswith("History store off")
            assert store.last_switch() is None and store.average_income() is None
            code, body = history.answer(store, "hours=24")
            assert code == 503 and json.loads(body)["reason"].startswith("History store off")
        assert not store.on and store.dropped == 6
        lines = off_lines(records)
        assert len(lines) == 1, lines
        assert db_path in lines[0] and "file is not a database" in lines[0] and "move it aside" in lines[0]
        assert open(db_path, "rb").read() == garbage  # never dropped
        os.rename(db_path, db_path + ".bad")  # the owner moves it aside: the writer notices the change
        store.record_hashrate("monero", 3.0, when=NOW - 1)
        assert store.flush()
        assert store.on and store.query(1)["hashrate"] == [{"time": round(NOW - 1), "coin": "monero", "hs": 3.0}]
    assert any("History store on again" in m for m in messages(records))


@contextlib.contextmanager
def read_only_folder(folder: str):
    """Make `folder` read-only even for root (which ignores mode bits): chattr +i, else chmod."""
    if os.geteuid() == 0:
        chattr = require("chattr", "chattr (Debian package e2fsprogs)")
        subprocess.run([chattr, "+i", folder], check=True)
        undo = [chattr, "-i", folder]
    else:
        os.chmod(folder, 0o555)
        undo = None
    try:
        with pytest.raises(OSError):  # the folder really is read-only here
            open(os.path.join(folder, "probe"), "w").close()
        yield
    finally:
        subprocess.run(undo, check=True) if undo else os.chmod(folder, 0o755)


def test_a_read_only_folder_turns_history_off_with_one_line(db_path, clock):
    with opened(db_path, clock) as store:  # a database that was fine, closed cleanly (no -wal file left)
        store.record_hashrate("monero", 1.0, when=NOW - 60)
    folder = os.path.dirname(db_path)
    with captured_log() as records:
        with read_only_folder(folder), opened(db_path, clock) as store:
            store.record_hashrate("monero", 2.0)
            assert store.flush()
            assert not store.on and "error" in store.query(24)
            lines = off_lines(records)
            assert len(lines) == 1 and "writable" in lines[0]
            clock.now += history.RETRY_SECONDS  # retried later: still read-only, nothing said again
            store.record_hashrate("monero", 2.0)
            assert store.flush() and not store.on and len(off_lines(records)) == 1
            store.close()


def test_a_new_database_in_a_read_only_folder_is_off_without_raising(tmp_path, clock):
    folder = tmp_path / "ro"
    folder.mkdir()
    with captured_log() as records, read_only_folder(str(folder)), opened(str(folder / "s.db"), clock) as store:
        store.record_switch("a", "b", "better coin")
        assert store.flush() and not store.on
        assert len(off_lines(records)) == 1


def test_a_locked_database_is_off_and_comes_back_on_retry(db_path, clock):
    with opened(db_path, clock):
        pass
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another program holds the write lock
    try:
        with captured_log() as records, opened(db_path, clock) as store:
            store.record_hashrate("monero", 1.0)
            assert store.flush() and not store.on
            lines = off_lines(records)
            assert len(lines) == 1 and "locked" in lines[0]
            other.execute("ROLLBACK")
            clock.now += history.RETRY_SECONDS
            store.record_hashrate("monero", 2.0, when=clock.now)
            assert store.flush() and store.on
            assert [p["hs"] for p in store.query(1)["hashrate"]] == [2.0]
    finally:
        other.close()


def test_a_record_that_cannot_be_read_is_dropped_not_raised(db_path, clock):
    with captured_log() as records, opened(db_path, clock) as store:
        store.record_analysis([object()])  # not a Coin: a caller's bug
        store.record_analysis([make_coin("monero", 0.2)], [42])  # a skipped entry that is not a mapping
        store.record_hashrate("monero", 1.0, when="yesterday")
        assert store.flush() and store.on and store.dropped == 3
        assert store.query(24)["analyses"] == []
    assert len([m for m in messages(records, logging.WARNING) if "record was dropped" in m]) == 1


def test_a_full_queue_drops_records_with_one_line(db_path, clock):
    store = history.HistoryStore(db_path, 90, clock=clock, queue_max=3)  # not started: nothing drains it
    with captured_log() as records:
        for _ in range(6):
            store.record_hashrate("monero", 1.0)
    assert store.dropped == 3
    assert len([m for m in messages(records, logging.WARNING) if "queue full" in m]) == 1
    store.close()


# --- threads ------------------------------------------------------------------------------------
def test_writers_and_readers_on_several_threads(db_path, clock):
    errors: list[BaseException] = []
    seen: list[int] = []
    with opened(db_path, clock) as store:
        done = threading.Event()

        def write(coin: str) -> None:
            for i in range(1500):
                store.record_hashrate(coin, float(i), when=NOW - 3000 + i)
                if i % 500 == 0:
                    store.record_analysis([make_coin(coin, 0.1)], when=NOW - 3000 + i)

        def read() -> None:
            try:
                while not done.is_set():
                    body = store.query(1)
                    assert "error" not in body, body
                    seen.append(len(body["analyses"]))
            except BaseException as exc:  # reported below
                errors.append(exc)

        readers = [threading.Thread(target=read) for _ in range(2)]
        writers = [threading.Thread(target=write, args=(c,)) for c in ("monero", "zephyr")]
        for t in readers + writers:
            t.start()
        for t in writers:
            t.join()
        # Two readers spinning on cached answers starve the writer of the GIL (it waits up to the 5 ms
        # switch interval after each SQLite step): draining 3,000 samples took 11-17 s here, against
        # 0.03 s without readers. What this test asserts is that every write lands and no read fails,
        # not how fast, so the drain gets time enough.
        assert store.flush(timeout=120)
        done.set()
        for t in readers:
            t.join()
        final = store.query(1)
    assert not errors, errors
    assert seen and len(final["analyses"]) == 6
    assert table_counts(db_path)["hashrate"] == 3000


# --- the API's side ------------------------------------------------------------------------------
@pytest.mark.parametrize("query, hours", [
    ("", 24.0), ("hours=6", 6.0), ("hours=0.5", 0.5), ("hours=%2024%20", 24.0), ("hours=99999", 2160.0),
    ("other=1", 24.0),
])
def test_hours_that_are_accepted(query, hours):
    assert history.parse_hours(query, 2160.0) == (hours, None)


@pytest.mark.parametrize("query", ["hours=", "hours=abc", "hours=0", "hours=-3", "hours=nan", "hours=inf",
                                   "hours=1e999", "hours=1&hours=2", "hours=" + "9" * 40, "hours=0x10"])
def test_hours_that_are_refused_say_why(query):
    hours, reason = history.parse_hours(query, 2160.0)
    assert hours is None and reason


def test_answer_is_400_for_bad_hours_and_200_with_the_shape(db_path, clock):
    with opened(db_path, clock) as store:
        code, body = history.answer(store, "hours=abc")
        assert code == 400 and "positive number" in json.loads(body)["reason"] and "'abc'" in json.loads(body)["reason"]
        code, body = history.answer(store, "")
        assert code == 200 and json.loads(body)["hours"] == 24
        assert {"analyses", "switches", "hashrate"} <= set(json.loads(body))


def test_describe_fault_names_the_fix():
    path = "json/smartminer.db"
    assert "locked" in history.describe_fault(path, sqlite3.OperationalError("database is locked"))
    assert "writable" in history.describe_fault(path, PermissionError(13, "Permission denied"))
    assert "writable" in history.describe_fault(path, sqlite3.OperationalError("attempt to write a readonly database"))
    assert "move it aside" in history.describe_fault(path, sqlite3.DatabaseError("database disk image is malformed"))
    assert history.describe_fault(path, sqlite3.DatabaseError("x")).startswith(f"History store off: {path}: x.")
