"""api_bodies: what /1/summary, /status and /healthz answer, from given inputs. Pure (/metrics: test_metrics.py)."""
from __future__ import annotations

import json

import pytest

import api_bodies
from coin import HASHRATE_MEASURED
from sensors import HostFacts, Sensors
from tests.conftest import make_coin
from xmrig import parse_upstream

FACTS = HostFacts(Sensors(cpu_temp=63.75, vrm_temp=47.5), uptime=4242)
XMRIG = {"id": "x", "version": "6.16.0", "algo": "rx/0", "uptime": 60,
         "hashrate": {"total": [30.5, 29.0, None]}, "results": {"shares_good": 3, "shares_total": 4}}


# --- /1/summary ------------------------------------------------------------------------------------
def test_summary_is_xmrigs_own_plus_sensors_and_host():
    body = api_bodies.summary_body(parse_upstream(200, json.dumps(XMRIG).encode()), FACTS, 0.2)
    assert body == {**XMRIG, "sensors": {"cpu_temp": 63.75, "vrm_temp": 47.5}, "host": {"uptime": 4242}}


@pytest.mark.parametrize("upstream, age, reason", [
    (None, None, "no answer from XMRig yet"),
    (parse_upstream(200, b"[1, 2]"), 0.1, "XMRig sent JSON that is not an object"),
    (parse_upstream(502, b""), 0.1, "XMRig answered HTTP 502"),
    (parse_upstream(200, b'{"a": 1}'), 10.0, "no answer from XMRig for 10 s"),  # a stale answer is not live data
])
def test_summary_without_a_live_answer_has_the_seeds_offline_shape(upstream, age, reason):
    body = api_bodies.summary_body(upstream, None, age)
    assert body == {"error": "XMRig offline", "reason": reason,
                    "sensors": {"cpu_temp": None, "vrm_temp": None}, "host": {"uptime": None}}


# --- /status ---------------------------------------------------------------------------------------
def test_status_ranking_rows_come_from_the_coins_without_wallets():
    measured = make_coin("monero", 0.42, profit=0.30, name="Monero", symbol="XMR", algo="rx/0",
                         hashrate_hs=5200.0, hashrate_source=HASHRATE_MEASURED, wallet="4SECRETWALLETADDRESS")
    configured = make_coin("dagger", 0.40, name="Dagger", symbol="XDAG")
    body = api_bodies.status_body({"last_ranking": [measured, configured]}, None)
    assert body["ranking"] == [
        {"key": "monero", "coin": "Monero", "symbol": "XMR", "income_usd": 0.42, "profit_usd": 0.30,
         "hashrate_hs": 5200.0, "hashrate_source": "measured", "pool": "127.0.0.1:3333", "algo": "rx/0"},
        {"key": "dagger", "coin": "Dagger", "symbol": "XDAG", "income_usd": 0.40, "profit_usd": None,
         "hashrate_hs": 17300.0, "hashrate_source": "configured", "pool": "127.0.0.1:3333", "algo": None},
    ]
    assert "SECRETWALLET" not in json.dumps(body)


def test_status_of_a_fresh_manager():
    body = api_bodies.status_body({}, None)
    assert (body["state"], body["paused"], body["ranking"], body["worker"], body["switches"]) == ("running", False, [], None, 0)
    assert body["current_since_iso"] is None and body["failing_coins"] == [] and body["skipped"] == []


def test_status_names_times_in_iso_too():
    body = api_bodies.status_body({"paused": True, "current_since": 1_700_000_000.0, "failing_coins": ["zephyr"]},
                                  {"name": "w", "state": "running"})
    assert body["state"] == "paused" and body["current_since_iso"].startswith("2023-11-1")
    assert body["failing_coins"] == ["zephyr"] and body["worker"] == {"name": "w", "state": "running"}


# --- /healthz --------------------------------------------------------------------------------------
def test_health_rule():
    now = 10_000.0
    assert api_bodies.health({"loop_alive": True, "loop_heartbeat": now - 60}, now) == (True, "ok")
    stuck = api_bodies.health({"loop_alive": True, "loop_heartbeat": now - 901}, now)
    assert stuck == (False, "profit loop silent for 901 s (limit 900 s)")
    assert api_bodies.health({"loop_alive": False, "loop_heartbeat": now}, now) == (False, "profit loop is not running")


# --- /status fleet ---------------------------------------------------------------------------------
def test_status_fleet_is_the_workers_fleet_entry_else_off():
    fleet = {"mode": "swarm", "nodes": []}
    assert api_bodies.status_body({}, {"name": "w", "fleet": fleet})["fleet"] == fleet
    assert api_bodies.status_body({}, {"name": "w"})["fleet"] == {"mode": "off"}
    assert api_bodies.status_body({}, None)["fleet"] == {"mode": "off"}
    assert api_bodies.status_body({}, {})["fleet"] == {"mode": "off"}
