"""The unified API on port 4000: XMRig's summary plus sensors and host uptime, and the manager's status.

No request ever waits on XMRig or the worker backend: both are fetched by background threads into
caches, at most about once a second and only while someone asks, and requests are answered from
those caches. A hung XMRig (a paused container accepts connections and never answers) therefore
costs the dashboard nothing. The bodies are `api_bodies`, XMRig's client is `xmrig`, the rig's
facts are `sensors`; the worker's status comes from whoever main passes in (`worker_status`).
"""
from __future__ import annotations

import json
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
import dashboard
import history
import metrics
import sensors
import utils
import xmrig
from api_bodies import OFFLINE, XMRIG_STALE_AFTER, health, status_body, summary_body
from xmrig import JSON_TYPE, Upstream

XMRIG_MAX_AGE = 1.0  # a cached XMRig answer older than this is refreshed in the background
SENSORS_MAX_AGE = 1.0
WORKER_MAX_AGE = 5.0
FIRST_WAIT = 0.5  # the only wait a request may see: for the very first fetch of a key
HANDLER_TIMEOUT = 15  # seconds an idle or slow client may hold a connection
SUMMARY_PATHS = ("/1/summary", "/2/summary")
PASSTHROUGH_PATHS = ("/1/threads", "/2/backends")  # never /1/config: it holds the wallet

WorkerStatus = Callable[[], Any]
Route = Callable[[str, str], tuple[int, bytes, str]]  # (path, query) -> (status, body, content type)


def _say_upstream(path: str, result: Upstream | None) -> None:
    """One line when XMRig's answer goes bad and one when it comes back, never one per request."""
    key = f"xmrig-api:{path}"
    if result is not None and result.error:
        utils.incidents.raise_(key, f"XMRig API {path}: {result.error}", notify=False)
    else:
        utils.incidents.clear(key, f"XMRig API {path} answers again", notify=False)


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
                 on_result: Callable[[str, Any], None] | None = None) -> None:
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
        """Ask for a new value of `key` and wait for it (tests use this to warm up)."""
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
            value = self._safe_fetch(key)
            if self._on_result is not None:
                self._on_result(key, value)
            with self._cond:
                self._entries[key] = Entry(value, time.monotonic())
                self._busy = None
                self._cond.notify_all()

    def _safe_fetch(self, key: str) -> Any:
        incident = f"api-fetch:{self.name}"
        try:
            value = self._fetch(key)
        except Exception as exc:  # a failing source must not kill the thread
            utils.incidents.raise_(incident, f"API {self.name} fetch failed: {type(exc).__name__}: {exc}", notify=False)
            return None
        utils.incidents.clear(incident, f"API {self.name} fetch works again", notify=False)
        return value


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
        parts = urlsplit(self.path)
        path = parts.path
        route = self.server.routes.get(path)
        if route is None:
            self._send(404, {"error": f"not found: {path}"})
            return
        incident = f"api-route:{path}"
        try:
            status, body, ctype = route(path, parts.query)
        except Exception as exc:  # a bug must cost one answer, not the server
            utils.incidents.raise_(incident, f"API {path} failed: {type(exc).__name__}: {exc}", notify=False)
            status, body, ctype = 500, _json_bytes({"error": "internal error"}), JSON_TYPE
        else:
            utils.incidents.clear(incident, f"API {path} answers again", notify=False)
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


def _dashboard(path: str, _query: str = "") -> tuple[int, bytes, str]:
    """The dashboard page and its files (dashboard.PATHS)."""
    return dashboard.route(path)


_CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, socket.timeout, TimeoutError)


class ApiServer(ThreadingHTTPServer):
    """The API server and its background fetchers; `shutdown()` + `server_close()` stop all of it."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # a dashboard plus a few scrapers connect at once; 5 would drop SYNs

    def __init__(self, address: tuple[str, int], worker_status: WorkerStatus | None = None,
                 history_store: history.HistoryStore | None = None) -> None:
        """`worker_status()`: the worker for /status (main passes miner_controller.worker_status);
        without one, /status shows "worker": null. `history_store` answers /history (503 without one)."""
        super().__init__(address, ApiHandler)
        self.history_store = history_store
        status = worker_status or (lambda: None)
        self.xmrig = BackgroundCache("xmrig", xmrig.fetch, XMRIG_MAX_AGE, on_result=_say_upstream)
        self.host_facts = BackgroundCache("sensors", lambda _key: sensors.read_host_facts(config.settings()), SENSORS_MAX_AGE)
        self.worker = BackgroundCache("worker", lambda _key: status(), WORKER_MAX_AGE, first_wait=0.2)
        self._rendered: dict[str, tuple[Any, Any, bool, bytes]] = {}
        self.routes: dict[str, Route] = {
            **{p: _dashboard for p in dashboard.PATHS},
            **{p: self._summary for p in SUMMARY_PATHS},
            **{p: self._passthrough for p in PASSTHROUGH_PATHS},
            "/status": self._status,
            "/healthz": self._healthz,
            "/metrics": self._metrics,
            "/history": self._history,
        }
        for cache in (self.xmrig, self.host_facts, self.worker):
            cache.start()

    # --- routes: (status, body, content type) ---
    def _summary(self, path: str, _query: str = "") -> tuple[int, bytes, str]:
        upstream, facts = self.xmrig.get(path), self.host_facts.get("host")
        stale = upstream is not None and time.monotonic() - upstream.fetched > XMRIG_STALE_AFTER
        cached = self._rendered.get(path)
        if cached and cached[0] is upstream and cached[1] is facts and cached[2] == stale:
            return 200, cached[3], JSON_TYPE  # same inputs: reuse the encoded body
        body = _json_bytes(_summary_of(upstream, facts))
        self._rendered[path] = (upstream, facts, stale, body)
        return 200, body, JSON_TYPE

    def summary_dict(self, path: str = "/1/summary") -> dict:
        """What /1/summary (or /2/summary) answers right now, as a dict (/metrics reads it)."""
        return _summary_of(self.xmrig.get(path), self.host_facts.get("host"))

    def _passthrough(self, path: str, _query: str = "") -> tuple[int, bytes, str]:
        entry = self.xmrig.get(path)
        upstream: Upstream | None = entry.value if entry else None
        if upstream is None or upstream.status is None:
            reason = upstream.error if upstream else "no answer from XMRig yet"
            return 502, _json_bytes({"error": OFFLINE, "reason": reason}), JSON_TYPE
        return upstream.status, upstream.body, JSON_TYPE

    def _status(self, _path: str, _query: str = "") -> tuple[int, bytes, str]:
        entry = self.worker.get("worker")
        return 200, _json_bytes(status_body(config.state.snapshot(), entry.value if entry else None)), JSON_TYPE

    def _history(self, _path: str, query: str) -> tuple[int, bytes, str]:
        """GET /history?hours=N: the store's answer (400 with the reason for a bad N), 503 with history off."""
        if self.history_store is None:
            return 503, _json_bytes({"error": "history is off"}), JSON_TYPE
        status, body = history.answer(self.history_store, query)
        return status, body, JSON_TYPE

    def _healthz(self, _path: str, _query: str = "") -> tuple[int, bytes, str]:
        ok, reason = health(config.state.snapshot(), time.monotonic())
        return (200 if ok else 503), _json_bytes({"ok": ok, "reason": reason}), JSON_TYPE

    def _metrics(self, _path: str, _query: str = "") -> tuple[int, bytes, str]:
        facts = self.host_facts.get("host")
        text = metrics.metrics_text(self.summary_dict(), facts.value if facts else None, config.state.snapshot())
        return 200, text.encode(), metrics.CONTENT_TYPE

    # --- life cycle ---
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-answer is normal; anything else is logged once per kind."""
        exc = sys.exc_info()[1]
        if isinstance(exc, _CLIENT_GONE):
            return
        utils.incidents.raise_(f"api-request:{type(exc).__name__}",
                               f"API request from {client_address[0]} failed: {type(exc).__name__}: {exc}", notify=False)

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
                worker_status: WorkerStatus | None = None,
                history_store: history.HistoryStore | None = None) -> ApiServer:
    """The API server bound to host:port (defaults: API_HOST, API_PORT), fetchers running, not serving yet.

    `worker_status()` gives the worker for /status: the daemon passes `miner_controller.worker_status`.
    `history_store` answers GET /history (without one: 503 "history is off").
    """
    s = config.settings()
    address = (s.API_HOST if host is None else host, s.API_PORT if port is None else port)
    return ApiServer(address, worker_status, history_store)


def run_server(worker_status: WorkerStatus | None = None, history_store: history.HistoryStore | None = None) -> None:
    """Serve the API until `config.state.shutdown` is set (the seed's blocking entry point)."""
    server = make_server(worker_status=worker_status, history_store=history_store)
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
