"""xmrig: the one XMRig API client. Parsing is pure; fetching runs real HTTP against the XMRig
stand-in (demo/xmrig_standin.py) on loopback in every mode. No dockerd, no browser."""
from __future__ import annotations

import pytest

import config
import xmrig
from demo.xmrig_standin import XmrigStandin


@pytest.fixture
def standin():
    s = XmrigStandin(mode="up", hashrate=4321.0)
    config.override(XMRIG_HOST="127.0.0.1", XMRIG_PORT=s.port)
    yield s
    s.close()


# --- parsing (pure) --------------------------------------------------------------------------------
@pytest.mark.parametrize("status, body, error", [
    (200, b'{"a": 1}', None), (200, b"[1, 2", "invalid JSON"), (401, b"{}", "HTTP 401"), (200, b"\xff\xfe", "invalid JSON"),
])
def test_parse_upstream(status, body, error):
    result = xmrig.parse_upstream(status, body)
    assert (result.error is None) if error is None else (error in result.error)
    assert (result.status, result.body) == (status, body)


def test_parse_summary_reads_the_three_windows_algo_version_and_shares():
    data = {"hashrate": {"total": [1234.5, 1200, None], "highest": 1300}, "algo": "rx/0", "version": "6.16.0",
            "results": {"shares_good": 7, "shares_total": 8}, "uptime": 95}
    summary = xmrig.parse_summary(data)
    assert summary == xmrig.Summary(hashrate_10s=1234.5, hashrate_60s=1200.0, hashrate_15m=None, algo="rx/0",
                                    version="6.16.0", shares_good=7.0, shares_total=8.0, uptime=95.0)
    assert summary.total == [1234.5, 1200.0, None]


@pytest.mark.parametrize("data, total", [
    ({"hashrate": {"total": [0, 0, 0]}}, [0.0, 0.0, 0.0]),
    ({"hashrate": {"total": [None, None, None]}}, [None, None, None]),  # XMRig's first seconds
    ({"hashrate": {"total": [12.5]}}, [12.5, None, None]),
    ({"hashrate": {"total": ["fast", True, 3]}}, [None, None, 3.0]),  # text and booleans are no figures
    ({"hashrate": {}}, [None, None, None]),
    ({"hashrate": "n/a", "results": []}, [None, None, None]),
])
def test_parse_summary_takes_only_numbers(data, total):
    assert xmrig.parse_summary(data).total == total


@pytest.mark.parametrize("data", [[], "html", None, 3])
def test_parse_summary_of_something_else_is_none(data):
    assert xmrig.parse_summary(data) is None


# --- fetching over real HTTP ------------------------------------------------------------------------
def test_fetch_gives_xmrigs_own_json_and_its_figures(standin):
    answer = xmrig.fetch("/1/summary")
    assert answer.error is None and answer.status == 200
    summary = xmrig.parse_summary(answer.data)
    assert summary.total == [4321.0, 4321.0, 4321.0]
    assert (summary.algo, summary.version) == ("rx/0", "6.21.0")
    assert xmrig.read_summary() == summary


@pytest.mark.parametrize("mode, reason", [
    ("down", "connection refused"), ("hung", "did not answer within"), ("garbage", "invalid JSON"),
])
def test_fetch_says_why_there_is_no_answer(standin, mode, reason, monkeypatch):
    monkeypatch.setattr(xmrig, "TIMEOUT", 0.3)
    standin.set_mode(mode)
    answer = xmrig.fetch("/1/summary")
    assert answer.data is None and reason in answer.error
    assert xmrig.read_summary() is None


def test_fetch_of_an_unknown_path_is_an_http_error(standin):
    answer = xmrig.fetch("/nope")
    assert (answer.status, answer.error) == (404, "XMRig answered HTTP 404")


def test_fetch_of_a_port_where_nothing_was_ever_listening():
    free = XmrigStandin(mode="down")
    try:
        answer = xmrig.fetch("/1/summary", host="127.0.0.1", port=free.port)
    finally:
        free.close()
    assert answer.error == "XMRig is not running (connection refused)"
