"""The unified API on port 4000: XMRig's summary plus sensors and host uptime, and the manager's status.

No request ever waits on XMRig or Docker: both are fetched by background threads into caches, at most
about once a second and only while someone asks, and requests are answered from those caches. A hung
XMRig (a paused container accepts connections and never answers) therefore costs the dashboard nothing.
"""
from __future__ import annotations

import glob
import http.client
import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import urlsplit

import config
import utils

HEALTH_STALE_SECONDS = 900.0  # the profit loop beats at least every 60 s; silent this long = stuck
XMRIG_TIMEOUT = 1.0  # seconds for one XMRig fetch (connect + answer)
XMRIG_MAX_AGE = 1.0  # a cached XMRig answer older than this is refreshed in the background
XMRIG_STALE_AFTER = 3.0  # an answer older than this is no longer shown as live data
SENSORS_MAX_AGE = 1.0
WORKER_MAX_AGE = 5.0
FIRST_WAIT = 0.5  # the only wait a request may see: for the very first fetch of a key
MAX_UPSTREAM_BYTES = 4 << 20
HANDLER_TIMEOUT = 15  # seconds an idle or slow client may hold a connection
SUMMARY_PATHS = ("/1/summary", "/2/summary")
PASSTHROUGH_PATHS = ("/1/threads", "/2/backends")  # never /1/config: it holds the wallet
OFFLINE = "XMRig offline"
JSON_TYPE = "application/json"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


# --- log once ------------------------------------------------------------------------------------
_logged: set[str] = set()
_logged_lock = threading.Lock()


def log_once(key: str, msg: str) -> None:
    """Log `msg` the first time `key` is seen; a dashboard polls all day and must not flood the log."""
    with _logged_lock:
        if key in _logged or len(_logged) > 1000:
            return
        _logged.add(key)
    utils.log(msg)


# --- sensors -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reading:
    chip: str  # hwmon `name`, e.g. "k10temp"
    label: str  # tempN_label, or "tempN" when the chip gives none
    celsius: float


@dataclass(frozen=True)
class Sensors:
    cpu_temp: float | None = None
    vrm_temp: float | None = None


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read().strip()
    except OSError:  # a sensor that went away, or EIO from a flaky chip
        return None


def read_hwmon(hwmon_path: str) -> list[Reading]:
    """Every temperature under `hwmon_path` (hwmon*/name, temp*_input in millidegrees, temp*_label)."""
    readings: list[Reading] = []
    for chip_dir in sorted(glob.glob(os.path.join(glob.escape(hwmon_path), "hwmon*"))):
        chip = _read_text(os.path.join(chip_dir, "name")) or os.path.basename(chip_dir)
        for input_path in sorted(glob.glob(os.path.join(glob.escape(chip_dir), "temp*_input"))):
            raw = _read_text(input_path)
            try:
                celsius = int(raw or "") / 1000.0
            except ValueError:
                continue
            sensor = os.path.basename(input_path)[: -len("_input")]
            label = _read_text(os.path.join(chip_dir, f"{sensor}_label")) or sensor
            readings.append(Reading(chip, label, celsius))
    return readings


def _max_of(readings: list[Reading], match: Callable[[Reading], bool]) -> float | None:
    values = [r.celsius for r in readings if match(r)]
    return max(values) if values else None


def _amd_cpu(readings: list[Reading]) -> float | None:
    """k10temp/zenpower: the hottest CCD (Tccd*), else Tdie, else the control value Tctl."""
    for prefix in ("tccd", "tdie", "tctl"):
        found = _max_of(readings, lambda r: r.label.lower().startswith(prefix))
        if found is not None:
            return found
    return _max_of(readings, lambda r: True)


def _intel_cpu(readings: list[Reading]) -> float | None:
    """coretemp: the package sensor, else the hottest core."""
    package = _max_of(readings, lambda r: r.label.lower() == "package id 0")
    if package is not None:
        return package
    return _max_of(readings, lambda r: r.label.lower().startswith(("package", "core")))


_CPU_CHIPS: tuple[tuple[str, Callable[[list[Reading]], float | None]], ...] = (
    ("k10temp", _amd_cpu),
    ("zenpower", _amd_cpu),
    ("coretemp", _intel_cpu),
    ("cpu_thermal", lambda rs: _max_of(rs, lambda r: True)),
)


def auto_cpu_temp(readings: list[Reading]) -> float | None:
    for chip, choose in _CPU_CHIPS:
        mine = [r for r in readings if r.chip.lower() == chip]
        value = choose(mine) if mine else None
        if value is not None:
            return value
    return None


def auto_vrm_temp(readings: list[Reading]) -> float | None:
    """A sensor labelled VRM on any chip, else the seed's nct6687 "Thermistor 15"."""
    vrm = _max_of(readings, lambda r: "vrm" in r.label.lower())
    if vrm is not None:
        return vrm
    return _max_of(readings, lambda r: r.chip.lower() == "nct6687" and r.label.lower() == "thermistor 15")


def pick_sensor(readings: list[Reading], spec: str) -> float | None:
    """The reading named by "chip:label" (or just "label", any chip), case-insensitive; None if absent."""
    chip, _, label = spec.strip().rpartition(":") if ":" in spec else ("", "", spec.strip())
    chip, label = chip.strip().lower(), label.strip().lower()
    return _max_of(readings, lambda r: r.label.lower() == label and (not chip or r.chip.lower() == chip))


def _choose(readings: list[Reading], override: str, auto: Callable[[list[Reading]], float | None], what: str) -> float | None:
    if not override.strip():
        return auto(readings)
    value = pick_sensor(readings, override)
    if value is None:
        names = ", ".join(sorted({f"{r.chip}:{r.label}" for r in readings})) or "none"
        log_once(f"sensor:{what}:{override}", f"[WARN] {what} sensor {override!r} not found; available: {names}")
    return value


def read_sensors(hwmon_path: str, cpu_override: str = "", vrm_override: str = "") -> Sensors:
    """CPU and VRM temperatures in °C from hwmon; None where there is no such sensor, never an error."""
    readings = read_hwmon(hwmon_path)
    return Sensors(
        cpu_temp=_choose(readings, cpu_override, auto_cpu_temp, "CPU_TEMP_SENSOR"),
        vrm_temp=_choose(readings, vrm_override, auto_vrm_temp, "VRM_TEMP_SENSOR"),
    )


def host_uptime(path: str = "/proc/uptime") -> int | None:
    """Seconds since the host booted (the container shares the host's /proc/uptime)."""
    text = _read_text(path)
    try:
        return int(float(text.split()[0])) if text else None
    except ValueError:
        return None


@dataclass(frozen=True)
class HostFacts:
    sensors: Sensors
    uptime: int | None


def read_host_facts(_key: str = "") -> HostFacts:
    s = config.settings()
    return HostFacts(read_sensors(s.HWMON_PATH, s.CPU_TEMP_SENSOR, s.VRM_TEMP_SENSOR), host_uptime())


# --- XMRig ---------------------------------------------------------------------------------------
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


def fetch_xmrig(path: str) -> Upstream:
    """GET `path` from XMRig with a short timeout. Never raises."""
    s = config.settings()
    conn = http.client.HTTPConnection(s.XMRIG_HOST, s.XMRIG_PORT, timeout=XMRIG_TIMEOUT)
    try:
        conn.request("GET", path, headers={"Accept": JSON_TYPE, "Connection": "close"})
        resp = conn.getresponse()
        body = resp.read(MAX_UPSTREAM_BYTES)
        return parse_upstream(resp.status, body)
    except ConnectionRefusedError:
        return Upstream(error="XMRig is not running (connection refused)")
    except socket.timeout:
        return Upstream(error=f"XMRig did not answer within {XMRIG_TIMEOUT:g} s")
    except (OSError, http.client.HTTPException) as exc:
        return Upstream(error=f"XMRig API unreachable ({type(exc).__name__}: {exc})")
    finally:
        conn.close()


def _log_upstream_change(path: str, result: Upstream, previous: Upstream | None) -> None:
    """One line when XMRig's answer goes bad or comes back, never one per request."""
    was = previous.error if previous else None
    if result.error == was:
        return
    if result.error:
        utils.log(f"[WARN] XMRig API {path}: {result.error}")
    elif previous is not None:
        utils.log(f"[INFO] XMRig API {path} answers again")


# --- background cache ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    value: Any
    fetched: float  # time.monotonic()


class BackgroundCache:
    """Values fetched by one background thread, on demand, at most once per `max_age` per key.

    `get` never runs the fetch itself: it returns the cached entry at once (possibly a little old)
    and asks the thread for a fresh one. Only the very first `get` of a key waits, at most `first_wait`.
    With nobody asking, the thread sleeps on a condition: no polling, no CPU.
    """

    def __init__(self, name: str, fetch: Callable[[str], Any], max_age: float, first_wait: float = FIRST_WAIT,
                 on_result: Callable[[str, Any, Any], None] | None = None) -> None:
        self.name = name
        self._fetch = fetch
        self._max_age = max_age
        self._first_wait = first_wait
        self._on_result = on_result
        self._entries: dict[str, Entry] = {}
        self._pending: list[str] = []
        self._busy: str | None = None
        self._stopped = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._cond:
            if self._thread is not None:
                return
            self._stopped = False
            self._thread = threading.Thread(target=self._run, name=f"api-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.5) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def get(self, key: str) -> Entry | None:
        with self._cond:
            entry = self._entries.get(key)
            if entry is None or time.monotonic() - entry.fetched > self._max_age:
                self._ask(key)
            if entry is None and self._first_wait > 0:
                self._cond.wait_for(lambda: key in self._entries or self._stopped, self._first_wait)
                entry = self._entries.get(key)
        return entry

    def wait_fresh(self, key: str, timeout: float) -> Entry | None:
        """Ask for a new value of `key` and wait for it (tests and benchmarks use this to warm up)."""
        with self._cond:
            since = time.monotonic()
            self._ask(key)
            self._cond.wait_for(lambda: self._stopped or (key in self._entries and self._entries[key].fetched >= since), timeout)
            return self._entries.get(key)

    @property
    def busy(self) -> str | None:
        """The key being fetched right now, if any."""
        with self._cond:
            return self._busy

    def _ask(self, key: str) -> None:
        if key != self._busy and key not in self._pending:
            self._pending.append(key)
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._stopped)
                if self._stopped:
                    return
                key = self._busy = self._pending.pop(0)
                previous = self._entries.get(key)
            value = self._safe_fetch(key)
            if self._on_result is not None:
                self._on_result(key, value, previous.value if previous else None)
            with self._cond:
                self._entries[key] = Entry(value, time.monotonic())
                self._busy = None
                self._cond.notify_all()

    def _safe_fetch(self, key: str) -> Any:
        try:
            return self._fetch(key)
        except Exception as exc:  # a failing source must not kill the thread
            log_once(f"fetch:{self.name}:{type(exc).__name__}", f"[WARN] API {self.name} fetch failed: {exc}")
            return None


def default_worker_status(_key: str = "") -> Any:
    """The worker container's status from miner_controller, if that module is there."""
    import miner_controller  # imported late: it talks to Docker, and may not exist

    return miner_controller.worker_status()


# --- response bodies (pure) ----------------------------------------------------------------------
def summary_body(upstream: Upstream | None, facts: HostFacts | None, age: float | None) -> dict:
    """XMRig's summary unchanged plus "sensors" and "host"; the seed's offline shape when there is none."""
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


def _ranked_coin(coin: dict) -> dict:
    """A ranking row for the API: no wallet (it is a secret), the figures the owner compares."""
    return {
        "key": coin.get("Key"),
        "coin": coin.get("Coin name"),
        "symbol": coin.get("Symbol"),
        "income_usd": coin.get("Income per day in usd"),
        "profit_usd": coin.get("Profit per day in usd"),
        "hashrate_hs": coin.get("Hashrate H/s"),
        "pool": coin.get("Pool"),
        "algo": coin.get("Algo"),
    }


def status_body(snap: dict, worker: Any) -> dict:
    """The manager's state for /status, from `config.state.snapshot()` and the worker's status."""
    ranking = [_ranked_coin(c) for c in snap.get("last_ranking") or [] if isinstance(c, dict)]
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
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
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
    """Prometheus text exposition (format 0.0.4) of the rig and the manager."""
    data = summary if isinstance(summary, dict) and "error" not in summary else {}
    hashrate = (data.get("hashrate") or {}).get("total") or []
    results = data.get("results") or {}
    sensors = facts.sensors if facts else Sensors()
    coin = snap.get("current_coin") or ""
    lines: list[str] = []
    _metric(lines, "xmrig_up", "gauge", "1 when XMRig's API answers.", [({}, 1 if data else 0)])
    _metric(lines, "hashrate_hs", "gauge", "XMRig hashrate in H/s over a window.",
            [({"window": w}, v) for w, v in zip(("10s", "60s", "15m"), hashrate)])
    _metric(lines, "shares_good", "gauge", "Accepted shares since XMRig started.", [({}, results.get("shares_good"))])
    _metric(lines, "shares_total", "gauge", "Submitted shares since XMRig started.", [({}, results.get("shares_total"))])
    _metric(lines, "xmrig_uptime_seconds", "gauge", "XMRig uptime.", [({}, data.get("uptime"))])
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


def _summary_of(upstream: Entry | None, facts: Entry | None) -> dict:
    age = time.monotonic() - upstream.fetched if upstream else None
    return summary_body(upstream.value if upstream else None, facts.value if facts else None, age)


# --- HTTP ----------------------------------------------------------------------------------------
class ApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "SmartMiner"
    sys_version = ""
    timeout = HANDLER_TIMEOUT
    server: "ApiServer"

    def log_message(self, format: str, *args: Any) -> None:
        """No access log: a dashboard polls all day."""

    def __getattr__(self, name: str) -> Any:
        # Any method but GET and HEAD ("do_POST", "do_FOO"...) gets 405; writes never reach XMRig.
        if name.startswith("do_"):
            return self._method_not_allowed
        raise AttributeError(name)

    def _method_not_allowed(self) -> None:
        self.close_connection = True  # a request body we did not read must not be taken as a request
        self._send(405, {"error": f"method {self.command} not allowed"}, extra={"Allow": "GET, HEAD"})

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        route = self.server.routes.get(path)
        if route is None:
            self._send(404, {"error": f"not found: {path}"})
            return
        try:
            status, body, ctype = route(path)
        except Exception as exc:  # a bug must cost one answer, not the server
            log_once(f"route:{path}:{type(exc).__name__}", f"[ERROR] API {path} failed: {type(exc).__name__}: {exc}")
            status, body, ctype = 500, _json_bytes({"error": "internal error"}), JSON_TYPE
        self._send_bytes(status, body, ctype)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors found while parsing a request (bad request line, header too long...) as JSON."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # unparseable request line: still answer with a status line
            self.request_version = "HTTP/1.0"
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self._send(code, {"error": message or phrase})

    def _send(self, status: int, obj: Any, extra: dict | None = None) -> None:
        self._send_bytes(status, _json_bytes(obj), JSON_TYPE, extra)

    def _send_bytes(self, status: int, body: bytes, ctype: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and status >= 200 and status not in (204, 304):
            self.wfile.write(body)


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, default=str).encode()


_CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, socket.timeout, TimeoutError)


class ApiServer(ThreadingHTTPServer):
    """The API server and its background fetchers; `shutdown()` + `server_close()` stop all of it."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # a dashboard plus a few scrapers connect at once; 5 would drop SYNs

    def __init__(self, address: tuple[str, int], worker_source: Callable[[str], Any] | None = None) -> None:
        super().__init__(address, ApiHandler)
        self.xmrig = BackgroundCache("xmrig", fetch_xmrig, XMRIG_MAX_AGE, on_result=_log_upstream_change)
        self.host_facts = BackgroundCache("sensors", read_host_facts, SENSORS_MAX_AGE)
        self.worker = BackgroundCache("worker", worker_source or default_worker_status, WORKER_MAX_AGE, first_wait=0.2)
        self._rendered: dict[str, tuple[Any, Any, bool, bytes]] = {}
        self.routes: dict[str, Callable[[str], tuple[int, bytes, str]]] = {
            **{p: self._summary for p in SUMMARY_PATHS},
            **{p: self._passthrough for p in PASSTHROUGH_PATHS},
            "/status": self._status,
            "/healthz": self._healthz,
            "/metrics": self._metrics,
        }
        for cache in (self.xmrig, self.host_facts, self.worker):
            cache.start()

    # --- routes: (status, body, content type) ---
    def _summary(self, path: str) -> tuple[int, bytes, str]:
        upstream, facts = self.xmrig.get(path), self.host_facts.get("host")
        stale = upstream is not None and time.monotonic() - upstream.fetched > XMRIG_STALE_AFTER
        cached = self._rendered.get(path)
        if cached and cached[0] is upstream and cached[1] is facts and cached[2] == stale:
            return 200, cached[3], JSON_TYPE  # same inputs: reuse the encoded body
        body = _json_bytes(_summary_of(upstream, facts))
        self._rendered[path] = (upstream, facts, stale, body)
        return 200, body, JSON_TYPE

    def summary_dict(self, path: str = "/1/summary") -> dict:
        """What /1/summary (or /2/summary) answers right now, as a dict (main's `status` may show it)."""
        return _summary_of(self.xmrig.get(path), self.host_facts.get("host"))

    def _passthrough(self, path: str) -> tuple[int, bytes, str]:
        entry = self.xmrig.get(path)
        upstream: Upstream | None = entry.value if entry else None
        if upstream is None or upstream.status is None:
            reason = upstream.error if upstream else "no answer from XMRig yet"
            return 502, _json_bytes({"error": OFFLINE, "reason": reason}), JSON_TYPE
        return upstream.status, upstream.body, JSON_TYPE

    def _status(self, _path: str) -> tuple[int, bytes, str]:
        entry = self.worker.get("worker")
        return 200, _json_bytes(status_body(config.state.snapshot(), entry.value if entry else None)), JSON_TYPE

    def _healthz(self, _path: str) -> tuple[int, bytes, str]:
        ok, reason = health(config.state.snapshot(), time.monotonic())
        return (200 if ok else 503), _json_bytes({"ok": ok, "reason": reason}), JSON_TYPE

    def _metrics(self, _path: str) -> tuple[int, bytes, str]:
        facts = self.host_facts.get("host")
        text = metrics_text(self.summary_dict(), facts.value if facts else None, config.state.snapshot())
        return 200, text.encode(), METRICS_TYPE

    # --- life cycle ---
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-answer is normal; anything else is logged once per kind."""
        exc = sys.exc_info()[1]
        if isinstance(exc, _CLIENT_GONE):
            return
        log_once(f"handler:{type(exc).__name__}", f"[ERROR] API request from {client_address[0]} failed: {type(exc).__name__}: {exc}")

    def shutdown(self) -> None:
        super().shutdown()
        self._stop_fetchers()

    def server_close(self) -> None:
        super().server_close()
        self._stop_fetchers()

    def _stop_fetchers(self) -> None:
        for cache in (self.xmrig, self.host_facts, self.worker):
            cache.stop()


def make_server(host: str | None = None, port: int | None = None, *,
                worker_source: Callable[[str], Any] | None = None) -> ApiServer:
    """The API server bound to host:port (defaults: API_HOST, API_PORT), fetchers running, not serving yet.

    `worker_source(key)` replaces miner_controller.worker_status (for tests and the demo).
    """
    s = config.settings()
    return ApiServer((s.API_HOST if host is None else host, s.API_PORT if port is None else port), worker_source)


def run_server() -> None:
    """Serve the API until `config.state.shutdown` is set (the seed's blocking entry point)."""
    server = make_server()
    host, port = server.server_address[:2]
    utils.log(f"[INFO] API on http://{host}:{port} (XMRig at {config.settings().XMRIG_HOST}:{config.settings().XMRIG_PORT})")
    watcher = threading.Thread(target=_stop_on_shutdown, args=(server,), name="api-stop", daemon=True)
    watcher.start()
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()


def _stop_on_shutdown(server: ApiServer) -> None:
    config.state.shutdown.wait()
    server.shutdown()
