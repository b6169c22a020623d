"""/metrics through prometheus_client: today's names, labels and values, in valid Prometheus text."""
from __future__ import annotations

import time

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

import metrics
from sensors import HostFacts, Sensors

SUMMARY = {"hashrate": {"total": [17300.0, 17250.5, None]}, "results": {"shares_good": 41, "shares_total": 42},
           "uptime": 3600}
FACTS = HostFacts(Sensors(cpu_temp=63.75, vrm_temp=47.5), uptime=86400)


def snap(**changes) -> dict:
    base = {"current_coin": "monero", "current_income_usd": 0.42, "paused": True, "switches": 3,
            "last_analysis": 1_700_000_000.0, "loop_alive": True, "loop_heartbeat": time.monotonic()}
    return {**base, **changes}


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value}, parsed by prometheus_client's own parser (which rejects
    anything that is not valid exposition text)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_todays_names_labels_and_values():
    text = metrics.metrics_text(SUMMARY, FACTS, snap())
    assert samples(text) == {
        ("smartminer_xmrig_up", ()): 1.0,
        ("smartminer_hashrate_hs", (("window", "10s"),)): 17300.0,
        ("smartminer_hashrate_hs", (("window", "60s"),)): 17250.5,
        ("smartminer_shares_good", ()): 41.0,
        ("smartminer_shares_total", ()): 42.0,
        ("smartminer_xmrig_uptime_seconds", ()): 3600.0,
        ("smartminer_cpu_temp_celsius", ()): 63.75,
        ("smartminer_vrm_temp_celsius", ()): 47.5,
        ("smartminer_host_uptime_seconds", ()): 86400.0,
        ("smartminer_current_income_usd_per_day", (("coin", "monero"),)): 0.42,
        ("smartminer_paused", ()): 1.0,
        ("smartminer_switches_total", ()): 3.0,
        ("smartminer_last_analysis_timestamp_seconds", ()): 1_700_000_000.0,
        ("smartminer_loop_alive", ()): 1.0,
    }
    # the same TYPE lines as the hand-written text (a counter keeps its _total name)
    assert "# TYPE smartminer_switches_total counter" in text.splitlines()
    assert "# TYPE smartminer_shares_total gauge" in text.splitlines()
    assert 'smartminer_hashrate_hs{window="10s"} 17300.0' in text.splitlines()
    assert metrics.CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


def test_xmrig_offline_and_no_sensors_leave_those_metrics_out():
    text = metrics.metrics_text({"error": "XMRig offline", "reason": "connection refused"}, None,
                                snap(paused=False, loop_alive=False, current_income_usd=None, last_analysis=None))
    assert samples(text) == {
        ("smartminer_xmrig_up", ()): 0.0,
        ("smartminer_paused", ()): 0.0,
        ("smartminer_switches_total", ()): 3.0,
        ("smartminer_loop_alive", ()): 0.0,
    }


def test_a_stale_profit_loop_is_not_alive():
    text = metrics.metrics_text(SUMMARY, FACTS, snap(loop_heartbeat=time.monotonic() - 10_000))
    assert samples(text)[("smartminer_loop_alive", ())] == 0.0


def test_label_values_are_escaped():
    name = 'we"ird\\coin\nname'
    text = metrics.metrics_text(SUMMARY, FACTS, snap(current_coin=name))
    assert 'smartminer_current_income_usd_per_day{coin="we\\"ird\\\\coin\\nname"} 0.42' in text.splitlines()
    assert samples(text)[("smartminer_current_income_usd_per_day", (("coin", name),))] == 0.42


def test_each_call_uses_its_own_registry():
    before = {m.name for m in REGISTRY.collect()}
    first = metrics.metrics_text(SUMMARY, FACTS, snap(switches=1))
    second = metrics.metrics_text(SUMMARY, FACTS, snap(switches=2))
    assert samples(first)[("smartminer_switches_total", ())] == 1.0
    assert samples(second)[("smartminer_switches_total", ())] == 2.0
    assert {m.name for m in REGISTRY.collect()} == before  # nothing added to the global registry
    assert "process_" not in first and "python_gc" not in first
