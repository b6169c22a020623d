"""Measured hashrate: which reading counts, lookup order, persistence, plausibility warnings."""
from __future__ import annotations

import json
import logging

import hashrates
from coin import HASHRATE_CONFIGURED, HASHRATE_MEASURED
from tests.log_capture import captured_log, messages


def test_preferred_reading_takes_15_minutes_else_60_seconds():
    assert hashrates.preferred_reading([31.0, 30.0, 29.5]) == 29.5
    assert hashrates.preferred_reading([31.0, 30.0, None]) == 30.0
    assert hashrates.preferred_reading([31.0, None, None]) is None  # 10 s alone is too noisy
    assert hashrates.preferred_reading([0.0, 0.0, 0.0]) is None
    assert hashrates.preferred_reading(None) is None
    assert hashrates.preferred_reading("garbage") is None
    assert hashrates.preferred_reading([1, True, True]) is None  # JSON true is not a number


def test_a_reading_counts_only_after_the_minimum_mining_time(tmp_path):
    book = hashrates.HashrateBook(str(tmp_path / "h.json"))
    early = hashrates.observe(book, "monero", None, [30, 30, None], mined_seconds=299, min_seconds=300,
                              configured_hs=40, now=1000.0)
    assert early is None
    assert book.hashrate_for("monero", None, 40.0) == (40.0, HASHRATE_CONFIGURED)
    later = hashrates.observe(book, "monero", None, [30, 30, None], mined_seconds=300, min_seconds=300,
                              configured_hs=40, now=1300.0)
    assert later == hashrates.Measurement(30.0, 1300.0, "monero", "rx/0")
    assert book.hashrate_for("monero", None, 40.0) == (30.0, HASHRATE_MEASURED)


def test_lookup_prefers_the_coins_own_reading_then_its_algorithm(tmp_path):
    book = hashrates.HashrateBook(str(tmp_path / "h.json"))
    book.record("monero", "rx/0", 30.0, now=1.0)
    book.record("wownero", "rx/wow", 45.0, now=2.0)
    book.record("zephyr", None, 28.0, now=3.0)  # no algo configured: RandomX
    assert book.hashrate_for("monero", None, 99.0) == (30.0, HASHRATE_MEASURED)  # its own
    assert book.hashrate_for("salvium", "RX/0", 99.0) == (28.0, HASHRATE_MEASURED)  # rx/0's latest
    assert book.hashrate_for("other", "rx/wow", 99.0) == (45.0, HASHRATE_MEASURED)
    assert book.hashrate_for("etica", "kawpow", 99.0) == (99.0, HASHRATE_CONFIGURED)


def test_readings_survive_a_restart(tmp_path):
    path = str(tmp_path / "json" / "hashrates.json")
    hashrates.HashrateBook(path).record("monero", "rx/0", 30.0, now=5.0)
    again = hashrates.HashrateBook(path)
    again.load()
    assert again.hashrate_for("monero", None, 1.0) == (30.0, HASHRATE_MEASURED)
    assert json.load(open(path))["algos"]["rx/0"]["hs"] == 30.0


def test_a_broken_file_is_one_warning_and_an_empty_book(tmp_path):
    path = tmp_path / "hashrates.json"
    path.write_text("{not json")
    book = hashrates.HashrateBook(str(path))
    with captured_log() as records:
        book.load()
    warnings = messages(records, logging.WARNING)
    assert len(warnings) == 1 and "hashrates.json" in warnings[0] and "MY_HASHRATE_KH" in warnings[0]
    assert book.hashrate_for("monero", None, 17300.0) == (17300.0, HASHRATE_CONFIGURED)


def test_an_implausible_reading_is_warned_once_and_still_used(tmp_path):
    book = hashrates.HashrateBook(str(tmp_path / "h.json"))
    with captured_log() as records:
        for now in (1.0, 2.0, 3.0):
            hashrates.observe(book, "monero", None, [30, 30, 30], 600, 300, configured_hs=17300.0, now=now)
    warnings = messages(records, logging.WARNING)
    assert len(warnings) == 1 and "0.00x the configured 17,300 H/s" in warnings[0]
    assert book.hashrate_for("monero", None, 17300.0) == (30.0, HASHRATE_MEASURED)
    with captured_log() as records:
        hashrates.observe(book, "monero", None, [16000, 16000, 16000], 600, 300, configured_hs=17300.0, now=4.0)
    assert any("plausible again" in m for m in messages(records))


def test_oddness_bounds():
    assert hashrates.oddness(20.0, 100.0) is None  # exactly 0.2x is still plausible
    assert "too high" in hashrates.oddness(19.9, 100.0)
    assert hashrates.oddness(500.0, 100.0) is None
    assert "too low" in hashrates.oddness(501.0, 100.0)
