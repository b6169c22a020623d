"""The one client for XMRig's HTTP API, used by the watchdog and by the API on port 4000.

`fetch` gets one path with a short timeout and judges the answer (`Upstream`: JSON, or why there is
none); `parse_summary` reads what the manager needs from a summary (hashrate over 10 s / 60 s /
15 min from `hashrate.total`, algorithm, version, shares). Nothing here raises to the caller.
"""
from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass
from typing import Any

import config
import utils

TIMEOUT = 1.0  # seconds for one fetch (connect + answer): a hung XMRig must cost little
MAX_BYTES = 4 << 20
JSON_TYPE = "application/json"
SUMMARY_PATH = "/1/summary"


@dataclass(frozen=True)
class Upstream:
    """One fetch of an XMRig path: the answer (status, body, parsed JSON) or why there is none."""

    status: int | None = None
    body: bytes = b""
    data: Any = None
    error: str | None = None  # set when there is no usable JSON answer


def parse_upstream(status: int, body: bytes) -> Upstream:
    """Judge XMRig's answer: usable JSON, or an error string that says what was wrong with it."""
    if status != 200:
        return Upstream(status, body, None, f"XMRig answered HTTP {status}")
    try:
        return Upstream(status, body, json.loads(body))
    except (ValueError, UnicodeDecodeError) as exc:
        return Upstream(status, body, None, f"XMRig sent invalid JSON ({exc})")


def fetch(path: str, host: str | None = None, port: int | None = None) -> Upstream:
    """GET `path` from XMRig (XMRIG_HOST:XMRIG_PORT unless given) within TIMEOUT. Never raises."""
    s = config.settings()
    conn = http.client.HTTPConnection(host or s.XMRIG_HOST, port or s.XMRIG_PORT, timeout=TIMEOUT)
    try:
        conn.request("GET", path, headers={"Accept": JSON_TYPE, "Connection": "close"})
        resp = conn.getresponse()
        return parse_upstream(resp.status, resp.read(MAX_BYTES))
    except ConnectionRefusedError:
        return Upstream(error="XMRig is not running (connection refused)")
    except socket.timeout:
        return Upstream(error=f"XMRig did not answer within {TIMEOUT:g} s")
    except (OSError, http.client.HTTPException) as exc:
        return Upstream(error=f"XMRig API unreachable ({type(exc).__name__}: {exc})")
    finally:
        conn.close()


def _number(value: Any) -> float | None:
    """A JSON number as float; None for null, text, booleans."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


@dataclass(frozen=True)
class Summary:
    """What the manager reads from XMRig's summary. Hashrates in H/s, None until XMRig has them."""

    hashrate_10s: float | None = None
    hashrate_60s: float | None = None
    hashrate_15m: float | None = None
    algo: str | None = None
    version: str | None = None
    shares_good: float | None = None  # accepted shares since XMRig started
    shares_total: float | None = None
    uptime: float | None = None  # seconds XMRig has run

    @property
    def total(self) -> list[float | None]:
        """`hashrate.total` as XMRig gives it: [10 s, 60 s, 15 min]."""
        return [self.hashrate_10s, self.hashrate_60s, self.hashrate_15m]


def parse_summary(data: Any) -> Summary | None:
    """The figures of an XMRig summary (`/1/summary` or `/2/summary`); None when `data` is not one."""
    if not isinstance(data, dict):
        return None
    hashrate = data.get("hashrate") if isinstance(data.get("hashrate"), dict) else {}
    total = hashrate.get("total") if isinstance(hashrate.get("total"), list) else []
    windows = [_number(total[i]) if i < len(total) else None for i in range(3)]
    results = data.get("results") if isinstance(data.get("results"), dict) else {}
    algo, version = data.get("algo"), data.get("version")
    return Summary(
        hashrate_10s=windows[0], hashrate_60s=windows[1], hashrate_15m=windows[2],
        algo=algo if isinstance(algo, str) else None,
        version=version if isinstance(version, str) else None,
        shares_good=_number(results.get("shares_good")),
        shares_total=_number(results.get("shares_total")),
        uptime=_number(data.get("uptime")),
    )


def read_summary(path: str = SUMMARY_PATH) -> Summary | None:
    """XMRig's summary now, None when it cannot be had (logged at debug level: the caller decides
    whether a silent XMRig is a fault)."""
    answer = fetch(path)
    if answer.error:
        utils.log(f"[DEBUG] XMRig API unavailable: {answer.error}")
        return None
    return parse_summary(answer.data)
