"""The Docker engine: one client, created on first use and dropped after a connection fault, and
the outage it may be in.

Creating the client (with its ping, up to DOCKER_TIMEOUT) holds no lock anyone else waits on: two
threads that both find no client may both connect, and the second one's client is closed. The
controller's own lock covers engine *changes* only.

An outage is said once when it starts (log only: an engine restart is not worth a message), told
to the owner once it has lasted ENGINE_DOWN_NOTIFY_SECONDS, and said once when it ends, all through
`utils.incidents`.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable, TypeVar

import docker
import requests

import config
import utils

DOCKER_TIMEOUT = 15  # seconds for one engine call (a stop adds STOP_TIMEOUT on top)
ENGINE_DOWN_NOTIFY_SECONDS = 600.0  # an outage this long is worth a message to the owner
UNREACHABLE = "docker-unreachable"  # incident: the outage, log only
DOWN_LONG = "docker-down"  # incident: the outage, told to the owner

# What a failed engine call raises: the SDK's own errors, requests' connection errors, socket errors.
ENGINE_ERRORS: tuple[type[BaseException], ...] = (docker.errors.DockerException, requests.exceptions.RequestException, OSError)
_FAULTS = ("No such file or directory", "Connection refused", "Permission denied", "timed out", "Read timed out")

T = TypeVar("T")


class EngineDown(Exception):
    """The Docker engine cannot be reached (socket missing, refused, timed out)."""


def engine_fault(exc: BaseException, host: str = "") -> str:
    """A short reason for a failed connection, instead of the SDK's nested exception text."""
    text = str(exc)
    where = host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    cause = next((f for f in _FAULTS if f in text), None)
    return f"{where}: {cause}" if cause else f"{where}: {type(exc).__name__}: {text[:160]}"


def is_connection_fault(exc: BaseException) -> bool:
    """A connection fault, as opposed to the engine answering with an error (APIError)."""
    return not isinstance(exc, docker.errors.APIError)


class Engine:
    """The Docker client for the configured engine (DOCKER_HOST setting, else the SDK's environment)."""

    def __init__(self, settings: Callable[[], config.Settings] = config.settings) -> None:
        self._settings = settings
        self._client: Any = None
        self._swap = threading.Lock()  # held only to read or replace the reference, never across I/O

    def client(self) -> Any:
        """The client, connected (and pinged) on first use. EngineDown when the engine does not answer."""
        with self._swap:
            current = self._client
        if current is not None:
            return current
        fresh = self._connect()
        with self._swap:
            if self._client is None:
                self._client = fresh
                return fresh
            current = self._client
        fresh.close()  # another thread connected meanwhile: keep one client
        return current

    def _connect(self) -> Any:
        s = self._settings()
        client = None
        try:
            if s.DOCKER_HOST:
                client = docker.DockerClient(base_url=s.DOCKER_HOST, timeout=DOCKER_TIMEOUT)
            else:
                client = docker.from_env(timeout=DOCKER_TIMEOUT)
            client.ping()
        except ENGINE_ERRORS as exc:
            if client is not None:
                client.close()
            raise EngineDown(engine_fault(exc, s.DOCKER_HOST)) from None
        return client

    def reset(self) -> None:
        """Drop the client (after a connection fault, or when DOCKER_HOST changes)."""
        with self._swap:
            old, self._client = self._client, None
        if old is not None:
            try:
                old.close()
            except ENGINE_ERRORS as exc:  # closing a broken client must not hide the fault being handled
                utils.log(f"[DEBUG] Closing the Docker client: {type(exc).__name__}: {exc}")

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one engine call; a connection fault drops the client and becomes EngineDown.
        An answer from the engine (APIError, NotFound...) is raised as it is."""
        try:
            return fn(*args, **kwargs)
        except EngineDown:
            raise
        except ENGINE_ERRORS as exc:
            if is_connection_fault(exc):
                self.reset()
                raise EngineDown(f"{what}: {type(exc).__name__}: {exc}") from None
            raise

    def ping(self) -> None:
        """EngineDown unless the engine answers a ping now."""
        self.call("ping", self.client().ping)


class Outage:
    """The engine's outage in progress, if any (several threads report and end it)."""

    def __init__(self, notify_after: float = ENGINE_DOWN_NOTIFY_SECONDS) -> None:
        self.notify_after = notify_after
        self._since: float | None = None  # time.monotonic() when the engine was first found down
        self._lock = threading.Lock()

    @property
    def since(self) -> float | None:
        with self._lock:
            return self._since

    def down(self, exc: BaseException) -> None:
        """The engine did not answer: said once per outage; the owner is told once it lasts."""
        now = time.monotonic()
        with self._lock:
            if self._since is None:
                self._since = now
            down_for = now - self._since
        text = f"Docker engine unreachable ({exc}): mount /var/run/docker.sock or set DOCKER_HOST; will retry next cycle"
        if not utils.incidents.raise_(UNREACHABLE, text, notify=False):
            utils.log(f"[DEBUG] {text}")
        if down_for >= self.notify_after:
            utils.incidents.raise_(DOWN_LONG, f"Docker engine unreachable for {down_for / 60:.0f} min ({exc}); "
                                   "the worker cannot be watched or switched")

    def up(self) -> None:
        """The engine answered: end the outage in progress (one line, and one message if the owner
        was told). Called after every successful engine path, so whichever caller reaches the
        engine first notices the recovery."""
        with self._lock:
            since, self._since = self._since, None
        after = f" (after {time.monotonic() - since:.0f}s)" if since is not None else ""
        utils.incidents.clear(UNREACHABLE, f"Docker engine reachable again{after}", notify=False)
        utils.incidents.clear(DOWN_LONG, "Docker engine reachable again")

    def reset(self) -> None:
        """Forget an outage in progress without a word (tests, `miner start`)."""
        with self._lock:
            self._since = None

    def guard(self, what: str, body: Callable[[], T], down: T, error: T) -> T:
        """Run `body` against the engine. An outage is reported (`down`) and answers `down`; any
        other fault is one error line with its type and message and answers `error`; success ends
        an outage. Never raises."""
        try:
            result = body()
        except EngineDown as exc:
            self.down(exc)
            return down
        except Exception as exc:  # the loop, the commands and the API must go on; the line says what broke
            utils.log(f"[ERROR] {what} failed: {type(exc).__name__}: {exc}")
            return error
        self.up()
        return result
