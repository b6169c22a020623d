"""The daemon end to end in swarm mode: `main.py` as a subprocess with real Chromium and the market
pages on loopback, FLEET_MODE=swarm against a private single-node swarm (tests/fixtures_swarm.py,
its node labelled smartminer=worker) running the stand-in worker image.

The steps share one rig and build on each other, in order: the service is created and runs a task,
a market flip updates it, `miner stop` removes it, a restarted manager reads its coin back, and a
hand-made service of the same name is left alone. An engine that is not in a swarm (the session's
`docker_engine`) makes the manager exit with status 2 and one clear line.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import docker
import pytest

import fleet_health
from demo.rig import Rig, build_rig, free_port
from tests.conftest import require
from tests.fixtures_swarm import swarm_engine  # noqa: F401  (fixture)
from tests.test_e2e import check_now, set_income, status

pytestmark = pytest.mark.slow  # the daemon, Chromium and private dockerds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UPDATE_TIMEOUT = 120.0  # a service update with Swarm's default update settings takes ~15 s


@pytest.fixture(scope="module")
def rig(swarm_engine):  # noqa: F811
    for prog, what in (("/usr/bin/chromium", "Chromium"), ("/usr/bin/chromedriver", "ChromeDriver")):
        require(prog, what)
    r = build_rig(with_docker=False, FLEET_MODE="swarm", DOCKER_HOST=swarm_engine.url, IMAGE_NAME=swarm_engine.image,
                  CONTAINER_NAME="smartminer_fleet_e2e", PAGE_TIMEOUT="15", WATCHDOG_SECONDS="5",
                  SANITY_FACTOR="1000")
    try:
        r.start_daemon()
        yield r
    finally:
        r.close()
        remove_service(swarm_engine.client, r.env["CONTAINER_NAME"])


# --- helpers -------------------------------------------------------------------------------------
def service(rig: Rig):
    """The worker service as the engine reports it, or None."""
    try:
        return rig.docker().services.get(rig.env["CONTAINER_NAME"])
    except docker.errors.NotFound:
        return None


def remove_service(client, name: str) -> None:
    try:
        client.services.get(name).remove()
    except docker.errors.NotFound:
        pass


def service_coin(rig: Rig) -> str | None:
    svc = service(rig)
    return svc.attrs["Spec"]["Labels"].get("mining_coin") if svc is not None else None


def running_task_coins(rig: Rig) -> set[str]:
    """The coins the service's running tasks mine."""
    svc = service(rig)
    if svc is None:
        return set()
    return {fleet_health.task_coin(t) for t in svc.tasks() if t["Status"]["State"] == "running"}


def mining(rig: Rig, coin: str) -> bool:
    """The service is labelled for `coin` and its only running task mines it."""
    return service_coin(rig) == coin and running_task_coins(rig) == {coin}


def log_since(rig: Rig, offset: int) -> str:
    return rig.logs()[offset:]


def level_of(line: str) -> str | None:
    """The level of a daemon log line ("2026-01-01 12:00:00 ERROR    text"), None for other lines."""
    words = line.split(maxsplit=3)
    return words[2] if len(words) >= 3 else None


def restart_daemon(rig: Rig) -> int:
    """SIGTERM the manager (it must exit 0), start it again; the log offset where the new run begins."""
    assert rig.stop_daemon() == 0, log_since(rig, 0)[-3000:]
    offset = len(rig.logs())
    rig.start_daemon()
    return offset


# --- an engine that is not in a swarm ----------------------------------------------------------------
def test_0_an_engine_not_in_a_swarm_exits_2_with_one_clear_line(rig, docker_engine):
    env = {**rig.env, "DOCKER_HOST": docker_engine.url, "API_PORT": str(free_port()),
           "PIPE_PATH": os.path.join(rig.workdir, "not_a_swarm_pipe")}
    out = subprocess.run([sys.executable, os.path.join(ROOT, "main.py")], cwd=rig.workdir, env=env,
                         capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = (out.stdout + out.stderr).splitlines()
    errors = [line for line in lines if level_of(line) in ("ERROR", "CRITICAL") or "Traceback" in line]
    assert len(errors) == 1, lines
    assert "not in a swarm" in errors[0] and "docker swarm init" in errors[0]
    assert not [c for c in docker_engine.client.containers.list(all=True) if c.name == env["CONTAINER_NAME"]]


# --- the daemon drives the service -----------------------------------------------------------------
def test_1_the_service_is_created_with_the_label_and_runs_a_task(rig):
    st = rig.wait_for(lambda: (s := status(rig)) and s.get("current_coin") and s, 180, "the first worker")
    best = st["ranking"][0]["key"]
    assert st["current_coin"] == best
    rig.wait_for(lambda: mining(rig, best), UPDATE_TIMEOUT, f"a running task mining {best}")
    spec = service(rig).attrs["Spec"]
    assert spec["Labels"]["smartminer.managed"] == "true"
    assert "Global" in spec["Mode"]
    assert spec["TaskTemplate"]["Placement"]["Constraints"] == ["node.labels.smartminer==worker"]
    assert f"DEMO_WALLET_{best.upper()}" in spec["TaskTemplate"]["ContainerSpec"]["Args"]
    fleet = rig.wait_for(lambda: (f := status(rig)["fleet"]) and f.get("tasks") and f, 60, "the fleet in /status")
    assert fleet["mode"] == "swarm"
    assert {"node": "rig-solo", "state": "running", "coin": best} in fleet["tasks"]


def test_2_a_market_flip_updates_the_service_to_the_new_coin(rig):
    st = status(rig)
    ranking, current_key = st["ranking"], st["current_coin"]
    current = next(c for c in ranking if c["key"] == current_key)
    challenger = next(c for c in ranking if c["key"] != current_key)
    before = service(rig).id
    set_income(rig, challenger["key"], ranking, current["income_usd"] * 1.5)
    check_now(rig)
    rig.wait_for(lambda: mining(rig, challenger["key"]), UPDATE_TIMEOUT, f"the service updated to {challenger['key']}")
    svc = service(rig)
    assert svc.id == before  # updated in place, not removed and created again
    assert f"DEMO_WALLET_{challenger['key'].upper()}" in svc.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Args"]
    rig.wait_for(lambda: status(rig)["current_coin"] == challenger["key"], 30, "the state to follow")


def test_3_miner_stop_removes_the_service(rig):
    rig.send("miner stop")
    rig.wait_for(lambda: service(rig) is None, 60, "the service to be removed")
    rig.wait_for(lambda: status(rig)["paused"] is True, 10, "the pause in /status")


def test_4_a_restarted_manager_reads_the_coin_back_and_stays(rig):
    rig.send("miner start")
    coin = rig.wait_for(lambda: service_coin(rig), 90, "the service created again")
    rig.wait_for(lambda: mining(rig, coin), UPDATE_TIMEOUT, f"a running task mining {coin}")
    svc = service(rig)
    version, name = svc.version, next(c["coin"] for c in status(rig)["ranking"] if c["key"] == coin)
    offset = restart_daemon(rig)
    assert mining(rig, coin)  # the manager's exit leaves the fleet mining
    said = rig.wait_for(lambda: [l for l in log_since(rig, offset).splitlines() if "Stable: keep mining" in l],
                        180, "the restarted manager's decision")
    assert f"Stable: keep mining {name} (" in said[0]
    new_run = log_since(rig, offset)
    assert "Switched mining" not in new_run and f"Worker {rig.env['CONTAINER_NAME']} mining" not in new_run
    after = service(rig)
    assert after.id == svc.id and after.version == version  # no update: the coin was read back from the label
    assert status(rig)["current_coin"] == coin


def test_5_a_hand_made_service_of_that_name_is_left_alone(rig, swarm_engine):  # noqa: F811
    client, name = swarm_engine.client, rig.env["CONTAINER_NAME"]
    assert rig.stop_daemon() == 0
    remove_service(client, name)
    rig.wait_for(lambda: service(rig) is None, 30, "the managed service gone")
    theirs = client.services.create(swarm_engine.image, name=name, args=["--http-port", "39999"],
                                    labels={"owner": "someone"}, networks=["host"])
    try:
        version = client.services.get(theirs.id).version
        offset = len(rig.logs())
        rig.start_daemon()
        said = rig.wait_for(lambda: [l for l in log_since(rig, offset).splitlines() if "it is left alone" in l],
                            180, "the refusal in the log")
        assert f"A Swarm service named {name} exists but SmartMiner did not create it" in said[0]
        rig.wait_for(lambda: (status(rig).get("last_analysis") or 0) > 0, 120, "an analysis despite the foreign service")
        assert rig.proc.poll() is None  # the daemon keeps running
        after = client.services.get(theirs.id)
        assert after.version == version
        assert after.attrs["Spec"]["Labels"] == {"owner": "someone"}
        assert after.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Args"] == ["--http-port", "39999"]
        assert rig.stop_daemon() == 0
    finally:
        theirs.remove()
