"""Logging, JSON files written atomically, the dashboard's status.json, and the notifier hook."""
from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import threading
import time
from typing import Any, Callable

import config
from coin import Coin

LOGGER_NAME = "smartminer"
logger = logging.getLogger(LOGGER_NAME)

_LEVEL_TAGS = {
    "[DEBUG]": logging.DEBUG,
    "[INFO]": logging.INFO,
    "[OK]": logging.INFO,
    "[WARN]": logging.WARNING,
    "[WARNING]": logging.WARNING,
    "[ERROR]": logging.ERROR,
    "[CRITICAL]": logging.CRITICAL,
}


def setup_logging(level: str = "INFO", stream=None) -> None:
    """One handler on the project's logger, timestamped lines, to stderr by default.

    stdout stays free for machine output (`--json`).
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S"))
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False


def level_of(msg: str) -> int:
    """The logging level a seed-style message asks for with its leading tag ("[ERROR] ...")."""
    head = msg.lstrip().split(" ", 1)[0].upper()
    return _LEVEL_TAGS.get(head, logging.INFO)


# Tags that only name a level: the formatter prints the level, so these are dropped from the text.
_LEVEL_ONLY_TAGS = {"[DEBUG]", "[INFO]", "[WARN]", "[WARNING]", "[ERROR]", "[CRITICAL]"}


def without_level_tag(msg: str) -> str:
    """"[WARN] Skipping X" -> "Skipping X"; other tags ("[OK]", "[NOTIFY]") say more than a level and stay."""
    stripped = msg.lstrip()
    head, _, rest = stripped.partition(" ")
    return rest if head.upper() in _LEVEL_ONLY_TAGS else msg


def log(msg: str, force: bool = False, level: int | None = None) -> None:
    """The seed's `log()`: honours `config.state.logs_enabled`; `force` bypasses it.

    The level comes from a leading tag ("[WARN] ...") unless given; the line shows it once.
    Warnings and errors are always written: turning logs off silences chatter, never faults.
    """
    lvl = level_of(msg) if level is None else level
    if not force and lvl < logging.WARNING and not config.state.get("logs_enabled"):
        return
    logger.log(lvl, without_level_tag(msg))


def mask(secret: str, keep: int = 4) -> str:
    """A secret safe to log: its first and last few characters."""
    if not secret:
        return "(empty)"
    if len(secret) <= keep * 2:
        return "*" * len(secret)
    return f"{secret[:keep]}...{secret[-keep:]}"


def atomic_write_json(path: str, data: Any) -> None:
    """Write JSON to a temp file in the same folder, then rename it over `path`.

    A reader never sees a half-written file, and a crash mid-write leaves the old one intact.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class DataFileError(ValueError):
    """A data file is missing or malformed; the message is one line naming the file and the fault."""


def read_json(path: str, default: Any = ..., expect: type | None = None) -> Any:
    """Read a JSON file. Missing: `default` if given, else DataFileError. Malformed: DataFileError."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        if default is not ...:
            return default
        raise DataFileError(f"{path} not found") from None
    except json.JSONDecodeError as exc:
        raise DataFileError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{path} cannot be read: {exc}") from None
    except (ValueError, RecursionError) as exc:  # a 5000-digit number, arrays nested 10^5 deep
        raise DataFileError(f"{path} is not usable JSON: {str(exc)[:120]}") from None
    if expect is not None and not isinstance(data, expect):
        raise DataFileError(f"{path} must hold a JSON {expect.__name__}, found {type(data).__name__}")
    return data


def write_status(coin: Coin, worker_name: str, path: str | None = None, hashrate_hs: float | None = None) -> dict:
    """The dashboard's status.json, in the seed's shape, for the coin being mined.

    `profit_usd` and `profit_coin` are per H/s of this rig, because the dashboard multiplies them by
    the rig's total hashrate. The rate is `hashrate_hs` if given, else the one the coin's income was
    computed with, else MY_HASHRATE_KH.
    """
    rate = hashrate_hs or coin.hashrate_hs or config.settings().MY_HASHRATE_KH * 1000.0
    status = {
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%S"),
        "coin": coin.name,
        "symbol": coin.symbol,
        "pool": coin.pool,
        "profit_usd": (coin.income_usd or 0.0) / rate,
        "profit_coin": (coin.coins_per_day or 0.0) / rate,
        "worker_name": worker_name,
    }
    atomic_write_json(path or config.settings().PATH_STATUS, status)
    return status


# --- notifications -------------------------------------------------------------------------------
Sink = Callable[[str], None]
_sinks: list[Sink] = []
_sinks_lock = threading.Lock()


def add_notifier(sink: Sink) -> None:
    """Register a sink (the Discord service registers `send_dm`). Sinks must not block."""
    with _sinks_lock:
        if sink not in _sinks:
            _sinks.append(sink)


def remove_notifier(sink: Sink) -> None:
    with _sinks_lock:
        if sink in _sinks:
            _sinks.remove(sink)


def notify(text: str) -> None:
    """Tell the owner: always logged, and handed to every registered sink. Never raises."""
    log(f"[NOTIFY] {text}", force=True)
    with _sinks_lock:
        sinks = list(_sinks)
    for sink in sinks:
        try:
            sink(text)
        except Exception as exc:  # a broken sink must not break the caller
            logger.warning("notifier %r failed: %s", sink, exc)


IncidentObserver = Callable[[str, str, bool], None]  # (key, text, opened)


class Incidents:
    """The one "say it once" mechanism: a fault is told when it starts and once when it clears, not
    every cycle; a fault that clears and comes back is told again.

    `notify=True` tells the owner (log + Discord); `notify=False` only logs (API-side faults, say).
    """

    def __init__(self, notifier: Callable[[str], None] | None = None) -> None:
        self._open: dict[str, str] = {}
        self._lock = threading.Lock()
        self._notify = notifier or notify
        self._observers: list[IncidentObserver] = []

    def observe(self, fn: IncidentObserver) -> None:
        """Call `fn(key, text, opened)` when an incident opens (opened=True, the raise's text) and when
        an open one clears (opened=False, the clear's text). main records them in the history store.
        A failing observer is logged and never breaks the caller."""
        with self._lock:
            if fn not in self._observers:
                self._observers.append(fn)

    def raise_(self, key: str, text: str, notify: bool = True) -> bool:
        """Open incident `key`; says `text` only the first time. Returns True when it was new."""
        with self._lock:
            if key in self._open:
                return False
            self._open[key] = text
        self._say(text, notify, logging.WARNING)
        self._tell(key, text, True)
        return True

    def clear(self, key: str, text: str | None = None, notify: bool = True) -> bool:
        """Close incident `key`; says `text` (or a default) only if it was open."""
        with self._lock:
            was = self._open.pop(key, None)
        if was is None:
            return False
        said = text or f"Resolved: {was}"
        self._say(said, notify, logging.INFO)
        self._tell(key, said, False)
        return True

    def _tell(self, key: str, text: str, opened: bool) -> None:
        with self._lock:
            observers = list(self._observers)
        for fn in observers:
            try:
                fn(key, text, opened)
            except Exception as exc:  # an observer (the history store) must not break the controller
                logger.warning("incident observer %r failed on %s: %s: %s", fn, key, type(exc).__name__, exc)

    def _say(self, text: str, to_owner: bool, level: int) -> None:
        if to_owner:
            self._notify(text)
        else:
            log(text, force=True, level=level)

    def is_open(self, key: str) -> bool:
        with self._lock:
            return key in self._open

    def open_keys(self) -> list[str]:
        with self._lock:
            return sorted(self._open)


# The process's incidents, shared by the profit loop, the controller and the watchdog.
incidents = Incidents()
