"""The profit loop: analyse every HOURS_INTERVAL hours, hand the ranking to the worker controller, tick
the watchdog in between, keep the owner's choice on disk.

It runs on the main thread. The worker controller comes in as `WorkerOps` (main passes
miner_controller's front doors), so this module imports no controller.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import coin
import config
import market_setup
import owner_choice
import strategy
import utils
from coin import Coin
from utils import log

HEARTBEAT_SECONDS = 60.0  # the loop proves it is alive at least this often (see /healthz)
RETRY_AFTER_FAULT = 300.0  # an iteration that failed unexpectedly is retried this much later


@dataclass(frozen=True)
class WorkerOps:
    """What the loop asks of the worker controller."""

    manage: Callable[..., Any]  # (best, ranking, dry_run=, hold=) -> what happened: keep, switch or start
    stop: Callable[[], str]  # "stopped", "none" or "failed"
    watchdog_tick: Callable[[], str]  # "missing" when no worker runs, else what the watchdog saw


@dataclass(frozen=True)
class MarketOps:
    """What the analysis asks of the rest of the daemon: the rig's hashrate per coin (measured or
    configured) and who records a finished analysis (the history store)."""

    hashrate_for: strategy.HashrateSource = strategy.configured_hashrate
    on_analysis: Callable[[strategy.Analysis], None] | None = None


NO_MARKET_OPS = MarketOps()


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
        log(f"[INFO] [{count}/{total}] {coin.slug_of(url)}: {message}")

    return progress


def count_links(path: str) -> int:
    """How many pages an analysis will render (0 when links.txt is unusable: analyse() says why)."""
    try:
        return len(market_setup.read_links(path))
    except market_setup.SetupError:
        return 0


def analyse(abort: threading.Event | None = None, show_table: bool = False,
            market: MarketOps = NO_MARKET_OPS) -> strategy.Analysis | None:
    """Run one market analysis and record it in the run state. Returns the Analysis, or None on a
    setup error or an abort.

    `show_table` logs the ranking table too (the daemon); `--once` prints it on stdout instead.
    """
    s = config.settings()
    try:  # strategy logs the start ("Analysing N coin pages with up to B browsers")
        result = strategy.analyse(abort=abort, progress=progress_printer(count_links(s.PATH_LINKS)),
                                  hashrate_for=market.hashrate_for)
    except market_setup.SetupError as exc:
        log(f"[ERROR] {exc}", force=True)
        utils.incidents.raise_("setup", f"Setup problem, analysis skipped: {exc}")
        return None
    utils.incidents.clear("setup", "Setup problem fixed: analysis runs again")
    if abort is not None and abort.is_set():
        log("[INFO] Analysis aborted: its partial results are dropped")
        return None
    strategy.publish(result)
    if market.on_analysis is not None:
        market.on_analysis(result)
    took = result.finished - result.started
    best = result.best
    log(f"[INFO] Analysis done in {took:.1f} s: {len(result.coins)} usable, {len(result.skipped)} skipped"
        + (f", best {best.name} at ${best.rank_value:.4f}/day" if best else ""))
    if show_table:
        log("[INFO] Ranking:\n" + strategy.ranking_table(result))
    return result


def apply_ranking(result: strategy.Analysis | None, dry_run: bool, worker: WorkerOps) -> None:
    """Hand the ranking to the controller, which keeps or switches the worker.

    `result` None re-applies the last ranking (a pin changed, a worker went missing). The worker is
    left alone when there is nothing usable; the controller also keeps it when its own coin's
    reading failed this cycle.
    """
    ranking: list[Coin] = list(result.coins) if result is not None else list(config.state.get("last_ranking"))
    best = ranking[0] if ranking else None
    if best is None and not config.state.get("pinned"):
        log("[WARN] No usable coin in this analysis: the current worker keeps mining", force=True)
        return
    hold = result.untrusted_keys() if result is not None else frozenset()
    worker.manage(best, ranking, dry_run=dry_run, hold=hold)


# --- the loop --------------------------------------------------------------------------------------
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


@dataclass
class LoopMemory:
    """What the loop remembers between iterations: the pin it applied, the choice it saved."""

    applied_pin: str | None
    saved_choice: dict


def persist_choice(memory: LoopMemory, path: str) -> None:
    choice = owner_choice.owner_choice()
    if choice != memory.saved_choice:
        memory.saved_choice = choice
        owner_choice.save_runtime(path, choice)


def market_step(clock: LoopClock, memory: LoopMemory, dry_run: bool, worker: WorkerOps,
                market: MarketOps = NO_MARKET_OPS) -> None:
    """Analyse when due or asked (`check` even while paused); apply a changed pin at once."""
    st = config.state
    now = time.monotonic()
    forced = st.get("force_check")
    if forced:
        st.update(force_check=False)
    paused = st.get("paused")
    if forced or (clock.analysis_due(now) and not paused):
        clock.analysed(now)  # before the attempt: a failing analysis is not retried in a hot loop
        result = analyse(st.shutdown, show_table=True, market=market)
        if result is not None and not st.get("paused") and not st.shutdown.is_set():
            apply_ranking(result, dry_run, worker)
        memory.applied_pin = st.get("pinned")
    elif clock.analysis_due(now):
        log("[INFO] Paused: scheduled analysis skipped (send \"miner start\" to resume)")
        clock.analysed(now)
    elif st.get("pinned") != memory.applied_pin and not paused:
        memory.applied_pin = st.get("pinned")
        log(f"[INFO] Pin changed to {memory.applied_pin or 'none'}: applying it to the last ranking")
        apply_ranking(None, dry_run, worker)


def watchdog_step(dry_run: bool, worker: WorkerOps) -> None:
    """Between analyses: while paused, make sure no worker runs; else heal a missing worker, or
    let the controller's watchdog check the running one."""
    if dry_run:
        return
    if config.state.get("paused"):
        if worker.stop() == "stopped":
            log("[WARN] Mining is paused but a worker was running: it has been stopped", force=True)
        return
    if worker.watchdog_tick() == "missing" and config.state.get("last_ranking"):
        log("[WARN] No worker container while mining is on (removed by hand?): starting from the last ranking", force=True)
        apply_ranking(None, dry_run, worker)


def profit_loop(dry_run: bool, worker: WorkerOps, market: MarketOps = NO_MARKET_OPS) -> None:
    """Analyse every HOURS_INTERVAL hours, apply the ranking, tick the watchdog in between.

    Ends when `config.state.shutdown` is set (SIGTERM, SIGINT, `exit`); that event also aborts a
    running analysis. An unexpected fault in one iteration is logged and retried later: the loop,
    and the worker, go on.
    """
    s = config.settings()
    st = config.state
    clock = LoopClock(interval=s.HOURS_INTERVAL * 3600.0, watchdog=s.WATCHDOG_SECONDS)
    clock.next_watchdog = time.monotonic() + clock.watchdog
    memory = LoopMemory(applied_pin=st.get("pinned"), saved_choice=owner_choice.owner_choice())
    while not st.shutdown.is_set():
        st.wake.clear()  # before acting: a command arriving meanwhile wakes the next wait at once
        st.beat()
        try:
            persist_choice(memory, s.PATH_RUNTIME)
            market_step(clock, memory, dry_run, worker, market)
            if time.monotonic() >= clock.next_watchdog and not st.shutdown.is_set():
                clock.next_watchdog = time.monotonic() + clock.watchdog
                watchdog_step(dry_run, worker)
        except Exception as exc:
            log(f"[ERROR] Profit loop step failed ({type(exc).__name__}: {exc}); the worker keeps mining, "
                f"retrying in {RETRY_AFTER_FAULT / 60:.0f} min", force=True)
            clock.next_analysis = min(clock.next_analysis, time.monotonic() + RETRY_AFTER_FAULT)
        st.wake.wait(clock.wait_seconds(time.monotonic()))
    persist_choice(memory, s.PATH_RUNTIME)
    st.update(loop_alive=False)
