"""The API's response bodies, from what the caches and the run state hold. Pure: no I/O.

- `/1/summary`, `/2/summary`: XMRig's summary unchanged plus "sensors" and "host", or the seed's
  offline shape ({"error": "XMRig offline", ...}) when there is none;
- `/status`: the manager's state, the ranking (no wallets), the worker and the fleet;
- `/healthz`: whether the profit loop is alive.

`/metrics` is `metrics.metrics_text` (prometheus_client), from the same caches.
"""
from __future__ import annotations

import time
from typing import Any

from coin import Coin
from sensors import HostFacts, Sensors
from xmrig import Upstream

HEALTH_STALE_SECONDS = 900.0  # the profit loop beats at least every 60 s; silent this long = stuck
XMRIG_STALE_AFTER = 3.0  # an XMRig answer older than this is no longer shown as live data
OFFLINE = "XMRig offline"


def summary_body(upstream: Upstream | None, facts: HostFacts | None, age: float | None) -> dict:
    """XMRig's summary unchanged plus "sensors" and "host"; the seed's offline shape when there is none.
    `age`: seconds since XMRig's answer was fetched."""
    sensors = facts.sensors if facts else Sensors()
    extra = {
        "sensors": {"cpu_temp": sensors.cpu_temp, "vrm_temp": sensors.vrm_temp},
        "host": {"uptime": facts.uptime if facts else None},
    }
    if upstream is None:
        return {"error": OFFLINE, "reason": "no answer from XMRig yet", **extra}
    if upstream.error is None and not isinstance(upstream.data, dict):
        upstream = Upstream(upstream.status, upstream.body, None, "XMRig sent JSON that is not an object")
    if upstream.error is not None:
        return {"error": OFFLINE, "reason": upstream.error, **extra}
    if age is not None and age > XMRIG_STALE_AFTER:
        return {"error": OFFLINE, "reason": f"no answer from XMRig for {age:.0f} s", **extra}
    return {**upstream.data, **extra}


def _iso(epoch: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(epoch)) if epoch else None


def ranked_coin(coin: Coin) -> dict:
    """A ranking row for the API: no wallet (it is a secret), the figures the owner compares, and
    the hashrate the income was computed with ("measured" or "configured")."""
    return {
        "key": coin.key,
        "coin": coin.name,
        "symbol": coin.symbol,
        "income_usd": coin.income_usd,
        "profit_usd": coin.profit_usd,
        "hashrate_hs": coin.hashrate_hs,
        "hashrate_source": coin.hashrate_source,
        "pool": coin.pool,
        "algo": coin.algo,
    }


def status_body(snap: dict, worker: Any) -> dict:
    """The manager's state for /status, from `config.state.snapshot()` and the worker's status."""
    ranking = [ranked_coin(c) for c in snap.get("last_ranking") or [] if isinstance(c, Coin)]
    return {
        "state": "paused" if snap.get("paused") else "running",
        "paused": bool(snap.get("paused")),
        "current_coin": snap.get("current_coin"),
        "current_since": snap.get("current_since"),
        "current_since_iso": _iso(snap.get("current_since")),
        "current_income_usd": snap.get("current_income_usd"),
        "pinned": snap.get("pinned"),
        "last_analysis": snap.get("last_analysis"),
        "last_analysis_iso": _iso(snap.get("last_analysis")),
        "next_analysis": snap.get("next_analysis"),
        "next_analysis_iso": _iso(snap.get("next_analysis")),
        "switches": snap.get("switches", 0),
        "failing_coins": list(snap.get("failing_coins") or []),
        "ranking": ranking,
        "skipped": list(snap.get("last_skipped") or []),
        "worker": worker,
        "fleet": fleet_of(worker),
    }


FLEET_OFF = {"mode": "off"}


def fleet_of(worker: Any) -> dict:
    """/status's "fleet": the worker status's own "fleet" entry (the swarm backend's), else {"mode": "off"}."""
    if isinstance(worker, dict) and isinstance(worker.get("fleet"), dict):
        return worker["fleet"]
    return dict(FLEET_OFF)


def health(snap: dict, now: float) -> tuple[bool, str]:
    """Whether the profit loop is alive, and if not why. `now` is time.monotonic()."""
    if not snap.get("loop_alive"):
        return False, "profit loop is not running"
    age = now - float(snap.get("loop_heartbeat") or 0.0)
    if age > HEALTH_STALE_SECONDS:
        return False, f"profit loop silent for {age:.0f} s (limit {HEALTH_STALE_SECONDS:.0f} s)"
    return True, "ok"
