"""SmartMiner Manager: the daemon and its command line, and the one place the parts are wired together.

    python main.py                    run the daemon (API, command pipe, Discord, profit loop)
    python main.py --once --dry-run   one analysis, print the ranking, change nothing
    python main.py --once --json      one analysis, the ranking as JSON on stdout
    python main.py --healthcheck      exit 0 when the running daemon's /healthz says healthy

The profit loop (profit_loop.py) runs on the main thread; the API server, the pipe reader and the
Discord client run beside it. SIGTERM/SIGINT stop it within seconds and leave the worker mining.
The modules do not import each other's collaborators: `wire()` hands each one what it needs.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import api_wrapper
import commands
import config
import fleet
import fleet_health
import hashrates
import healthcheck
import history
import miner_controller
import owner_choice
import profit_loop
import reaper
import startup_checks
import strategy
import utils
import xmrig
from coin import Coin
from engine import Engine, EngineDown
from utils import log
from worker_backend import ContainerBackend, Worker, WorkerBackend

EXIT_OK = 0
EXIT_CONFIG = 2


# --- command line ----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="main.py", description="SmartMiner Manager: keeps this rig on the most profitable coin.")
    p.add_argument("--once", action="store_true", help="run one analysis (and, without --dry-run, apply it), then exit")
    p.add_argument("--dry-run", action="store_true", help="decide, but only log the container that would be started or stopped")
    p.add_argument("--json", action="store_true", help="with --once: print the ranking as JSON on stdout (logs go to stderr)")
    p.add_argument("--env-file", default=".env", help="read settings from this file too (default: .env)")
    p.add_argument("--healthcheck", action="store_true", help="exit 0 if the running daemon's /healthz is healthy (Docker HEALTHCHECK)")
    return p.parse_args(argv)


# --- wiring ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Wiring:
    """The collaborators main hands out: the loop's worker controls and market hooks, the command
    runner shared by the pipe and Discord, the engine check, the worker's status for the API, the
    history store and the measured hashrates."""

    worker: profit_loop.WorkerOps
    market: profit_loop.MarketOps
    run_command: commands.Runner
    engine_reachable: Callable[[], bool]
    worker_status: Callable[[], dict]
    engine: Engine
    history: history.HistoryStore
    hashrates: hashrates.HashrateBook


def reading_hook(book: hashrates.HashrateBook, store: history.HistoryStore, s: config.Settings):
    """What the watchdog does with each reading of the healthy worker: a hashrate sample for the
    history, and (after HASHRATE_MIN_SECONDS of mining) the measured hashrate for the analysis."""

    def on_reading(worker: Worker, summary: xmrig.Summary, now: float) -> None:
        if not worker.coin_key:
            return
        sample = summary.hashrate_60s if summary.hashrate_60s is not None else summary.hashrate_10s
        store.record_hashrate(worker.coin_key, sample or 0.0, when=now)
        hashrates.observe(book, worker.coin_key, summary.algo, summary.total, summary.uptime or 0.0,
                          s.HASHRATE_MIN_SECONDS, s.MY_HASHRATE_KH * 1000.0, now)

    return on_reading


def switch_hook(store: history.HistoryStore):
    def on_switch(previous: Coin | None, new: Coin, reason: str, gain_pct: float | None) -> None:
        store.record_switch(previous, new, reason, gain_pct)

    return on_switch


def incident_hook(store: history.HistoryStore):
    def on_incident(key: str, text: str, opened: bool) -> None:
        if opened:
            store.incident_started(key, text)
        else:
            store.incident_cleared(key)

    return on_incident


def status_lines(store: history.HistoryStore) -> Callable[[], list[str]]:
    return lambda: history.status_lines(store.last_switch(), store.average_income(24), time.time())


def choose_backend(s: config.Settings, engine: Engine) -> WorkerBackend:
    """FLEET_MODE: one container on this engine, or a global Swarm service for the whole fleet."""
    return fleet.SwarmBackend(engine) if s.FLEET_MODE == "swarm" else ContainerBackend(engine)


def no_summary() -> None:
    """Swarm mode: the watchdog reads task states, not this node's XMRig (a 0 H/s here must not
    restart every rig's task)."""
    return None


def wire(s: config.Settings) -> Wiring:
    """Connect the parts. No I/O: the engine is reached, the history opened and the hashrates read
    only when the daemon starts."""
    engine = Engine()
    backend = choose_backend(s, engine)
    store = history.HistoryStore(s.PATH_DB, s.HISTORY_DAYS)
    book = hashrates.HashrateBook(s.PATH_HASHRATES)
    swarm = s.FLEET_MODE == "swarm"
    miner_controller.configure(
        backend=backend,
        read_summary=no_summary if swarm else xmrig.read_summary,
        on_reading=reading_hook(book, store, s),
        on_switch=switch_hook(store),
        after_tick=backend.report_nodes if swarm else None,
    )
    worker = profit_loop.WorkerOps(manage=miner_controller.manage_worker, stop=miner_controller.stop_worker,
                                   watchdog_tick=miner_controller.watchdog_tick)
    market = profit_loop.MarketOps(
        hashrate_for=book.hashrate_for,
        on_analysis=lambda result: store.record_analysis(result.coins, result.skipped_dicts(), when=result.finished),
    )
    controls = commands.WorkerControls(stop_worker=miner_controller.stop_worker,
                                       reset_watchdog=miner_controller.reset_watchdog,
                                       status_extra=status_lines(store))
    return Wiring(worker, market, commands.runner(controls), miner_controller.engine_reachable,
                  miner_controller.worker_status, engine, store, book)


def fleet_problem(s: config.Settings, engine: Engine) -> str | None:
    """Swarm mode only: why this manager cannot drive a fleet (a bad constraint, an engine that is
    not a Swarm manager), or None. An engine that does not answer is retried like in single mode."""
    if s.FLEET_MODE != "swarm":
        return None
    problem = fleet_health.constraint_problem(s.FLEET_CONSTRAINT)
    if problem:
        return problem
    try:
        return fleet.check_manager(engine.client())
    except EngineDown as exc:
        log(f"[WARN] Swarm mode: the Docker engine does not answer ({exc}); the manager role is checked "
            "when it does", force=True)
        return None


# --- one analysis, then exit -----------------------------------------------------------------------
def run_once(args: argparse.Namespace, wiring: Wiring) -> int:
    problems = [c for c in startup_checks.run_checks(config.settings()) if c.fatal_once]
    if problems:
        return EXIT_CONFIG
    wiring.hashrates.load()
    wiring.history.start()
    try:
        return apply_once(args, wiring)
    finally:
        wiring.history.close()


def apply_once(args: argparse.Namespace, wiring: Wiring) -> int:
    """The analysis of `--once`, shown and (without --dry-run) applied; recorded in the history."""
    result = profit_loop.analyse(market=wiring.market)
    if result is None:
        return EXIT_CONFIG
    if args.json:
        json.dump(strategy.ranking_json(result), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(strategy.ranking_table(result))
    profit_loop.apply_ranking(result, args.dry_run, wiring.worker)
    return EXIT_OK


# --- the daemon ------------------------------------------------------------------------------------
@dataclass
class Services:
    """The threads beside the profit loop, so shutdown can stop each one."""

    api: api_wrapper.ApiServer | None = None
    discord: Any = None  # discord_service.DiscordService, when Discord is configured
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


def start_services(s: config.Settings, wiring: Wiring) -> Services:
    svc = Services()
    try:
        svc.api = api_wrapper.make_server(s.API_HOST, s.API_PORT, worker_status=wiring.worker_status,
                                          history_store=wiring.history)
        svc.spawn("api", svc.api.serve_forever)
        log(f"[INFO] API on http://{s.API_HOST}:{s.API_PORT} (/1/summary, /status, /healthz, /metrics)", force=True)
    except OSError as exc:
        log(f"[ERROR] API port {s.API_PORT} unavailable ({exc}): set API_PORT to a free port; continuing without the API", force=True)
    svc.spawn("pipe", lambda: commands.listen_for_commands(stop=config.state.shutdown, path=s.PIPE_PATH,
                                                           run=wiring.run_command))
    log(f"[INFO] Commands: echo \"help\" > {s.PIPE_PATH}", force=True)
    svc.discord = start_discord(s, wiring.run_command)
    return svc


def start_discord(s: config.Settings, run: commands.Runner) -> Any:
    """The Discord service, when a bot token is set; else one line and None.

    discord.py and aiohttp cost the idle daemon about 18 MiB (45.5 -> 66.7 MiB measured with them
    loaded at start-up), so they are loaded only when Discord is configured: the one import in main
    that is not at the top, for memory (it dodges no cycle: discord_service imports nothing of main's).
    """
    if not s.DC_API_KEY.strip():
        log("[WARN] Discord disabled: DC_API_KEY is not set. Everything else runs.", force=True)
        return None
    import discord_service  # lazy on purpose, see the docstring

    return discord_service.start_discord(run=run)


def stop_services(svc: Services) -> None:
    config.state.shutdown.set()  # the pipe reader watches it (already set, unless the loop crashed)
    if svc.api is not None:
        svc.api.shutdown()
        svc.api.server_close()
    if svc.discord is not None:
        try:
            svc.discord.stop()
        except Exception as exc:
            log(f"[WARN] Discord did not stop cleanly: {type(exc).__name__}: {exc}")
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


def startup_banner(s: config.Settings, dry_run: bool) -> None:
    log(f"[INFO] SmartMiner Manager starting: {s.MY_HASHRATE_KH:g} kH/s, {s.MINER_THREADS} thread(s), "
        f"check every {s.HOURS_INTERVAL:g} h, switch at +{(s.INCOME_TRESHOLD - 1) * 100:.0f}%"
        + (" (dry run: no container is started or stopped)" if dry_run else ""), force=True)
    kind = "Swarm service (global, " + s.FLEET_CONSTRAINT + ")" if s.FLEET_MODE == "swarm" else "container"
    log(f"[INFO] Worker: {kind} {s.CONTAINER_NAME}, image {s.IMAGE_NAME}", force=True)


def run_daemon(args: argparse.Namespace, wiring: Wiring) -> int:
    s = config.settings()
    install_signal_handlers()
    startup_banner(s, args.dry_run)
    problem = None if args.dry_run else fleet_problem(s, wiring.engine)
    if problem:
        log(f"[ERROR] {problem}", force=True)
        return EXIT_CONFIG
    reaper.start(config.state.shutdown)
    owner_choice.restore_runtime(s.PATH_RUNTIME)
    wiring.hashrates.load()
    wiring.history.start()
    utils.incidents.observe(incident_hook(wiring.history))
    problems = startup_checks.run_checks(s, engine_reachable=None if args.dry_run else wiring.engine_reachable)
    svc = start_services(s, wiring)
    hints = startup_checks.setup_hints(problems)
    utils.notify("SmartMiner Manager started" + (f" on {s.MY_HASHRATE_KH:g} kH/s" if not hints else "") + (f"\n{hints}" if hints else ""))
    try:
        profit_loop.profit_loop(args.dry_run, wiring.worker, wiring.market)
    finally:
        log("[INFO] Stopping services...", force=True)
        stop_services(svc)
        wiring.history.close()
    log("[INFO] SmartMiner Manager stopped; the worker container keeps mining", force=True)
    return EXIT_OK


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
        return healthcheck.healthcheck()
    wiring = wire(s)
    if args.once:
        return run_once(args, wiring)
    return run_daemon(args, wiring)


if __name__ == "__main__":
    sys.exit(main())
