"""The one command language of the daemon, and the front door of the named-pipe reader.

The pipe (`PIPE_PATH`) and Discord DMs share `execute()`: one parser, one set of effects, one reply
text. Effects go through `config.state` and the `WorkerControls` that main passes in (the worker
controller's own functions): this module imports no controller.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

import coin
import command_pipe
import config
import utils
from coin import Coin

UNKNOWN_REPLY = "unknown command, try help"

HELP_LINES = (
    ("miner stop", "pause mining and remove the worker"),
    ("miner start", "resume mining and re-check at once (retries coins marked failing)"),
    ("status", "running or paused, coin, income per day, next check"),
    ("check", "run a market analysis now (paused stays as it is)"),
    ("pin <coin>", "mine this coin regardless of the ranking (name, ticker or slug)"),
    ("unpin", "go back to the ranking"),
    ("logs on / logs off", "turn routine log lines on or off"),
    ("help", "this list"),
    ("exit", "stop the daemon gracefully"),
)


@dataclass(frozen=True)
class Command:
    """A parsed command. `name` is one of the known names, "empty", "invalid" (with a usage text in
    `arg`) or "unknown" (with the original text in `arg`)."""

    name: str
    arg: str | None = None


_SIMPLE = {"miner stop", "miner start", "status", "check", "unpin", "help", "exit"}


def parse(text: str) -> Command:
    """Text -> Command. Pure. Case-insensitive, surrounding and repeated whitespace ignored.

    `pin` keeps its argument's text (trimmed, inner spaces collapsed) so a coin's full name works.
    """
    words = text.split()
    if not words:
        return Command("empty")
    head = words[0].lower()
    norm = " ".join(w.lower() for w in words)
    if norm in _SIMPLE:
        return Command(norm)
    if head == "pin":
        if len(words) == 1:
            return Command("invalid", "usage: pin <coin>")
        return Command("pin", " ".join(words[1:]))
    if head == "logs":
        if norm in ("logs on", "logs off"):
            return Command("logs", words[1].lower())
        return Command("invalid", "usage: logs on | logs off")
    return Command("unknown", text.strip())


# --- effects -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerControls:
    """What a command may ask of the worker. main passes the controller's functions."""

    stop_worker: Callable[[], str]  # "stopped", "none" or "failed"
    reset_watchdog: Callable[[], None]  # forget the coins the watchdog gave up on
    status_extra: Callable[[], list[str]] | None = None  # more `status` lines (main: the history's)


def _no_worker() -> str:
    utils.log("[WARN] no worker controller is attached: the worker cannot be stopped from here")
    return "failed"


# Without a controller (a bare pipe reader, a test of the language) a stop cannot be carried out: say so.
NO_WORKER = WorkerControls(stop_worker=_no_worker, reset_watchdog=lambda: None)
Runner = Callable[[str, str], str]  # (text, source) -> reply: `execute` with the daemon's controls bound


def _changed(source: str, what: str) -> None:
    """Every state change is logged (the logger's format carries the timestamp) with its source."""
    utils.log(f"[INFO] command from {source}: {what}", force=True)


def _controller(name: str, call: Callable[[], str | None]) -> str | None:
    """Call a worker control and return its answer; a fault there must not break the command."""
    try:
        return call()
    except Exception as exc:  # the controller is meant never to raise; guard anyway
        utils.log(f"[WARN] worker control ({name}) failed: {type(exc).__name__}: {exc}")
        return "failed"


STOP_REPLIES = {
    "stopped": "Paused: the worker is stopped until `miner start`.",
    "none": "Paused: no worker was running; none will start until `miner start`.",
    "failed": "Paused, but the worker could not be stopped now (see the log); it is retried every few minutes.",
}


def _miner_stop(cmd: Command, source: str, controls: WorkerControls) -> str:
    config.state.update(paused=True)
    _changed(source, "miner stop (paused)")
    outcome = _controller("stop_worker", controls.stop_worker)
    config.state.wake.set()  # the loop records the pause on disk at once
    reply = STOP_REPLIES.get(outcome or "failed", STOP_REPLIES["failed"])
    utils.notify(f"{reply} (by {source})")
    return reply


def _miner_start(cmd: Command, source: str, controls: WorkerControls) -> str:
    """Resume, and give coins the watchdog gave up on another chance: the owner asked for a fresh start."""
    failing: list[str] = []

    def emptied(old: set) -> set:
        failing.extend(sorted(old))  # read and emptied in one locked step: the watchdog may add meanwhile
        return set()

    config.state.change("failing_coins", emptied)
    config.state.update(paused=False)
    _controller("reset_watchdog", controls.reset_watchdog)
    config.state.request_wake(check=True)
    retry = f"; retrying {', '.join(failing)}" if failing else ""
    _changed(source, f"miner start (resumed{retry})")
    utils.notify(f"Mining resumed (by {source}); checking the market now{retry}")
    return f"Resumed: checking the market now{retry}."


def _check(cmd: Command, source: str) -> str:
    config.state.request_wake(check=True)
    _changed(source, "check (analysis requested)")
    paused = " (paused: no worker will start)" if config.state.get("paused") else ""
    return f"Market analysis requested{paused}."


def known_coins(ranking: list[Coin]) -> list[str]:
    """Display names of the coins in a ranking: "Monero (XMR)"."""
    return [c.label for c in ranking]


def _pin(cmd: Command, source: str) -> str:
    key = cmd.arg or ""
    ranking = config.state.get("last_ranking") or []
    if ranking and coin.find(ranking, key) is None:
        utils.log(f"[WARN] command from {source}: pin {key[:80]!r}: no such coin")
        return f"No coin called {key[:80]!r}. Known coins: {', '.join(known_coins(ranking))}."
    config.state.update(pinned=key)
    config.state.request_wake()
    _changed(source, f"pin {key[:80]!r}")
    return f"Pinned {key}: it will be mined regardless of the ranking until `unpin`."


def _unpin(cmd: Command, source: str) -> str:
    was = config.state.get("pinned")
    config.state.update(pinned=None)
    if was is None:
        return "Nothing was pinned."
    config.state.request_wake()
    _changed(source, f"unpin (was {was!r})")
    return f"Unpinned {was}: back to the ranking."


def _logs(cmd: Command, source: str) -> str:
    on = cmd.arg == "on"
    config.state.update(logs_enabled=on)
    _changed(source, f"logs {cmd.arg}")
    return f"Logs {'on' if on else 'off'}."


def help_text() -> str:
    width = max(len(c) for c, _ in HELP_LINES)
    return "Commands:\n" + "\n".join(f"  {c.ljust(width)}  {d}" for c, d in HELP_LINES)


def _exit(cmd: Command, source: str) -> str:
    _changed(source, "exit (shutting down)")
    config.state.shutdown.set()
    config.state.wake.set()
    return "Shutting down."


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, minutes = seconds // 3600, (seconds % 3600) // 60
    return f"{hours}h {minutes}m"


def coin_label(key: str | None, ranking: list[Coin]) -> str:
    """"Etica (ETI)" for a running coin's key when the ranking knows it, else the key itself."""
    if not key:
        return "none"
    found = coin.find(ranking, key)
    return found.label if found is not None else key


def format_status(snap: dict, now: float) -> str:
    """The `status` reply from a `config.state.snapshot()`. Pure (`now` in epoch seconds)."""
    parts = ["paused" if snap.get("paused") else "running"]
    parts.append(f"coin: {coin_label(snap.get('current_coin'), snap.get('last_ranking') or [])}")
    income = snap.get("current_income_usd")
    parts.append(f"income: ${income:.4f}/day" if income is not None else "income: unknown")
    if snap.get("pinned"):
        parts.append(f"pinned: {snap['pinned']}")
    nxt = snap.get("next_analysis")
    if nxt is None:
        parts.append("next check: not scheduled")
    else:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(nxt))
        parts.append(f"next check: {when} (in {_duration(nxt - now)})")
    return " | ".join(parts)


def extra_lines(status_extra: Callable[[], list[str]] | None) -> list[str]:
    """The extra `status` lines; a failure there is one line in the reply (and the log), not the reply."""
    if status_extra is None:
        return []
    try:
        return [str(line) for line in status_extra()]
    except Exception as exc:  # the history store is optional to the owner's question
        utils.log(f"[WARN] status: extra lines failed: {type(exc).__name__}: {exc}")
        return [f"(history unavailable: {type(exc).__name__}: {exc})"]


def _status(cmd: Command, source: str, controls: WorkerControls) -> str:
    lines = [format_status(config.state.snapshot(), time.time())]
    return "\n".join(lines + extra_lines(controls.status_extra))


def _help(cmd: Command, source: str) -> str:
    return help_text()


def _unknown(cmd: Command, source: str) -> str:
    utils.log(f"[WARN] unknown command from {source}: {(cmd.arg or '')[:80]!r}")
    return UNKNOWN_REPLY


def _invalid(cmd: Command, source: str) -> str:
    utils.log(f"[WARN] command from {source}: {cmd.arg}")
    return cmd.arg or UNKNOWN_REPLY


_HANDLERS: dict[str, Callable[[Command, str], str]] = {
    "check": _check,
    "pin": _pin,
    "unpin": _unpin,
    "logs": _logs,
    "help": _help,
    "exit": _exit,
    "unknown": _unknown,
    "invalid": _invalid,
    "empty": lambda cmd, source: "",
}


_WORKER_HANDLERS: dict[str, Callable[[Command, str, WorkerControls], str]] = {
    "miner stop": _miner_stop,
    "miner start": _miner_start,
    "status": _status,
}


def execute(text: str, source: str = "pipe", controls: WorkerControls = NO_WORKER) -> str:
    """Parse and run one command; returns the reply text ("" for an empty line). Never raises."""
    cmd = parse(text)
    try:
        if cmd.name in _WORKER_HANDLERS:
            return _WORKER_HANDLERS[cmd.name](cmd, source, controls)
        return _HANDLERS[cmd.name](cmd, source)
    except Exception as exc:  # a command must never take its caller (the reader, the bot) down
        utils.log(f"[ERROR] command {cmd.name!r} from {source} failed: {type(exc).__name__}: {exc}")
        return f"Command failed: {type(exc).__name__}: {exc}"


def runner(controls: WorkerControls) -> Runner:
    """`execute` with the daemon's worker controls bound: what the pipe reader and Discord run."""

    def run(text: str, source: str) -> str:
        return execute(text, source, controls)

    return run


def listen_for_commands(stop: threading.Event | None = None, path: str | None = None, run: Runner | None = None) -> None:
    """Read commands from the FIFO at `path` (default PIPE_PATH) until `stop` (default: the daemon's
    shutdown event) is set, running each line with `run` (default: `execute` without a worker
    controller; the daemon passes `runner(controls)`). Blocking: the daemon runs it in a daemon thread.
    Never raises."""
    run = run or execute

    def run_and_reply(line: str, source: str) -> str:
        reply = run(line, source)
        return "" if reply == UNKNOWN_REPLY else reply  # an unknown command was logged once already

    command_pipe.listen(stop if stop is not None else config.state.shutdown,
                        path or config.settings().PIPE_PATH, run_and_reply)
