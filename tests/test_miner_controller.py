"""miner_controller: the pure decision and argument checks, then the worker's life on a real engine.

The engine tests run against a private dockerd (tests/fixtures_docker.py) with the stand-in XMRig
image, and assert on what the engine reports about the container, not on what the code sent.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import threading
import time
import urllib.request
import uuid

import pytest

import config
import miner_controller as mc
import utils
from demo.rig import free_port


# --- helpers -------------------------------------------------------------------------------------
def coin(key: str, income: float, *, profit: float | None = None, wallet: str | None = None,
         pool: str = "127.0.0.1:3333", algo: str | None = None, xmrig_coin: str | None = None,
         name: str | None = None, symbol: str | None = None) -> dict:
    """A coin record as strategy.py makes them."""
    return {
        "Coin name": name or key.capitalize(),
        "Symbol": symbol or key[:3].upper(),
        "Key": key,
        "Url": f"https://miningpoolstats.stream/{key}",
        "Net hashrate": 1e9, "Net hashrate unit": "H/s", "Price": 1.0, "Emission": 100.0,
        "Income per day": income * 10, "Income per day in usd": income,
        "Profit per day in usd": profit,
        "Wallet": wallet or f"4{key}WALLETabcdef0123456789",
        "Pool": pool, "Pool fee": 0.0, "Algo": algo, "XmrigCoin": xmrig_coin,
        "Hashrate H/s": 17300.0,
    }


def wait_for(what: str, cond, deadline_s: float = 30.0, step: float = 0.1):
    """Poll `cond` until it returns something truthy; fail naming `what` if it never does."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(step)
    pytest.fail(f"never happened: {what}")


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if text.startswith("[") and "] " in text:  # drop the seed-style tag: the level says it
            text = text.split("] ", 1)[1]
        self.lines.append(f"{record.levelname} {text}")

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
    mc.reset_client()
    mc.reset_watchdog()
    yield docker_engine
    mc.reset_client()
    mc.reset_watchdog()
    for container in docker_engine.client.containers.list(all=True, filters={"name": name}):
        container.remove(force=True)


def engine_view(engine):
    """The worker as the engine reports it (None when absent)."""
    import docker

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


def start_running(engine, ranking: list[dict]):
    decision = mc.manage_worker(ranking[0], ranking)
    assert decision.action == "start"
    container = wait_for("worker running", lambda: (c := engine_view(engine)) and c.status == "running" and c)
    return container


# --- decide (pure) -------------------------------------------------------------------------------
A, B, C = coin("aaa", 1.0), coin("bbb", 1.04), coin("ccc", 1.2)


def test_decide_starts_the_best_when_nothing_runs():
    d = mc.decide(None, [C, A], 1.05)
    assert (d.action, d.target["Key"]) == ("start", "ccc")


def test_decide_stays_when_the_best_runs():
    d = mc.decide("ccc", [C, A], 1.05)
    assert (d.action, d.target["Key"], d.gain_pct) == ("stay", "ccc", None)
    assert d.reason.startswith("stable")


def test_decide_stays_when_the_gain_is_below_the_threshold():
    d = mc.decide("aaa", [B, A], 1.05)
    assert (d.action, d.target["Key"]) == ("stay", "aaa")
    assert d.gain_pct == pytest.approx(4.0)


def test_decide_switches_when_the_gain_beats_the_threshold():
    d = mc.decide("aaa", [C, A], 1.05)
    assert (d.action, d.target["Key"]) == ("switch", "ccc")
    assert d.gain_pct == pytest.approx(20.0)


def test_decide_holds_a_running_coin_whose_reading_failed():
    d = mc.decide("aaa", [C], 1.05, hold={"aaa"})  # aaa's page failed: it is not even ranked
    assert (d.action, d.target) == ("hold", None) and "aaa" in d.reason
    assert mc.decide("aaa", [C], 1.05).action == "switch"  # without the hold it would switch
    assert mc.decide("aaa", [C, A], 1.05, pin="ccc", hold={"aaa"}).action == "switch"  # a pin still rules
    assert mc.decide(None, [C], 1.05, hold={"aaa"}).action == "start"  # nothing runs: nothing to hold


def test_decide_keeps_the_seeds_rule_at_the_threshold_itself():
    old, new = coin("old", 2.0), coin("new", 2.0 * 1.05)
    assert mc.decide("old", [new, old], 1.05).action == "stay"


def test_decide_switches_away_from_a_coin_that_left_the_ranking():
    d = mc.decide("gone", [C, A], 1.05)
    assert (d.action, d.target["Key"], d.gain_pct) == ("switch", "ccc", None)


def test_decide_uses_profit_when_a_power_cost_is_set():
    rich_but_costly = coin("rich", 2.0, profit=-0.5)
    cheap = coin("cheap", 1.0, profit=0.4)
    d = mc.decide("rich", [cheap, rich_but_costly], 1.05)
    assert (d.action, d.target["Key"]) == ("switch", "cheap")


def test_decide_never_switches_to_a_worse_negative_profit():
    running, worse = coin("run", 1.0, profit=-1.0), coin("worse", 1.0, profit=-1.02)
    assert mc.decide("run", [worse, running], 1.05).action == "stay"
    better = coin("better", 1.0, profit=-0.5)
    assert mc.decide("run", [better, running], 1.05).action == "switch"


@pytest.mark.parametrize("record, value", [
    ({"Income per day in usd": 1.5, "Profit per day in usd": None}, 1.5),
    ({"Income per day in usd": 1.5, "Profit per day in usd": -0.25}, -0.25),
    ({"Income per day in usd": None, "Profit per day in usd": None}, 0.0),  # rank_value: -inf
    ({"Income per day in usd": float("nan"), "Profit per day in usd": None}, 0.0),
    ({"Income per day in usd": 1.0, "Profit per day in usd": float("-inf")}, 0.0),
])
def test_value_is_strategys_rank_value_with_non_finite_as_zero(record, value):
    import strategy

    assert mc._value(record) == value
    if math.isfinite(strategy.rank_value(record)):
        assert mc._value(record) == strategy.rank_value(record)
    assert not hasattr(mc, "_own_value")  # one rule, strategy's, not a copy that can drift


def test_decide_with_nothing_ranked_does_nothing():
    assert mc.decide("aaa", [], 1.05).action == "none"


def test_a_pin_overrides_the_ranking_by_name_ticker_or_slug():
    ranked = [C, B, A]
    assert (mc.decide("ccc", ranked, 1.05, pin="BBB").action, mc.decide("ccc", ranked, 1.05, pin="bbb").target["Key"]) == ("switch", "bbb")
    assert mc.decide(None, ranked, 1.05, pin="Aaa").target["Key"] == "aaa"
    pinned_running = mc.decide("aaa", ranked, 1.05, pin="aaa")
    assert (pinned_running.action, pinned_running.target["Key"]) == ("stay", "aaa")


def test_a_pin_on_an_unranked_coin_is_ignored_with_a_warning(logs):
    d = mc.decide("aaa", [C, A], 1.05, pin="dogecoin")
    assert (d.action, d.target["Key"]) == ("switch", "ccc")
    assert logs.matching("WARNING Pinned coin 'dogecoin'")


# --- worker arguments (pure) ---------------------------------------------------------------------
@pytest.mark.parametrize("value", [
    "", "   ", None, "-o", "--url=evil:1", "abc def", "abc\tdef", 'ab"c', "ab'c", "ab;c", "ab$c",
    "ab`c", "ab|c", "ab&c", "ab>c", "ab\nc", "ab\x00c", "ab(c)", "ab\\c", "ab*c",
])
def test_validate_arg_refuses_what_could_become_another_option(value):
    with pytest.raises(ValueError) as err:
        mc.validate_arg("wallet", value)
    assert "wallet" in str(err.value)


@pytest.mark.parametrize("value", [
    "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A",
    "pool.example.com:3333", "stratum+tcp://127.0.0.1:3333", "WALLET.rig1+50000", "rx/0", "zephyr",
])
def test_validate_arg_accepts_wallets_pools_and_algorithms(value):
    assert mc.validate_arg("pool", value) == value


def test_a_refused_wallet_is_never_shown_in_full():
    wallet = "44AFFq5kSiGBoZ4NMDwYtN18 -o evil.example:1"
    with pytest.raises(ValueError) as err:
        mc.validate_arg("wallet", wallet)
    assert wallet not in str(err.value) and "' '" in str(err.value)


def test_worker_command_is_an_argument_list_with_coin_algo_and_api():
    s = config.override(MINER_THREADS=3, XMRIG_PORT=3999)
    cmd = mc.worker_command(coin("zephyr", 1.0, pool="pool.zephyr:4444", xmrig_coin="zephyr", algo="rx/0"), s, True)
    # --config first: XMRig lets options *after* --config override the file (see worker_command)
    assert cmd[:8] == ["--config=/config.json", "-o", "pool.zephyr:4444", "-u", "4zephyrWALLETabcdef0123456789",
                       "-p", "x", "-k"]
    assert cmd[8:] == ["--threads=3", "--coin", "zephyr", "--algo", "rx/0", "--http-enabled", "--http-host", "127.0.0.1",
                       "--http-port", "3999"]
    plain = mc.worker_command(coin("plain", 1.0), s, False)
    assert "--coin" not in plain and plain[0] == "-o"


def test_run_parameters_default_to_a_privileged_worker_as_in_the_seed():
    kwargs = mc.run_kwargs(coin("aaa", 1.0), config.settings())
    assert kwargs["privileged"] is True and kwargs["network_mode"] == "host"


def test_host_config_path_follows_host_json_path():
    s = config.override(PATH_XMRIG_CONFIG="json/config.json")
    assert mc.host_config_path(s) == os.path.join(os.path.abspath("json"), "config.json")
    assert mc.host_config_path(config.override(HOST_JSON_PATH="/srv/rig/json")) == "/srv/rig/json/config.json"


def test_backoff_grows_and_is_capped():
    assert [mc.backoff_seconds(n, 60) for n in (1, 2, 3, 4)] == [0, 60, 120, 240]
    assert mc.backoff_seconds(30, 60) == mc.MAX_BACKOFF_SECONDS


@pytest.mark.parametrize("summary, rate", [
    ({"hashrate": {"total": [1234.5, 1200, None]}}, 1234.5),
    ({"hashrate": {"total": [0, 0, 0]}}, 0.0),
    ({"hashrate": {"total": [None, None, None]}}, None),  # XMRig's first minute
    ({"hashrate": {}}, None), ([], None), ("html", None),
])
def test_summary_hashrate(summary, rate):
    assert mc.summary_hashrate(summary) == rate


# --- on a real engine ----------------------------------------------------------------------------
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
        "--config=/config.json", "-o", "127.0.0.1:3334", "-u", best["Wallet"], "-p", "x", "-k", "--threads=1",
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
    assert best["Wallet"] in summary["standin_args"]
    status = utils.read_json(s.PATH_STATUS)
    assert (status["coin"], status["symbol"], status["pool"]) == ("QuantumRL", "QRL", "127.0.0.1:3334")
    assert status["profit_usd"] == pytest.approx(2.5 / 17300.0)
    assert status["worker_name"] == s.CONTAINER_NAME
    assert config.state.get("current_coin") == "quantumrl" and config.state.get("switches") == 0
    assert [n for n in notes if n.startswith("Started mining QuantumRL")]
    assert mc.running_coin() == "quantumrl"
    info = mc.worker_status()
    assert (info["state"], info["coin"], info["restart_count"]) == ("running", "quantumrl", 0)


def test_without_an_xmrig_config_nothing_is_mounted(worker):
    container = start_running(worker, [coin("aaa", 1.0)])
    assert container.attrs["Mounts"] == []
    assert not [a for a in container.attrs["Args"] if a.startswith("--config")]


def test_stable_when_the_best_coin_runs(worker, logs):
    first = start_running(worker, [C, A])
    d = mc.manage_worker(C, [C, A])
    assert d.action == "stay"
    assert engine_view(worker).id == first.id
    assert config.state.get("switches") == 0
    assert logs.matching("Stable")


def test_a_gain_below_the_threshold_stays(worker, logs):
    first = start_running(worker, [A])
    d = mc.manage_worker(B, [B, A])
    assert (d.action, d.gain_pct) == ("stay", pytest.approx(4.0))
    now = engine_view(worker)
    assert now.id == first.id and now.labels["mining_coin"] == "aaa"
    [line] = logs.matching("Staying on")
    assert "1.0000" in line and "1.0400" in line and "+4.00%" in line


def test_a_gain_above_the_threshold_switches(worker, notes):
    first = start_running(worker, [A])
    d = mc.manage_worker(C, [C, A])
    assert d.action == "switch"
    now = engine_view(worker)
    assert now.id != first.id and now.status == "running" and now.labels["mining_coin"] == "ccc"
    assert len(worker.client.containers.list(all=True, filters={"name": config.settings().CONTAINER_NAME})) == 1
    assert config.state.get("switches") == 1 and config.state.get("current_coin") == "ccc"
    [msg] = [n for n in notes if n.startswith("Switched")]
    assert "Aaa (1.0000 USD/day)" in msg and "Ccc (1.2000 USD/day)" in msg and "+20.00%" in msg
    assert utils.read_json(config.settings().PATH_STATUS)["coin"] == "Ccc"


def test_an_exited_worker_is_removed_and_started_again(worker):
    first = start_running(worker, [A])
    first.stop(timeout=1)
    d = mc.manage_worker(A, [A])
    assert d.action == "start"
    now = engine_view(worker)
    assert now.id != first.id and now.status == "running" and now.labels["mining_coin"] == "aaa"


def test_a_restarted_manager_finds_the_running_coin_on_the_engine(worker):
    first = start_running(worker, [B, A])
    config.reset_state()  # a new process: nothing in memory
    mc.reset_client()
    assert mc.running_coin() == "bbb"
    d = mc.manage_worker(B, [B, A])
    assert d.action == "stay" and engine_view(worker).id == first.id
    assert config.state.get("current_coin") == "bbb"
    assert config.state.get("current_since") == pytest.approx(mc.worker_status()["started_at"])


def test_dry_run_only_says_what_it_would_do(worker, logs):
    d = mc.manage_worker(C, [C, A], dry_run=True)
    assert d.action == "start"
    assert engine_view(worker) is None
    [line] = logs.matching("[DRY-RUN] would start")
    assert "--http-port" in line and C["Wallet"] not in line


def test_a_pinned_coin_replaces_the_best(worker):
    start_running(worker, [C, A])
    config.state.update(pinned="AAA")
    d = mc.manage_worker(C, [C, A])
    assert d.action == "switch" and engine_view(worker).labels["mining_coin"] == "aaa"


def test_an_injection_attempt_in_a_wallet_skips_that_coin(worker, notes, logs):
    evil = coin("evil", 9.0, wallet="4abc -o attacker.example:1 --donate-level=99")
    dash = coin("dash", 8.0, wallet="--url=attacker.example:1")
    container = start_running(worker, [evil, dash, A])
    assert container.labels["mining_coin"] == "aaa"
    assert not [a for a in container.attrs["Args"] if "attacker" in a or "donate" in a]
    assert len(logs.matching("ERROR Skipping coin Evil: wallet")) == 1
    assert logs.matching("ERROR Skipping coin Dash: wallet")
    assert [n for n in notes if "Evil" in n and "wallet" in n]


def test_a_missing_image_is_reported_once_and_leaves_nothing(worker, notes, logs):
    config.override(IMAGE_NAME="smartminer_nowhere:latest")
    for _ in range(3):
        assert mc.manage_worker(A, [A]).action == "start"
    assert engine_view(worker) is None
    [msg] = [n for n in notes if "smartminer_nowhere:latest" in n]
    assert "docker compose build worker" in msg and "docker build -t smartminer_nowhere:latest worker/" in msg
    assert len(logs.matching("ERROR Worker image smartminer_nowhere:latest not found")) == 3


def test_a_missing_image_keeps_the_old_worker_mining(worker):
    first = start_running(worker, [A])
    config.override(IMAGE_NAME="smartminer_nowhere:latest")
    assert mc.manage_worker(C, [C, A]).action == "switch"
    now = engine_view(worker)
    assert now.id == first.id and now.status == "running" and now.labels["mining_coin"] == "aaa"


def test_a_start_that_fails_leaves_no_half_created_container(worker, notes):
    from demo.dockerd import build_standin_image

    build_standin_image(worker.client, "smartminer_broken:test", entrypoint="/no/such/xmrig")
    config.override(IMAGE_NAME="smartminer_broken:test")
    assert mc.manage_worker(A, [A]).action == "start"
    assert engine_view(worker) is None
    assert [n for n in notes if n.startswith("Could not start the worker")]


def test_a_short_engine_outage_is_logged_but_not_notified(notes, logs, tmp_path):
    config.override(DOCKER_HOST=f"unix://{tmp_path}/no.sock")
    mc.reset_client()
    mc.reset_watchdog()
    assert mc.manage_worker(A, [A]).action == "none"
    mc.watchdog_tick()
    assert len(logs.matching("ERROR Docker engine unreachable")) == 1
    assert not [n for n in notes if "Docker engine unreachable" in n]
    mc._engine_up()


def test_an_unreachable_engine_is_one_line_and_one_notice(worker, notes, logs, tmp_path, monkeypatch):
    monkeypatch.setattr(mc, "ENGINE_DOWN_NOTIFY_SECONDS", 0.0)  # "down for several cycles", at once
    config.override(DOCKER_HOST=f"unix://{tmp_path}/no.sock")
    for _ in range(2):
        assert mc.manage_worker(A, [A]).action == "none"
        assert mc.stop_current_container() is False
        mc.watchdog_tick()
    assert len([n for n in notes if "Docker engine unreachable" in n]) == 1
    assert len(logs.matching("ERROR Docker engine unreachable")) == 1  # one line per outage, not per call
    assert mc.worker_status() == {} and mc.running_coin() is None
    assert mc.engine_reachable() is False
    config.override(DOCKER_HOST=worker.url)  # the engine is back
    mc.reset_client()
    assert mc.engine_reachable() is True
    assert mc.manage_worker(A, [A]).action == "start"
    assert engine_view(worker).status == "running"
    assert "Docker engine reachable again" in notes


def test_an_engine_that_goes_down_mid_cycle_and_comes_back(notes, logs, tmp_path_factory, monkeypatch):
    """A second private engine: stopped between two cycles, then started again on the same data."""
    monkeypatch.setattr(mc, "ENGINE_DOWN_NOTIFY_SECONDS", 0.0)
    mc.reset_watchdog()
    import docker

    from demo.dockerd import build_standin_image, start_private_dockerd

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
        mc.reset_client()
        assert mc.manage_worker(A, [A]).action == "start"
        handle.stop()
        assert mc.manage_worker(A, [A]).action == "none"  # the cached client meets a dead engine
        assert logs.matching("ERROR Docker engine unreachable")
        handle = start_private_dockerd(base)
        # the engine restarts the unless-stopped worker; the manager picks it up from its label
        assert mc.manage_worker(A, [A]).action == "stay"
        assert config.state.get("current_coin") == "aaa"
        assert "Docker engine reachable again" in notes
        assert mc.stop_current_container() is True
    finally:
        mc.reset_client()
        handle.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_stop_current_container(worker, logs):
    start_running(worker, [A])
    assert mc.stop_current_container() is True
    assert engine_view(worker) is None
    assert config.state.get("current_coin") is None
    assert mc.stop_current_container() is False
    assert not logs.matching("ERROR")
    assert mc.worker_status() == {}


# --- the watchdog on a real engine -----------------------------------------------------------------
def test_the_watchdog_restarts_a_dead_worker(worker, logs):
    first = start_running(worker, [A])
    first.stop(timeout=1)
    assert engine_view(worker).status == "exited"
    mc.watchdog_tick()
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
    mc.watchdog_tick()
    assert engine_view(worker).status == "exited"


def test_a_restart_loop_makes_the_watchdog_give_up_and_the_next_best_take_over(worker, notes):
    config.override(WATCHDOG_MAX_FAILURES=2)
    write_xmrig_config({"standin_exit_after": 0.2})  # this worker crashes shortly after each start
    bad, good = coin("bad", 2.0), coin("good", 1.0)
    assert mc.manage_worker(bad, [bad, good]).action == "start"
    wait_for("engine restarting the crashing worker", lambda: engine_view(worker).attrs["RestartCount"] >= 1)
    mc.watchdog_tick(now=1000.0)
    assert not config.state.get("failing_coins")
    seen = mc._watch.restarts_seen[engine_view(worker).id]  # what the watchdog saw after its restart
    wait_for("the worker crashing again", lambda: engine_view(worker).attrs["RestartCount"] > seen)
    mc.watchdog_tick(now=2000.0)
    assert config.state.get("failing_coins") == {"bad"}
    assert config.state.get("force_check") is True and config.state.wake.is_set()
    assert engine_view(worker).status == "exited"
    assert [n for n in notes if "giving up on bad" in n]
    os.unlink(config.settings().PATH_XMRIG_CONFIG)
    d = mc.manage_worker(bad, [bad, good])
    assert (d.action, d.target["Key"]) == ("start", "good")
    assert engine_view(worker).labels["mining_coin"] == "good"


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


def test_a_mining_worker_is_left_alone(worker):
    container = start_running(worker, [A])
    wait_for("stand-in API answering", xmrig_summary)
    started = container.attrs["State"]["StartedAt"]
    for t in (1000.0, 2000.0, 3000.0):
        mc.watchdog_tick(now=t)
    assert engine_view(worker).attrs["State"]["StartedAt"] == started


# --- stop_worker, pause race, incidents, failed switches (review fixes) ----------------------------
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
    assert logs.matching("ERROR Docker engine unreachable")
    assert engine_view(worker).status == "running"  # nothing was stopped: the caller must say so


def test_a_cycle_waiting_for_the_lock_starts_nothing_after_miner_stop(worker, logs):
    """`miner stop` sets paused, then takes the lock; a cycle that got past the caller's own pause
    check before that, and is waiting for the lock, must not start a worker afterwards."""
    results: list[mc.Decision] = []
    with mc._lock:  # a stop in progress holds the lock
        cycle = threading.Thread(target=lambda: results.append(mc.manage_worker(A, [A])))
        cycle.start()
        time.sleep(0.2)  # the cycle is now blocked on the lock
        config.state.update(paused=True)
        assert mc.stop_worker() == "none"  # re-entrant: same thread as the lock holder
    cycle.join(10)
    assert results == [mc.Decision("none", None, "paused")]
    assert engine_view(worker) is None
    assert mc.manage_worker(A, [A], dry_run=True) == mc.Decision("none", None, "paused")
    assert logs.matching("[DRY-RUN] Paused") and not logs.matching("would start")


def test_a_bad_args_incident_clears_when_the_coin_is_fixed(worker, notes):
    broken = coin("fixme", 5.0, wallet="4abc -o attacker.example:1")
    start_running(worker, [broken, A])
    assert utils.incidents.is_open("bad-args:fixme")
    fixed = coin("fixme", 5.0)
    assert mc.manage_worker(fixed, [fixed, A]).action == "switch"
    assert not utils.incidents.is_open("bad-args:fixme")
    assert "Coin Fixme: wallet and pool are valid again" in notes
    assert engine_view(worker).labels["mining_coin"] == "fixme"


def give_up_on(engine, c: dict) -> None:
    """Run the real watchdog until it gives up on `c`'s worker (one failure is enough here)."""
    config.override(WATCHDOG_MAX_FAILURES=1)
    start_running(engine, [c]).stop(timeout=1)
    mc.watchdog_tick(now=1000.0)
    assert utils.incidents.is_open(f"worker-failing:{c['Key']}")
    assert config.state.get("failing_coins") == {c["Key"]}


def test_a_worker_failing_incident_clears_when_the_watchdog_is_reset(worker, notes):
    give_up_on(worker, A)
    config.state.update(failing_coins=set())  # what `miner start` does before reset_watchdog()
    mc.reset_watchdog()
    assert not utils.incidents.is_open("worker-failing:aaa")
    assert "Watchdog record for aaa reset: it will be tried again" in notes


def test_a_worker_failing_incident_clears_when_that_coin_starts(worker, notes):
    give_up_on(worker, A)
    config.state.update(failing_coins=set())
    assert mc.manage_worker(A, [A]).action == "start"  # the given-up (exited) worker is replaced
    assert engine_view(worker).status == "running"
    assert not utils.incidents.is_open("worker-failing:aaa")
    assert "Worker for aaa started again" in notes


def test_a_worker_failing_incident_clears_when_the_coin_is_forgiven(worker, notes):
    start_running(worker, [A])
    wait_for("stand-in API answering", xmrig_summary)  # a healthy worker: it reports hashrate
    mc._watch.failures["aaa"] = mc._Failures(count=2, last_fault=0.0)  # failed long ago...
    utils.incidents.raise_("worker-failing:aaa", "worker for aaa failing")
    mc.watchdog_tick(now=mc.forgive_after(config.settings()) + 1.0)  # ...healthy ever since
    assert "aaa" not in mc._watch.failures
    assert not utils.incidents.is_open("worker-failing:aaa")


@pytest.mark.parametrize("call", ["worker_status", "running_coin", "engine_reachable", "watchdog_tick"])
def test_any_engine_call_ends_an_outage(worker, notes, logs, tmp_path, monkeypatch, call):
    monkeypatch.setattr(mc, "ENGINE_DOWN_NOTIFY_SECONDS", 0.0)
    go_down(tmp_path)
    assert mc.manage_worker(A, [A]).action == "none"
    assert utils.incidents.is_open("docker-down")
    config.override(DOCKER_HOST=worker.url)  # back, and no cycle or stop has run yet
    mc.reset_client()
    getattr(mc, call)()
    assert not utils.incidents.is_open("docker-down") and mc._down_since is None
    assert "Docker engine reachable again" in notes
    assert logs.matching("INFO Docker engine reachable again")


def squat_on_start(monkeypatch, engine, keys: set[str]) -> None:
    """Make starting a worker for these coins fail with a genuine engine error.

    No start failure depends on the coin by itself (the image, mounts and HostConfig are the same
    for every coin), so the test brings one about: just before the controller creates the worker
    for one of `keys`, it creates a container under the worker's name, and the engine refuses the
    controller's create with 409 Conflict. The squatter is removed right after, so another coin's
    start is unaffected. Docker itself is not mocked: only our own start_worker is wrapped.
    """
    real = mc.start_worker

    def start(client, c: dict):
        if mc.coin_key(c) not in keys:
            return real(client, c)
        squatter = engine.client.containers.create(engine.image, name=config.settings().CONTAINER_NAME)
        try:
            return real(client, c)
        finally:
            squatter.remove(force=True)

    monkeypatch.setattr(mc, "start_worker", start)


def test_a_failed_switch_starts_the_previous_coin_again(worker, notes, logs, monkeypatch):
    first = start_running(worker, [A])
    squat_on_start(monkeypatch, worker, {"ccc"})
    d = mc.manage_worker(C, [C, A])
    assert (d.action, d.target["Key"]) == ("restore", "aaa")
    now = engine_view(worker)
    assert now.id != first.id and now.status == "running" and now.labels["mining_coin"] == "aaa"
    assert utils.incidents.is_open("worker-start")  # the new coin's fault is still there
    assert len([n for n in notes if n.startswith("Could not start the worker for Ccc")]) == 1
    assert logs.matching("WARNING Start of Ccc (1.2000 USD/day) failed; starting Aaa (1.0000 USD/day) again")
    assert config.state.get("current_coin") == "aaa" and config.state.get("switches") == 0


def test_a_failed_switch_whose_restore_fails_too_keeps_the_incident(worker, notes, logs, monkeypatch):
    start_running(worker, [A])
    squat_on_start(monkeypatch, worker, {"ccc", "aaa"})
    assert mc.manage_worker(C, [C, A]).action == "switch"
    assert engine_view(worker) is None
    assert utils.incidents.is_open("worker-start")
    assert logs.matching("ERROR Could not start Aaa (1.0000 USD/day) again either")
