"""The API's response bodies, from what the caches and the run state hold. Pure: no I/O.

- `/1/summary`, `/2/summary`: XMRig's summary unchanged plus "sensors" and "host", or the seed's
  offline shape ({"error": "XMRig offline", ...}) when there is none;
- `/status`: the manager's state, the ranking (no wallets) and the worker;
- `/healthz`: whether the profit loop is alive;
- `/metrics`: Prometheus text.
"""
from __future__ import annotations

import time
from typing import Any

from coin import Coin
from sensors import HostFacts, Sensors
from xmrig import Upstream, parse_summary

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
    }


def health(snap: dict, now: float) -> tuple[bool, str]:
    """Whether the profit loop is alive, and if not why. `now` is time.monotonic()."""
    if not snap.get("loop_alive"):
        return False, "profit loop is not running"
    age = now - float(snap.get("loop_heartbeat") or 0.0)
    if age > HEALTH_STALE_SECONDS:
        return False, f"profit loop silent for {age:.0f} s (limit {HEALTH_STALE_SECONDS:.0f} s)"
    return True, "ok"


def _label_value(text: Any) -> str:
    return str(text).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: Any) -> float | None:
    if isinstance(value, (bool, int, float)):
        return float(value)
    return None


def _metric(lines: list[str], name: str, kind: str, help_text: str, samples: list[tuple[dict, Any]]) -> None:
    """One metric family; samples whose value is not a number (null sensors, no data) are left out."""
    good = [(labels, _number(v)) for labels, v in samples if _number(v) is not None]
    if not good:
        return
    lines.append(f"# HELP smartminer_{name} {help_text}")
    lines.append(f"# TYPE smartminer_{name} {kind}")
    for labels, value in good:
        tags = ",".join(f'{k}="{_label_value(v)}"' for k, v in labels.items())
        lines.append(f"smartminer_{name}{{{tags}}} {value!r}" if tags else f"smartminer_{name} {value!r}")


def metrics_text(summary: dict | None, facts: HostFacts | None, snap: dict) -> str:
    """Prometheus text exposition (format 0.0.4) of the rig and the manager. `summary` is what
    /1/summary answers (its offline shape counts as XMRig down)."""
    live = summary if isinstance(summary, dict) and "error" not in summary else None
    xmrig = parse_summary(live)
    sensors = facts.sensors if facts else Sensors()
    coin = snap.get("current_coin") or ""
    lines: list[str] = []
    _metric(lines, "xmrig_up", "gauge", "1 when XMRig's API answers.", [({}, 1 if live else 0)])
    if xmrig is not None:
        _metric(lines, "hashrate_hs", "gauge", "XMRig hashrate in H/s over a window.",
                [({"window": w}, v) for w, v in zip(("10s", "60s", "15m"), xmrig.total)])
        _metric(lines, "shares_good", "gauge", "Accepted shares since XMRig started.", [({}, xmrig.shares_good)])
        _metric(lines, "shares_total", "gauge", "Submitted shares since XMRig started.", [({}, xmrig.shares_total)])
        _metric(lines, "xmrig_uptime_seconds", "gauge", "XMRig uptime.", [({}, xmrig.uptime)])
    _metric(lines, "cpu_temp_celsius", "gauge", "CPU temperature.", [({}, sensors.cpu_temp)])
    _metric(lines, "vrm_temp_celsius", "gauge", "VRM temperature.", [({}, sensors.vrm_temp)])
    _metric(lines, "host_uptime_seconds", "gauge", "Host uptime.", [({}, facts.uptime if facts else None)])
    _metric(lines, "current_income_usd_per_day", "gauge", "Income per day of the coin being mined.",
            [({"coin": coin}, snap.get("current_income_usd"))])
    _metric(lines, "paused", "gauge", "1 when mining is paused.", [({}, bool(snap.get("paused")))])
    _metric(lines, "switches_total", "counter", "Coin switches since start.", [({}, snap.get("switches", 0))])
    _metric(lines, "last_analysis_timestamp_seconds", "gauge", "Unix time of the last market analysis.",
            [({}, snap.get("last_analysis"))])
    _metric(lines, "loop_alive", "gauge", "1 when the profit loop is healthy.",
            [({}, health(snap, time.monotonic())[0])])
    return "\n".join(lines) + "\n"
