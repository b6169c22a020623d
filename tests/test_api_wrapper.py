"""The unified API on port 4000, over real HTTP on 127.0.0.1 against the XMRig stand-in in every mode.

No dockerd and no browser: the worker's status is whatever callable the test passes in (the daemon
passes miner_controller.worker_status; that wiring is tested on a real engine in test_miner_controller).
The bodies themselves are tested in test_api_bodies.py, the sensors in test_sensors.py.
"""
from __future__ import annotations

import http.client
import json
import logging
import os
import re
import socket
import struct
import threading
import time

import psutil
import pytest
import requests

import api_bodies
import api_wrapper
import config
import dashboard
import history
import sensors
import xmrig
from demo.xmrig_standin import XmrigStandin
from tests.conftest import make_coin

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "hwmon")
WAIT = 5.0  # generous upper bound for a background fetch to land (not an assertion on time)


def hwmon(name: str) -> str:
    return os.path.join(FIXTURES, name)


class Api:
    """A running API server on a free loopback port, plus helpers to talk to it."""

    def __init__(self, worker_status=None, history_store=None) -> None:
        self.server = api_wrapper.make_server("127.0.0.1", 0, worker_status=worker_status, history_store=history_store)
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.base + path, timeout=kw.pop("timeout", 5), **kw)

    def settle(self, path: str = "/1/summary") -> None:
        """Wait until a fetch of `path` that started now has landed in the cache."""
        assert self.server.xmrig.wait_fresh(path, WAIT) is not None

    def raw(self, data: bytes) -> bytes:
        """Send raw bytes, return whatever comes back until the server closes."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(data)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def standin():
    s = XmrigStandin(mode="up", hashrate=17300.0)
    config.override(XMRIG_HOST="127.0.0.1", XMRIG_PORT=s.port, HWMON_PATH=hwmon("amd"))
    yield s
    s.close()


@pytest.fixture
def api(standin):
    a = Api(worker_status=lambda: {"name": "active_miner_worker", "state": "running"})
    yield a
    a.close()


def offline_reason(body: dict) -> str:
    assert body["error"] == "XMRig offline"
    assert set(body["sensors"]) == {"cpu_temp", "vrm_temp"}
    assert isinstance(body["host"]["uptime"], int)
    return body["reason"]


# --- /1/summary and /2/summary -----------------------------------------------------------------
@pytest.mark.parametrize("path", ["/1/summary", "/2/summary"])
def test_summary_is_xmrigs_own_plus_sensors_and_host(api, standin, path):
    api.settle(path)
    body = api.get(path).json()
    direct = requests.get(standin.url + path, timeout=5).json()
    assert set(body) == set(direct) | {"sensors", "host"}
    for key in ("id", "worker_id", "hashrate", "algo", "version", "cpu", "connection"):
        assert body[key] == direct[key]
    assert body["sensors"] == {"cpu_temp": 63.75, "vrm_temp": 47.5}
    assert 0 < body["host"]["uptime"] <= sensors.host_uptime()


def test_seed_dashboard_reads_everything_it_needs(api):
    """Plays the seed's dashboard: a 2 s timeout, 200 means online, then these fields."""
    api.settle()
    resp = requests.get(f"http://127.0.0.1:{api.port}/1/summary", timeout=2)
    assert resp.status_code == 200
    data = resp.json()
    assert data["hashrate"]["total"][0] == 17300.0
    assert isinstance(data["uptime"], int)
    assert isinstance(data["host"]["uptime"], int)
    assert data["results"]["shares_good"] <= data["results"]["shares_total"]
    assert data["sensors"]["cpu_temp"] == 63.75
    assert data["sensors"]["vrm_temp"] == 47.5


def test_seed_dashboard_sees_a_rig_online_with_temperatures_when_xmrig_is_down(api, standin):
    standin.set_mode("down")
    api.settle()
    resp = requests.get(f"http://127.0.0.1:{api.port}/1/summary", timeout=2)
    assert resp.status_code == 200
    data = resp.json()
    assert "connection refused" in offline_reason(data)
    assert data["sensors"]["cpu_temp"] == 63.75
    assert "hashrate" not in data


@pytest.mark.parametrize(
    "mode, reason",
    [("down", "connection refused"), ("hung", "did not answer"), ("garbage", "invalid JSON")],
)
def test_xmrig_faults_give_the_seeds_offline_shape(api, standin, mode, reason):
    standin.set_mode(mode)
    api.settle()
    resp = api.get("/1/summary")
    assert resp.status_code == 200
    assert reason in offline_reason(resp.json())


def test_xmrig_coming_back_is_seen(api, standin):
    standin.set_mode("down")
    api.settle()
    assert "error" in api.get("/1/summary").json()
    standin.set_mode("up")
    api.settle()
    assert api.get("/1/summary").json()["hashrate"]["total"][0] == 17300.0


def test_a_hung_xmrig_does_not_hold_up_requests(api, standin, monkeypatch):
    """The fetch in flight would take 60 s; requests are answered while it is still pending."""
    api.settle()
    monkeypatch.setattr(xmrig, "TIMEOUT", 60.0)
    standin.set_mode("hung")
    api.server.xmrig.wait_fresh("/1/summary", 0)  # start a fetch that will hang
    for _ in range(5):
        assert api.get("/1/summary").status_code == 200
        assert api.get("/metrics").status_code == 200
    assert api.server.xmrig.busy == "/1/summary"  # every answer above came while the fetch hung
    standin.close()  # drops the hung connection: the fetcher ends before the server closes


def test_first_request_with_a_hung_xmrig_gets_an_answer(standin):
    standin.set_mode("hung")
    a = Api()
    try:
        resp = a.get("/1/summary")
        assert resp.status_code == 200
        assert offline_reason(resp.json())
    finally:
        a.close()


def test_garbage_from_xmrig_is_logged_once_and_again_when_it_returns(api, standin, caplog):
    with caplog.at_level(logging.INFO, logger="smartminer"):
        for _ in range(2):  # a fault that clears and comes back is said again
            standin.set_mode("garbage")
            for _ in range(3):
                api.settle()
                assert "invalid JSON" in api.get("/1/summary").json()["reason"]
            standin.set_mode("up")
            api.settle()
            api.get("/1/summary")
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if "XMRig API /1/summary" in r.getMessage()]
    said = [(level, "invalid JSON" in m, "answers again" in m) for level, m in lines]
    assert said == [("WARNING", True, False), ("INFO", False, True)] * 2


def test_xmrig_is_fetched_at_most_once_per_second_of_requests(api, standin):
    api.settle()
    before = standin.seen[("GET", "/1/summary")]
    started = time.monotonic()
    for _ in range(50):
        api.get("/1/summary")
    elapsed = time.monotonic() - started
    # One fetch per XMRIG_MAX_AGE of requests, plus the one a request may find due and the one in
    # flight: however long the 50 requests took, never one fetch per request.
    fetched = standin.seen[("GET", "/1/summary")] - before
    assert fetched <= elapsed / api_wrapper.XMRIG_MAX_AGE + 2


# --- pass-through, 404, 405, HEAD ------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/1/threads", "/2/backends"])
def test_allow_listed_paths_pass_through_unchanged(api, standin, path):
    api.settle(path)
    resp = api.get(path)
    assert resp.status_code == 200
    assert resp.json() == requests.get(standin.url + path, timeout=5).json()


def test_allow_listed_path_with_xmrig_down_is_a_json_502(api, standin):
    standin.set_mode("down")
    api.settle("/2/backends")
    resp = api.get("/2/backends")
    assert resp.status_code == 502
    assert resp.json()["error"] == "XMRig offline"


@pytest.mark.parametrize("path", ["/index.html", "/1/config", "/2/config", "/json_rpc", "/1/summary/x", "/../etc/passwd"])
def test_other_paths_are_a_json_404_and_never_reach_xmrig(api, standin, path):
    resp = api.get(path)
    assert resp.status_code == 404
    assert resp.headers["Content-Type"] == "application/json"
    assert "error" in resp.json()
    assert not [p for _, p in standin.seen if p not in api_wrapper.SUMMARY_PATHS]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "FROB"])
def test_methods_other_than_get_and_head_are_405_and_not_forwarded(api, standin, method):
    resp = requests.request(method, api.base + "/1/summary", data=b'{"paused": true}', timeout=5)
    assert resp.status_code == 405
    assert resp.headers["Allow"] == "GET, HEAD"
    assert resp.json()["error"].startswith("method")
    assert all(m == "GET" for m, _ in standin.seen)
    assert api.get("/healthz").status_code in (200, 503)  # still serving


def test_head_gives_headers_without_a_body(api):
    api.settle()
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=5)
    conn.request("HEAD", "/1/summary")
    resp = conn.getresponse()
    assert resp.status == 200
    assert int(resp.getheader("Content-Length")) > 100
    assert resp.read() == b""
    conn.request("GET", "/1/summary")  # keep-alive: the same connection answers next
    assert json.loads(conn.getresponse().read())["sensors"]["cpu_temp"] == 63.75
    conn.close()


# --- robustness ----------------------------------------------------------------------------------
def test_garbage_request_line_gets_400_and_the_server_keeps_serving(api):
    answer = api.raw(b"\x00\xff\xfe GARBAGE \x01\r\n\r\n")
    assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n", 1)[0]
    assert api.get("/1/summary").status_code == 200


def test_over_long_header_is_refused_and_the_server_keeps_serving(api):
    answer = api.raw(b"GET /1/summary HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n")
    assert b" 431 " in answer.split(b"\r\n", 1)[0]
    answer = api.raw(b"GET /1/summary HTTP/1.1\r\n" + b"X-H: 1\r\n" * 200 + b"\r\n")
    assert b" 431 " in answer.split(b"\r\n", 1)[0]
    answer = api.raw(b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n")
    assert b" 414 " in answer.split(b"\r\n", 1)[0]
    assert api.get("/1/summary").status_code == 200


def test_clients_that_vanish_do_not_hurt_the_server(api, capsys):
    api.settle()
    for request in (b"GET /1/summary HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /metr", b""):
        sock = socket.create_connection(("127.0.0.1", api.port), timeout=5)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
        sock.sendall(request)
        sock.close()
    idle = socket.create_connection(("127.0.0.1", api.port), timeout=5)  # connects, never asks
    try:
        for _ in range(3):
            assert api.get("/1/summary").status_code == 200
    finally:
        idle.close()
    assert capsys.readouterr().err == ""


def test_no_access_log_line_per_request(api, capsys, caplog):
    with caplog.at_level(logging.DEBUG):
        for path in ("/1/summary", "/status", "/healthz", "/metrics", "/nope"):
            api.get(path)
        api.raw(b"BAD\r\n\r\n")
    assert capsys.readouterr().err == ""
    assert not [r for r in caplog.records if "GET /" in r.getMessage() and not r.name.startswith("urllib3")]


# --- /status -------------------------------------------------------------------------------------
def test_status_reports_the_managers_state(api):
    config.state.update(
        paused=True, current_coin="monero", current_since=1_700_000_000.0, current_income_usd=0.42,
        pinned="monero", last_analysis=1_700_000_100.0, next_analysis=1_700_028_900.0, switches=3,
        failing_coins={"zephyr"}, last_skipped=[{"coin": "etica", "reason": "no wallet configured"}],
        last_ranking=[make_coin("monero", 0.42, profit=0.30, wallet="4SECRETWALLETADDRESS"), make_coin("dagger", 0.40)],
    )
    resp = api.get("/status")
    assert resp.status_code == 200
    body = resp.json()
    assert body["state"] == "paused" and body["paused"] is True
    assert (body["current_coin"], body["current_since"], body["current_income_usd"]) == ("monero", 1_700_000_000.0, 0.42)
    assert body["pinned"] == "monero" and body["switches"] == 3 and body["failing_coins"] == ["zephyr"]
    assert body["last_analysis"] == 1_700_000_100.0 and body["next_analysis"] == 1_700_028_900.0
    assert body["last_analysis_iso"].startswith("2023-11-1")
    assert [c["key"] for c in body["ranking"]] == ["monero", "dagger"]
    assert body["ranking"][0]["profit_usd"] == 0.30 and body["ranking"][1]["profit_usd"] is None
    assert body["ranking"][0]["hashrate_source"] == "configured" and body["ranking"][0]["hashrate_hs"] == 17300.0
    assert body["skipped"] == [{"coin": "etica", "reason": "no wallet configured"}]
    assert body["worker"] == {"name": "active_miner_worker", "state": "running"}
    assert "SECRETWALLET" not in resp.text


def test_status_of_a_fresh_manager_is_running_with_nothing_yet(api):
    body = api.get("/status").json()
    assert body["state"] == "running" and body["current_coin"] is None and body["ranking"] == []


def test_status_without_a_worker_source_says_null(standin):
    a = Api()
    try:
        assert a.server.worker.wait_fresh("worker", WAIT) is not None
        assert a.get("/status").json()["worker"] is None
    finally:
        a.close()


def test_status_follows_the_worker_source(standin):
    answers = [{"state": "running", "coin": "aaa"}, {"state": "exited", "coin": "aaa"}]
    a = Api(worker_status=lambda: answers[0] if len(answers) == 1 else answers.pop(0))
    try:
        a.server.worker.wait_fresh("worker", WAIT)
        assert a.get("/status").json()["worker"] == {"state": "running", "coin": "aaa"}
        a.server.worker.wait_fresh("worker", WAIT)
        assert a.get("/status").json()["worker"] == {"state": "exited", "coin": "aaa"}
    finally:
        a.close()


def test_status_fleet_is_off_without_a_swarm_worker(api):
    api.server.worker.wait_fresh("worker", WAIT)
    body = api.get("/status").json()
    assert body["fleet"] == {"mode": "off"} and body["worker"]["name"] == "active_miner_worker"


def test_status_fleet_is_the_swarm_workers_fleet_entry(standin):
    fleet = {"mode": "swarm", "nodes": [{"node": "rig-a", "state": "running"}], "running": 1, "wanted": 1}
    a = Api(worker_status=lambda: {"name": "active_miner_worker", "state": "running", "fleet": fleet})
    try:
        a.server.worker.wait_fresh("worker", WAIT)
        body = a.get("/status").json()
        assert body["fleet"] == fleet and body["worker"]["fleet"] == fleet
    finally:
        a.close()


@pytest.mark.parametrize("kind", ["raises", "hangs"])
def test_a_failing_or_hanging_worker_status_gives_null(standin, kind, caplog):
    release = threading.Event()

    def source():
        if kind == "hangs":
            release.wait(30)
        raise RuntimeError("Docker engine unreachable")

    a = Api(worker_status=source)
    try:
        with caplog.at_level(logging.INFO, logger="smartminer"):
            resp = a.get("/status")
            assert resp.status_code == 200
            assert resp.json()["worker"] is None
            if kind == "raises":
                a.server.worker.wait_fresh("worker", WAIT)
                a.server.worker.wait_fresh("worker", WAIT)
                [line] = [r.getMessage() for r in caplog.records if "API worker fetch failed" in r.getMessage()]
                assert line == "API worker fetch failed: RuntimeError: Docker engine unreachable"  # once, with its cause
    finally:
        release.set()
        a.close()


# --- /healthz ------------------------------------------------------------------------------------
def test_healthz_is_200_while_the_loop_beats(api):
    config.state.beat()
    resp = api.get("/healthz")
    assert resp.status_code == 200 and resp.json()["ok"] is True


def test_healthz_is_503_when_the_loop_is_stuck(api):
    config.state.beat()
    config.state.update(loop_heartbeat=config.state.get("loop_heartbeat") - api_bodies.HEALTH_STALE_SECONDS - 5)
    resp = api.get("/healthz")
    assert resp.status_code == 503
    assert "silent" in resp.json()["reason"]


def test_healthz_is_503_when_the_loop_is_dead(api):
    config.state.beat()
    config.state.update(loop_alive=False)
    resp = api.get("/healthz")
    assert resp.status_code == 503
    assert "not running" in resp.json()["reason"]


# --- /metrics ------------------------------------------------------------------------------------
SAMPLE = re.compile(r'^(smartminer_[a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_]\w*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.]+(?:[eE][-+]?\d+)?|NaN|[-+]Inf)$')


def parse_metrics(text: str) -> dict[str, float]:
    samples, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("#") or not line:
            continue
        m = SAMPLE.match(line)
        assert m, f"not a Prometheus sample: {line!r}"
        assert m.group(1) in typed, f"{m.group(1)} has no # TYPE line"
        samples[line.rsplit(" ", 1)[0]] = float(m.group(4))
    return samples


def test_metrics_are_prometheus_text(api):
    api.settle()
    config.state.update(current_coin="monero", current_income_usd=0.42, paused=True, switches=3, last_analysis=1_700_000_000.0)
    config.state.beat()
    resp = api.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    m = parse_metrics(resp.text)
    assert m['smartminer_hashrate_hs{window="10s"}'] == 17300.0
    assert m["smartminer_xmrig_up"] == 1.0
    assert m["smartminer_cpu_temp_celsius"] == 63.75 and m["smartminer_vrm_temp_celsius"] == 47.5
    assert m["smartminer_host_uptime_seconds"] > 0
    assert m['smartminer_current_income_usd_per_day{coin="monero"}'] == 0.42
    assert m["smartminer_paused"] == 1.0 and m["smartminer_switches_total"] == 3.0
    assert m["smartminer_last_analysis_timestamp_seconds"] == 1_700_000_000.0
    assert "smartminer_shares_good" in m and "smartminer_shares_total" in m


def test_metrics_with_xmrig_down_and_no_sensors_still_parse(api, standin):
    config.override(HWMON_PATH=hwmon("none"))
    api.server.host_facts.wait_fresh("host", WAIT)
    standin.set_mode("down")
    api.settle()
    m = parse_metrics(api.get("/metrics").text)
    assert m["smartminer_xmrig_up"] == 0.0
    assert not any(k.startswith(("smartminer_hashrate", "smartminer_cpu_temp")) for k in m)


# --- sensors -------------------------------------------------------------------------------------
def test_sensor_overrides_reach_the_api(api):
    config.override(HWMON_PATH=hwmon("intel"), CPU_TEMP_SENSOR="coretemp:Core 1", VRM_TEMP_SENSOR="nct6798:CPUTIN")
    api.server.host_facts.wait_fresh("host", WAIT)
    api.settle()
    assert api.get("/1/summary").json()["sensors"] == {"cpu_temp": 73.0, "vrm_temp": 45.0}


# --- life cycle ----------------------------------------------------------------------------------
def fetcher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("api-")]


def test_shutdown_stops_the_fetchers_too(standin):
    before = set(fetcher_threads())
    a = Api()
    a.get("/1/summary")
    a.get("/status")
    mine = set(fetcher_threads()) - before
    assert len(mine) == 3
    a.close()
    assert not [t for t in mine if t.is_alive()]


def test_make_server_defaults_come_from_settings(standin):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    config.override(API_HOST="127.0.0.1", API_PORT=free)
    server = api_wrapper.make_server()
    try:
        assert server.server_address == ("127.0.0.1", free)
    finally:
        server.server_close()


def test_run_server_serves_until_shutdown(standin):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    config.override(API_HOST="127.0.0.1", API_PORT=free)
    runner = threading.Thread(target=api_wrapper.run_server, daemon=True)
    runner.start()
    try:
        for _ in range(50):  # the port opens once run_server has bound it
            try:
                resp = requests.get(f"http://127.0.0.1:{free}/healthz", timeout=2)
                break
            except requests.ConnectionError:
                threading.Event().wait(0.1)
        assert resp.status_code == 503  # no profit loop in this test
    finally:
        config.state.shutdown.set()
        runner.join(timeout=5)
    assert not runner.is_alive()


def test_idle_server_uses_no_cpu(standin):
    """With nobody asking, the fetchers sleep on a condition: their threads accumulate no CPU time."""
    a = Api()
    try:
        a.get("/1/summary")
        a.settle()
        threading.Event().wait(0.3)  # let the fetchers go back to sleep
        proc = psutil.Process()
        ids = {t.native_id for t in fetcher_threads()}
        before = {t.id: t.user_time + t.system_time for t in proc.threads() if t.id in ids}
        threading.Event().wait(1.5)
        after = {t.id: t.user_time + t.system_time for t in proc.threads() if t.id in ids}
        assert before and after == before
    finally:
        a.close()


# --- dashboard and /history ------------------------------------------------------------------------
@pytest.mark.parametrize("path", dashboard.PATHS)
def test_every_dashboard_file_is_served_as_the_dashboard_module_routes_it(api, path):
    status, body, ctype = dashboard.route(path)
    r = api.get(path + "?v=1")  # a query string does not change the file
    assert (r.status_code, r.headers["Content-Type"], r.content) == (status, ctype, body)
    assert status == 200 and body


def test_history_without_a_store_is_a_json_503(api):
    r = api.get("/history?hours=24")
    assert r.status_code == 503 and r.headers["Content-Type"] == "application/json"
    assert r.json() == {"error": "history is off"}


@pytest.fixture
def store(tmp_path):
    s = history.HistoryStore(str(tmp_path / "json" / "smartminer.db"), days=7)
    s.start()
    yield s
    s.close()


def test_history_answers_from_the_store_with_the_hours_asked(standin, store):
    now = time.time()
    store.record_switch(None, make_coin("monero", 0.42, name="Monero", symbol="XMR"), "start", when=now - 7200)
    store.record_switch("monero", make_coin("dagger", 0.50, name="Dagger", symbol="XDAG"), "better", 19.0, when=now - 60)
    assert store.flush()
    a = Api(history_store=store)
    try:
        for query in ("hours=1", "hours=3"):
            r = a.get(f"/history?{query}")
            status, body = history.answer(store, query)
            assert (r.status_code, r.headers["Content-Type"]) == (200, "application/json")
            assert r.json() == json.loads(body) and status == 200
        recent, both = a.get("/history?hours=1").json(), a.get("/history?hours=3").json()
        assert [row["to"] for row in recent["switches"]] == ["dagger"] and recent["hours"] == 1
        assert [row["to"] for row in both["switches"]] == ["monero", "dagger"]
    finally:
        a.close()


@pytest.mark.parametrize("query", ["hours=abc", "hours=-1", "hours=0", "hours=1&hours=2", "hours=nan"])
def test_history_with_a_bad_hours_is_a_400_with_the_reason(standin, store, query):
    a = Api(history_store=store)
    try:
        r = a.get(f"/history?{query}")
        assert r.status_code == 400 and r.headers["Content-Type"] == "application/json"
        body = r.json()
        assert body["error"] == "bad hours" and body["reason"] == json.loads(history.answer(store, query)[1])["reason"]
        assert "hours" in body["reason"]
    finally:
        a.close()


def test_history_and_dashboard_take_only_get_and_head(api):
    assert requests.post(api.base + "/history", timeout=5).status_code == 405
    assert requests.delete(api.base + "/", timeout=5).status_code == 405
    assert api.get("/dashboard.js/../config.py").status_code == 404
