"""miner_controller on a real engine: the worker's life, the watchdog, outages, failed starts.

Every test here runs against a private dockerd (tests/fixtures_docker.py) with the stand-in XMRig
image, and asserts on what the engine reports about the container, not on what the code sent. The
pure parts (rule, arguments, watchdog rules) are tested in test_switching.py, test_worker_spec.py
and test_watchdog.py.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import tempfile
import threading
import time
import urllib.request
import uuid

import docker
import pytest
import requests

import api_wrapper
import config
import history
import miner_controller as mc
import utils
from demo.dockerd import build_standin_image, start_private_dockerd
from demo.rig import free_port
from miner_controller import Outcome, WorkerResult
from tests.conftest import make_coin, wait_until
from watchdog import Failures, forgive_after

pytestmark = pytest.mark.slow

coin = make_coin  # test_main imports this and the fixtures below from here


# --- helpers -------------------------------------------------------------------------------------
def wait_for(what: str, cond, deadline_s: float = 30.0, step: float = 0.25):
    """Poll `cond` until it returns something truthy; fail naming `what` if it never does."""
    return wait_until(what, cond, deadline_s, step)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")

    def matching(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]


@pytest.fixture
def logs():
    """The project's log lines (attached to its own logger: setup_logging may stop propagation)."""
    handler = Records()
    logger = logging.getLogger(utils.LOGGER_NAME)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


@pytest.fixture
def notes(monkeypatch):
    """Notifications handed to the notifier, with a fresh incident register."""
    sent: list[str] = []
    monkeypatch.setattr(utils, "incidents", utils.Incidents())
    utils.add_notifier(sent.append)
    yield sent
    utils.remove_notifier(sent.append)


@pytest.fixture(autouse=True)
def _fresh_controller():
    """Each test gets the daemon's default controller, new: no client, no watchdog memory, no outage."""
    mc.configure()
    yield
    mc.reset_client()


@pytest.fixture
def worker(docker_engine, tmp_path, notes):
    """Settings for one engine test: own container name and XMRig port, tests' values elsewhere."""
    name = f"smt-{uuid.uuid4().hex[:8]}"
    config.override(
        DOCKER_HOST=docker_engine.url, IMAGE_NAME=docker_engine.image, CONTAINER_NAME=name,
        WORKER_PRIVILEGED=False, STOP_TIMEOUT=1, XMRIG_PORT=free_port(), WATCHDOG_SECONDS=60,
        PATH_STATUS=str(tmp_path / "json" / "status.json"),
        PATH_XMRIG_CONFIG=str(tmp_path / "json" / "config.json"),
    )
    (tmp_path / "json").mkdir()
    mc.configure()
    yield docker_engine
    mc.reset_client()
    for container in docker_engine.client.containers.list(all=True, filters={"name": name}):
        container.remove(force=True)


def engine_view(engine):
    """The worker as the engine reports it (None when absent)."""
    try:
        return engine.client.containers.get(config.settings().CONTAINER_NAME)
    except docker.errors.NotFound:
        return None


def write_xmrig_config(data: dict) -> str:
    path = config.settings().PATH_XMRIG_CONFIG
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    return path


def xmrig_summary() -> dict | None:
    s = config.settings()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{s.XMRIG_PORT}/1/summary", timeout=1) as resp:
            return json.loads(resp.read())
    except OSError:
        return None


def start_running(engine, ranking):
    result = mc.manage_worker(ranking[0], ranking)
    assert result.outcome is Outcome.STARTED, result
    return wait_for("worker running", lambda: (c := engine_view(engine)) and c.status == "running" and c)


A, B, C = coin("aaa", 1.0), coin("bbb", 1.04), coin("ccc", 1.2)


# --- starting, staying, switching ----------------------------------------------------------------
def test_first_start_runs_the_worker_as_the_issue_says(worker, notes):
    config_path = write_xmrig_config({"cpu": {"enabled": True}})
    best = coin("quantumrl", 2.5, name="QuantumRL", symbol="QRL", pool="127.0.0.1:3334", algo="rx/0")
    container = start_running(worker, [best, coin("monero", 1.0)])
    attrs, s = container.attrs, config.settings()
    assert attrs["Config"]["Labels"] == {
        "mining_coin": "quantumrl", "smartminer.managed": "true",
        "smartminer.income_usd": "2.5", "smartminer.symbol": "QRL",
    }
    assert attrs["Args"] == [  # --config first, so the command line wins over config.json
        "--config=/config.json", "-o", "127.0.0.1:3334", "-u", best.wallet, "-p", "x", "-k", "--threads=1",
        "--algo", "rx/0", "--http-enabled", "--http-host", "127.0.0.1", "--http-port", str(s.XMRIG_PORT),
    ]
    host = attrs["HostConfig"]
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    assert host["NetworkMode"] == "host" and host["Privileged"] is False
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "3m", "max-file": "3"}}
    [mount] = attrs["Mounts"]
    assert (mount["Source"], mount["Destination"], mount["RW"]) == (config_path, "/config.json", False)
    # The stand-in got those arguments: it serves its API on the port it was given.
    summary = wait_for("stand-in API answering", xmrig_summary)
    assert best.wallet in summary["standin_args"]
    status = utils.read_json(s.PATH_STATUS)
    assert (status["coin"], status["symbol"], status["pool"]) == ("QuantumRL", "QRL", "127.0.0.1:3334")
    assert status["profit_usd"] == pytest.approx(2.5 / 17300.0)
    assert status["worker_name"] == s.CONTAINER_NAME
    assert config.state.get("current_coin") == "quantumrl" and config.state.get("switches") == 0
    assert [n for n in notes if n.startswith("Started mining QuantumRL")]
    assert mc.running_coin() == "quantumrl"
    info = mc.worker_status()
    assert (info["state"], info["coin"], info["symbol"], info["restart_count"]) == ("running", "quantumrl", "QRL", 0)


def test_without_an_xmrig_config_nothing_is_mounted(worker):
    container = start_running(worker, [coin("aaa", 1.0)])
    assert container.attrs["Mounts"] == []
    assert not [a for a in container.attrs["Args"] if a.startswith("--config")]


def test_stable_when_the_best_coin_runs(worker, logs):
    first = start_running(worker, [C, A])
    result = mc.manage_worker(C, [C, A])
    assert (result.outcome, result.coin.key) == (Outcome.STAYED, "ccc")
    assert engine_view(worker).id == first.id
    assert config.state.get("switches") == 0
    assert logs.matching("INFO Stable: keep mining Ccc (1.2000 USD/day)")


def test_a_gain_below_the_threshold_stays(worker, logs):
    first = start_running(worker, [A])
    result = mc.manage_worker(B, [B, A])
    assert (result.outcome, result.coin.key, result.decision.gain_pct) == (Outcome.STAYED, "aaa", pytest.approx(4.0))
    now = engine_view(worker)
    assert now.id == first.id and now.labels["mining_coin"] == "aaa"
    [line] = logs.matching("Staying on")
    assert "1.0000" in line and "1.0400" in line and "+4.00%" in line


def test_a_gain_above_the_threshold_switches(worker, notes):
    first = start_running(worker, [A])
    result = mc.manage_worker(C, [C, A])
    assert (result.outcome, result.coin.key) == (Outcome.SWITCHED, "ccc")
    now = engine_view(worker)
    assert now.id != first.id and now.status == "running" and now.labels["mining_coin"] == "ccc"
    assert len(worker.client.containers.list(all=True, filters={"name": config.settings().CONTAINER_NAME})) == 1
    assert config.state.get("switches") == 1 and config.state.get("current_coin") == "ccc"
    [msg] = [n for n in notes if n.startswith("Switched")]
    assert "Aaa (1.0000 USD/day)" in msg and "Ccc (1.2000 USD/day)" in msg and "+20.00%" in msg
    assert utils.read_json(config.settings().PATH_STATUS)["coin"] == "Ccc"


def test_an_exited_worker_is_removed_and_started_again(worker, logs):
    first = start_running(worker, [A])
    first.stop(timeout=1)
    assert mc.manage_worker(A, [A]).outcome is Outcome.STARTED
    now = engine_view(worker)
    assert now.id != first.id and now.status == "running" and now.labels["mining_coin"] == "aaa"
    assert logs.matching(f"Removing worker {config.settings().CONTAINER_NAME} (aaa, exited)")


def test_a_restarted_manager_finds_the_running_coin_on_the_engine(worker):
    first = start_running(worker, [B, A])
    config.reset_state()  # a new process: nothing in memory
    mc.configure()
    assert mc.running_coin() == "bbb"
    assert mc.manage_worker(B, [B, A]).outcome is Outcome.STAYED and engine_view(worker).id == first.id
    assert config.state.get("current_coin") == "bbb"
    assert config.state.get("current_since") == pytest.approx(mc.worker_status()["started_at"])


def test_dry_run_only_says_what_it_would_do(worker, logs):
    result = mc.manage_worker(C, [C, A], dry_run=True)
    assert (result.outcome, result.decision.action.value, result.coin.key) == (Outcome.DRY_RUN, "start", "ccc")
    assert engine_view(worker) is None
    [line] = logs.matching("[DRY-RUN] would start")
    assert "--http-port" in line and C.wallet not in line


def test_a_pinned_coin_replaces_the_best(worker):
    start_running(worker, [C, A])
    config.state.update(pinned="AAA")
    assert mc.manage_worker(C, [C, A]).outcome is Outcome.SWITCHED
    assert engine_view(worker).labels["mining_coin"] == "aaa"


def test_a_held_coin_keeps_mining(worker, logs):
    first = start_running(worker, [A])
    result = mc.manage_worker(C, [C], hold=frozenset({"aaa"}))  # aaa's page failed this cycle
    assert result.outcome is Outcome.HELD and engine_view(worker).id == first.id
    assert logs.matching("it keeps mining (no switch on data that cannot be trusted)")


def test_failing_coins_are_skipped_by_any_of_their_names(worker, logs):
    config.state.update(failing_coins={"CCC"})  # the owner's word for it: the ticker
    assert start_running(worker, [C, A]).labels["mining_coin"] == "aaa"
    assert logs.matching("WARNING Ccc is marked failing; skipping it")


def test_an_injection_attempt_in_a_wallet_skips_that_coin(worker, notes, logs):
    evil = coin("evil", 9.0, wallet="4abc -o attacker.example:1 --donate-level=99")
    dash = coin("dash", 8.0, wallet="--url=attacker.example:1")
    container = start_running(worker, [evil, dash, A])
    assert container.labels["mining_coin"] == "aaa"
    assert not [a for a in container.attrs["Args"] if "attacker" in a or "donate" in a]
    assert len(logs.matching("ERROR Skipping coin Evil: wallet")) == 1
    assert logs.matching("ERROR Skipping coin Dash: wallet")
    assert [n for n in notes if "Evil" in n and "wallet" in n]


def test_a_bad_args_incident_clears_when_the_coin_is_fixed(worker, notes):
    broken = coin("fixme", 5.0, wallet="4abc -o attacker.example:1")
    start_running(worker, [broken, A])
    assert utils.incidents.is_open("bad-args:fixme")
    fixed = coin("fixme", 5.0)
    assert mc.manage_worker(fixed, [fixed, A]).outcome is Outcome.SWITCHED
    assert not utils.incidents.is_open("bad-args:fixme")
    assert "Coin Fixme: wallet and pool are valid again" in notes
    assert engine_view(worker).labels["mining_coin"] == "fixme"


# --- failed starts: the result says so -----------------------------------------------------------
def test_a_missing_image_is_reported_once_and_leaves_nothing(worker, notes, logs):
    config.override(IMAGE_NAME="smartminer_nowhere:latest")
    for _ in range(3):
        result = mc.manage_worker(A, [A])
        assert (result.outcome, result.reason) == (Outcome.FAILED, "worker image smartminer_nowhere:latest not found")
    assert engine_view(worker) is None
    [msg] = [n for n in notes if "smartminer_nowhere:latest" in n]
    assert "docker compose build worker" in msg and "docker build -t smartminer_nowhere:latest worker/" in msg
    assert len(logs.matching("ERROR Worker image smartminer_nowhere:latest not found")) == 3
    assert config.state.get("current_coin") is None


def test_a_missing_image_keeps_the_old_worker_mining(worker):
    first = start_running(worker, [A])
    config.override(IMAGE_NAME="smartminer_nowhere:latest")
    assert mc.manage_worker(C, [C, A]).outcome is Outcome.FAILED
    now = engine_view(worker)
    assert now.id == first.id and now.status == "running" and now.labels["mining_coin"] == "aaa"
    assert config.state.get("current_coin") == "aaa" and config.state.get("switches") == 0


def test_a_start_that_fails_leaves_no_half_created_container(worker, notes):
    build_standin_image(worker.client, "smartminer_broken:test", entrypoint="/no/such/xmrig")
    config.override(IMAGE_NAME="smartminer_broken:test")
    result = mc.manage_worker(A, [A])
    assert (result.outcome, result.reason) == (Outcome.FAILED, "start of aaa failed")
    assert engine_view(worker) is None
    assert [n for n in notes if n.startswith("Could not start the worker for Aaa")]
    assert config.state.get("current_coin") is None


def squat_on_start(monkeypatch, engine, keys: set[str]) -> None:
    """Make starting a worker for these coins fail with a genuine engine error.

    No start failure depends on the coin by itself (the image, mounts and HostConfig are the same
    for every coin), so the test brings one about: just before the backend creates the worker for
    one of `keys`, it creates a container under the worker's name, and the engine refuses the
    backend's create with 409 Conflict. The squatter is removed right after, so another coin's
    start is unaffected. Docker itself is not mocked: only the backend's own start is wrapped.
    """
    backend = mc.controller().backend
    real = backend.start

    def start(c):
        if c.key not in keys:
            return real(c)
        squatter = engine.client.containers.create(engine.image, name=config.settings().CONTAINER_NAME)
        try:
            return real(c)
        finally:
            squatter.remove(force=True)

    monkeypatch.setattr(backend, "start", start)


def test_a_failed_switch_starts_the_previous_coin_again(worker, notes, logs, monkeypatch):
    first = start_running(worker, [A])
    squat_on_start(monkeypatch, worker, {"ccc"})
    result = mc.manage_worker(C, [C, A])
    assert (result.outcome, result.coin.key, result.reason) == (Outcome.RESTORED, "aaa", "start of ccc failed; back on aaa")
    now = engine_view(worker)
    assert now.id != first.id and now.status == "running" and now.labels["mining_coin"] == "aaa"
    assert utils.incidents.is_open("worker-start")  # the new coin's fault is still there
    assert len([n for n in notes if n.startswith("Could not start the worker for Ccc")]) == 1
    assert logs.matching("WARNING Start of Ccc (1.2000 USD/day) failed; starting Aaa (1.0000 USD/day) again")
    assert config.state.get("current_coin") == "aaa" and config.state.get("switches") == 0


def test_a_failed_switch_whose_restore_fails_too_keeps_the_incident(worker, notes, logs, monkeypatch):
    start_running(worker, [A])
    squat_on_start(monkeypatch, worker, {"ccc", "aaa"})
    result = mc.manage_worker(C, [C, A])
    assert (result.outcome, result.coin) == (Outcome.FAILED, None)
    assert engine_view(worker) is None
    assert utils.incidents.is_open("worker-start")
    assert logs.matching("ERROR Could not start Aaa (1.0000 USD/day) again either")


# --- a container SmartMiner did not make ----------------------------------------------------------
def test_a_same_named_container_without_the_label_is_left_alone(worker, notes):
    name = config.settings().CONTAINER_NAME
    theirs = worker.client.containers.run(worker.image, name=name, detach=True, network_mode="host",
                                          labels={"mining_coin": "aaa"})  # not ours: no smartminer.managed
    for _ in range(2):
        result = mc.manage_worker(C, [C, A])
        assert result.outcome is Outcome.FAILED and "did not make" in result.reason
    assert mc.stop_worker() == "failed"
    assert mc.watchdog_tick() == "foreign"
    assert mc.worker_status() == {} and mc.running_coin() is None
    theirs.reload()
    assert theirs.status == "running" and engine_view(worker).id == theirs.id  # untouched
    [msg] = [n for n in notes if name in n]  # one message, saying what to do
    assert "SmartMiner did not start it" in msg and f"docker rm -f {name}" in msg
    theirs.remove(force=True)
    assert mc.manage_worker(C, [C, A]).outcome is Outcome.STARTED
    assert not utils.incidents.is_open(mc.FOREIGN_INCIDENT)


# --- hooks (main wires the history store and the fleet report) ------------------------------------
def test_each_start_and_switch_is_handed_to_on_switch_once(worker, tmp_path):
    store = history.HistoryStore(str(tmp_path / "json" / "smartminer.db"), days=7)
    store.start()
    calls = []

    def on_switch(previous, new, reason, gain_pct):  # as main wires it: into the history store
        calls.append((previous.key if previous else None, new.key, reason, gain_pct))
        store.record_switch(previous, new, reason, gain_pct)

    mc.configure(on_switch=on_switch)
    try:
        start_running(worker, [A])
        assert mc.manage_worker(A, [A]).outcome is Outcome.STAYED  # a stay is no switch
        assert mc.manage_worker(C, [C, A]).outcome is Outcome.SWITCHED
        assert store.flush()
        last = store.last_switch()
    finally:
        store.close()
    assert [c[:2] for c in calls] == [(None, "aaa"), ("aaa", "ccc")]
    assert calls[1][3] == pytest.approx(20.0) and calls[0][3] is None and calls[1][2]
    assert (last["from"], last["to"], last["reason"]) == ("aaa", "ccc", calls[1][2])
    assert last["gain_pct"] == pytest.approx(20.0)


def test_a_restore_is_handed_to_on_switch_and_a_failing_hook_is_one_line(worker, notes, logs, monkeypatch):
    calls = []

    def on_switch(previous, new, reason, gain_pct):
        calls.append((previous.key if previous else None, new.key, reason, gain_pct))
        raise sqlite3.OperationalError("database is locked")

    mc.configure(on_switch=on_switch)
    first = start_running(worker, [A])
    squat_on_start(monkeypatch, worker, {"ccc"})
    assert mc.manage_worker(C, [C, A]).outcome is Outcome.RESTORED
    assert calls == [(None, "aaa", calls[0][2], None), ("ccc", "aaa", "start of ccc failed; back on aaa", None)]
    assert engine_view(worker).labels["mining_coin"] == "aaa" and engine_view(worker).id != first.id
    assert logs.matching("on_switch hook failed: OperationalError: database is locked") == [
        "WARNING on_switch hook failed: OperationalError: database is locked"]  # said once, not per call


def test_after_tick_runs_after_each_watchdog_tick_and_its_fault_is_one_line(worker, logs):
    ticks = []

    def after_tick():
        ticks.append(config.state.get("current_coin"))
        if len(ticks) >= 2:
            raise RuntimeError("node list unreadable")

    mc.configure(after_tick=after_tick)
    start_running(worker, [A])
    results = [mc.watchdog_tick(now=t) for t in (1000.0, 2000.0, 3000.0)]
    assert results == ["ok", "ok", "ok"] and ticks == ["aaa"] * 3
    assert logs.matching("after_tick hook failed") == ["WARNING after_tick hook failed: RuntimeError: node list unreadable"]
    config.state.update(paused=True)
    assert mc.watchdog_tick(now=4000.0) == "paused" and len(ticks) == 3  # no tick ran while paused


# --- stop ------------------------------------------------------------------------------------------
def test_stop_current_container(worker, logs):
    start_running(worker, [A])
    assert mc.stop_current_container() is True
    assert engine_view(worker) is None
    assert config.state.get("current_coin") is None
    assert mc.stop_current_container() is False
    assert not logs.matching("ERROR")
    assert mc.worker_status() == {}


def go_down(tmp_path) -> None:
    """Point the controller at a socket where no engine listens."""
    config.override(DOCKER_HOST=f"unix://{tmp_path}/no.sock")
    mc.reset_client()


def test_stop_worker_says_stopped_none_or_failed(worker, logs, tmp_path):
    first = start_running(worker, [A])
    assert mc.stop_worker() == "stopped"
    assert engine_view(worker) is None
    assert first.id not in [c.id for c in worker.client.containers.list(all=True)]
    assert mc.stop_worker() == "none"
    assert not logs.matching("ERROR")
    start_running(worker, [A])
    go_down(tmp_path)
    assert mc.stop_worker() == "failed"
    assert mc.stop_current_container() is False
    assert logs.matching("WARNING Docker engine unreachable")
    assert engine_view(worker).status == "running"  # nothing was stopped: the caller must say so


def test_a_cycle_waiting_for_the_lock_starts_nothing_after_miner_stop(worker, logs):
    """`miner stop` sets paused, then takes the lock; a cycle that got past the caller's own pause
    check before that, and is waiting for the lock, must not start a worker afterwards."""
    results: list[WorkerResult] = []
    with mc.controller().lock:  # a stop in progress holds the lock
        cycle = threading.Thread(target=lambda: results.append(mc.manage_worker(A, [A])))
        cycle.start()
        time.sleep(0.2)  # the cycle is now blocked on the lock
        config.state.update(paused=True)
        assert mc.stop_worker() == "none"  # re-entrant: same thread as the lock holder
    cycle.join(10)
    assert results == [WorkerResult(Outcome.NOTHING, "paused")]
    assert engine_view(worker) is None
    assert mc.manage_worker(A, [A], dry_run=True) == WorkerResult(Outcome.NOTHING, "paused")
    assert logs.matching("[DRY-RUN] Paused") and not logs.matching("would start")


# --- the API shows the engine's worker --------------------------------------------------------------
def test_the_apis_status_shows_the_worker_the_engine_runs(worker):
    start_running(worker, [C, A])
    server = api_wrapper.make_server("127.0.0.1", 0, worker_status=mc.worker_status)  # as main wires it
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        server.worker.wait_fresh("worker", 10)
        body = requests.get(f"http://127.0.0.1:{server.server_address[1]}/status", timeout=5).json()
        assert body["worker"]["name"] == config.settings().CONTAINER_NAME
        assert (body["worker"]["state"], body["worker"]["coin"], body["worker"]["symbol"]) == ("running", "ccc", "CCC")
        assert body["worker"]["started_at"] == pytest.approx(mc.worker_status()["started_at"])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# --- the watchdog on a real engine -----------------------------------------------------------------
def test_the_watchdog_restarts_a_dead_worker(worker, logs):
    first = start_running(worker, [A])
    first.stop(timeout=1)
    assert engine_view(worker).status == "exited"
    assert mc.watchdog_tick() == "fault"
    now = engine_view(worker)
    assert now.id == first.id and now.status == "running"
    assert logs.matching("WARNING Watchdog: worker for aaa is exited")


def test_the_watchdog_backs_off_between_restarts(worker, logs):
    container = start_running(worker, [A])
    container.stop(timeout=1)
    mc.watchdog_tick(now=1000.0)  # failure 1: restarted at once
    assert engine_view(worker).status == "running"
    engine_view(worker).stop(timeout=1)
    mc.watchdog_tick(now=1001.0)  # failure 2: waits WATCHDOG_SECONDS
    assert engine_view(worker).status == "exited"
    assert logs.matching("restart in 60s (backoff)")
    mc.watchdog_tick(now=1030.0)
    assert engine_view(worker).status == "exited"
    mc.watchdog_tick(now=1061.0)
    assert engine_view(worker).status == "running"
    assert not config.state.get("failing_coins")


def test_the_watchdog_does_nothing_while_paused(worker):
    container = start_running(worker, [A])
    container.stop(timeout=1)
    config.state.update(paused=True)
    assert mc.watchdog_tick() == "paused"
    assert engine_view(worker).status == "exited"


def test_a_restart_loop_makes_the_watchdog_give_up_and_the_next_best_take_over(worker, notes):
    config.override(WATCHDOG_MAX_FAILURES=2)
    write_xmrig_config({"standin_exit_after": 0.2})  # this worker crashes shortly after each start
    bad, good = coin("bad", 2.0), coin("good", 1.0)
    assert mc.manage_worker(bad, [bad, good]).outcome is Outcome.STARTED
    wait_for("engine restarting the crashing worker", lambda: engine_view(worker).attrs["RestartCount"] >= 1)
    mc.watchdog_tick(now=1000.0)
    assert not config.state.get("failing_coins")
    seen = mc.controller().watchdog.memory.restarts_seen[engine_view(worker).id]  # what it saw after its restart
    wait_for("the worker crashing again", lambda: engine_view(worker).attrs["RestartCount"] > seen)
    mc.watchdog_tick(now=2000.0)
    assert config.state.get("failing_coins") == {"bad"}
    assert config.state.get("force_check") is True and config.state.wake.is_set()
    assert engine_view(worker).status == "exited"
    assert [n for n in notes if "giving up on bad" in n]
    os.unlink(config.settings().PATH_XMRIG_CONFIG)
    result = mc.manage_worker(bad, [bad, good])
    assert (result.outcome, result.coin.key) == (Outcome.STARTED, "good")
    assert engine_view(worker).labels["mining_coin"] == "good"


def test_a_worker_refusing_its_arguments_is_given_up_on_with_its_own_error_line(worker, notes):
    """The worker's program refuses the command line and exits (busybox sh stands in for an XMRig
    that does not know an option; the engine restarts it in a loop): the incident carries the
    program's own line from the log, not just "restarting"."""
    build_standin_image(worker.client, "smartminer_refuses:test", entrypoint="/bin/sh")
    config.override(IMAGE_NAME="smartminer_refuses:test", WATCHDOG_MAX_FAILURES=1)
    assert mc.manage_worker(A, [A]).outcome is Outcome.STARTED
    wait_for("the engine restarting the worker", lambda: engine_view(worker).attrs["RestartCount"] >= 1)
    assert mc.watchdog_tick(now=1000.0) == "fault"
    [msg] = [n for n in notes if "giving up on aaa" in n]
    assert "sh: illegal option -o 127.0.0.1:3333" in msg


def test_a_worker_at_zero_hashrate_is_restarted(worker, logs):
    config.override(ZERO_HASHRATE_MINUTES=0.05)  # 3 s
    write_xmrig_config({"standin_hashrate": 0})
    container = start_running(worker, [A])
    wait_for("stand-in API answering", xmrig_summary)
    started = container.attrs["State"]["StartedAt"]
    mc.watchdog_tick(now=1000.0)
    mc.watchdog_tick(now=1002.0)
    assert engine_view(worker).attrs["State"]["StartedAt"] == started
    mc.watchdog_tick(now=1003.5)
    now = engine_view(worker)
    assert now.status == "running" and now.attrs["State"]["StartedAt"] != started
    assert logs.matching("is 0 H/s for 0.1 min; restarting")


def test_a_mining_worker_is_left_alone_and_its_readings_handed_on(worker):
    readings: list[tuple[str, float]] = []
    mc.configure(on_reading=lambda w, summary, now: readings.append((w.coin_key, summary.hashrate_60s)))
    container = start_running(worker, [A])
    wait_for("stand-in API answering", xmrig_summary)
    started = container.attrs["State"]["StartedAt"]
    for t in (1000.0, 2000.0, 3000.0):
        assert mc.watchdog_tick(now=t) == "ok"
    assert engine_view(worker).attrs["State"]["StartedAt"] == started
    assert readings == [("aaa", 1234.5)] * 3  # the stand-in's figure, read through the xmrig client


def give_up_on(engine, c) -> None:
    """Run the real watchdog until it gives up on `c`'s worker (one failure is enough here)."""
    config.override(WATCHDOG_MAX_FAILURES=1)
    start_running(engine, [c]).stop(timeout=1)
    mc.watchdog_tick(now=1000.0)
    assert utils.incidents.is_open(f"worker-failing:{c.key}")
    assert config.state.get("failing_coins") == {c.key}


def test_a_worker_failing_incident_clears_when_the_watchdog_is_reset(worker, notes):
    give_up_on(worker, A)
    config.state.update(failing_coins=set())  # what `miner start` does before reset_watchdog()
    mc.reset_watchdog()
    assert not utils.incidents.is_open("worker-failing:aaa")
    assert "Watchdog record for aaa reset: it will be tried again" in notes


def test_a_worker_failing_incident_clears_when_that_coin_starts(worker, notes):
    give_up_on(worker, A)
    config.state.update(failing_coins=set())
    assert mc.manage_worker(A, [A]).outcome is Outcome.STARTED  # the given-up (exited) worker is replaced
    assert engine_view(worker).status == "running"
    assert not utils.incidents.is_open("worker-failing:aaa")
    assert "Worker for aaa started again" in notes


def test_a_worker_failing_incident_clears_when_the_coin_is_forgiven(worker, notes):
    start_running(worker, [A])
    wait_for("stand-in API answering", xmrig_summary)  # a healthy worker: it reports hashrate
    mc.controller().watchdog.memory.failures["aaa"] = Failures(count=2, last_fault=0.0)  # failed long ago...
    utils.incidents.raise_("worker-failing:aaa", "worker for aaa failing")
    mc.watchdog_tick(now=forgive_after(config.settings()) + 1.0)  # ...healthy ever since
    assert "aaa" not in mc.controller().watchdog.memory.failures
    assert not utils.incidents.is_open("worker-failing:aaa")


# --- engine outages --------------------------------------------------------------------------------
def test_a_short_engine_outage_is_logged_but_not_notified(notes, logs, tmp_path):
    go_down(tmp_path)
    assert mc.manage_worker(A, [A]) == WorkerResult(Outcome.FAILED, "Docker engine unreachable")
    assert mc.watchdog_tick() == "down"
    [line] = logs.matching("WARNING Docker engine unreachable")  # once; later calls only at debug level
    assert "No such file or directory" in line  # with its cause
    assert not [n for n in notes if "Docker engine unreachable" in n]


def test_an_unreachable_engine_is_one_line_and_one_notice(worker, notes, logs, tmp_path):
    mc.controller().outage.notify_after = 0.0  # "down for several cycles", at once
    config.override(DOCKER_HOST=f"unix://{tmp_path}/no.sock")
    mc.reset_client()
    for _ in range(2):
        assert mc.manage_worker(A, [A]).outcome is Outcome.FAILED
        assert mc.stop_current_container() is False
        assert mc.watchdog_tick() == "down"
    assert len([n for n in notes if "Docker engine unreachable" in n]) == 1
    assert len(logs.matching("WARNING Docker engine unreachable")) == 1  # one line per outage, not per call
    assert mc.worker_status() == {} and mc.running_coin() is None
    assert mc.engine_reachable() is False
    config.override(DOCKER_HOST=worker.url)  # the engine is back
    mc.reset_client()
    assert mc.engine_reachable() is True
    assert mc.manage_worker(A, [A]).outcome is Outcome.STARTED


@pytest.mark.parametrize("call", ["worker_status", "running_coin", "engine_reachable", "watchdog_tick"])
def test_any_engine_call_ends_an_outage(worker, notes, logs, tmp_path, call):
    mc.controller().outage.notify_after = 0.0
    go_down(tmp_path)
    assert mc.manage_worker(A, [A]).outcome is Outcome.FAILED
    assert utils.incidents.is_open("docker-down")
    config.override(DOCKER_HOST=worker.url)  # back, and no cycle or stop has run yet
    mc.reset_client()
    getattr(mc, call)()
    assert not utils.incidents.is_open("docker-down") and mc.controller().outage.since is None
    assert "Docker engine reachable again" in notes
    assert logs.matching("INFO Docker engine reachable again (after")


def test_an_engine_that_goes_down_mid_cycle_and_comes_back(notes, logs, tmp_path_factory):
    """A second private engine: stopped between two cycles, then started again on the same data."""
    mc.controller().outage.notify_after = 0.0
    base = tempfile.mkdtemp(prefix="smd-", dir="/tmp")  # short: unix socket paths are limited
    handle = start_private_dockerd(base)
    try:
        client = docker.DockerClient(base_url=handle.url, timeout=30)
        build_standin_image(client, "smartminer_standin:test")
        client.close()
        config.override(DOCKER_HOST=handle.url, IMAGE_NAME="smartminer_standin:test", CONTAINER_NAME="smt-midcycle",
                        WORKER_PRIVILEGED=False, STOP_TIMEOUT=1, XMRIG_PORT=free_port(),
                        PATH_STATUS=str(tmp_path_factory.mktemp("st") / "status.json"),
                        PATH_XMRIG_CONFIG="/nonexistent/config.json")
        assert mc.manage_worker(A, [A]).outcome is Outcome.STARTED
        handle.stop()
        assert mc.manage_worker(A, [A]).outcome is Outcome.FAILED  # the cached client meets a dead engine
        assert logs.matching("WARNING Docker engine unreachable")
        handle = start_private_dockerd(base)
        # the engine restarts the unless-stopped worker; the manager picks it up from its label
        assert mc.manage_worker(A, [A]).outcome is Outcome.STAYED
        assert config.state.get("current_coin") == "aaa"
        assert "Docker engine reachable again" in notes
        assert mc.stop_current_container() is True
    finally:
        mc.reset_client()
        handle.stop()
        shutil.rmtree(base, ignore_errors=True)
