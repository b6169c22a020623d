"""A stratum pool stand-in for the real XMRig in tests, the demo and benchmarks.

Newline-delimited JSON-RPC over TCP on 127.0.0.1, XMRig's dialect: `login` gets a RandomX job
(rx/0, target "ffffff00": a share every few seconds at light-mode speed), `submit` is accepted,
`keepalived` is answered. It records every login (wallet, agent, time) and every accepted share per
wallet. It runs an asyncio loop in its own thread: `start()` binds (port 0: a free one, kept for
later starts), `stop()` closes every connection and the listener, which is what a dead pool looks
like to a miner, and `start()` brings it back on the same port.

    pool = StratumPool(name="monero").start()
    ... XMRig with -o pool.address -u WALLET ...
    pool.wait_for_share("WALLET", timeout=60)
    pool.stop()
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

HOST = "127.0.0.1"
TARGET = "ffffff00"  # little-endian 0x00ffffff: difficulty ~256
ALGO = "rx/0"
HEIGHT = 3_000_000


@dataclass(frozen=True)
class Login:
    wallet: str
    agent: str
    time: float
    session: str


@dataclass(frozen=True)
class Share:
    wallet: str
    job_id: str
    nonce: str
    time: float


def job_blob(name: str, height: int) -> str:
    """A 76-byte block hashing blob (152 hex) in Monero's layout: major/minor version, a varint
    timestamp, the previous block's hash, the 4-byte nonce at offset 39 (zero: XMRig fills it in),
    a merkle root and a transaction count."""
    digest = hashlib.sha256(f"{name}:{height}".encode()).digest()
    timestamp = bytes.fromhex("b1a2c3d406")  # a 5-byte varint
    blob = bytes((16, 16)) + timestamp + digest + bytes(4) + hashlib.sha256(digest).digest() + bytes((1,))
    return blob.hex()


def seed_hash(name: str) -> str:
    """The RandomX seed (64 hex): fixed per pool name."""
    return hashlib.sha256(f"seed:{name}".encode()).hexdigest()


def make_job(name: str, job_id: str = "1", height: int = HEIGHT, target: str = TARGET) -> dict[str, Any]:
    return {"blob": job_blob(name, height), "job_id": job_id, "target": target, "algo": ALGO,
            "height": height, "seed_hash": seed_hash(name)}


def reply(msg_id: Any, result: Any = None, error: dict | None = None) -> bytes:
    """One JSON-RPC answer line."""
    return (json.dumps({"id": msg_id, "jsonrpc": "2.0", "error": error, "result": result}) + "\n").encode()


def error(code: int, message: str) -> dict[str, Any]:
    return {"code": code, "message": message}


class StratumPool:
    """One pool on 127.0.0.1 (see the module doc). Thread-safe readers: `logins()`, `shares()`,
    `accepted()`, `wait_for_login()`, `wait_for_share()`."""

    def __init__(self, name: str = "pool", port: int = 0, host: str = HOST, target: str = TARGET) -> None:
        """`target`: the job's share target (8 hex, little-endian); a benchmark may lower the
        difficulty so the first share does not wait on luck."""
        self.name, self.host, self.port, self.target = name, host, port, target
        self._cond = threading.Condition()
        self._logins: list[Login] = []
        self._shares: list[Share] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._stopped: asyncio.Event | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None

    @property
    def address(self) -> str:
        """What XMRig's `-o` takes: "127.0.0.1:PORT"."""
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- life cycle ------------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> "StratumPool":
        """Listen (again, on the same port after a stop); return self. OSError when it cannot bind."""
        if self.running:
            return self
        self._started.clear()
        self._start_error = None
        self._thread = threading.Thread(target=self._run, name=f"pool-{self.name}", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError(f"pool {self.name} did not start within {timeout:g}s")
        if self._start_error is not None:
            self._thread.join(timeout)
            raise self._start_error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Close the listener and every connection, end the thread (a dead pool)."""
        if not self.running or self._loop is None or self._stopped is None:
            return
        self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(timeout)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stopped = asyncio.Event()
        try:
            self._server = await asyncio.start_server(self._handle, self.host, self.port, reuse_address=True)
        except OSError as exc:
            self._start_error = exc
            self._started.set()
            return
        self.port = self._server.sockets[0].getsockname()[1]
        self._started.set()
        await self._stopped.wait()
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- one connection --------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        session: dict[str, str] = {}
        try:
            while line := await reader.readline():
                if line.strip():
                    writer.write(self.answer(line, session))
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        except asyncio.CancelledError:
            # stop(): end quietly. Re-raised, asyncio's stream callback logs the cancellation as an error.
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def answer(self, line: bytes, session: dict[str, str]) -> bytes:
        """The answer to one request line; `session` holds this connection's id and wallet."""
        try:
            msg = json.loads(line)
            method, params, msg_id = msg.get("method"), msg.get("params") or {}, msg.get("id")
        except (ValueError, AttributeError):
            return reply(None, error=error(-32700, "Parse error"))
        if method == "login":
            return self._login(msg_id, params, session)
        if method == "submit":
            return self._submit(msg_id, params, session)
        if method == "keepalived":
            return reply(msg_id, {"status": "KEEPALIVED"})
        return reply(msg_id, error=error(-32601, f"Unsupported method {method!r}"))

    def _login(self, msg_id: Any, params: dict, session: dict[str, str]) -> bytes:
        wallet = params.get("login")
        if not isinstance(wallet, str) or not wallet:
            return reply(msg_id, error=error(-1, "Missing login"))
        session.update(id=uuid.uuid4().hex, wallet=wallet)
        with self._cond:
            self._logins.append(Login(wallet, str(params.get("agent") or ""), time.time(), session["id"]))
            self._cond.notify_all()
        result = {"id": session["id"], "job": make_job(self.name, target=self.target), "extensions": ["algo", "keepalive"],
                  "status": "OK"}
        return reply(msg_id, result)

    def _submit(self, msg_id: Any, params: dict, session: dict[str, str]) -> bytes:
        if not session or params.get("id") != session["id"]:
            return reply(msg_id, error=error(-1, "Unauthenticated"))
        share = Share(session["wallet"], str(params.get("job_id")), str(params.get("nonce")), time.time())
        with self._cond:
            self._shares.append(share)
            self._cond.notify_all()
        return reply(msg_id, {"status": "OK"})

    # --- what it saw -----------------------------------------------------------------------------
    def logins(self, wallet: str | None = None) -> list[Login]:
        with self._cond:
            return [x for x in self._logins if wallet is None or x.wallet == wallet]

    def shares(self, wallet: str | None = None) -> list[Share]:
        with self._cond:
            return [x for x in self._shares if wallet is None or x.wallet == wallet]

    def accepted(self, wallet: str) -> int:
        """How many shares this wallet got accepted."""
        return len(self.shares(wallet))

    def _wait(self, found, timeout: float):
        with self._cond:
            self._cond.wait_for(found, timeout)
            return found()

    def wait_for_login(self, wallet: str, timeout: float, since: float = 0.0) -> Login | None:
        """The first login of `wallet` at or after `since` (epoch seconds), waiting up to `timeout`."""
        return self._wait(lambda: next((x for x in self._logins if x.wallet == wallet and x.time >= since), None), timeout)

    def wait_for_share(self, wallet: str, timeout: float, since: float = 0.0) -> Share | None:
        """The first accepted share of `wallet` at or after `since`, waiting up to `timeout`."""
        return self._wait(lambda: next((x for x in self._shares if x.wallet == wallet and x.time >= since), None), timeout)
