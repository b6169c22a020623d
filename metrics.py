"""/metrics in the Prometheus text format, built with prometheus_client.

The names, labels and values are the ones the hand-written exposition had (smartminer_*), so existing
scrapes and dashboards keep working. Each call renders from its inputs through a registry of its own
(never the process-wide default one, which would also carry prometheus_client's own process metrics).
A metric whose value is unknown (no sensor, XMRig offline) is left out rather than sent as NaN.
"""
from __future__ import annotations

import time
from typing import Any, Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from api_bodies import health
from sensors import HostFacts, Sensors
from xmrig import parse_summary

PREFIX = "smartminer_"
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # "text/plain; version=0.0.4; charset=utf-8"
WINDOWS = ("10s", "60s", "15m")  # XMRig's hashrate.total: [10 s, 60 s, 15 min]

Sample = tuple[dict[str, str], Any]


def number(value: Any) -> float | None:
    """A metric value: numbers and booleans (as 0/1); anything else (None, text) is no value."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


def family(name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> Metric | None:
    """One metric family, or None when no sample has a value. `name` is without the prefix; a counter's
    is given as it is exposed (with `_total`), as the hand-written exposition named it."""
    good = [(labels, number(value)) for labels, value in samples if number(value) is not None]
    if not good:
        return None
    label_names = sorted({key for labels, _ in good for key in labels})
    if kind == "counter":
        metric: Metric = CounterMetricFamily(PREFIX + name.removesuffix("_total"), help_text, labels=label_names)
    else:
        metric = GaugeMetricFamily(PREFIX + name, help_text, labels=label_names)
    for labels, value in good:
        metric.add_metric([str(labels.get(k, "")) for k in label_names], value)
    return metric


def families(summary: dict | None, facts: HostFacts | None, snap: dict, now: float) -> list[Metric]:
    """Every family for this moment. `summary` is what /1/summary answers (its offline shape counts as
    XMRig down), `facts` the host's sensors and uptime, `snap` the run state's snapshot, `now`
    time.monotonic() (for the profit loop's health)."""
    live = summary if isinstance(summary, dict) and "error" not in summary else None
    xmrig = parse_summary(live) or parse_summary({})
    sensors = facts.sensors if facts else Sensors()
    coin = snap.get("current_coin") or ""
    found = [
        family("xmrig_up", "gauge", "1 when XMRig's API answers.", [({}, 1 if live else 0)]),
        family("hashrate_hs", "gauge", "XMRig hashrate in H/s over a window.",
               [({"window": w}, v) for w, v in zip(WINDOWS, xmrig.total)]),
        family("shares_good", "gauge", "Accepted shares since XMRig started.", [({}, xmrig.shares_good)]),
        family("shares_total", "gauge", "Submitted shares since XMRig started.", [({}, xmrig.shares_total)]),
        family("xmrig_uptime_seconds", "gauge", "XMRig uptime.", [({}, xmrig.uptime)]),
        family("cpu_temp_celsius", "gauge", "CPU temperature.", [({}, sensors.cpu_temp)]),
        family("vrm_temp_celsius", "gauge", "VRM temperature.", [({}, sensors.vrm_temp)]),
        family("host_uptime_seconds", "gauge", "Host uptime.", [({}, facts.uptime if facts else None)]),
        family("current_income_usd_per_day", "gauge", "Income per day of the coin being mined.",
               [({"coin": coin}, snap.get("current_income_usd"))]),
        family("paused", "gauge", "1 when mining is paused.", [({}, bool(snap.get("paused")))]),
        family("switches_total", "counter", "Coin switches since start.", [({}, snap.get("switches", 0))]),
        family("last_analysis_timestamp_seconds", "gauge", "Unix time of the last market analysis.",
               [({}, snap.get("last_analysis"))]),
        family("loop_alive", "gauge", "1 when the profit loop is healthy.", [({}, health(snap, now)[0])]),
    ]
    return [f for f in found if f is not None]


class _Fixed(Collector):
    """Hands the registry the families computed for one scrape."""

    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return iter(self._metrics)


def metrics_text(summary: dict | None, facts: HostFacts | None, snap: dict) -> str:
    """The /metrics body (Prometheus text format 0.0.4; serve it as CONTENT_TYPE). Same inputs as
    api_bodies.metrics_text, which it replaces."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families(summary, facts, snap, time.monotonic())))
    return generate_latest(registry).decode()
