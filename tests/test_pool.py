"""The stratum pool stand-in (demo/pool.py), spoken to with a plain socket: no XMRig needed."""
from __future__ import annotations

import json
import re
import socket

import pytest

from demo.pool import StratumPool

WALLET = "4WALLETabcdef0123456789"


class Client:
    """One stratum connection: send a request, read the answer line."""

    def __init__(self, pool: StratumPool) -> None:
        self.sock = socket.create_connection((pool.host, pool.port), timeout=5)
        self.file = self.sock.makefile("rb")
        self.next_id = 1

    def call(self, method: str, params: dict | None = None) -> dict:
        return self.raw(json.dumps({"id": self.next_id, "jsonrpc": "2.0", "method": method, "params": params or {}}))

    def raw(self, line: str) -> dict:
        self.next_id += 1
        self.sock.sendall(line.encode() + b"\n")
        answer = self.file.readline()
        assert answer.endswith(b"\n"), f"no answer line: {answer!r}"
        return json.loads(answer)

    def login(self, wallet: str = WALLET, agent: str = "XMRig/6.16.0 (Linux x86_64) libuv/1.42.0 gcc/5.4.0") -> dict:
        return self.call("login", {"login": wallet, "pass": "x", "agent": agent, "algo": ["rx/0"]})

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def pool():
    p = StratumPool(name="testcoin").start()
    yield p
    p.stop()


@pytest.fixture
def client(pool):
    c = Client(pool)
    yield c
    c.close()


def test_login_gets_a_randomx_job_and_is_recorded(pool, client):
    answer = client.login()
    assert answer["id"] == 1 and answer["error"] is None and answer["jsonrpc"] == "2.0"
    result = answer["result"]
    assert result["status"] == "OK" and result["id"]
    assert set(result["extensions"]) == {"algo", "keepalive"}
    job = result["job"]
    assert re.fullmatch(r"[0-9a-f]{152}", job["blob"])
    assert job["blob"][78:86] == "00000000"  # the nonce, at byte 39, for XMRig to fill in
    assert re.fullmatch(r"[0-9a-f]{64}", job["seed_hash"])
    assert (job["job_id"], job["target"], job["algo"]) == ("1", "ffffff00", "rx/0")
    assert isinstance(job["height"], int) and job["height"] > 0
    [login] = pool.logins()
    assert (login.wallet, login.session) == (WALLET, result["id"])
    assert login.agent.startswith("XMRig/6.16.0")
    assert pool.wait_for_login(WALLET, timeout=0) == login


def test_submit_is_accepted_and_counted_per_wallet(pool, client):
    session = client.login()["result"]["id"]
    for nonce in ("01000000", "02000000"):
        answer = client.call("submit", {"id": session, "job_id": "1", "nonce": nonce, "result": "ab" * 32})
        assert answer["error"] is None and answer["result"] == {"status": "OK"}
    other = Client(pool)
    try:
        other_session = other.login("4OTHERwallet")["result"]["id"]
        other.call("submit", {"id": other_session, "job_id": "1", "nonce": "03000000", "result": "cd" * 32})
    finally:
        other.close()
    assert pool.accepted(WALLET) == 2 and pool.accepted("4OTHERwallet") == 1
    assert [s.nonce for s in pool.shares(WALLET)] == ["01000000", "02000000"]
    assert pool.wait_for_share("4OTHERwallet", timeout=0).nonce == "03000000"
    assert pool.wait_for_share("4NOBODY", timeout=0) is None


def test_keepalived_is_answered(client):
    session = client.login()["result"]["id"]
    assert client.call("keepalived", {"id": session})["result"] == {"status": "KEEPALIVED"}


def test_bad_requests_get_errors_and_count_nothing(pool, client):
    assert client.call("submit", {"id": "nosuchsession", "job_id": "1", "nonce": "00"})["error"]["code"] == -1
    assert client.raw("this is not json")["error"]["code"] == -32700
    assert client.call("getjob")["error"]["code"] == -32601
    assert client.call("login", {"pass": "x"})["error"]["message"] == "Missing login"
    assert pool.shares() == [] and pool.logins() == []
    assert client.login()["result"]["status"] == "OK"  # the connection is still served


def test_stop_closes_connections_and_listener_then_restarts_on_the_same_port(pool, client):
    client.login()
    port = pool.port
    pool.stop()
    assert not pool.running
    assert client.file.readline() == b""  # the pool hung up
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((pool.host, port), timeout=5).close()
    pool.start()
    assert pool.port == port
    again = Client(pool)
    try:
        assert again.login()["result"]["status"] == "OK"
    finally:
        again.close()
    assert len(pool.logins(WALLET)) == 2  # what it saw survives a restart


def test_a_taken_port_is_an_error_at_start(pool):
    with pytest.raises(OSError):
        StratumPool(port=pool.port).start()
