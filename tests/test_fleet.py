"""fleet: the Swarm worker backend on real engines (the pure facts are in test_fleet_health.py).

The engine tests use private swarm engines from tests/fixtures_swarm.py (never the session's
`docker_engine`, whose single-container tests must not see swarm mode) and assert on what the
engine reports: the service spec, its tasks, and the task containers' arguments and files.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid

import pytest

import config
import fleet
import fleet_health as fh
import utils
from coin import Coin
from engine import Engine
from miner_controller import Controller, Outcome
from tests.fixtures_swarm import set_availability, swarm_engine, swarm_pair  # noqa: F401
from worker_backend import ForeignWorker, StartFailed
from worker_spec import worker_command
from tests.conftest import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = fleet.Timings(restart_delay_s=0.5, update_delay_s=0.0, monitor_s=1.0)


# --- helpers -------------------------------------------------------------------------------------
def make_coin(key: str, income: float = 1.0, wallet: str | None = None) -> Coin:
    return Coin(key=key, name=key.capitalize(), symbol=key[:3].upper(), url=f"https://miningpoolstats.stream/{key}",
                wallet=wallet or f"4{key}WALLETabcdef0123456789", pool="127.0.0.1:3333", price_usd=1.0,
                nethash_hs=1e9, emission_24h=100.0, coins_per_day=income * 10, income_usd=income,
                hashrate_hs=17300.0, algo="rx/0")


def wait_for(what: str, cond, deadline_s: float = 90.0, step: float = 0.25):
    """Poll `cond` until it returns something truthy; fail naming `what` if it never does."""
    return wait_until(what, cond, deadline_s, step)


def use_settings(url: str, image: str, tmp_path, **extra: str) -> config.Settings:
    env = {"DOCKER_HOST": url, "IMAGE_NAME": image, "CONTAINER_NAME": f"smf_{uuid.uuid4().hex[:8]}",
           "WORKER_PRIVILEGED": "false", "FLEET_MODE": "swarm", "STOP_TIMEOUT": "2",
           "PATH_XMRIG_CONFIG": str(tmp_path / "config.json"), **extra}
    s = config.load_settings(environ=env, env_file=None)
    config.set_settings(s)
    return s


def write_config(tmp_path, data: dict) -> bytes:
    raw = json.dumps(data).encode()
    (tmp_path / "config.json").write_bytes(raw)
    return raw


def running_tasks(client, name: str, coin: str) -> list[dict]:
    """The service's tasks that run `coin`, as the engine reports them."""
    service = client.services.get(name)
    return [t for t in service.tasks() if t["Status"]["State"] == "running" and fh.task_coin(t) == coin]


def task_container(client, name: str, coin: str):
    """The running container of the service's task for `coin` (on this engine)."""
    for c in client.containers.list(filters={"label": f"com.docker.swarm.service.name={name}"}):
        if c.labels.get("mining_coin") == coin and c.status == "running":
            return c
    return None


# --- the manager-node check (real engines) -------------------------------------------------------
@pytest.mark.slow
def test_check_manager_refuses_an_engine_not_in_a_swarm(docker_engine):
    problem = fleet.check_manager(docker_engine.client)
    assert problem and "not in a swarm" in problem and "docker swarm init" in problem and "\n" not in problem


@pytest.mark.slow
def test_check_manager_accepts_a_manager_node(swarm_engine):
    assert fleet.check_manager(swarm_engine.client) is None


# --- the service on a single-node swarm ----------------------------------------------------------
def our_configs(client, name: str) -> set[str]:
    return {c.name for c in client.configs.list(filters={"label": f"{fleet.CONFIG_OF_LABEL}={name}"})}


@pytest.mark.slow
def test_service_life_start_switch_restart_stop(swarm_engine, tmp_path):
    client = swarm_engine.client
    s = use_settings(swarm_engine.url, swarm_engine.image, tmp_path, FLEET_PARALLELISM="1")
    first_config = write_config(tmp_path, {"standin_hashrate": 11.5})
    backend = fleet.SwarmBackend(Engine(), timings=FAST)
    alpha, beta = make_coin("alpha"), make_coin("beta", 2.0)

    started = backend.start(alpha)
    assert started.coin_key == "alpha" and started.running and started.name == s.CONTAINER_NAME
    spec = client.services.get(s.CONTAINER_NAME).attrs["Spec"]
    assert spec["Labels"]["smartminer.managed"] == "true" and spec["Labels"]["mining_coin"] == "alpha"
    assert "Global" in spec["Mode"]
    template = spec["TaskTemplate"]
    assert template["Placement"]["Constraints"] == ["node.labels.smartminer==worker"]
    assert template["ContainerSpec"]["Args"] == worker_command(alpha, s, True)
    assert template["RestartPolicy"]["Condition"] == "on-failure" and template["RestartPolicy"]["Delay"] > 0
    assert spec["UpdateConfig"]["Parallelism"] == 1 and spec["UpdateConfig"]["FailureAction"] == "rollback"
    [ref] = template["ContainerSpec"]["Configs"]
    assert ref["File"]["Name"] == "/config.json"
    wait_for("a running task mining alpha", lambda: running_tasks(client, s.CONTAINER_NAME, "alpha"))
    box = wait_for("the task's container", lambda: task_container(client, s.CONTAINER_NAME, "alpha"))
    assert box.attrs["HostConfig"]["NetworkMode"] == "host"
    assert box.attrs["Args"] == worker_command(alpha, s, True)
    assert box.exec_run(["cat", "/config.json"]).output == first_config  # the Swarm config, where --config points

    # a switch is a service update: new arguments and labels, and a new config for new content
    write_config(tmp_path, {"standin_hashrate": 22.5})
    switched = backend.replace(backend.find(), beta)
    assert switched.coin_key == "beta" and switched.ident != started.ident
    wait_for("a running task mining beta", lambda: running_tasks(client, s.CONTAINER_NAME, "beta"))
    wait_for("alpha's task gone", lambda: not running_tasks(client, s.CONTAINER_NAME, "alpha"))
    assert client.services.get(s.CONTAINER_NAME).attrs["Spec"]["Labels"]["mining_coin"] == "beta"
    box = wait_for("beta's container", lambda: task_container(client, s.CONTAINER_NAME, "beta"))
    assert "4betaWALLETabcdef0123456789" in box.attrs["Args"]
    assert json.loads(box.exec_run(["cat", "/config.json"]).output) == {"standin_hashrate": 22.5}
    mine = our_configs(client, s.CONTAINER_NAME)
    assert fleet.config_name(s.CONTAINER_NAME, first_config) in mine and len(mine) == 2  # kept for a rollback
    write_config(tmp_path, {"standin_hashrate": 33.5})
    backend.replace(backend.find(), alpha)
    mine = our_configs(client, s.CONTAINER_NAME)
    assert fleet.config_name(s.CONTAINER_NAME, first_config) not in mine and len(mine) == 2
    wait_for("alpha running again", lambda: running_tasks(client, s.CONTAINER_NAME, "alpha"))

    # a restarted manager (new engine client, new backend) reads the coin back from the service label
    found = fleet.SwarmBackend(Engine()).find()
    assert found.coin_key == "alpha" and found.running and found.labels["smartminer.symbol"] == "ALP"
    assert found.started_at is not None and found.started_at <= time.time()

    # the watchdog's restart forces new tasks; miner stop removes the service and its configs
    before = {t["ID"] for t in running_tasks(client, s.CONTAINER_NAME, "alpha")}
    restarted = backend.restart(found)
    assert restarted.ident != found.ident
    wait_for("a new alpha task", lambda: {t["ID"] for t in running_tasks(client, s.CONTAINER_NAME, "alpha")} - before)
    backend.remove(backend.find())
    assert not [x for x in client.services.list() if x.name == s.CONTAINER_NAME]
    assert not our_configs(client, s.CONTAINER_NAME)
    wait_for("the task containers gone", lambda: not client.containers.list(
        filters={"label": f"com.docker.swarm.service.name={s.CONTAINER_NAME}"}))
    assert backend.find() is None and backend.health().service is False
    backend.start(beta)  # miner start creates it again
    wait_for("beta running again", lambda: running_tasks(client, s.CONTAINER_NAME, "beta"))
    backend.remove(backend.find())


@pytest.mark.slow
def test_without_config_json_the_worker_runs_without_one(swarm_engine, tmp_path):
    client = swarm_engine.client
    s = use_settings(swarm_engine.url, swarm_engine.image, tmp_path)
    backend = fleet.SwarmBackend(Engine(), timings=FAST)
    worker = backend.start(make_coin("gamma"))
    try:
        template = client.services.get(s.CONTAINER_NAME).attrs["Spec"]["TaskTemplate"]
        assert not template["ContainerSpec"].get("Configs")
        assert not any(a.startswith("--config") for a in template["ContainerSpec"]["Args"])
        wait_for("gamma running", lambda: running_tasks(client, s.CONTAINER_NAME, "gamma"))
        status = backend.status(backend.find())
        assert status["coin"] == "gamma" and status["fleet"]["tasks"] == [
            {"node": "rig-solo", "state": "running", "coin": "gamma"}]
    finally:
        backend.remove(worker)


@pytest.mark.slow
def test_an_engine_refusal_is_start_failed_and_leaves_nothing(swarm_engine, tmp_path):
    client = swarm_engine.client
    long_name = "smf" + "x" * 70  # a valid config name prefix, but too long for a service name
    use_settings(swarm_engine.url, swarm_engine.image, tmp_path, CONTAINER_NAME=long_name)
    write_config(tmp_path, {"standin_hashrate": 1.0})
    with pytest.raises(StartFailed) as err:
        fleet.SwarmBackend(Engine(), timings=FAST).start(make_coin("zeta"))
    assert "name" in str(err.value)  # the engine's own explanation
    assert not [x for x in client.services.list() if x.name == long_name]
    assert not our_configs(client, long_name)


@pytest.mark.slow
def test_a_hand_made_service_of_that_name_is_left_alone(swarm_engine, tmp_path):
    client = swarm_engine.client
    s = use_settings(swarm_engine.url, swarm_engine.image, tmp_path)
    theirs = client.services.create(swarm_engine.image, name=s.CONTAINER_NAME, args=["--http-port", "39999"],
                                    labels={"owner": "someone"}, networks=["host"])
    try:
        version = client.services.get(theirs.id).version
        backend = fleet.SwarmBackend(Engine(), timings=FAST)
        for call in (backend.find, lambda: backend.start(make_coin("alpha")), backend.health,
                     lambda: fleet.fleet_status(client)):
            with pytest.raises(ForeignWorker) as err:
                call()
            assert f"named {s.CONTAINER_NAME}" in str(err.value) and "it is left alone" in str(err.value)
        after = client.services.get(theirs.id)
        assert after.version == version and after.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Args"] == ["--http-port", "39999"]
    finally:
        theirs.remove()


def failing_health(backend):
    h = backend.health()
    return h if h.failing else None


@pytest.mark.slow
def test_a_crashing_worker_fails_on_its_node_and_names_it(swarm_engine, tmp_path):
    use_settings(swarm_engine.url, swarm_engine.image, tmp_path, WATCHDOG_MAX_FAILURES="2")
    write_config(tmp_path, {"standin_exit_after": 1})  # the stand-in exits with status 1 after 1 s
    backend = fleet.SwarmBackend(Engine(), timings=FAST)
    backend.start(make_coin("delta"))
    try:
        h = wait_for("the node reported failing", lambda: failing_health(backend))
        [fault] = h.failing
        assert fault.node == "rig-solo" and fault.coin == "delta" and fault.failures >= 2
        assert "exit" in fault.error  # the engine's own message, e.g. "task: non-zero exit (1)"
        worker = wait_for("the worker seen restarting", lambda: (lambda w: w if w.state == "restarting" else None)(backend.find()))
        assert worker.restarts >= 2
        tail = backend.log_tail(worker, 20)
        assert "rig-solo: standin xmrig: simulated crash" in tail and tail[-1].startswith("rig-solo: task: non-zero exit")
    finally:
        backend.remove(backend.find())


@pytest.mark.slow
def test_a_switch_whose_tasks_fail_is_rolled_back_by_swarm(swarm_engine, tmp_path):
    client = swarm_engine.client
    s = use_settings(swarm_engine.url, swarm_engine.image, tmp_path)
    write_config(tmp_path, {"standin_hashrate": 9.0})
    backend = fleet.SwarmBackend(Engine(), timings=fleet.Timings(restart_delay_s=0.5, monitor_s=10.0))
    backend.start(make_coin("alpha"))
    try:
        wait_for("alpha running", lambda: running_tasks(client, s.CONTAINER_NAME, "alpha"))
        write_config(tmp_path, {"standin_exit_after": 1})  # the new tasks exit with status 1 after 1 s
        backend.replace(backend.find(), make_coin("beta"))
        h = wait_for("the switch rolled back", lambda: (lambda x: x if x.update_state == "rollback_completed" else None)(
            backend.health()), deadline_s=120)
        assert h.coin == "alpha" and h.rolled_back_from == "beta"
        assert "Swarm rolled back to alpha" in fh.node_incidents(h)["fleet-rollback"]
        wait_for("alpha running again", lambda: running_tasks(client, s.CONTAINER_NAME, "alpha"))
        box = wait_for("alpha's container", lambda: task_container(client, s.CONTAINER_NAME, "alpha"))
        assert json.loads(box.exec_run(["cat", "/config.json"]).output) == {"standin_hashrate": 9.0}  # its own config back
    finally:
        backend.remove(backend.find())


@pytest.mark.slow
def test_a_node_without_the_image_is_reported_by_name(swarm_engine, tmp_path):
    use_settings(swarm_engine.url, "smartminer_missing:nowhere", tmp_path, WATCHDOG_MAX_FAILURES="2")
    backend = fleet.SwarmBackend(Engine(), timings=FAST)
    backend.start(make_coin("epsilon"))
    try:
        h = wait_for("rejected tasks reported", lambda: (lambda x: x if x.failing and x.idle else None)(backend.health()))
        assert [n.node for n in h.idle] == ["rig-solo"] and h.idle[0].reason.startswith("task ")
        assert h.failing[0].node == "rig-solo" and "smartminer_missing:nowhere" in h.failing[0].error
        told: list[str] = []
        utils.incidents = utils.Incidents(notifier=told.append)
        backend.report_nodes(h)
        assert utils.incidents.is_open("fleet-node:rig-solo")
        assert told and told[0].startswith("Fleet: ") and "node rig-solo" in told[0]
        status = fleet.fleet_status(swarm_engine.client)
        assert status["mode"] == "swarm" and status["idle_nodes"][0]["node"] == "rig-solo"
    finally:
        backend.remove(backend.find())
    backend.report_nodes()
    assert not utils.incidents.is_open("fleet-node:rig-solo") and told[-1] == "Fleet: node rig-solo is fine again"


# --- the controller drives the fleet through the backend ------------------------------------------
def controller() -> Controller:
    """A controller on the swarm backend. The XMRig reader answers nothing: the manager's node need
    not mine, so the fleet's health comes from the task states alone."""
    return Controller(fleet.SwarmBackend(Engine(), timings=FAST), read_summary=lambda: None)


@pytest.mark.slow
def test_the_controller_starts_switches_reads_back_and_stops_the_service(swarm_engine, tmp_path):
    client = swarm_engine.client
    s = use_settings(swarm_engine.url, swarm_engine.image, tmp_path)
    alpha, beta, richer_beta = make_coin("alpha", 1.0), make_coin("beta", 1.0), make_coin("beta", 2.0)
    ctl = controller()
    assert ctl.manage_worker(alpha, [alpha, beta]).outcome is Outcome.STARTED
    wait_for("alpha running", lambda: running_tasks(client, s.CONTAINER_NAME, "alpha"))
    assert ctl.manage_worker(richer_beta, [richer_beta, alpha]).outcome is Outcome.SWITCHED  # a market flip
    wait_for("beta running", lambda: running_tasks(client, s.CONTAINER_NAME, "beta"))
    assert client.services.get(s.CONTAINER_NAME).attrs["Spec"]["Labels"]["mining_coin"] == "beta"
    restarted = controller()  # a restarted manager: the coin comes back from the service label
    result = restarted.manage_worker(richer_beta, [richer_beta, alpha])
    assert result.outcome is Outcome.STAYED and result.coin.key == "beta"
    assert restarted.watchdog_tick() == "ok"
    assert restarted.stop_worker() == "stopped"  # miner stop
    assert not [x for x in client.services.list() if x.name == s.CONTAINER_NAME]
    assert restarted.stop_worker() == "none"


@pytest.mark.slow
def test_the_watchdog_fails_over_a_coin_that_fails_on_every_node(swarm_engine, tmp_path):
    client = swarm_engine.client
    s = use_settings(swarm_engine.url, swarm_engine.image, tmp_path, WATCHDOG_MAX_FAILURES="2")
    write_config(tmp_path, {"standin_exit_after": 1})
    delta = make_coin("delta")
    told: list[str] = []
    utils.incidents = utils.Incidents(notifier=told.append)  # what the owner would read on Discord
    ctl = controller()
    assert ctl.manage_worker(delta, [delta]).outcome is Outcome.STARTED
    wait_for("delta given up on", lambda: ctl.watchdog_tick() == "fault" and "delta" in config.state.get("failing_coins"))
    [given_up] = [m for m in told if m.startswith("Worker for delta failed 2 times")]
    assert "rig-solo: task: non-zero exit (1)" in given_up  # the incident names the node
    assert not [x for x in client.services.list() if x.name == s.CONTAINER_NAME]  # removed: the next analysis picks another


# --- the stack file ------------------------------------------------------------------------------
@pytest.mark.slow
def test_stack_file_deploys_the_manager_on_a_manager_node(swarm_engine, tmp_path):
    """`docker stack deploy` of docker-stack.yml on the swarm, with the stand-in image as the manager."""
    docker_cli = shutil.which("docker")
    assert docker_cli, "the docker CLI (Debian package docker.io) is missing"
    for name in ("docker-stack.yml", "links.txt"):
        shutil.copy(os.path.join(ROOT, name), tmp_path / name)
    shutil.copytree(os.path.join(ROOT, "json"), tmp_path / "json")
    shutil.copy(os.path.join(ROOT, ".env.example"), tmp_path / ".env")
    (tmp_path / "run").mkdir()
    sock = swarm_engine.url[len("unix://"):]
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "DOCKER_HOST": swarm_engine.url,
           "MANAGER_IMAGE": swarm_engine.image, "DOCKER_SOCKET": sock, "SMARTMINER_DIR": str(tmp_path / "run")}
    deploy = subprocess.run([docker_cli, "stack", "deploy", "-c", "docker-stack.yml", "smtest"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=120)
    assert deploy.returncode == 0, deploy.stderr
    client = swarm_engine.client
    try:
        spec = client.services.get("smtest_manager").attrs["Spec"]
        assert spec["TaskTemplate"]["Placement"]["Constraints"] == ["node.role == manager"]
        assert "FLEET_MODE=swarm" in spec["TaskTemplate"]["ContainerSpec"]["Env"]
        box = wait_for("the manager's task running", lambda: next(iter(client.containers.list(
            filters={"label": "com.docker.swarm.service.name=smtest_manager", "status": "running"})), None))
        assert box.attrs["HostConfig"]["NetworkMode"] == "host"
        mounts = {m["Destination"]: m["Source"] for m in box.attrs["Mounts"]}
        assert mounts["/var/run/docker.sock"] == sock and mounts["/app/json"] == str(tmp_path / "json")
        assert mounts["/run/smartminer"] == str(tmp_path / "run")
        assert box.exec_run(["ls", "/app/json/pools.json", "/var/run/docker.sock"]).exit_code == 0
    finally:
        subprocess.run([docker_cli, "stack", "rm", "smtest"], env=env, capture_output=True, timeout=60)


# --- two nodes: a manager and a worker in their own network namespaces ---------------------------
@pytest.mark.slow
def test_the_service_runs_on_every_labelled_node(swarm_pair, tmp_path):
    client = swarm_pair.client
    s = use_settings(swarm_pair.url, swarm_pair.image, tmp_path)
    write_config(tmp_path, {"standin_hashrate": 5.0})
    backend = fleet.SwarmBackend(Engine(), timings=FAST)
    [rig_b] = swarm_pair.workers
    problem = fleet.check_manager(rig_b.client)
    assert problem and "worker node" in problem and "\n" not in problem
    backend.start(make_coin("alpha"))
    try:
        wait_for("alpha on both nodes", lambda: len(running_tasks(client, s.CONTAINER_NAME, "alpha")) == 2)
        status = fleet.fleet_status(client)
        assert status["mode"] == "swarm"
        assert sorted((t["node"], t["state"], t["coin"]) for t in status["tasks"]) == [
            ("rig-a", "running", "alpha"), ("rig-b", "running", "alpha")]
        box = wait_for("the task container on rig-b", lambda: task_container(rig_b.client, s.CONTAINER_NAME, "alpha"))
        assert box.exec_run(["cat", "/config.json"]).output == b'{"standin_hashrate": 5.0}'  # rig-b got the config

        backend.replace(backend.find(), make_coin("beta", 2.0))
        wait_for("every node mining beta", lambda: backend.health().converged("beta"))

        set_availability(client, rig_b.node_id, "drain")
        h = wait_for("rig-b reported without a worker", lambda: (lambda x: x if x.idle else None)(backend.health()))
        assert [(n.node, n.reason) for n in h.idle] == [("rig-b", "node availability drain")]
        set_availability(client, rig_b.node_id, "active")
        wait_for("rig-b mining again", lambda: backend.health().converged("beta"))
    finally:
        backend.remove(backend.find())
