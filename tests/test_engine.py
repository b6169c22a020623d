"""engine: the Docker client's life and the outage record, without dockerd.

An engine that is not there is a socket path where nothing listens. An engine that answers with an
error is a small HTTP server on loopback speaking the two calls the Docker SDK makes here (`/version`,
`/_ping`): what is tested is how the manager classifies the answers, through the real SDK.
"""
from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import docker
import pytest

import config
import engine
import utils
from miner_controller import Controller
from worker_backend import ContainerBackend


class _EngineAnswers(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        server: FakeEngine = self.server  # type: ignore[assignment]
        if self.path.endswith("/version"):
            self._send(200, b'{"ApiVersion": "1.41", "Version": "20.10.24"}', "application/json")
        elif self.path.endswith("/_ping"):
            server.pings += 1
            ok = server.pings <= server.healthy_pings
            self._send(200 if ok else 500, b"OK" if ok else b'{"message": "engine is shutting down"}',
                       "text/plain" if ok else "application/json")
        else:
            self._send(404, b'{"message": "page not found"}', "application/json")

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FakeEngine(ThreadingHTTPServer):
    """Answers the first `healthy_pings` pings with OK, every later one with HTTP 500."""

    daemon_threads = True

    def __init__(self, healthy_pings: int) -> None:
        super().__init__(("127.0.0.1", 0), _EngineAnswers)
        self.healthy_pings = healthy_pings
        self.pings = 0
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture
def notes(monkeypatch):
    sent: list[str] = []
    monkeypatch.setattr(utils, "incidents", utils.Incidents(notifier=sent.append))
    return sent


@pytest.fixture
def answering_with_errors():
    fake = FakeEngine(healthy_pings=1)  # the client's own first ping passes; the check's ping fails
    config.override(DOCKER_HOST=fake.url)
    yield fake
    fake.close()


def test_an_engine_answering_its_ping_with_an_error_is_not_reachable(answering_with_errors, caplog):
    controller = Controller(ContainerBackend(engine.Engine()))
    with caplog.at_level(logging.INFO, logger="smartminer"):
        assert controller.engine_reachable() is False
    assert answering_with_errors.pings == 2
    [line] = [r.getMessage() for r in caplog.records if "Docker ping" in r.getMessage()]
    assert line.startswith("Docker ping failed: APIError: 500 Server Error") and "engine is shutting down" in line


def test_a_missing_engine_is_engine_down_with_the_cause(tmp_path):
    config.override(DOCKER_HOST=f"unix://{tmp_path}/no.sock")
    with pytest.raises(engine.EngineDown) as err:
        engine.Engine().client()
    assert str(err.value) == f"unix://{tmp_path}/no.sock: No such file or directory"


def test_a_connection_fault_mid_call_drops_the_client(answering_with_errors):
    eng = engine.Engine()
    first = eng.client()
    assert eng.client() is first  # made once, kept
    answering_with_errors.close()  # the engine goes away
    with pytest.raises(engine.EngineDown) as err:
        eng.call("ping", first.ping)
    assert str(err.value).startswith("ping: ConnectionError")
    with pytest.raises(engine.EngineDown):
        eng.client()  # a new client is tried, and fails: the broken one was dropped


def test_an_error_answer_is_raised_as_it_is(answering_with_errors):
    eng = engine.Engine()
    client = eng.client()
    with pytest.raises(docker.errors.APIError):
        eng.call("ping", client.ping)
    assert eng.client() is client  # an answer, even an error, is no reason to reconnect


def test_engine_fault_names_the_address_and_the_cause():
    assert engine.engine_fault(OSError("[Errno 111] Connection refused"), "tcp://x:2375") == "tcp://x:2375: Connection refused"
    assert engine.engine_fault(ValueError("odd"), "unix:///s") == "unix:///s: ValueError: odd"


# --- the outage record ------------------------------------------------------------------------------
def test_an_outage_is_said_once_told_to_the_owner_when_it_lasts_and_ended_once(notes, caplog):
    outage = engine.Outage(notify_after=3600.0)
    with caplog.at_level(logging.DEBUG, logger="smartminer"):
        for _ in range(3):
            outage.down(engine.EngineDown("unix:///s: Connection refused"))
        assert not notes  # short: log only
        outage.notify_after = 0.0  # it has lasted
        outage.down(engine.EngineDown("unix:///s: Connection refused"))
        outage.down(engine.EngineDown("unix:///s: Connection refused"))
        outage.up()
        outage.up()
    said = [(r.levelname, r.getMessage()[:36]) for r in caplog.records if r.levelno >= logging.INFO]
    assert said == [("WARNING", "Docker engine unreachable (unix:///s"), ("INFO", "Docker engine reachable again (after")]
    assert len(notes) == 2 and notes[0].startswith("Docker engine unreachable for 0 min (unix:///s: Connection refused)")
    assert notes[1] == "Docker engine reachable again" and outage.since is None


def test_an_outage_that_comes_back_is_said_again(notes, caplog):
    outage = engine.Outage()
    with caplog.at_level(logging.INFO, logger="smartminer"):
        for _ in range(2):
            outage.down(engine.EngineDown("gone"))
            outage.up()
    assert [r.getMessage()[:30] for r in caplog.records] == ["Docker engine unreachable (gon", "Docker engine reachable again "] * 2
    assert not notes  # never long enough to tell the owner


def test_the_guard_reports_and_answers_without_raising(notes, caplog):
    outage = engine.Outage()

    def broken():
        raise KeyError("State")

    def down():
        raise engine.EngineDown("gone")

    with caplog.at_level(logging.INFO, logger="smartminer"):
        assert outage.guard("Inspecting", broken, down="d", error="e") == "e"
        assert outage.guard("Inspecting", down, down="d", error="e") == "d" and outage.since is not None
        assert outage.guard("Inspecting", lambda: "fine", down="d", error="e") == "fine" and outage.since is None
    assert "Inspecting failed: KeyError: 'State'" in [r.getMessage() for r in caplog.records]
