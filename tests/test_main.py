"""main.py: the command line's exit codes and messages, the loop's clock, and shutdown mid-analysis."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

import config
import main
import utils
from tests.conftest import require

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(args: list[str], env: dict[str, str], cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def rig():
    """The demo rig without Docker: market pages on loopback and the files pointing at them."""
    require("/usr/bin/chromium", "Chromium")
    require("/usr/bin/chromedriver", "ChromeDriver")
    from demo.rig import build_rig

    r = build_rig(with_docker=False)
    yield r
    r.close()


def test_a_bad_setting_stops_start_up_with_one_line_and_status_2(rig):
    env = {**rig.env, "HOURS_INTERVAL": "0"}
    out = run_main(["--once", "--dry-run"], env, rig.workdir)
    assert out.returncode == 2
    assert out.stderr.strip() == "config error: HOURS_INTERVAL=0 is out of range: allowed 1 to 24"
    assert out.stdout == ""


def test_missing_wallets_says_how_to_fix_it(rig):
    os.remove(rig.env["PATH_WALLETS"])
    out = run_main(["--once", "--dry-run"], rig.env, rig.workdir)
    assert out.returncode == 2
    assert "wallets.json not found: copy json/wallets.example.json to json/wallets.json" in out.stderr


def test_malformed_pools_names_the_file_and_the_fault(rig):
    with open(rig.env["PATH_POOLS"], "w", encoding="utf-8") as fh:
        fh.write('{"Monero": ')
    out = run_main(["--once", "--dry-run"], rig.env, rig.workdir)
    assert out.returncode == 2
    assert "pools.json is not valid JSON (line 1" in out.stderr


def test_missing_chromium_is_one_clear_line(rig):
    env = {**rig.env, "CHROME_BIN": "/nonexistent/chromium"}
    out = run_main(["--once", "--dry-run"], env, rig.workdir)
    assert out.returncode == 2
    assert "/nonexistent/chromium not found: install Debian's chromium and chromium-driver" in out.stderr


def test_once_prints_a_table_and_skipped_coins_and_exits_0(rig):
    rig.market.set_coin("monero", emission="N/A")
    out = run_main(["--once", "--dry-run"], rig.env, rig.workdir)
    assert out.returncode == 0, out.stderr
    assert "Etica" in out.stdout and "USD/day" in out.stdout
    assert "skipped" in out.stdout.lower() and "Monero" in out.stdout
    assert "[5/5]" in out.stderr  # progress lines while pages render
    assert "[DRY-RUN] would start" in out.stderr


def test_healthcheck_fails_when_no_daemon_answers(rig):
    from demo.rig import free_port

    out = run_main(["--healthcheck"], {**rig.env, "API_PORT": str(free_port())}, rig.workdir)
    assert out.returncode == 1 and "unhealthy" in out.stderr


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


def test_loop_clock_waits_for_the_nearest_event_and_beats_every_minute():
    clock = main.LoopClock(interval=8 * 3600, watchdog=300, next_analysis=1000.0, next_watchdog=1100.0)
    assert clock.analysis_due(1000.0) and not clock.analysis_due(999.0)
    assert clock.wait_seconds(990.0) == 10.0
    assert clock.wait_seconds(500.0) == main.HEARTBEAT_SECONDS
    assert clock.wait_seconds(2000.0) == 0.0
    clock.analysed(1000.0)
    assert clock.next_analysis == 1000.0 + 8 * 3600
    assert config.state.get("next_analysis") > time.time() + 8 * 3600 - 5


def test_setup_hints_list_only_file_problems():
    problems = [main.Check("wallets.json", "json/wallets.json not found: copy ...", setup=True), main.Check("chromium", "x")]
    hint = main.setup_hints(problems)
    assert hint.startswith("Setup needed") and "wallets.json" in hint and "- x" not in hint
    assert main.setup_hints([main.Check("chromium", "x")]) == ""


def test_owner_choice_survives_a_restart_and_a_damaged_file_is_reported(tmp_path, caplog):
    path = str(tmp_path / "runtime.json")
    config.state.update(paused=True, pinned="qrl")
    main.save_runtime(path, main.owner_choice())
    config.reset_state()
    main.restore_runtime(path)
    assert config.state.get("paused") is True and config.state.get("pinned") == "qrl"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('{"paused": tru')
    assert main.load_runtime(path) == {}
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('{"paused": "yes", "pinned": 7}')  # wrong types are ignored, not trusted
    assert main.load_runtime(path) == {}
    assert main.load_runtime(str(tmp_path / "none.json")) == {}


# --- the watchdog step on a real engine ---------------------------------------------------------
from tests.test_miner_controller import coin, engine_view, notes, worker  # noqa: E402,F401 (fixtures)


def test_a_worker_removed_by_hand_comes_back_from_the_last_ranking(worker):
    import miner_controller

    best = coin("aaa", 2.0)
    config.state.update(last_ranking=[best, coin("bbb", 1.0)])
    assert engine_view(worker) is None
    main.watchdog_step(dry_run=False)
    assert engine_view(worker).labels["mining_coin"] == "aaa"
    engine_view(worker).remove(force=True)  # someone ran `docker rm -f` on the rig
    main.watchdog_step(dry_run=False)
    assert engine_view(worker).status == "running" and miner_controller.running_coin() == "aaa"


def test_while_paused_the_watchdog_step_removes_any_worker(worker):
    config.state.update(last_ranking=[coin("aaa", 2.0)])
    main.watchdog_step(dry_run=False)
    assert engine_view(worker) is not None
    config.state.update(paused=True)  # e.g. `miner stop` came while the engine was down
    main.watchdog_step(dry_run=False)
    assert engine_view(worker) is None


# --- the daemon's services wired together: API, pipe and Discord ----------------------------------
def test_services_wire_discord_pipe_and_api_to_one_state(tmp_path):
    """start_services as the daemon runs it: the owner's DM and the FIFO drive the same state, the
    start-up notice reaches Discord, and stop_services ends every thread."""
    import json
    import urllib.request

    from demo.rig import free_port
    from tests.discord_standin import DiscordStandIn

    owner = 123456789012345678
    s = config.override(DC_API_KEY="test.bot.token", DC_USER_ID=str(owner), API_HOST="127.0.0.1",
                        API_PORT=free_port(), PIPE_PATH=str(tmp_path / "miner_comm"))
    with DiscordStandIn() as dc, dc.patched():
        svc = main.start_services(s)
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
