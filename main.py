"""SmartMiner Manager: the daemon and its command line.

    python main.py                    run the daemon (API, command pipe, Discord, profit loop)
    python main.py --once --dry-run   one analysis, print the ranking, change nothing
    python main.py --once --json      one analysis, the ranking as JSON on stdout
    python main.py --healthcheck      exit 0 when the running daemon's /healthz says healthy

The profit loop runs on the main thread; the API server, the pipe reader and the Discord client
run beside it. SIGTERM/SIGINT stop it within seconds and leave the worker container mining.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Callable

import config
import utils
from utils import log

EXIT_OK = 0
EXIT_CONFIG = 2
HEARTBEAT_SECONDS = 60.0  # the loop proves it is alive at least this often (see /healthz)


# --- command line ----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="main.py", description="SmartMiner Manager: keeps this rig on the most profitable coin.")
    p.add_argument("--once", action="store_true", help="run one analysis (and, without --dry-run, apply it), then exit")
    p.add_argument("--dry-run", action="store_true", help="decide, but only log the container that would be started or stopped")
    p.add_argument("--json", action="store_true", help="with --once: print the ranking as JSON on stdout (logs go to stderr)")
    p.add_argument("--env-file", default=".env", help="read settings from this file too (default: .env)")
    p.add_argument("--healthcheck", action="store_true", help="exit 0 if the running daemon's /healthz is healthy (Docker HEALTHCHECK)")
    return p.parse_args(argv)


# --- start-up checks -------------------------------------------------------------------------------
@dataclass
class Check:
    """One start-up check: what it looked at, and the line that says what to fix (empty when fine)."""

    name: str
    problem: str = ""
    fatal_once: bool = True  # fatal for --once; the daemon logs it and keeps serving
    setup: bool = False  # a file the owner must set up: the start-up message gives its hint


def check_files(s: config.Settings) -> list[Check]:
    """Links, wallets and pools usable, read by the very readers the analysis uses, with a hint
    that says how to fix each."""
    import strategy

    files = (
        (s.PATH_LINKS, strategy.read_links, "one MiningPoolStats coin URL per line (see links.txt in the repository)"),
        (s.PATH_WALLETS, strategy.read_wallets, "copy json/wallets.example.json to json/wallets.json and put your addresses in"),
        (s.PATH_POOLS, strategy.read_pools, "a JSON object mapping each coin to \"host:port\" (see json/pools.json in the repository)"),
    )
    out = []
    for path, read, hint in files:
        problem = ""
        if not os.path.isfile(path):
            problem = f"{path} not found: {hint}"
        else:
            try:
                read(path)
            except strategy.SetupError as exc:
                problem = str(exc)
        out.append(Check(os.path.basename(path), problem, setup=True))
    return out


def check_browser(s: config.Settings) -> Check:
    missing = [p for p in (s.CHROME_BIN, s.CHROMEDRIVER_PATH) if not os.access(p, os.X_OK)]
    problem = ""
    if missing:
        problem = (f"{' and '.join(missing)} not found: install Debian's chromium and chromium-driver "
                   "(apt-get install chromium chromium-driver) or set CHROME_BIN / CHROMEDRIVER_PATH")
    return Check("chromium", problem)


def check_docker() -> Check:
    """Docker is only warned about: the controller retries every cycle."""
    import miner_controller

    if miner_controller.engine_reachable():
        return Check("docker")
    return Check("docker", "Docker engine not reachable: mount /var/run/docker.sock or set DOCKER_HOST; "
                 "will retry every cycle", fatal_once=False)


def run_checks(s: config.Settings, docker: bool) -> list[Check]:
    checks = check_files(s) + [check_browser(s)]
    if docker:
        checks.append(check_docker())
    for c in checks:
        if c.problem:
            log(f"[{'ERROR' if c.fatal_once else 'WARN'}] {c.problem}", force=True)
    return [c for c in checks if c.problem]


def setup_hints(problems: list[Check]) -> str:
    """The first-time setup message for the owner, or "" when nothing is missing."""
    lines = [c.problem for c in problems if c.setup]
    if not lines:
        return ""
    return "Setup needed before mining can start:\n- " + "\n- ".join(lines)


# --- one analysis ----------------------------------------------------------------------------------
def progress_printer(total: int) -> Callable[[str, str], None]:
    """A progress callback for jsTrigger: one line per page event, with a page counter."""
    done: set[str] = set()
    lock = threading.Lock()

    def progress(url: str, message: str) -> None:
        config.state.beat()
        with lock:
            if message.lower().startswith(("done", "error", "failed", "ok")):
                done.add(url)
            count = len(done)
        log(f"[INFO] [{count}/{total}] {utils.slug_of(url)}: {message}")

    return progress


def count_links(path: str) -> int:
    """How many pages an analysis will render (0 when links.txt is unusable: analyse() says why)."""
    import strategy

    try:
        return len(strategy.read_links(path))
    except strategy.SetupError:
        return 0


def analyse(abort: threading.Event | None = None, show_table: bool = False):
    """Run one market analysis and record it in the run state. Returns the Analysis, or None on a setup error.

    `show_table` logs the ranking table too (the daemon); `--once` prints it on stdout instead.
    """
    import strategy

    s = config.settings()
    try:  # strategy logs the start ("Analysing N coin pages with up to B browsers")
        result = strategy.analyse(abort=abort, progress=progress_printer(count_links(s.PATH_LINKS)))
    except strategy.SetupError as exc:
        log(f"[ERROR] {exc}", force=True)
        utils.incidents.raise_("setup", f"Setup problem, analysis skipped: {exc}")
        return None
    utils.incidents.clear("setup", "Setup problem fixed: analysis runs again")
    if abort is not None and abort.is_set():
        log("[INFO] Analysis aborted: its partial results are dropped")
        return None
    strategy.publish(result)
    took = result.finished - result.started
    best = result.best
    log(f"[INFO] Analysis done in {took:.1f} s: {len(result.coins)} usable, {len(result.skipped)} skipped"
        + (f", best {best['Coin name']} at ${strategy.rank_value(best):.4f}/day" if best else ""))
    if show_table:
        log("[INFO] Ranking:\n" + strategy.ranking_table(result))
    return result


def apply_ranking(result, dry_run: bool) -> None:
    """Hand the ranking to the controller, which keeps or switches the worker.

    `result` None re-applies the last ranking (a pin changed). The worker is left alone when there
    is nothing usable; the controller also keeps it when its own coin's reading failed this cycle.
    """
    import miner_controller

    coins = list(result.coins) if result is not None else list(config.state.get("last_ranking"))
    best = coins[0] if coins else None
    pinned = config.state.get("pinned")
    if best is None and not pinned:
        log("[WARN] No usable coin in this analysis: the current worker keeps mining", force=True)
        return
    hold = result.untrusted_keys() if result is not None else frozenset()
    miner_controller.manage_worker(best, coins, dry_run=dry_run, hold=hold)


def run_once(args: argparse.Namespace) -> int:
    import strategy

    problems = [c for c in run_checks(config.settings(), docker=False) if c.fatal_once]
    if problems:
        return EXIT_CONFIG
    result = analyse()
    if result is None:
        return EXIT_CONFIG
    if args.json:
        json.dump(strategy.ranking_json(result), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(strategy.ranking_table(result))
    apply_ranking(result, dry_run=args.dry_run)
    return EXIT_OK


# --- the daemon ------------------------------------------------------------------------------------
@dataclass
class Services:
    """The threads beside the profit loop, so shutdown can stop each one."""

    api: object | None = None
    discord: object | None = None
    threads: list[threading.Thread] = field(default_factory=list)

    def spawn(self, name: str, target: Callable[[], None]) -> None:
        t = threading.Thread(target=guarded(name, target), name=name, daemon=True)
        t.start()
        self.threads.append(t)


def guarded(name: str, target: Callable[[], None]) -> Callable[[], None]:
    """A thread body that logs its crash in one line instead of dying silently."""

    def run() -> None:
        try:
            target()
        except Exception as exc:
            log(f"[ERROR] {name} stopped: {type(exc).__name__}: {exc}", force=True)

    return run


def start_services(s: config.Settings) -> Services:
    import api_wrapper
    import commands
    import discord_service
    import miner_controller

    svc = Services()
    try:
        svc.api = api_wrapper.make_server(s.API_HOST, s.API_PORT, worker_status=miner_controller.worker_status)
        svc.spawn("api", svc.api.serve_forever)
        log(f"[INFO] API on http://{s.API_HOST}:{s.API_PORT} (/1/summary, /status, /healthz, /metrics)", force=True)
    except OSError as exc:
        log(f"[ERROR] API port {s.API_PORT} unavailable ({exc}): set API_PORT to a free port; continuing without the API", force=True)
    svc.spawn("pipe", lambda: commands.listen_for_commands(stop=config.state.shutdown, path=s.PIPE_PATH))
    log(f"[INFO] Commands: echo \"help\" > {s.PIPE_PATH}", force=True)
    svc.discord = discord_service.start_discord()
    return svc


def stop_services(svc: Services) -> None:
    config.state.shutdown.set()  # the pipe reader watches it (already set, unless the loop crashed)
    if svc.api is not None:
        svc.api.shutdown()
        svc.api.server_close()
    if svc.discord is not None:
        try:
            svc.discord.stop()
        except Exception as exc:
            log(f"[WARN] Discord did not stop cleanly: {exc}")
    for t in svc.threads:
        t.join(timeout=2.0)


def install_signal_handlers() -> None:
    """SIGTERM/SIGINT: set the shutdown event, which stops the pipe reader, aborts a running
    analysis (its browsers are closed) and ends the profit loop."""

    def handler(signum, _frame) -> None:
        log(f"[INFO] {signal.Signals(signum).name} received: shutting down (the worker keeps mining)", force=True)
        config.state.shutdown.set()
        config.state.wake.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@dataclass
class LoopClock:
    """When the next analysis and the next watchdog tick are due (monotonic seconds)."""

    interval: float
    watchdog: float
    next_analysis: float = 0.0  # 0: analyse at once
    next_watchdog: float = 0.0

    def analysis_due(self, now: float) -> bool:
        return now >= self.next_analysis

    def analysed(self, now: float) -> None:
        self.next_analysis = now + self.interval
        config.state.update(next_analysis=time.time() + self.interval)

    def wait_seconds(self, now: float) -> float:
        return max(0.0, min(self.next_analysis - now, self.next_watchdog - now, HEARTBEAT_SECONDS))


# --- what the owner chose survives a restart -------------------------------------------------------
RUNTIME_FIELDS = ("paused", "pinned")


def load_runtime(path: str) -> dict:
    """The owner's last `miner stop` / `pin`, so a restarted manager does not undo them."""
    try:
        data = utils.read_json(path, default={}, expect=dict)
    except utils.DataFileError as exc:
        log(f"[WARN] {exc}: starting unpaused and unpinned")
        return {}
    out = {}
    if isinstance(data.get("paused"), bool):
        out["paused"] = data["paused"]
    if isinstance(data.get("pinned"), str) and data["pinned"].strip():
        out["pinned"] = data["pinned"].strip()
    return out


def save_runtime(path: str, choice: dict) -> None:
    try:
        utils.atomic_write_json(path, choice)
    except OSError as exc:
        log(f"[WARN] Cannot write {path}: {exc}; a restart will forget paused/pinned")


def owner_choice() -> dict:
    return {name: config.state.get(name) for name in RUNTIME_FIELDS}


def restore_runtime(path: str) -> None:
    saved = load_runtime(path)
    if saved:
        config.state.update(**saved)
        log(f"[INFO] Restored from {path}: " + ", ".join(f"{k}={v}" for k, v in saved.items())
            + (" (send \"miner start\" to resume)" if saved.get("paused") else ""), force=True)


@dataclass
class LoopMemory:
    """What the loop remembers between iterations: the pin it applied, the choice it saved."""

    applied_pin: str | None
    saved_choice: dict


RETRY_AFTER_FAULT = 300.0  # an iteration that failed unexpectedly is retried this much later


def persist_choice(memory: LoopMemory, path: str) -> None:
    if owner_choice() != memory.saved_choice:
        memory.saved_choice = owner_choice()
        save_runtime(path, memory.saved_choice)


def market_step(clock: LoopClock, memory: LoopMemory, dry_run: bool) -> None:
    """Analyse when due or asked (`check` even while paused); apply a changed pin at once."""
    st = config.state
    now = time.monotonic()
    forced = st.get("force_check")
    if forced:
        st.update(force_check=False)
    paused = st.get("paused")
    if forced or (clock.analysis_due(now) and not paused):
        clock.analysed(now)  # before the attempt: a failing analysis is not retried in a hot loop
        result = analyse(st.shutdown, show_table=True)
        if result is not None and not st.get("paused") and not st.shutdown.is_set():
            apply_ranking(result, dry_run)
        memory.applied_pin = st.get("pinned")
    elif clock.analysis_due(now):
        log("[INFO] Paused: scheduled analysis skipped (send \"miner start\" to resume)")
        clock.analysed(now)
    elif st.get("pinned") != memory.applied_pin and not paused:
        memory.applied_pin = st.get("pinned")
        log(f"[INFO] Pin changed to {memory.applied_pin or 'none'}: applying it to the last ranking")
        apply_ranking(None, dry_run)


def watchdog_step(dry_run: bool) -> None:
    """Between analyses: while paused, make sure no worker runs; else heal a missing worker, or
    let the controller's watchdog check the running one."""
    import miner_controller

    if dry_run:
        return
    if config.state.get("paused"):
        if miner_controller.stop_worker() == "stopped":
            log("[WARN] Mining is paused but a worker was running: it has been stopped", force=True)
        return
    if miner_controller.watchdog_tick() == "missing" and config.state.get("last_ranking"):
        log("[WARN] No worker container while mining is on (removed by hand?): starting from the last ranking", force=True)
        apply_ranking(None, dry_run)


def profit_loop(dry_run: bool) -> None:
    """Analyse every HOURS_INTERVAL hours, apply the ranking, tick the watchdog in between.

    Ends when `config.state.shutdown` is set (SIGTERM, SIGINT, `exit`); that event also aborts a
    running analysis. An unexpected fault in one iteration is logged and retried later: the loop,
    and the worker, go on.
    """
    s = config.settings()
    st = config.state
    clock = LoopClock(interval=s.HOURS_INTERVAL * 3600.0, watchdog=s.WATCHDOG_SECONDS)
    clock.next_watchdog = time.monotonic() + clock.watchdog
    memory = LoopMemory(applied_pin=st.get("pinned"), saved_choice=owner_choice())
    while not st.shutdown.is_set():
        st.wake.clear()  # before acting: a command arriving meanwhile wakes the next wait at once
        st.beat()
        try:
            persist_choice(memory, s.PATH_RUNTIME)
            market_step(clock, memory, dry_run)
            if time.monotonic() >= clock.next_watchdog and not st.shutdown.is_set():
                clock.next_watchdog = time.monotonic() + clock.watchdog
                watchdog_step(dry_run)
        except Exception as exc:
            log(f"[ERROR] Profit loop step failed ({type(exc).__name__}: {exc}); the worker keeps mining, "
                f"retrying in {RETRY_AFTER_FAULT / 60:.0f} min", force=True)
            clock.next_analysis = min(clock.next_analysis, time.monotonic() + RETRY_AFTER_FAULT)
        st.wake.wait(clock.wait_seconds(time.monotonic()))
    persist_choice(memory, s.PATH_RUNTIME)
    st.update(loop_alive=False)


def startup_banner(s: config.Settings, dry_run: bool) -> None:
    log(f"[INFO] SmartMiner Manager starting: {s.MY_HASHRATE_KH:g} kH/s, {s.MINER_THREADS} thread(s), "
        f"check every {s.HOURS_INTERVAL:g} h, switch at +{(s.INCOME_TRESHOLD - 1) * 100:.0f}%"
        + (" (dry run: no container is started or stopped)" if dry_run else ""), force=True)
    log(f"[INFO] Worker: container {s.CONTAINER_NAME}, image {s.IMAGE_NAME}", force=True)


def run_daemon(args: argparse.Namespace) -> int:
    s = config.settings()
    install_signal_handlers()
    startup_banner(s, args.dry_run)
    restore_runtime(s.PATH_RUNTIME)
    problems = run_checks(s, docker=not args.dry_run)
    svc = start_services(s)
    hints = setup_hints(problems)
    utils.notify("SmartMiner Manager started" + (f" on {s.MY_HASHRATE_KH:g} kH/s" if not hints else "") + (f"\n{hints}" if hints else ""))
    try:
        profit_loop(args.dry_run)
    finally:
        log("[INFO] Stopping services...", force=True)
        stop_services(svc)
    log("[INFO] SmartMiner Manager stopped; the worker container keeps mining", force=True)
    return EXIT_OK


def healthcheck() -> int:
    """For Docker's HEALTHCHECK: ask the running daemon's /healthz on loopback."""
    port = config.settings().API_PORT
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return EXIT_OK if resp.status == 200 else 1
    except Exception as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        s = config.load_settings(env_file=args.env_file)
    except config.ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    config.set_settings(s)
    utils.setup_logging(s.LOG_LEVEL)
    if args.healthcheck:
        return healthcheck()
    if args.once:
        return run_once(args)
    return run_daemon(args)


if __name__ == "__main__":
    sys.exit(main())
