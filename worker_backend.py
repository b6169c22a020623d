"""Where the worker runs. The controller and the watchdog see it only through `WorkerBackend`.

`ContainerBackend` keeps one XMRig container, `CONTAINER_NAME`, on this Docker engine (FLEET_MODE
"off"). A Swarm service for a fleet implements the same protocol. Either way the worker carries
the labels of `worker_spec`: its coin is read back from `mining_coin`, and a worker of that name
without the `smartminer.managed` label was made by someone else and is never touched.

Engine outages surface as `engine.EngineDown`; the engine's refusals as the errors below.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Mapping, Protocol

import docker

import config
import utils
from coin import Coin
from engine import Engine
from worker_spec import COIN_LABEL, INCOME_LABEL, MANAGED_LABEL, SYMBOL_LABEL, is_managed, run_kwargs


class ImageMissing(Exception):
    """The worker image is not on the engine."""

    def __init__(self, image: str) -> None:
        super().__init__(f"worker image {image} not found")
        self.image = image


class StartFailed(Exception):
    """The engine refused to create or start the worker; the message is the engine's explanation."""


class ForeignWorker(Exception):
    """A worker of the managed name exists but SmartMiner did not make it: it is left alone."""


@dataclass(frozen=True)
class Worker:
    """The managed worker as the backend last saw it."""

    name: str
    ident: str  # container id (service id for a service): a replaced worker has a new one
    state: str  # "running", "exited", "restarting", "created", "dead", "paused"...
    coin_key: str | None  # the `mining_coin` label
    started_at: float | None  # epoch seconds
    restarts: int  # restarts done by the engine itself (restart policy)
    exit_code: int | None
    image: str | None
    labels: Mapping[str, str] = field(default_factory=dict, compare=False)
    handle: Any = field(default=None, compare=False, repr=False)  # the backend's own object

    @property
    def running(self) -> bool:
        return self.state == "running"


class WorkerBackend(Protocol):
    """The worker's operations. Engine faults raise `EngineDown`, never anything the caller must know
    the Docker SDK for."""

    engine: Engine

    def find(self) -> Worker | None:
        """The managed worker in any state, or None. ForeignWorker for a same-named one without the label."""

    def image_ready(self) -> bool:
        """Whether the worker image is there (checked before an old worker is removed)."""

    def start(self, coin: Coin) -> Worker:
        """Start a worker for `coin` (none exists). ImageMissing / StartFailed leave nothing behind."""

    def replace(self, current: Worker, coin: Coin) -> Worker:
        """Make `current` mine `coin` instead. Errors as `start`; the old worker may be gone by then."""

    def stop(self, worker: Worker) -> None:
        """Stop it, and keep it stopped (the watchdog gave up on it)."""

    def restart(self, worker: Worker) -> Worker:
        """Restart it as it is (the watchdog's remedy)."""

    def remove(self, worker: Worker) -> None:
        """Stop and remove it (`miner stop`)."""

    def log_tail(self, worker: Worker, lines: int) -> list[str]:
        """The last `lines` lines of its output (XMRig's own error line when it exits)."""

    def status(self, worker: Worker) -> dict:
        """The worker for `/status` and `status`."""


def started_at(raw: str | None) -> float | None:
    """An engine timestamp (RFC 3339 with nanoseconds) as epoch seconds; None for "never"."""
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", raw or "")
    if not match or raw.startswith("0001"):
        return None
    frac = float("0" + (match.group(2) or ".0")[:7])
    tz = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.fromisoformat(match.group(1) + tz).timestamp() + frac


def container_worker(container: Any) -> Worker:
    """A container as a Worker record (from its inspect data)."""
    attrs = container.attrs
    state = attrs.get("State") or {}
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    return Worker(
        name=container.name, ident=container.id, state=state.get("Status") or container.status,
        coin_key=labels.get(COIN_LABEL), started_at=started_at(state.get("StartedAt")),
        restarts=int(attrs.get("RestartCount") or 0), exit_code=state.get("ExitCode"),
        image=(attrs.get("Config") or {}).get("Image"), labels=dict(labels), handle=container,
    )


class ContainerBackend:
    """The worker as one container on this engine."""

    def __init__(self, engine: Engine, settings: Callable[[], config.Settings] = config.settings) -> None:
        self.engine = engine
        self._settings = settings

    def find(self) -> Worker | None:
        name = self._settings().CONTAINER_NAME
        try:
            container = self.engine.call("find worker", self.engine.client().containers.get, name)
        except docker.errors.NotFound:
            return None
        labels = (container.attrs.get("Config") or {}).get("Labels") or {}
        if not is_managed(labels):
            raise ForeignWorker(f"A container named {name} exists but SmartMiner did not start it (no {MANAGED_LABEL} "
                                f"label): it is left alone; remove it (docker rm -f {name}) or set another CONTAINER_NAME")
        return container_worker(container)

    def image_ready(self) -> bool:
        try:
            self.engine.call("inspect image", self.engine.client().images.get, self._settings().IMAGE_NAME)
        except docker.errors.ImageNotFound:
            return False
        return True

    def start(self, coin: Coin) -> Worker:
        s = self._settings()
        kwargs = run_kwargs(coin, s)
        try:
            container = self.engine.call("create worker", self.engine.client().containers.create, **kwargs)
        except docker.errors.ImageNotFound:
            raise ImageMissing(s.IMAGE_NAME) from None
        except docker.errors.APIError as exc:
            raise StartFailed(exc.explanation or str(exc)) from None
        try:
            self.engine.call("start worker", container.start)
        except docker.errors.APIError as exc:
            self._discard(container)
            raise StartFailed(exc.explanation or str(exc)) from None
        except BaseException:
            self._discard(container)
            raise
        self.engine.call("inspect worker", container.reload)
        return container_worker(container)

    def _discard(self, container: Any) -> None:
        """Remove a container whose start failed: a failed start leaves nothing behind."""
        try:
            container.remove(force=True)
        except Exception as exc:  # the start's own fault is the one to report
            utils.log(f"[WARN] Could not remove the half-created worker: {type(exc).__name__}: {exc}")

    def replace(self, current: Worker, coin: Coin) -> Worker:
        utils.log(f"[INFO] Removing worker {current.name} ({current.coin_key or 'no coin'}, {current.state})")
        self.remove(current)
        return self.start(coin)

    def stop(self, worker: Worker) -> None:
        self.engine.call("stop worker", worker.handle.stop, timeout=self._settings().STOP_TIMEOUT)

    def restart(self, worker: Worker) -> Worker:
        self.engine.call("restart worker", worker.handle.restart, timeout=self._settings().STOP_TIMEOUT)
        self.engine.call("inspect worker", worker.handle.reload)
        return container_worker(worker.handle)

    def remove(self, worker: Worker) -> None:
        """Stop (XMRig exits on SIGTERM; SIGKILL after STOP_TIMEOUT) and remove the container."""
        try:
            self.stop(worker)
            self.engine.call("remove worker", worker.handle.remove, force=True)
        except docker.errors.NotFound:
            pass  # already gone

    def log_tail(self, worker: Worker, lines: int) -> list[str]:
        try:
            raw = self.engine.call("worker log", worker.handle.logs, stdout=True, stderr=True, tail=lines)
        except docker.errors.NotFound:
            return []  # removed meanwhile (a switch): nothing to tell
        return raw.decode("utf-8", errors="replace").splitlines()

    def status(self, worker: Worker) -> dict:
        return {
            "name": worker.name,
            "state": worker.state,
            "coin": worker.coin_key,
            "symbol": worker.labels.get(SYMBOL_LABEL),
            "income_usd_at_start": worker.labels.get(INCOME_LABEL),
            "started_at": worker.started_at,
            "restart_count": worker.restarts,
            "exit_code": worker.exit_code,
            "image": worker.image,
        }
