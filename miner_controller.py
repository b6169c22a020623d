"""The front door for the worker: apply a ranking, stop the worker, report it, tick the watchdog.

Exactly one worker mines the chosen coin. The coin it mines is read back from the worker's
`mining_coin` label, never from memory, so a restarted manager picks up where it was. The rule is
`switching.decide`, the worker's arguments and labels `worker_spec`, where it runs a
`worker_backend.WorkerBackend` (one container on this engine by default; main may configure
another), and the health checks `watchdog`.

Nothing here raises to the caller: an engine that is down, a missing image, a wallet that could
inject XMRig options, a foreign container in the way are each one clear log line (and one
notification per incident). One lock serialises changes to the worker (a cycle, `miner stop`, a
watchdog restart); reads (status, the watchdog's look and its XMRig reading) do not take it.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from enum import Enum
from typing import AbstractSet, Callable, Iterable, TypeVar

import coin as coins
import config
import utils
import xmrig
from coin import Coin
from engine import Engine, EngineDown, Outage
from switching import Action, Decision, decide, value_of
from watchdog import ReadingHook, SummaryReader, Watchdog
from worker_backend import ContainerBackend, ForeignWorker, ImageMissing, StartFailed, Worker, WorkerBackend
from worker_spec import checked_args, has_xmrig_config, worker_command

SwitchHook = Callable[[Coin | None, Coin, str, float | None], None]  # (previous or None, new, reason, gain %)
TickHook = Callable[[], None]
BUILD_HINT = "build it with `docker compose build worker` (or `docker build -t {image} worker/`)"
FOREIGN_INCIDENT = "worker-foreign"
T = TypeVar("T")


class Outcome(Enum):
    """What a `manage_worker` call actually did."""

    STARTED = "started"  # a worker now mines the target (none ran before)
    SWITCHED = "switched"  # the running coin was replaced by the target
    STAYED = "stayed"  # the running coin keeps mining
    HELD = "held"  # the running coin's reading failed: it keeps mining, no switch
    RESTORED = "restored"  # the new coin failed to start; the previous coin mines again
    FAILED = "failed"  # nothing could be done (engine down, image missing, start failed...)
    DRY_RUN = "dry-run"  # only logged what it would do
    NOTHING = "nothing"  # nothing to do: paused, or no coin to mine


@dataclass(frozen=True)
class WorkerResult:
    """`outcome` and why; `decision` is the rule's answer (None when it was not asked), `coin` the
    coin mining after the call (STARTED, SWITCHED, STAYED, RESTORED) or that would (DRY_RUN)."""

    outcome: Outcome
    reason: str
    decision: Decision | None = None
    coin: Coin | None = None


def describe(coin: Coin | None) -> str:
    """How log lines and messages name a coin: "Monero (0.4200 USD/day)"."""
    if coin is None:
        return "nothing"
    return f"{coin.name or coin.key} ({value_of(coin):.4f} USD/day)"


def usable_ranking(best: Coin | None, ranked: Iterable[Coin], failing: Iterable[str]) -> list[Coin]:
    """`best` first, then the other coins, once each, without failing coins (`coin.is_failing`) or
    coins whose wallet or pool could inject XMRig options (one incident per coin until fixed)."""
    failing = list(failing)
    out: list[Coin] = []
    seen: set[str] = set()
    for candidate in ([best] if best else []) + list(ranked or []):
        if not candidate.key or candidate.key in seen:
            continue
        seen.add(candidate.key)
        if coins.is_failing(candidate, failing):
            utils.log(f"[WARN] {candidate.name or candidate.key} is marked failing; skipping it")
            continue
        try:
            checked_args(candidate)
        except ValueError as exc:
            utils.log(f"[ERROR] Skipping coin {exc}")
            utils.incidents.raise_(f"bad-args:{candidate.key}", f"Coin {exc}; fix its wallet or pool")
            continue
        utils.incidents.clear(f"bad-args:{candidate.key}", f"Coin {candidate.name or candidate.key}: wallet and pool are valid again")
        out.append(candidate)
    return out


def _set_current(coin: Coin | None, since: float | None = None) -> None:
    """The run state's view of the worker (the worker's label stays the truth)."""
    if coin is None:
        config.state.update(current_coin=None, current_since=None, current_income_usd=None)
        return
    config.state.update(current_coin=coin.key, current_since=since or time.time(), current_income_usd=coin.income_usd)


def _log_stay(decision: Decision, ranking: list[Coin]) -> None:
    best = ranking[0]
    if decision.target == best or decision.reason.startswith("pinned"):
        utils.log(f"[INFO] Stable: keep mining {describe(decision.target)} ({decision.reason})")
        return
    gain = "n/a" if decision.gain_pct is None else f"{decision.gain_pct:+.2f}%"
    threshold = config.settings().INCOME_TRESHOLD
    utils.log(f"[INFO] Staying on {describe(decision.target)}: best is {describe(best)}, "
              f"gain {gain} is within the {(threshold - 1) * 100:.0f}% threshold")


def _announce(decision: Decision, previous: Coin | None, previous_key: str | None) -> None:
    """Run state, status.json and the owner's message after a start or a switch."""
    target = decision.target
    s = config.settings()
    _set_current(target)
    if decision.action is Action.SWITCH:
        config.state.change("switches", lambda n: n + 1)
    try:
        utils.write_status(target, s.CONTAINER_NAME, hashrate_hs=target.hashrate_hs)
    except OSError as exc:
        utils.log(f"[ERROR] Could not write {s.PATH_STATUS}: {type(exc).__name__}: {exc}")
    if decision.action is Action.SWITCH:
        before = describe(previous) if previous else f"{previous_key} (no current figure)"
        gain = "n/a" if decision.gain_pct is None else f"{decision.gain_pct:+.2f}%"
        utils.notify(f"Switched mining from {before} to {describe(target)}, gain {gain} ({decision.reason})")
    else:
        utils.notify(f"Started mining {describe(target)} on {target.pool}")


def worker_noun(backend: WorkerBackend) -> str:
    """What the owner's messages call the worker's unit: the backend's `kind` ("container", or
    "service" for the swarm backend); "container" for a backend that does not say."""
    kind = getattr(backend, "kind", None)
    return kind if isinstance(kind, str) and kind else "container"


def _call_hook(name: str, hook: Callable[..., None] | None, *args: object) -> None:
    """Call a hook main passed in; its failure is one log line (type and message) until it works again."""
    if hook is None:
        return
    incident = f"hook-failed:{name}"
    try:
        hook(*args)
    except Exception as exc:  # a hook (history, fleet report) must never break worker control
        utils.incidents.raise_(incident, f"{name} hook failed: {type(exc).__name__}: {exc}", notify=False)
        return
    utils.incidents.clear(incident, f"{name} hook works again", notify=False)


def _image_missing(image: str) -> None:
    text = f"Worker image {image} not found: " + BUILD_HINT.format(image=image)
    utils.log(f"[ERROR] {text}")
    utils.incidents.raise_("image-missing", text)


class Controller:
    """The worker's controller: one backend, one lock for changes, one outage record, one watchdog."""

    def __init__(self, backend: WorkerBackend, read_summary: SummaryReader = xmrig.read_summary,
                 on_reading: ReadingHook | None = None, on_switch: SwitchHook | None = None,
                 after_tick: TickHook | None = None) -> None:
        self.backend = backend
        self.on_switch = on_switch
        self.after_tick = after_tick
        self.lock = threading.RLock()
        self.outage = Outage()
        self.watchdog = Watchdog(backend, self.lock, read_summary, on_reading)

    # --- plumbing ---
    def _connect(self) -> EngineDown | None:
        """Connect (and ping) before taking the lock: a slow engine must not hold up the others."""
        try:
            self.backend.engine.client()
        except EngineDown as exc:
            return exc
        return None

    def _run(self, what: str, body: Callable[[], T], down: T, error: T, foreign: T | None = None) -> T:
        """`body` under the outage guard; a foreign worker in the way is one incident, answering
        `foreign` (default `error`)."""
        def checked() -> T:
            try:
                return body()
            except ForeignWorker as exc:
                utils.incidents.raise_(FOREIGN_INCIDENT, str(exc))
                return error if foreign is None else foreign
        return self.outage.guard(what, checked, down, error)

    def _find(self) -> Worker | None:
        worker = self.backend.find()
        utils.incidents.clear(FOREIGN_INCIDENT, f"The foreign {worker_noun(self.backend)} named {config.settings().CONTAINER_NAME} is gone")
        return worker

    # --- applying a ranking ---
    def manage_worker(self, best: Coin | None, ranked: list[Coin], dry_run: bool = False,
                      hold: AbstractSet[str] = frozenset()) -> WorkerResult:
        """See the module-level `manage_worker`."""
        fault = self._connect()
        with self.lock:
            if config.state.get("paused"):
                tag = "[INFO] [DRY-RUN]" if dry_run else "[DEBUG]"
                utils.log(f"{tag} Paused (miner stop): leaving the worker alone", force=dry_run)
                return WorkerResult(Outcome.NOTHING, "paused")
            down = WorkerResult(Outcome.FAILED, "Docker engine unreachable")
            if fault is not None and not dry_run:
                self.outage.down(fault)
                return down
            return self._run("Worker control", lambda: self._apply(best, ranked, dry_run, hold), down=down,
                             error=WorkerResult(Outcome.FAILED, "worker control failed (see the log)"),
                             foreign=WorkerResult(Outcome.FAILED, f"a {worker_noun(self.backend)} SmartMiner did not make holds the worker's name"))

    def _apply(self, best: Coin | None, ranked: list[Coin], dry_run: bool, hold: AbstractSet[str]) -> WorkerResult:
        s = config.settings()
        ranking = usable_ranking(best, ranked, config.state.get("failing_coins"))
        worker = self._find_for(dry_run)
        running = worker.coin_key if worker is not None and worker.running else None
        decision = decide(running, ranking, s.INCOME_TRESHOLD, config.state.get("pinned"), hold)
        if decision.note:
            utils.log(f"[WARN] {decision.note}")
        if dry_run:
            return self._dry_run(decision, worker)
        if decision.action is Action.HOLD:
            utils.log(f"[WARN] {decision.reason}: it keeps mining (no switch on data that cannot be trusted)", force=True)
            return WorkerResult(Outcome.HELD, decision.reason, decision)
        if decision.action is Action.NONE:
            utils.log(f"[WARN] No coin to mine: {decision.reason}")
            return WorkerResult(Outcome.NOTHING, decision.reason, decision)
        previous = coins.find(ranking, running)
        if decision.action is Action.STAY:
            _log_stay(decision, ranking)
            same = config.state.get("current_coin") == decision.target.key
            since = config.state.get("current_since") if same else None
            _set_current(decision.target, since or worker.started_at)
            return WorkerResult(Outcome.STAYED, decision.reason, decision, decision.target)
        return self._change(worker, decision, previous, running)

    def _find_for(self, dry_run: bool) -> Worker | None:
        """The worker; for a dry run an unreachable engine counts as "no worker"."""
        try:
            return self._find()
        except EngineDown as exc:
            if not dry_run:
                raise
            utils.log(f"[INFO] [DRY-RUN] Docker engine not reachable ({exc}): deciding as if no worker ran", force=True)
            return None

    def _change(self, worker: Worker | None, decision: Decision, previous: Coin | None, running: str | None) -> WorkerResult:
        """Start or switch to the decision's target; put the previous coin back if that fails."""
        s = config.settings()
        target = decision.target
        if not self.backend.image_ready():
            _image_missing(s.IMAGE_NAME)  # checked first: the old worker keeps mining rather than leave the rig idle
            return WorkerResult(Outcome.FAILED, f"worker image {s.IMAGE_NAME} not found", decision)
        if not self._start(target, worker):
            return self._restore(previous, decision)
        utils.log(f"[INFO] Worker {s.CONTAINER_NAME} mining {describe(target)} ({decision.reason})")
        _announce(decision, previous, running)
        _call_hook("on_switch", self.on_switch, previous, target, decision.reason, decision.gain_pct)
        outcome = Outcome.SWITCHED if decision.action is Action.SWITCH else Outcome.STARTED
        return WorkerResult(outcome, decision.reason, decision, target)

    def _start(self, target: Coin, current: Worker | None, clear_start_fault: bool = True) -> bool:
        """Make the worker mine `target` (replacing `current`); a refusal is logged and an incident,
        never raised. `clear_start_fault=False` when putting the previous coin back after a failed
        switch: the new coin's start fault is still there and must stay raised (and not re-notified).
        """
        s = config.settings()
        try:
            if current is None:
                self.backend.start(target)
            else:
                self.backend.replace(current, target)
        except ImageMissing as exc:
            _image_missing(exc.image)
            return False
        except StartFailed as exc:
            text = f"Could not start the worker for {describe(target)}: {exc}"
            utils.log(f"[ERROR] {text}")
            utils.incidents.raise_("worker-start", text)
            return False
        self.watchdog.forget(target.key)
        if clear_start_fault:
            utils.incidents.clear("image-missing", f"Worker image {s.IMAGE_NAME} found")
            utils.incidents.clear("worker-start")
        return True

    def _restore(self, previous: Coin | None, failed: Decision) -> WorkerResult:
        """After the new coin failed to start, start the previous coin again rather than leave the
        rig idle. `previous` came from the usable ranking, so it is not failing and its arguments
        passed validation. The start incident stays raised either way."""
        target = failed.target
        if previous is None or previous.key == target.key:
            return WorkerResult(Outcome.FAILED, f"start of {target.key} failed", failed)
        name = config.settings().CONTAINER_NAME
        utils.log(f"[WARN] Start of {describe(target)} failed; starting {describe(previous)} again")
        if not self._start(previous, self.backend.find(), clear_start_fault=False):
            utils.log(f"[ERROR] Could not start {describe(previous)} again either: {name} is not mining")
            return WorkerResult(Outcome.FAILED, f"start of {target.key} failed, and of {previous.key} again too", failed)
        reason = f"start of {target.key} failed; back on {previous.key}"
        _set_current(previous)
        _call_hook("on_switch", self.on_switch, target, previous, reason, None)
        utils.log(f"[INFO] Worker {name} mining {describe(previous)} again ({reason})")
        return WorkerResult(Outcome.RESTORED, reason, failed, previous)

    def _dry_run(self, decision: Decision, worker: Worker | None) -> WorkerResult:
        result = WorkerResult(Outcome.DRY_RUN, decision.reason, decision, decision.target)
        if decision.action in (Action.STAY, Action.NONE, Action.HOLD):
            utils.log(f"[INFO] [DRY-RUN] {decision.action.value}: {decision.reason}", force=True)
            return result
        s = config.settings()
        target = decision.target
        if worker is not None:
            utils.log(f"[INFO] [DRY-RUN] would stop and remove {s.CONTAINER_NAME} ({worker.coin_key})", force=True)
        cmd = worker_command(target, s, has_xmrig_config(s))
        shown = [utils.mask(a) if a == target.wallet else a for a in cmd]
        utils.log(f"[INFO] [DRY-RUN] would start {s.CONTAINER_NAME} from {s.IMAGE_NAME}: {' '.join(shown)} "
                  f"({decision.reason})", force=True)
        return result

    # --- stop, status, watchdog ---
    def stop_worker(self) -> str:
        """See the module-level `stop_worker`."""
        fault = self._connect()
        with self.lock:
            if fault is not None:
                self.outage.down(fault)
                return "failed"
            return self._run("Stopping the worker", self._stop_current, down="failed", error="failed")

    def _stop_current(self) -> str:
        worker = self._find()
        if worker is not None:
            self.backend.remove(worker)
        _set_current(None)
        if worker is None:
            return "none"
        utils.log(f"[INFO] Worker {worker.name} stopped and removed")
        return "stopped"

    def engine_reachable(self) -> bool:
        """Whether the engine answers a ping now. Only a successful ping counts; an outage or an
        error answer is logged with its cause."""
        def ping() -> bool:
            self.backend.engine.ping()
            return True
        return self._run("Docker ping", ping, down=False, error=False)

    def inspect(self) -> Worker | None:
        """The worker, or None when there is none or the engine is down (logged)."""
        return self._run("Inspecting the worker", self._find, down=None, error=None)

    def watchdog_tick(self, now: float | None = None) -> str:
        """See the module-level `watchdog_tick`."""
        if config.state.get("paused"):
            return "paused"
        now = time.time() if now is None else now
        seen = self._run("Watchdog check", lambda: self.watchdog.check(now, config.settings()),
                         down="down", error="error", foreign="foreign")
        _call_hook("after_tick", self.after_tick)
        return seen

    def reset_watchdog(self) -> None:
        self.watchdog.reset()
        self.outage.reset()


# --- the process's controller (main wires it) -----------------------------------------------------
_active: Controller | None = None
_active_lock = threading.Lock()


def configure(backend: WorkerBackend | None = None, read_summary: SummaryReader = xmrig.read_summary,
              on_reading: ReadingHook | None = None, on_switch: SwitchHook | None = None,
              after_tick: TickHook | None = None) -> Controller:
    """Wire the process's controller: the worker backend (default: one container on this engine),
    the watchdog's XMRig reader, and who is told each healthy reading (measured hashrate).

    `on_switch(previous, new, reason, gain_pct)`: once per worker started for a new coin (a start:
    previous None; a switch; a restore: previous is the coin whose start failed, gain_pct None).
    `after_tick()`: after each watchdog tick that ran (not while paused). A failing hook is one log line."""
    global _active
    made = Controller(backend or ContainerBackend(Engine()), read_summary, on_reading, on_switch, after_tick)
    with _active_lock:
        _active = made
    return made


def controller() -> Controller:
    """The configured controller; the default one (a container, `xmrig.read_summary`) if main
    configured none. Creating it does no I/O."""
    global _active
    with _active_lock:
        if _active is None:
            _active = Controller(ContainerBackend(Engine()))
        return _active


def manage_worker(best: Coin | None, coins_ranked: list[Coin], dry_run: bool = False,
                  hold: AbstractSet[str] = frozenset()) -> WorkerResult:
    """One analysis' worth of worker control: decide and act, and say what happened. Never raises.

    `best` is strategy's pick, `coins_ranked` its ranking (best first). Failing and unsafe coins
    are left out, a pin overrides the ranking, and the running coin comes from the worker's label.
    `hold`: keys whose reading this cycle could not be trusted (see `switching.decide`).

    `paused` is checked again under the lock: `miner stop` sets it before taking the lock, so a
    cycle that checked it earlier and then waited here must not start a worker after the stop.
    """
    return controller().manage_worker(best, coins_ranked, dry_run, hold)


def stop_worker() -> str:
    """Stop and remove the worker (`miner stop`): "stopped" when one was stopped and removed,
    "none" when there was none (silent), "failed" when the engine is down, the stop failed or the
    container is not ours (logged). Never raises."""
    return controller().stop_worker()


def stop_current_container() -> bool:
    """The seed's interface: True when a worker was stopped and removed (see `stop_worker`)."""
    return stop_worker() == "stopped"


def engine_reachable() -> bool:
    """Whether the Docker engine answers a ping now (start-up check). Never raises."""
    return controller().engine_reachable()


def running_coin() -> str | None:
    """The key of the coin a running worker mines (its label), else None."""
    worker = controller().inspect()
    return worker.coin_key if worker is not None and worker.running else None


def worker_status() -> dict:
    """The worker as the backend reports it, for the API and `status`; {} when there is none."""
    c = controller()
    worker = c.inspect()
    return {} if worker is None else c.backend.status(worker)


def watchdog_tick(now: float | None = None) -> str:
    """One watchdog check of the worker (the main loop calls it every WATCHDOG_SECONDS). Never raises.

    Returns what it saw: "paused", "missing" (no worker: the caller may start one from the last
    ranking), "ok", "fault" (handled: restarted, waiting for its backoff, or given up on), "down"
    (engine unreachable), "foreign" (a container SmartMiner did not make holds the name) or "error".
    """
    return controller().watchdog_tick(now)


def reset_watchdog() -> None:
    """Forget failure counts and any engine outage in progress (`miner start`, tests); every
    coin's `worker-failing:` incident ends (the owner is told each coin will be tried again)."""
    controller().reset_watchdog()


def reset_client() -> None:
    """Drop the engine client (after DOCKER_HOST changes; tests and benchmarks)."""
    controller().backend.engine.reset()
