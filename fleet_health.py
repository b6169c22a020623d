"""What a fleet's tasks say, as facts (pure): placement constraints, task states -> FleetHealth.

`fleet_health` takes the lists the engine gives (a service's inspect data, its tasks, the nodes)
and says, per node, what its newest task is doing, which nodes keep failing for the service's coin,
and which nodes match FLEET_CONSTRAINT but run no worker. `fleet.py` reads the lists; the watchdog,
`/status` and the incidents use the facts. Nothing here talks to the engine.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from worker_backend import started_at as epoch
from worker_spec import COIN_LABEL

FAILED_STATES = frozenset({"failed", "rejected"})
# A task on its way up: not a node without a worker (yet).
PENDING_STATES = frozenset({"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting"})
UPDATING_STATES = frozenset({"updating", "rollback_started"})
FAILURE_WINDOW_SECONDS = 6 * 3600.0  # older failed tasks are forgiven (as the container watchdog does)
DEFAULT_HISTORY_LIMIT = 5  # Swarm keeps this many old tasks per node (`docker swarm update --task-history-limit`)
FLEET_INCIDENT = "fleet-"  # every fleet incident's key starts so
NODE_INCIDENT = "fleet-node:"  # + hostname: a node that fails or runs no worker
INCOME_NOTE = "income and hashrate are one rig's figures; every node mines the same coin"

# --- placement constraints -----------------------------------------------------------------------
_CONSTRAINT = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(==|!=)\s*(\S(?:.*\S)?)\s*$")
_NODE_KEYS = ("node.id", "node.hostname", "node.role", "node.platform.os", "node.platform.arch")
_LABEL_PREFIXES = ("node.labels.", "engine.labels.")


@dataclass(frozen=True)
class Constraint:
    key: str  # "node.labels.smartminer", "node.role", ...
    equal: bool  # == (True) or != (False)
    value: str

    def __str__(self) -> str:
        return f"{self.key}{'==' if self.equal else '!='}{self.value}"


def parse_constraints(text: str) -> list[Constraint]:
    """FLEET_CONSTRAINT as Swarm reads placement constraints: `key==value` or `key!=value`, several
    separated by commas (all must hold). ValueError, naming the part, for anything else."""
    out = []
    for part in (p for p in text.split(",") if p.strip()):
        match = _CONSTRAINT.match(part)
        key = match.group(1).lower() if match else ""
        known = key in _NODE_KEYS or any(key.startswith(p) and len(key) > len(p) for p in _LABEL_PREFIXES)
        if not match or not known:
            raise ValueError(f"FLEET_CONSTRAINT part {part.strip()!r} is not KEY==VALUE or KEY!=VALUE with KEY one of "
                             f"{', '.join(_NODE_KEYS)}, node.labels.NAME, engine.labels.NAME")
        out.append(Constraint(match.group(1), match.group(2) == "==", match.group(3)))
    if not out:
        raise ValueError("FLEET_CONSTRAINT is empty: the service would run on every node, managers included")
    return out


def constraint_problem(text: str) -> str | None:
    """Why FLEET_CONSTRAINT cannot be used (one line, for the start-up check), or None."""
    try:
        parse_constraints(text)
    except ValueError as exc:
        return str(exc)
    return None


def _node_value(node: dict, key: str) -> str | None:
    """What a node says for a constraint key (None when it has no such label)."""
    desc, spec = node.get("Description") or {}, node.get("Spec") or {}
    low = key.lower()
    if low.startswith("node.labels."):
        return (spec.get("Labels") or {}).get(key[len("node.labels."):])
    if low.startswith("engine.labels."):
        return ((desc.get("Engine") or {}).get("Labels") or {}).get(key[len("engine.labels."):])
    platform = desc.get("Platform") or {}
    return {"node.id": node.get("ID"), "node.hostname": desc.get("Hostname"), "node.role": spec.get("Role"),
            "node.platform.os": platform.get("OS"), "node.platform.arch": platform.get("Architecture")}[low]


def node_matches(node: dict, constraints: Iterable[Constraint]) -> bool:
    """Swarm's rule: every constraint holds; values compare without case; a missing label is unequal."""
    for c in constraints:
        value = _node_value(node, c.key)
        same = value is not None and value.lower() == c.value.lower()
        if same != c.equal:
            return False
    return True


# --- facts ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskFact:
    """The newest task on one node."""

    node: str  # hostname
    state: str  # running, failed, rejected, preparing, shutdown, ...
    desired: str  # the state Swarm wants: running or shutdown
    coin: str | None  # from the task's own container labels (its spec version)
    error: str  # the engine's message for a failed or rejected task, else ""


@dataclass(frozen=True)
class NodeFault:
    """Tasks on one node that keep failing (or are rejected) for the service's coin."""

    node: str
    coin: str
    failures: int
    error: str

    @property
    def text(self) -> str:
        why = f": {self.error}" if self.error else ""
        return f"worker for {self.coin} on node {self.node} failed {self.failures} times in a row{why}"


@dataclass(frozen=True)
class IdleNode:
    """A node that matches the constraint but runs no worker."""

    node: str
    reason: str

    @property
    def text(self) -> str:
        return f"node {self.node} matches the fleet constraint but runs no worker ({self.reason})"


@dataclass(frozen=True)
class FleetHealth:
    """What the watchdog and `/status` need to know about the fleet at one moment."""

    service: bool  # a managed service exists
    coin: str | None  # the service's coin label
    update_state: str  # "" (no update yet), updating, completed, paused, rollback_started, rollback_completed, ...
    update_message: str
    matching: int  # nodes that match the constraint
    tasks: tuple[TaskFact, ...]  # the newest task of each node, by hostname
    failing: tuple[NodeFault, ...]
    idle: tuple[IdleNode, ...]
    since: float | None = None  # when the oldest task running the service's coin was created
    rolled_back_from: str | None = None  # after a rollback: the coin of the switch that failed

    @property
    def updating(self) -> bool:
        return self.update_state in UPDATING_STATES

    @property
    def rolled_back(self) -> bool:
        """The last switch failed and Swarm put the previous spec (coin) back."""
        return self.update_state.startswith("rollback")

    @property
    def mining(self) -> tuple[str, ...]:
        """The nodes whose newest task runs the service's coin."""
        return tuple(t.node for t in self.tasks if t.state == "running" and t.coin == self.coin)

    @property
    def all_failing(self) -> bool:
        """Every node meant to mine keeps failing and none mines: the coin (not a node) is at fault."""
        wanted = {t.node for t in self.tasks if t.desired == "running"} | {f.node for f in self.failing}
        return bool(self.failing) and not self.mining and wanted <= {f.node for f in self.failing}

    def converged(self, coin: str) -> bool:
        """Every node that should mine runs `coin` (and at least one does)."""
        wanted = [t for t in self.tasks if t.desired == "running"]
        return bool(wanted) and not self.idle and all(t.state == "running" and t.coin == coin for t in wanted)


def task_coin(task: dict) -> str | None:
    return (((task.get("Spec") or {}).get("ContainerSpec") or {}).get("Labels") or {}).get(COIN_LABEL)


def _state(task: dict) -> str:
    return (task.get("Status") or {}).get("State") or "unknown"


def _error(task: dict) -> str:
    return (task.get("Status") or {}).get("Err") or ""


def _created(task: dict) -> float:
    return epoch(task.get("CreatedAt")) or 0.0


def hostname(node: dict) -> str:
    return (node.get("Description") or {}).get("Hostname") or str(node.get("ID", "?"))[:12]


def _failures(tasks: list[dict], coin: str, since: float) -> tuple[int, str]:
    """Failed or rejected tasks of `coin` in a row (newest first, the task now starting or running
    aside), back to a clean end or `since`; and the newest failure's message."""
    count, error = 0, ""
    for task in tasks:
        if task_coin(task) != coin or _state(task) in PENDING_STATES | {"running"}:
            continue
        if _state(task) not in FAILED_STATES or _created(task) < since:
            break
        count += 1
        error = error or _error(task)
    return count, error


def _idle_reason(node: dict, newest: dict | None) -> str | None:
    """Why a matching node runs no worker; None when it runs one or one is on its way. A node that
    is down is reported whatever its last task said (the manager hears nothing from it)."""
    status, spec = node.get("Status") or {}, node.get("Spec") or {}
    if status.get("State") != "ready":
        return f"node {status.get('State') or 'unknown'}"
    if newest is not None and _state(newest) in PENDING_STATES | {"running"} and newest.get("DesiredState") == "running":
        return None
    if spec.get("Availability") != "active":
        return f"node availability {spec.get('Availability')}"
    if newest is None:
        return "no task"
    return f"task {_state(newest)}" + (f": {_error(newest)}" if _error(newest) else "")


def _rolled_back_from(tasks: list[dict], coin: str | None) -> str | None:
    """After a rollback, the coin of the switch that failed: that of the newest task of another coin
    (Swarm drops the service's PreviousSpec on a rollback, the tasks keep their own spec)."""
    other = [t for t in tasks if task_coin(t) not in (None, coin)]
    return task_coin(max(other, key=_created)) if other else None


def fleet_health(service: dict | None, tasks: list[dict], nodes: list[dict], constraint: str, max_failures: int,
                 now: float, history_limit: int = DEFAULT_HISTORY_LIMIT,
                 window_s: float = FAILURE_WINDOW_SECONDS) -> FleetHealth:
    """The fleet's facts from the engine's raw lists (`service.attrs`, `service.tasks()`, node attrs).

    A node fails once `max_failures` tasks of the service's coin failed or were rejected in a row
    within `window_s`; Swarm keeps only `history_limit` old tasks per node, so the bar is the lower
    of the two. `constraint` is FLEET_CONSTRAINT (ValueError when it cannot be read).
    """
    if service is None:
        return FleetHealth(False, None, "", "", 0, (), (), ())
    coin = ((service.get("Spec") or {}).get("Labels") or {}).get(COIN_LABEL)
    update = service.get("UpdateStatus") or {}
    wanted = parse_constraints(constraint)
    by_node: dict[str, list[dict]] = {}
    for task in sorted(tasks, key=_created, reverse=True):
        if task.get("NodeID"):
            by_node.setdefault(task["NodeID"], []).append(task)
    facts, failing, idle, matching = [], [], [], 0
    bar = max(1, min(max_failures, history_limit))
    for node in sorted(nodes, key=hostname):
        mine, matches = by_node.get(node.get("ID"), []), node_matches(node, wanted)
        matching += matches
        newest = mine[0] if mine else None
        if newest is not None and (matches or newest.get("DesiredState") == "running"):
            facts.append(TaskFact(hostname(node), _state(newest), newest.get("DesiredState") or "",
                                  task_coin(newest), _error(newest)))
        count, error = _failures(mine, coin, now - window_s) if coin else (0, "")
        if count >= bar:
            failing.append(NodeFault(hostname(node), coin, count, error))
        reason = _idle_reason(node, newest) if matches else None
        if reason:
            idle.append(IdleNode(hostname(node), reason))
    running = [_created(t) for t in tasks if _state(t) == "running" and task_coin(t) == coin]
    failed_switch = _rolled_back_from(tasks, coin) if (update.get("State") or "").startswith("rollback") else None
    return FleetHealth(True, coin, update.get("State") or "", update.get("Message") or "", matching,
                       tuple(facts), tuple(failing), tuple(idle), min(running) if running else None,
                       failed_switch)


def node_incidents(health: FleetHealth) -> dict[str, str]:
    """The fleet incidents this moment calls for, {key: text}: a node that keeps failing (with its
    error), a matching node without a worker (with the reason), no matching node at all, a switch
    Swarm rolled back. Nothing while a switch rolls out (nodes are briefly without a worker then)."""
    if not health.service or health.updating:
        return {}
    out = {f"{NODE_INCIDENT}{n.node}": f"Fleet: {n.text}" for n in health.idle}
    out.update({f"{NODE_INCIDENT}{f.node}": f"Fleet: {f.text}" for f in health.failing})
    if health.matching == 0:
        out[f"{FLEET_INCIDENT}no-nodes"] = "Fleet: no node matches FLEET_CONSTRAINT: label the mining nodes (see the README)"
    if health.rolled_back_from:
        out[f"{FLEET_INCIDENT}rollback"] = (f"Fleet: the switch to {health.rolled_back_from} failed on the nodes and "
                                            f"Swarm rolled back to {health.coin} ({health.update_message or 'no detail'})")
    return out


def status_dict(health: FleetHealth) -> dict:
    """`/status`'s "fleet" field."""
    return {
        "mode": "swarm",
        "service": health.service,
        "coin": health.coin,
        "update": health.update_state or None,
        "tasks": [{"node": t.node, "state": t.state, "coin": t.coin} for t in health.tasks],
        "idle_nodes": [{"node": n.node, "reason": n.reason} for n in health.idle],
        "failing_nodes": [{"node": f.node, "failures": f.failures, "error": f.error} for f in health.failing],
        "note": INCOME_NOTE,
    }
