"""main.py and the modules it wires: the command line's exit codes and messages, the profit loop's
steps and clock, the owner's choice across restarts, the services together, shutdown mid-analysis,
and the structure rules (no import cycle, no import inside a function)."""
from __future__ import annotations

import ast
import glob
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

import config
import main
import owner_choice
import profit_loop
import startup_checks
import strategy
import utils
from demo.rig import build_rig, free_port
from tests.conftest import make_coin, require, slow_component
from tests.discord_standin import DiscordStandIn
from tests.log_capture import captured_log, messages
from tests.test_miner_controller import engine_view, notes, worker  # noqa: F401 (fixtures for the engine tests)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(args: list[str], env: dict[str, str], cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def rig():
    """The demo rig without Docker: market pages on loopback and the files pointing at them."""
    require("/usr/bin/chromium", "Chromium")
    require("/usr/bin/chromedriver", "ChromeDriver")
    r = build_rig(with_docker=False)
    yield r
    r.close()


@pytest.mark.slow
def test_a_bad_setting_stops_start_up_with_one_line_and_status_2(rig):
    env = {**rig.env, "HOURS_INTERVAL": "0"}
    out = run_main(["--once", "--dry-run"], env, rig.workdir)
    assert out.returncode == 2
    assert out.stderr.strip() == "config error: HOURS_INTERVAL=0 is out of range: allowed 1 to 24"
    assert out.stdout == ""


@pytest.mark.slow
def test_missing_wallets_says_how_to_fix_it(rig):
    os.remove(rig.env["PATH_WALLETS"])
    out = run_main(["--once", "--dry-run"], rig.env, rig.workdir)
    assert out.returncode == 2
    assert "wallets.json not found: copy json/wallets.example.json to json/wallets.json" in out.stderr


@pytest.mark.slow
def test_malformed_pools_names_the_file_and_the_fault(rig):
    with open(rig.env["PATH_POOLS"], "w", encoding="utf-8") as fh:
        fh.write('{"Monero": ')
    out = run_main(["--once", "--dry-run"], rig.env, rig.workdir)
    assert out.returncode == 2
    assert "pools.json is not valid JSON (line 1" in out.stderr


@pytest.mark.slow
def test_missing_chromium_is_one_clear_line(rig):
    env = {**rig.env, "CHROME_BIN": "/nonexistent/chromium"}
    out = run_main(["--once", "--dry-run"], env, rig.workdir)
    assert out.returncode == 2
    assert "/nonexistent/chromium not found: install Debian's chromium and chromium-driver" in out.stderr


@pytest.mark.slow
def test_once_prints_a_table_and_skipped_coins_and_exits_0(rig):
    rig.market.set_coin("monero", emission="N/A")
    out = run_main(["--once", "--dry-run"], rig.env, rig.workdir)
    assert out.returncode == 0, out.stderr
    assert "Etica" in out.stdout and "USD/day" in out.stdout
    assert "skipped" in out.stdout.lower() and "Monero" in out.stdout
    assert "[5/5]" in out.stderr  # progress lines while pages render
    assert "[DRY-RUN] would start" in out.stderr


@pytest.mark.slow
def test_healthcheck_fails_when_no_daemon_answers(rig):
    out = run_main(["--healthcheck"], {**rig.env, "API_PORT": str(free_port())}, rig.workdir)
    assert out.returncode == 1 and "unhealthy" in out.stderr


@pytest.mark.slow
def test_sigterm_mid_analysis_exits_0_and_closes_every_browser(rig):
    for slug in rig.market.market.slugs():
        rig.market.set_coin(slug, never=True)  # every page hangs until PAGE_TIMEOUT
    rig.env["PAGE_TIMEOUT"] = "120"
    rig.start_daemon("--dry-run")
    rig.wait_for(lambda: "rendering" in rig.logs(), 60, "the analysis to start")
    browsers = rig.wait_for(lambda: [p for p in psutil.Process(rig.proc.pid).children(recursive=True)
                                     if "chrom" in p.name().lower()], 30, "browsers to start")
    rig.proc.send_signal(signal.SIGTERM)
    assert rig.proc.wait(timeout=10) == 0
    time.sleep(0.5)
    alive = [p for p in browsers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    assert "SIGTERM received" in rig.logs()


def test_healthcheck_answers_from_the_daemons_healthz():
    assert main.healthcheck.healthcheck(port=free_port()) == 1  # nothing listens: unhealthy
    config.override(API_HOST="127.0.0.1", API_PORT=free_port())
    s = config.settings()
    server = main.api_wrapper.make_server(s.API_HOST, s.API_PORT, worker_status=dict)
    svc = main.Services(api=server)
    svc.spawn("api", server.serve_forever)
    try:
        config.state.beat()  # the loop is alive
        assert main.healthcheck.healthcheck() == 0
        config.state.update(loop_alive=False)  # the loop ended: /healthz says 503
        assert main.healthcheck.healthcheck() == 1
    finally:
        main.stop_services(svc)


def test_loop_clock_waits_for_the_nearest_event_and_beats_every_minute():
    clock = profit_loop.LoopClock(interval=8 * 3600, watchdog=300, next_analysis=1000.0, next_watchdog=1100.0)
    assert clock.analysis_due(1000.0) and not clock.analysis_due(999.0)
    assert clock.wait_seconds(990.0) == 10.0
    assert clock.wait_seconds(500.0) == profit_loop.HEARTBEAT_SECONDS
    assert clock.wait_seconds(2000.0) == 0.0
    clock.analysed(1000.0)
    assert clock.next_analysis == 1000.0 + 8 * 3600
    assert config.state.get("next_analysis") > time.time() + 8 * 3600 - 5


def test_setup_hints_list_only_file_problems():
    problems = [startup_checks.Check("wallets.json", "json/wallets.json not found: copy ...", setup=True),
                startup_checks.Check("chromium", "x")]
    hint = startup_checks.setup_hints(problems)
    assert hint.startswith("Setup needed") and "wallets.json" in hint and "- x" not in hint
    assert startup_checks.setup_hints([startup_checks.Check("chromium", "x")]) == ""


def test_start_up_checks_name_each_file_and_ask_docker_only_when_given(tmp_path):
    links = tmp_path / "links.txt"
    links.write_text("https://miningpoolstats.stream/monero\n")
    (tmp_path / "pools.json").write_text('{"Monero": ')
    s = config.override(PATH_LINKS=str(links), PATH_WALLETS=str(tmp_path / "wallets.json"),
                        PATH_POOLS=str(tmp_path / "pools.json"), CHROME_BIN="/nonexistent/chromium")
    problems = {c.name: c for c in startup_checks.run_checks(s)}
    assert set(problems) == {"wallets.json", "pools.json", "chromium"}
    assert "copy json/wallets.example.json" in problems["wallets.json"].problem
    assert "pools.json is not valid JSON" in problems["pools.json"].problem
    down = {c.name: c for c in startup_checks.run_checks(s, engine_reachable=lambda: False)}
    assert down["docker"].fatal_once is False and "DOCKER_HOST" in down["docker"].problem
    assert "docker" not in {c.name for c in startup_checks.run_checks(s, engine_reachable=lambda: True)}


def test_owner_choice_survives_a_restart_and_a_damaged_file_is_reported(tmp_path):
    path = str(tmp_path / "runtime.json")
    config.state.update(paused=True, pinned="qrl")
    owner_choice.save_runtime(path, owner_choice.owner_choice())
    config.reset_state()
    owner_choice.restore_runtime(path)
    assert config.state.get("paused") is True and config.state.get("pinned") == "qrl"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('{"paused": tru')
    assert owner_choice.load_runtime(path) == {}
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('{"paused": "yes", "pinned": 7}')  # wrong types are ignored, not trusted
    assert owner_choice.load_runtime(path) == {}
    assert owner_choice.load_runtime(str(tmp_path / "none.json")) == {}


# --- the profit loop's steps, with the worker controls recorded -------------------------------------
class Worker:
    """WorkerOps as main wires them, recording every call; `tick` is what the watchdog reports."""

    def __init__(self, tick: str = "ok", stop: str = "none") -> None:
        self.calls: list[tuple] = []
        self.tick, self.stop_outcome = tick, stop

    def manage(self, best, ranking, dry_run=False, hold=frozenset()):
        self.calls.append(("manage", best.key if best else None, [c.key for c in ranking], dry_run, set(hold)))

    def stop(self) -> str:
        self.calls.append(("stop",))
        return self.stop_outcome

    def watchdog_tick(self) -> str:
        self.calls.append(("tick",))
        return self.tick

    @property
    def ops(self) -> profit_loop.WorkerOps:
        return profit_loop.WorkerOps(manage=self.manage, stop=self.stop, watchdog_tick=self.watchdog_tick)


RANKED = [make_coin("aaa", 2.0), make_coin("bbb", 1.0)]


def test_apply_ranking_hands_over_the_ranking_and_the_untrusted_coins():
    w = Worker()
    result = strategy.Analysis(RANKED[0], RANKED, [strategy.Skipped("Ccc", "https://x/ccc", "price: N/A")], 0.0, 1.0)
    profit_loop.apply_ranking(result, dry_run=True, worker=w.ops)
    assert w.calls == [("manage", "aaa", ["aaa", "bbb"], True, {"ccc"})]


def test_apply_ranking_with_nothing_usable_leaves_the_worker_alone_unless_pinned():
    w = Worker()
    empty = strategy.Analysis(None, [], [], 0.0, 1.0)
    profit_loop.apply_ranking(empty, dry_run=False, worker=w.ops)
    assert w.calls == []
    config.state.update(pinned="aaa", last_ranking=RANKED)
    profit_loop.apply_ranking(None, dry_run=False, worker=w.ops)  # None: the last ranking, again
    assert w.calls == [("manage", "aaa", ["aaa", "bbb"], False, set())]


@pytest.mark.parametrize("tick, ranking, restarted", [("missing", RANKED, True), ("missing", [], False), ("ok", RANKED, False)])
def test_the_watchdog_step_restarts_a_missing_worker_from_the_last_ranking(tick, ranking, restarted):
    w = Worker(tick=tick)
    config.state.update(last_ranking=ranking)
    profit_loop.watchdog_step(dry_run=False, worker=w.ops)
    assert w.calls[0] == ("tick",)
    assert (("manage", "aaa", ["aaa", "bbb"], False, set()) in w.calls) is restarted


def test_while_paused_the_watchdog_step_only_stops():
    w = Worker(tick="missing", stop="stopped")
    config.state.update(paused=True, last_ranking=RANKED)
    profit_loop.watchdog_step(dry_run=False, worker=w.ops)
    assert w.calls == [("stop",)]
    profit_loop.watchdog_step(dry_run=True, worker=w.ops)  # a dry run touches nothing
    assert w.calls == [("stop",)]


def test_a_changed_pin_is_applied_at_once_to_the_last_ranking():
    w = Worker()
    clock = profit_loop.LoopClock(interval=3600, watchdog=300, next_analysis=time.monotonic() + 3600)
    memory = profit_loop.LoopMemory(applied_pin=None, saved_choice={})
    config.state.update(last_ranking=RANKED, pinned="bbb")
    profit_loop.market_step(clock, memory, dry_run=False, worker=w.ops)
    assert w.calls == [("manage", "aaa", ["aaa", "bbb"], False, set())] and memory.applied_pin == "bbb"
    profit_loop.market_step(clock, memory, dry_run=False, worker=w.ops)  # applied: not again
    assert len(w.calls) == 1


def test_a_failing_loop_step_is_logged_with_its_cause_and_the_loop_goes_on(tmp_path, monkeypatch):
    config.override(PATH_RUNTIME=str(tmp_path / "runtime.json"), WATCHDOG_SECONDS=1)
    calls = []

    def broken_step(*args):
        calls.append(1)
        if len(calls) == 2:
            config.state.shutdown.set()
        raise ValueError("bad ranking")

    monkeypatch.setattr(profit_loop, "market_step", broken_step)
    monkeypatch.setattr(profit_loop, "RETRY_AFTER_FAULT", 0.0)  # retry at once, not in 5 min
    with captured_log() as recs:
        profit_loop.profit_loop(dry_run=True, worker=Worker().ops)
    errors = [m for m in messages(recs) if "Profit loop step failed" in m]
    assert len(calls) == 2 and errors and "ValueError: bad ranking" in errors[0]
    assert config.state.get("loop_alive") is False


# --- the watchdog step on a real engine ---------------------------------------------------------
@pytest.mark.slow
def test_a_worker_removed_by_hand_comes_back_from_the_last_ranking(worker):
    ops = main.wire(config.settings()).worker
    config.state.update(last_ranking=[make_coin("aaa", 2.0), make_coin("bbb", 1.0)])
    assert engine_view(worker) is None
    profit_loop.watchdog_step(dry_run=False, worker=ops)
    assert engine_view(worker).labels["mining_coin"] == "aaa"
    engine_view(worker).remove(force=True)  # someone ran `docker rm -f` on the rig
    profit_loop.watchdog_step(dry_run=False, worker=ops)
    assert engine_view(worker).status == "running" and main.miner_controller.running_coin() == "aaa"


@pytest.mark.slow
def test_while_paused_the_watchdog_step_removes_any_worker(worker):
    ops = main.wire(config.settings()).worker
    config.state.update(last_ranking=[make_coin("aaa", 2.0)])
    profit_loop.watchdog_step(dry_run=False, worker=ops)
    assert engine_view(worker) is not None
    config.state.update(paused=True)  # e.g. `miner stop` came while the engine was down
    profit_loop.watchdog_step(dry_run=False, worker=ops)
    assert engine_view(worker) is None


# --- the daemon's services wired together: API, pipe and Discord ----------------------------------
def test_services_wire_discord_pipe_and_api_to_one_state(tmp_path):
    """start_services as the daemon runs it: the owner's DM and the FIFO drive the same state, the
    start-up notice reaches Discord, and stop_services ends every thread."""
    owner = 123456789012345678
    s = config.override(DC_API_KEY="test.bot.token", DC_USER_ID=str(owner), API_HOST="127.0.0.1",
                        API_PORT=free_port(), PIPE_PATH=str(tmp_path / "miner_comm"))
    with DiscordStandIn() as dc, dc.patched():
        svc = main.start_services(s, main.wire(config.settings()))
        try:
            assert svc.discord is not None and svc.discord.ready.wait(15)
            utils.notify("SmartMiner Manager started")
            assert dc.wait_dms(1)[0].content == "SmartMiner Manager started"
            dc.inject_message("logs off", author_id=owner)  # the owner, by DM
            dc.wait_dms(2)
            assert config.state.get("logs_enabled") is False
            with open(s.PIPE_PATH, "w", encoding="utf-8") as fh:  # and the pipe, on the rig
                fh.write("pin qrl\n")
            deadline = time.monotonic() + 10
            while config.state.get("pinned") != "qrl" and time.monotonic() < deadline:
                time.sleep(0.05)
            with urllib.request.urlopen(f"http://127.0.0.1:{s.API_PORT}/status", timeout=5) as resp:
                assert json.loads(resp.read())["pinned"] == "qrl"
        finally:
            main.stop_services(svc)
    assert config.state.shutdown.is_set()
    assert all(not t.is_alive() for t in svc.threads)


# --- structure ------------------------------------------------------------------------------------
def project_imports() -> dict[str, tuple[set[str], list[str]]]:
    """For each top-level module: (project modules it imports, "module:line" of imports inside functions)."""
    names = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "*.py"))}
    out = {}
    for name in names:
        with open(os.path.join(ROOT, f"{name}.py"), encoding="utf-8") as fh:
            tree = ast.parse(fh.read())
        imported: set[str] = set()
        tucked: list[str] = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                tucked += [f"{name}:{n.lineno}" for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))]
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
        out[name] = (imported & names - {name}, tucked)
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle ("a", "b", "a") in a module graph, or None (depth-first search)."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        for dep in sorted(graph.get(node, ())):
            if dep in path:
                return path[path.index(dep):] + [dep]
            if dep not in done:
                found = visit(dep, path + [dep])
                if found:
                    return found
        done.add(node)
        return None

    for name in sorted(graph):
        found = None if name in done else visit(name, [name])
        if found:
            return found
    return None


def test_no_import_cycle_among_the_project_modules():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the search does find one
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({name: deps for name, (deps, _) in project_imports().items()}) is None


def test_main_and_its_modules_import_at_the_top_only():
    wired = ("main", "profit_loop", "startup_checks", "owner_choice", "healthcheck", "strategy", "market_setup",
             "soupManager", "commands", "command_pipe", "discord_service", "config", "utils")
    tucked = [where for name, (_, lines) in project_imports().items() if name in wired for where in lines]
    # The one documented exception: discord.py costs the idle daemon ~18 MiB, so main loads it only
    # when a bot token is set (main.start_discord). It dodges no cycle.
    lazy = [f"main:{n}" for n, line in enumerate(open(os.path.join(ROOT, "main.py"), encoding="utf-8"), 1)
            if line.strip().startswith("import discord_service")]
    assert tucked == lazy and len(lazy) == 1


def test_the_fast_tier_knows_what_is_slow():
    """The guard behind `make test-fast` (tests/conftest.py): these command lines would start a slow part."""
    assert slow_component(["/usr/bin/chromedriver", "--port=1"]) == "chromedriver"
    assert slow_component("dockerd --host unix:///tmp/x.sock") == "dockerd"
    assert slow_component([sys.executable, os.path.join(ROOT, "main.py"), "--once"]) == "main.py"
    assert slow_component(["docker-compose", "config"]) is None and slow_component(["true"]) is None
