"""The one command language of the daemon, and the named-pipe reader.

The pipe (`PIPE_PATH`) and Discord DMs share `execute()`: one parser, one set of effects, one reply
text. Effects go through `config.state` and `miner_controller` only.
"""
from __future__ import annotations

import errno
import os
import select
import stat
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import config
import utils

MAX_LINE_BYTES = 4096  # a longer line is rejected, not executed
POLL_SECONDS = 1.0  # how often an idle reader looks at `stop` and at the FIFO's identity
RETRY_SECONDS = 5.0  # wait before retrying when the FIFO cannot be made or opened
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


def _changed(source: str, what: str) -> None:
    """Every state change is logged (the logger's format carries the timestamp) with its source."""
    utils.log(f"[INFO] command from {source}: {what}", force=True)


def _controller(call: str) -> str | None:
    """Call `miner_controller.<call>()` and return its answer; a fault there must not break the command."""
    try:
        import miner_controller  # lazily: it builds a Docker client only when called

        return getattr(miner_controller, call)()
    except Exception as exc:  # the controller is meant never to raise; guard anyway
        utils.log(f"[WARN] worker control ({call}) failed: {exc}")
        return "failed"


STOP_REPLIES = {
    "stopped": "Paused: the worker is stopped until `miner start`.",
    "none": "Paused: no worker was running; none will start until `miner start`.",
    "failed": "Paused, but the worker could not be stopped now (see the log); it is retried every few minutes.",
}


def _miner_stop(cmd: Command, source: str) -> str:
    config.state.update(paused=True)
    _changed(source, "miner stop (paused)")
    outcome = _controller("stop_worker")
    config.state.wake.set()  # the loop records the pause on disk at once
    reply = STOP_REPLIES.get(outcome or "failed", STOP_REPLIES["failed"])
    utils.notify(f"{reply} (by {source})")
    return reply


def _miner_start(cmd: Command, source: str) -> str:
    """Resume, and give coins the watchdog gave up on another chance: the owner asked for a fresh start."""
    failing = sorted(config.state.get("failing_coins"))
    config.state.update(paused=False, failing_coins=set())
    _controller("reset_watchdog")
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


def known_coins(ranking: list) -> list[str]:
    """Display names of the coins in a ranking: "Monero (XMR)"."""
    out = []
    for coin in ranking:
        name, sym = coin.get("Coin name") or coin.get("Key") or "?", coin.get("Symbol")
        out.append(f"{name} ({sym})" if sym else str(name))
    return out


def _pin(cmd: Command, source: str) -> str:
    key = cmd.arg or ""
    ranking = config.state.get("last_ranking") or []
    if ranking and not any(utils.coin_matches(c, key) for c in ranking):
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


def coin_label(key: str | None, ranking: list) -> str:
    """"Etica (ETI)" for a running coin's Key when the ranking knows it, else the Key itself."""
    if not key:
        return "none"
    row = next((c for c in ranking if isinstance(c, dict) and c.get("Key") == key), None)
    return f"{row.get('Coin name')} ({row.get('Symbol')})" if row and row.get("Coin name") else key


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


def _status(cmd: Command, source: str) -> str:
    return format_status(config.state.snapshot(), time.time())


def _help(cmd: Command, source: str) -> str:
    return help_text()


def _unknown(cmd: Command, source: str) -> str:
    utils.log(f"[WARN] unknown command from {source}: {(cmd.arg or '')[:80]!r}")
    return UNKNOWN_REPLY


def _invalid(cmd: Command, source: str) -> str:
    utils.log(f"[WARN] command from {source}: {cmd.arg}")
    return cmd.arg or UNKNOWN_REPLY


_HANDLERS: dict[str, Callable[[Command, str], str]] = {
    "miner stop": _miner_stop,
    "miner start": _miner_start,
    "status": _status,
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


def execute(text: str, source: str = "pipe") -> str:
    """Parse and run one command; returns the reply text ("" for an empty line). Never raises."""
    cmd = parse(text)
    try:
        return _HANDLERS[cmd.name](cmd, source)
    except Exception as exc:  # a command must never take its caller (the reader, the bot) down
        utils.log(f"[ERROR] command {cmd.name!r} from {source} failed: {exc}")
        return f"Command failed: {exc}"


# --- the named pipe ------------------------------------------------------------------------------


@dataclass
class LineSplitter:
    """Bytes from the pipe -> complete UTF-8 lines. Bounded: a line over `limit` bytes is dropped
    (and reported) without being held in memory; non-UTF-8 lines are reported and skipped."""

    limit: int = MAX_LINE_BYTES
    _buf: bytearray = field(default_factory=bytearray)
    _overflow: int = 0  # bytes of an over-long line seen so far (0: not in one)

    def feed(self, data: bytes) -> tuple[list[str], list[str]]:
        """Returns (lines, problems)."""
        lines: list[str] = []
        problems: list[str] = []
        while data:
            nl = data.find(b"\n")
            chunk, data = (data, b"") if nl < 0 else (data[:nl], data[nl + 1 :])
            self._take(chunk)
            if nl >= 0:
                self._end_line(lines, problems)
        return lines, problems

    def flush(self) -> tuple[list[str], list[str]]:
        """End of input: whatever is left is a last line."""
        lines: list[str] = []
        problems: list[str] = []
        if self._buf or self._overflow:
            self._end_line(lines, problems)
        return lines, problems

    def _take(self, chunk: bytes) -> None:
        if self._overflow:
            self._overflow += len(chunk)
        elif len(self._buf) + len(chunk) > self.limit:
            self._overflow = len(self._buf) + len(chunk)
            self._buf.clear()
        else:
            self._buf += chunk

    def _end_line(self, lines: list[str], problems: list[str]) -> None:
        raw, over = bytes(self._buf), self._overflow
        self._buf.clear()
        self._overflow = 0
        if over:
            problems.append(f"a line of {over} bytes is over the {self.limit}-byte limit: rejected")
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(f"a line with non-UTF-8 bytes was skipped (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})")
            return
        if text.strip():
            lines.append(text.strip())


def ensure_fifo(path: str) -> None:
    """Make `path` a FIFO with mode 0600: create it, or replace a non-FIFO (the seed would have
    re-read a regular file forever). Raises OSError when that is impossible (e.g. a directory)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISFIFO(st.st_mode):
        if stat.S_IMODE(st.st_mode) != 0o600:
            os.chmod(path, 0o600)
        return
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory, not a FIFO", path)
        utils.log(f"[WARN] {path} exists but is not a FIFO: replacing it with one", force=True)
        os.unlink(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    os.mkfifo(path, 0o600)
    os.chmod(path, 0o600)  # mkfifo honours the umask; make the mode exact


def _same_file(path: str, fd: int) -> bool:
    """Whether `path` is still the FIFO we have open (it may have been deleted or replaced)."""
    try:
        a, b = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _run_lines(lines: list[str], problems: list[str], path: str) -> None:
    for problem in problems:
        utils.log(f"[WARN] command pipe {path}: {problem}", force=True)
    for line in lines:
        reply = execute(line, source="pipe")
        if reply and reply != UNKNOWN_REPLY:  # an unknown command was logged once already
            utils.log(f"[INFO] pipe> {line[:80]}: {reply}", force=True)


def _read_until_eof(fd: int, path: str, stop: threading.Event) -> bool:
    """Serve one open of the FIFO until EOF (every writer gone), stop, or the path changing.

    Returns True on EOF (re-open the same FIFO), False otherwise. The fd is non-blocking and waited
    on with poll(): no busy loop, and `stop` is seen within POLL_SECONDS. Linux reports no POLLHUP
    on a fresh open that has had no writer yet, so a re-open waits quietly for the next writer.
    """
    splitter = LineSplitter()
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    eof = False
    while not stop.is_set():
        if not poller.poll(POLL_SECONDS * 1000):
            if not _same_file(path, fd):
                utils.log(f"[WARN] command pipe {path} was removed or replaced: recreating it", force=True)
                break
            continue
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            continue
        if not data:
            eof = True
            break
        _run_lines(*splitter.feed(data), path)
    _run_lines(*splitter.flush(), path)
    return eof


def _open_fifo(path: str) -> int:
    ensure_fifo(path)
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK)


def _reopen(fd: int, path: str) -> int | None:
    """A fresh fd on the same FIFO, opened before the old one is closed: a writer that slips in
    between keeps its bytes (a pipe's buffer dies with its last reader)."""
    try:
        new = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        new = None
    if new is not None and not _same_file(path, new):
        os.close(new)
        new = None
    os.close(fd)
    return new


def listen_for_commands(stop: threading.Event | None = None, path: str | None = None) -> None:
    """Read commands from the FIFO at `path` (default PIPE_PATH) until `stop` (default: the daemon's
    shutdown event) is set. Blocking: the daemon runs it in a daemon thread. Never raises."""
    stop = stop if stop is not None else config.state.shutdown
    path = path or config.settings().PIPE_PATH
    utils.log(f"[INFO] listening for commands on {path}")
    failing = False
    fd: int | None = None
    while not stop.is_set():
        if fd is None:
            try:
                fd = _open_fifo(path)
            except OSError as exc:
                if not failing:  # one line per fault, not one per retry
                    utils.log(f"[ERROR] command pipe {path} unusable: {exc}; retrying every {RETRY_SECONDS:g} s", force=True)
                failing = True
                stop.wait(RETRY_SECONDS)
                continue
            failing = False
        try:
            eof = _read_until_eof(fd, path, stop)
        except Exception as exc:  # keep the reader alive whatever happens
            utils.log(f"[ERROR] command pipe {path}: {exc}", force=True)
            stop.wait(POLL_SECONDS)
            eof = False
        if eof and not stop.is_set():
            fd = _reopen(fd, path)
        else:
            os.close(fd)
            fd = None
    if fd is not None:
        os.close(fd)
    utils.log(f"[INFO] command pipe reader on {path} stopped")
