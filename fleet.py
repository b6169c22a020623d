"""The worker as a Docker Swarm service (FLEET_MODE=swarm): one XMRig task on every mining node.

One manager analyses the market once and drives a `global` service named CONTAINER_NAME. Swarm does
the rest: one task per node that matches FLEET_CONSTRAINT, restarts (on-failure, with a delay),
rolling updates (FLEET_PARALLELISM at once, rolled back when the new tasks fail) and task states.
`SwarmBackend` is the `worker_backend.WorkerBackend` for it.

- The service carries the same argument list and labels as the single container (`worker_spec`),
  so a restarted manager reads the running coin back from the service's `mining_coin` label. Each
  task's container carries the coin label too: a task's own spec says which coin *it* runs.
- XMRig's config.json reaches the other nodes as a Swarm config. Configs cannot change, so each
  content gets its own config, named by its hash; the service is switched to it, and configs that
  neither the service's spec nor its previous spec (a rollback's target) mounts are removed.
- A service of that name without the managed label belongs to someone else: every call refuses it
  (`ForeignWorker`), nothing is changed.
- The manager must run on a Swarm manager node: `check_manager` says why not, in one line.

Engine calls go through `engine.Engine.call` (a connection fault is `EngineDown`). Nothing runs at import.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

import docker
from docker.types import ConfigReference, RestartPolicy, RollbackConfig, ServiceMode, UpdateConfig

import config
import utils
from coin import Coin
from engine import Engine
from fleet_health import (DEFAULT_HISTORY_LIMIT, FLEET_INCIDENT, NODE_INCIDENT, FleetHealth, fleet_health, hostname,
                          node_incidents, parse_constraints, status_dict)
from worker_backend import ForeignWorker, StartFailed, Worker
from worker_spec import (COIN_LABEL, CONTAINER_CONFIG_PATH, INCOME_LABEL, MANAGED_LABEL, SYMBOL_LABEL, is_managed,
                         worker_command, worker_labels)

CONFIG_OF_LABEL = "smartminer.config_of"  # on our Swarm configs: the service they were made for
NS = 1_000_000_000  # the engine counts durations in nanoseconds


def check_manager(client: Any) -> str | None:
    """Why this engine cannot run the fleet (one line), or None when it is a Swarm manager node."""
    swarm = client.info().get("Swarm") or {}
    state = swarm.get("LocalNodeState") or "inactive"
    if state == "inactive":
        return ("FLEET_MODE=swarm but this Docker engine is not in a swarm: run `docker swarm init` here "
                "(or run the manager on a Swarm manager node), or set FLEET_MODE=off")
    if state == "locked":
        return "FLEET_MODE=swarm but this node's swarm is locked: run `docker swarm unlock` first"
    if state != "active":
        error = swarm.get("Error") or "no detail"
        return f"FLEET_MODE=swarm but this node's swarm state is {state!r} ({error}): fix the swarm membership first"
    if not swarm.get("ControlAvailable"):
        return ("FLEET_MODE=swarm but this Docker engine is a Swarm worker node: run the manager on a manager "
                "node (`docker node ls` on a manager lists them; docker-stack.yml places it there)")
    return None


@dataclass(frozen=True)
class Timings:
    """Swarm's pacing. Production keeps the defaults; tests and benchmarks shorten them."""

    restart_delay_s: float = 10.0  # a failed task is started again after this long
    update_delay_s: float = 0.0  # between batches of FLEET_PARALLELISM tasks
    monitor_s: float = 30.0  # a new task failing this soon after a switch rolls the switch back


def find_service(client: Any, name: str) -> Any | None:
    """The managed service named `name`, None when there is none; ForeignWorker for another's."""
    found = [s for s in client.services.list(filters={"name": name}) if s.name == name]  # the filter is a prefix
    if not found:
        return None
    if not is_managed(found[0].attrs.get("Spec", {}).get("Labels")):
        raise ForeignWorker(f"A Swarm service named {name} exists but SmartMiner did not create it (no {MANAGED_LABEL} "
                            f"label): it is left alone; remove it (docker service rm {name}) or set another CONTAINER_NAME")
    return found[0]


def config_name(service_name: str, data: bytes) -> str:
    """A Swarm config's name for this content: the service's name and the content's hash."""
    return f"{service_name[:40]}-config-{hashlib.sha256(data).hexdigest()[:16]}"


def ensure_config(client: Any, service_name: str, data: bytes) -> ConfigReference:
    """The Swarm config holding `data` (made once per content), mounted where `--config` points."""
    name = config_name(service_name, data)
    existing = [c for c in client.configs.list(filters={"name": name}) if c.name == name]
    made = existing[0] if existing else client.configs.create(
        name=name, data=data, labels={MANAGED_LABEL: "true", CONFIG_OF_LABEL: service_name})
    return ConfigReference(made.id, name, filename=CONTAINER_CONFIG_PATH, mode=0o444)


def remove_unused_configs(client: Any, service_name: str, service: Any | None) -> list[str]:
    """Remove our configs that neither the service's spec nor its previous spec mounts; their names."""
    keep = set()
    for spec in ((service.attrs.get("Spec"), service.attrs.get("PreviousSpec")) if service is not None else ()):
        refs = (((spec or {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Configs") or []
        keep |= {ref.get("ConfigName") for ref in refs}
    removed = []
    for cfg in client.configs.list(filters={"label": f"{CONFIG_OF_LABEL}={service_name}"}):
        if cfg.name in keep:
            continue
        try:
            cfg.remove()
            removed.append(cfg.name)
        except docker.errors.APIError as exc:  # in use by a task on its way out: the next change removes it
            utils.log(f"[DEBUG] Swarm config {cfg.name} not removed yet: {exc}")
    return removed


def read_xmrig_config(path: str) -> bytes | None:
    """XMRig's config.json as bytes, None when there is none (the worker then runs without one).
    StartFailed when it exists but cannot be read."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise StartFailed(f"could not read {path} for the fleet's Swarm config: {exc}") from None


def service_kwargs(coin: Coin, s: config.Settings, timings: Timings, config_ref: ConfigReference | None) -> dict:
    """Everything `services.create` (and `update`) gets for `coin`. ValueError when its values are unsafe."""
    labels = worker_labels(coin)
    monitor = int(timings.monitor_s * NS)
    return {
        "image": s.IMAGE_NAME,
        "name": s.CONTAINER_NAME,
        "args": worker_command(coin, s, config_ref is not None),
        "labels": labels,
        "container_labels": {k: v for k, v in labels.items() if k != MANAGED_LABEL},
        "mode": ServiceMode("global"),
        "constraints": [str(c) for c in parse_constraints(s.FLEET_CONSTRAINT)],
        "networks": ["host"],
        "configs": [config_ref] if config_ref is not None else [],
        "stop_grace_period": s.STOP_TIMEOUT * NS,
        "restart_policy": RestartPolicy(condition="on-failure", delay=int(timings.restart_delay_s * NS)),
        "update_config": UpdateConfig(parallelism=s.FLEET_PARALLELISM, delay=int(timings.update_delay_s * NS),
                                      failure_action="rollback", monitor=monitor, order="stop-first"),
        "rollback_config": RollbackConfig(parallelism=s.FLEET_PARALLELISM, monitor=monitor, failure_action="pause",
                                          order="stop-first"),
    }


def read_health(client: Any, s: config.Settings, service: Any | None, now: float | None = None) -> FleetHealth:
    """The fleet's facts as the engine reports them now (see `fleet_health.fleet_health`)."""
    if service is None:
        return fleet_health(None, [], [], s.FLEET_CONSTRAINT, s.WATCHDOG_MAX_FAILURES, 0.0)
    client.swarm.reload()
    limit = ((client.swarm.attrs.get("Spec") or {}).get("Orchestration") or {}).get("TaskHistoryRetentionLimit")
    nodes = [n.attrs for n in client.nodes.list()]
    return fleet_health(service.attrs, service.tasks(), nodes, s.FLEET_CONSTRAINT, s.WATCHDOG_MAX_FAILURES,
                        time.time() if now is None else now, history_limit=limit or DEFAULT_HISTORY_LIMIT)


def fleet_status(client: Any, s: config.Settings | None = None) -> dict:
    """`/status`'s "fleet" field: {"mode": "swarm", "tasks": [{"node", "state", "coin"}], ...}."""
    s = s or config.settings()
    return status_dict(read_health(client, s, find_service(client, s.CONTAINER_NAME)))


def worker_state(health: FleetHealth) -> str:
    """The service as one worker's state: "restarting" when every node keeps failing (the coin is
    at fault: the watchdog fails over), else "running" (a node-only fault is a node incident)."""
    return "restarting" if health.all_failing else "running"


def spec_ident(service: Any) -> str:
    """The service's id and a digest of its task spec: a switch or a forced restart gives a new one."""
    template = json.dumps(service.attrs["Spec"].get("TaskTemplate") or {}, sort_keys=True)
    return f"{service.id[:12]}-{hashlib.sha256(template.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class _Handle:
    service: Any
    health: FleetHealth


class SwarmBackend:
    """`WorkerBackend` for FLEET_MODE=swarm: the worker is a global Swarm service."""

    kind = "service"  # what the controller's messages call the worker

    def __init__(self, engine: Engine, settings: Callable[[], config.Settings] = config.settings,
                 timings: Timings = Timings()) -> None:
        self.engine = engine
        self._settings = settings
        self.timings = timings

    def _service(self) -> Any | None:
        return self.engine.call("find worker service", find_service, self.engine.client(), self._settings().CONTAINER_NAME)

    def health(self, service: Any | None = None, now: float | None = None) -> FleetHealth:
        """The fleet's facts now (for the watchdog's node incidents and `/status`)."""
        service = self._service() if service is None else service
        return self.engine.call("read fleet", read_health, self.engine.client(), self._settings(), service, now)

    def find(self) -> Worker | None:
        service = self._service()
        if service is None:
            return None
        health = self.health(service)
        spec = service.attrs["Spec"]
        labels = spec.get("Labels") or {}
        return Worker(name=service.name, ident=spec_ident(service), state=worker_state(health),
                      coin_key=labels.get(COIN_LABEL), started_at=health.since,
                      restarts=max((f.failures for f in health.failing), default=0) if health.all_failing else 0,
                      exit_code=None, image=spec["TaskTemplate"]["ContainerSpec"].get("Image"), labels=dict(labels),
                      handle=_Handle(service, health))

    def image_ready(self) -> bool:
        """Always True: each node holds (or pulls) its own image; a node without it has its tasks
        rejected, which the node facts report by name."""
        return True

    def start(self, coin: Coin) -> Worker:
        self._apply(coin, self._service())
        return self._found()

    def replace(self, current: Worker, coin: Coin) -> Worker:
        """A service update: Swarm rolls the new arguments out (stop-first, FLEET_PARALLELISM at a time)."""
        self._apply(coin, self._service())
        return self._found()

    def stop(self, worker: Worker) -> None:
        """The watchdog gave up on the coin: remove the service; the next analysis starts another coin."""
        self.remove(worker)

    def restart(self, worker: Worker) -> Worker:
        """Force a new task on every node (`docker service update --force`)."""
        service = worker.handle.service
        self.engine.call("inspect worker service", service.reload)
        self.engine.call("restart worker service", service.update, force_update=True)
        return self._found()

    def remove(self, worker: Worker) -> None:
        """Remove the service (`miner stop`) and the configs only it used."""
        client, name = self.engine.client(), self._settings().CONTAINER_NAME
        try:
            self.engine.call("remove worker service", worker.handle.service.remove)
        except docker.errors.NotFound:
            pass  # already gone
        self.engine.call("remove fleet configs", remove_unused_configs, client, name, None)

    def log_tail(self, worker: Worker, lines: int) -> list[str]:
        """The service's last output lines, each led by its node's hostname, then each failing node's
        task error (so the watchdog's fault line names the node)."""
        client = self.engine.client()
        names = {n.id: hostname(n.attrs) for n in self.engine.call("list nodes", client.nodes.list)}
        raw = self.engine.call("worker service logs", client.api.service_logs, worker.handle.service.id,
                               stdout=True, stderr=True, details=True, tail=lines)
        out = [_node_line(line, names) for line in raw]
        return out[-lines:] + [f"{f.node}: {f.error}" for f in worker.handle.health.failing if f.error]

    def status(self, worker: Worker) -> dict:
        health = worker.handle.health
        return {
            "name": worker.name, "state": worker.state, "coin": worker.coin_key,
            "symbol": worker.labels.get(SYMBOL_LABEL), "income_usd_at_start": worker.labels.get(INCOME_LABEL),
            "started_at": worker.started_at, "restart_count": worker.restarts, "exit_code": None,
            "image": worker.image, "fleet": status_dict(health),
        }

    def report_nodes(self, health: FleetHealth | None = None) -> FleetHealth:
        """Raise the fleet incidents `health` (default: read now) calls for, each naming its node,
        and clear the ones that are over. Returns the health it judged."""
        health = self.health() if health is None else health
        wanted = node_incidents(health)
        for key, text in wanted.items():
            utils.incidents.raise_(key, text)
        if health.service and health.updating:
            return health  # a rollout in progress says nothing either way
        for key in utils.incidents.open_keys():
            if key.startswith(FLEET_INCIDENT) and key not in wanted:
                what = f"node {key[len(NODE_INCIDENT):]}" if key.startswith(NODE_INCIDENT) else key[len(FLEET_INCIDENT):]
                utils.incidents.clear(key, f"Fleet: {what} is fine again")
        return health

    def _found(self) -> Worker:
        worker = self.find()
        if worker is None:
            raise StartFailed("the worker service vanished right after it was created")
        return worker

    def _apply(self, coin: Coin, service: Any | None) -> None:
        """Create the service for `coin`, or update the existing one to it. StartFailed when the
        engine refuses (the service, if any, is left as it was)."""
        client, s = self.engine.client(), self._settings()
        try:
            data = read_xmrig_config(s.PATH_XMRIG_CONFIG)
            ref = self.engine.call("fleet config", ensure_config, client, s.CONTAINER_NAME, data) if data is not None else None
            kwargs = service_kwargs(coin, s, self.timings, ref)
            if service is None:
                service = self.engine.call("create worker service", client.services.create, **kwargs)
            else:
                kwargs.pop("name")
                self.engine.call("inspect worker service", service.reload)
                self.engine.call("update worker service", service.update, **kwargs)
            self.engine.call("inspect worker service", service.reload)
        except docker.errors.APIError as exc:
            self.engine.call("remove fleet configs", remove_unused_configs, client, s.CONTAINER_NAME, service)
            raise StartFailed(exc.explanation or str(exc)) from None
        self.engine.call("remove fleet configs", remove_unused_configs, client, s.CONTAINER_NAME, service)

def _node_line(raw: bytes, names: dict[str, str]) -> str:
    """"com.docker.swarm.node.id=ID,... message" (a service log line with details) -> "host: message"."""
    text = raw.decode("utf-8", errors="replace").rstrip("\n")
    details, _, message = text.partition(" ")
    attrs = dict(part.split("=", 1) for part in details.split(",") if "=" in part)
    node = attrs.get("com.docker.swarm.node.id")
    return f"{names.get(node, node[:12])}: {message}" if node else text
