"""fleet_health (pure): placement constraints, and the engine's task and node lists turned into facts.

The task and node dicts have the shape the engine's API gives (`service.tasks()`, node attrs); the
tests in test_fleet.py check the same facts against real swarm engines.
"""
from __future__ import annotations

import time

import pytest

import fleet
import fleet_health as fh


# --- constraints (pure) --------------------------------------------------------------------------
def node(hostname: str, labels: dict | None = None, role: str = "worker", state: str = "ready",
         availability: str = "active", node_id: str | None = None) -> dict:
    return {"ID": node_id or f"id-{hostname}", "Description": {"Hostname": hostname, "Platform": {"OS": "linux"}},
            "Spec": {"Labels": labels or {}, "Role": role, "Availability": availability}, "Status": {"State": state}}


def test_constraints_parse_like_swarm_and_match_nodes():
    default = fh.parse_constraints("node.labels.smartminer==worker")
    assert default == [fh.Constraint("node.labels.smartminer", True, "worker")]
    assert fh.node_matches(node("a", {"smartminer": "Worker"}), default)  # values compare without case
    assert not fh.node_matches(node("b", {"smartminer": "off"}), default)
    assert not fh.node_matches(node("c"), default)  # no label: not equal
    two = fh.parse_constraints("node.labels.smartminer == worker, node.role!=manager")
    assert fh.node_matches(node("a", {"smartminer": "worker"}), two)
    assert not fh.node_matches(node("a", {"smartminer": "worker"}, role="manager"), two)
    assert fh.node_matches(node("c"), fh.parse_constraints("node.labels.gpu!=yes"))  # missing label: unequal


@pytest.mark.parametrize("text", ["", " , ", "smartminer==worker", "node.labels.smartminer=worker",
                                  "node.labels.==x", "node.color==red", "node.labels.a==b, oops"])
def test_a_bad_constraint_is_one_clear_line(text):
    problem = fh.constraint_problem(text)
    assert problem and problem.startswith("FLEET_CONSTRAINT") and "\n" not in problem
    with pytest.raises(ValueError):
        fh.parse_constraints(text)
    assert fh.constraint_problem("node.labels.smartminer==worker") is None


# --- health facts (pure) -------------------------------------------------------------------------
NOW = 1_800_000_000.0


def stamp(seconds_ago: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(NOW - seconds_ago)) + ".123456789Z"


def task(node_id: str, state: str, coin: str, ago: float, desired: str = "running", err: str = "") -> dict:
    status = {"State": state, "Timestamp": stamp(ago)}
    if err:
        status["Err"] = err
    return {"ID": f"t{ago}{node_id}", "NodeID": node_id, "CreatedAt": stamp(ago), "DesiredState": desired,
            "Status": status, "Spec": {"ContainerSpec": {"Labels": {"mining_coin": coin}}}}


def service(coin: str, update: dict | None = None) -> dict:
    out = {"Spec": {"Labels": {"mining_coin": coin, "smartminer.managed": "true"}}}
    if update:
        out["UpdateStatus"] = update
    return out


LABEL = {"smartminer": "worker"}
CONSTRAINT = "node.labels.smartminer==worker"


def health(svc, tasks, nodes, **kw) -> fh.FleetHealth:
    return fh.fleet_health(svc, tasks, nodes, CONSTRAINT, kw.pop("max_failures", 3), NOW, **kw)


def test_health_lists_the_newest_task_per_node_and_converges():
    nodes = [node("rig-b", LABEL), node("rig-a", LABEL), node("boss", role="manager")]
    tasks = [task("id-rig-a", "shutdown", "alpha", 600, desired="shutdown"), task("id-rig-a", "running", "beta", 60),
             task("id-rig-b", "running", "beta", 50)]
    h = health(service("beta"), tasks, nodes)
    assert h.service and h.coin == "beta"
    assert [(t.node, t.state, t.coin) for t in h.tasks] == [("rig-a", "running", "beta"), ("rig-b", "running", "beta")]
    assert h.failing == () and h.idle == ()
    assert h.converged("beta") and not h.converged("alpha")
    assert fh.status_dict(h)["tasks"] == [{"node": "rig-a", "state": "running", "coin": "beta"},
                                             {"node": "rig-b", "state": "running", "coin": "beta"}]


def test_health_reports_matching_nodes_without_a_running_worker():
    nodes = [node("up", LABEL), node("down", LABEL, state="down"), node("drained", LABEL, availability="drain"),
             node("new", LABEL), node("broken", LABEL), node("starting", LABEL), node("other")]
    tasks = [task("id-up", "running", "beta", 60), task("id-down", "running", "beta", 60),
             task("id-broken", "rejected", "beta", 5, err="No such image: x:latest"),
             task("id-starting", "preparing", "beta", 5)]
    h = health(service("beta"), tasks, nodes)
    idle = {n.node: n.reason for n in h.idle}
    assert idle == {"down": "node down", "drained": "node availability drain", "new": "no task",
                    "broken": "task rejected: No such image: x:latest"}
    assert "node broken matches the fleet constraint but runs no worker" in [n for n in h.idle if n.node == "broken"][0].text
    assert not h.converged("beta")


def test_tasks_that_keep_failing_for_the_current_coin_are_failures():
    nodes = [node("crashy", LABEL), node("once", LABEL), node("old", LABEL), node("earlier", LABEL)]
    tasks = [
        # crashy: three failures in a row, a new task starting: failing
        task("id-crashy", "starting", "beta", 1), task("id-crashy", "failed", "beta", 20, "shutdown", "task: non-zero exit (1)"),
        task("id-crashy", "failed", "beta", 40, "shutdown"), task("id-crashy", "rejected", "beta", 60, "shutdown"),
        # once: one failure: Swarm restarts it, not yet the watchdog's business
        task("id-once", "running", "beta", 1), task("id-once", "failed", "beta", 30, "shutdown"),
        # old: failures of another coin, and of this coin before the failure window
        task("id-old", "running", "beta", 1), task("id-old", "failed", "alpha", 100, "shutdown"),
        task("id-old", "failed", "alpha", 200, "shutdown"), task("id-old", "failed", "alpha", 300, "shutdown"),
        # earlier: a clean shutdown (a switch away and back) ends the run of failures
        task("id-earlier", "failed", "beta", 10, "shutdown"), task("id-earlier", "shutdown", "beta", 20, "shutdown"),
        task("id-earlier", "failed", "beta", 30, "shutdown"), task("id-earlier", "failed", "beta", 40, "shutdown"),
    ]
    h = health(service("beta"), tasks, nodes)
    assert [(f.node, f.coin, f.failures, f.error) for f in h.failing] == [("crashy", "beta", 3, "task: non-zero exit (1)")]
    assert h.failing[0].text == "worker for beta on node crashy failed 3 times in a row: task: non-zero exit (1)"
    stale = [task("id-once", "failed", "beta", 7 * 3600 + i, "shutdown") for i in range(3)]
    assert health(service("beta"), stale, nodes).failing == ()  # older than the window: forgiven
    # Swarm keeps 5 old tasks per node: a WATCHDOG_MAX_FAILURES above that must still be reachable
    five = [task("id-once", "failed", "beta", 10 * i + 1, "shutdown") for i in range(5)]
    assert [f.failures for f in health(service("beta"), five, nodes, max_failures=10).failing] == [5]


def test_no_service_and_update_states():
    h = health(None, [], [node("a", LABEL)])
    assert not h.service and h.tasks == () and h.idle == () and not h.converged("x")
    rolled = health(service("alpha", {"State": "rollback_completed", "Message": "rollback completed"}), [], [])
    assert rolled.rolled_back and not rolled.updating
    assert health(service("beta", {"State": "updating"}), [], []).updating


def test_config_names_follow_the_content():
    a, b = fleet.config_name("active_miner_worker", b"{}"), fleet.config_name("active_miner_worker", b"{ }")
    assert a != b and a == fleet.config_name("active_miner_worker", b"{}")
    assert a.startswith("active_miner_worker-config-") and len(fleet.config_name("x" * 80, b"")) <= 64


def test_a_coin_fails_over_only_when_every_node_keeps_failing():
    nodes = [node("a", LABEL), node("b", LABEL)]
    crash = [task("id-a", "failed", "beta", 10 * i + 5, "shutdown", "task: non-zero exit (1)") for i in range(3)]
    one = health(service("beta"), crash + [task("id-b", "running", "beta", 60)], nodes)
    assert [f.node for f in one.failing] == ["a"] and not one.all_failing
    assert fleet.worker_state(one) == "running"  # one node's fault is that node's incident, not a failover
    both = health(service("beta"), crash + [dict(x, NodeID="id-b") for x in crash], nodes)
    assert both.all_failing and fleet.worker_state(both) == "restarting"


def test_node_incidents_name_the_node_and_wait_for_a_rollout():
    nodes = [node("a", LABEL), node("b", LABEL, state="down")]
    crash = [task("id-a", "rejected", "beta", 10 * i + 5, "shutdown", "No such image: w:1") for i in range(3)]
    h = health(service("beta"), crash, nodes)
    incidents = fh.node_incidents(h)
    assert incidents["fleet-node:a"] == "Fleet: worker for beta on node a failed 3 times in a row: No such image: w:1"
    assert incidents["fleet-node:b"] == "Fleet: node b matches the fleet constraint but runs no worker (node down)"
    assert fh.node_incidents(health(service("beta", {"State": "updating"}), crash, nodes)) == {}
    assert "no node matches" in fh.node_incidents(health(service("beta"), [], [node("x")]))["fleet-no-nodes"]


def test_a_rolled_back_switch_names_the_coin_that_failed():
    svc = service("alpha", {"State": "rollback_completed", "Message": "rollback completed"})
    tasks = [task("id-a", "running", "alpha", 5), task("id-a", "failed", "beta", 20, "shutdown"),
             task("id-a", "shutdown", "alpha", 40, "shutdown"), task("id-a", "shutdown", "gamma", 90, "shutdown")]
    rolled = health(svc, tasks, [node("a", LABEL)])
    assert rolled.rolled_back_from == "beta"  # Swarm drops PreviousSpec on a rollback: the tasks tell
    assert fh.node_incidents(rolled)["fleet-rollback"].startswith("Fleet: the switch to beta failed on the nodes and "
                                                                   "Swarm rolled back to alpha")
    svc["UpdateStatus"] = {"State": "completed"}
    assert health(svc, tasks, [node("a", LABEL)]).rolled_back_from is None
