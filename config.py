"""Every setting with its default, environment/.env overrides, validation, and the shared run state.

Nothing here reads a file or the environment at import time: `settings()` loads lazily on first
use (and `load_settings()` can be called directly with an explicit environment in tests).
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping

from dotenv import dotenv_values


class ConfigError(ValueError):
    """A setting is missing, malformed or out of range. The message is one line that says what to fix."""


@dataclass(frozen=True)
class Settings:
    # --- the seed's settings (names kept, including the seed's spelling of TRESHOLD) ---
    CONTAINER_NAME: str = "active_miner_worker"
    IMAGE_NAME: str = "smartminer_worker_img:latest"
    MINER_THREADS: int = 1
    MY_HASHRATE_KH: float = 17.3
    INCOME_TRESHOLD: float = 1.05
    HOURS_INTERVAL: float = 8
    PATH_WALLETS: str = "json/wallets.json"
    PATH_POOLS: str = "json/pools.json"
    PATH_LINKS: str = "links.txt"
    PIPE_PATH: str = "/tmp/miner_comm"
    # --- files beside the seed's ---
    PATH_COINS: str = "json/coins.json"  # per-coin rules (miner share, fixed emission, hashrate)
    PATH_STATUS: str = "json/status.json"  # the dashboard's status file
    PATH_HISTORY: str = "json/history.json"  # last accepted incomes, for the sanity guard
    PATH_XMRIG_CONFIG: str = "json/config.json"  # XMRig tuning, mounted into the worker
    PATH_RUNTIME: str = "json/runtime.json"  # paused and pinned, kept across manager restarts
    PATH_HASHRATES: str = "json/hashrates.json"  # measured hashrates per coin and algorithm
    PATH_DB: str = "json/smartminer.db"  # the history store (SQLite)
    HISTORY_DAYS: int = 90  # how long the history store keeps analyses, switches and samples
    HOST_JSON_PATH: str = ""  # json/ as the Docker host sees it (empty: this process's json/)
    # --- market analysis ---
    CHROME_BIN: str = "/usr/bin/chromium"
    CHROMEDRIVER_PATH: str = "/usr/bin/chromedriver"
    PAGE_TIMEOUT: float = 30.0
    BROWSERS: int = 2
    BROWSER_NICE: int = 19  # Chromium and chromedriver run at this nice value: the miner's cycles come first
    BROWSER_CPUS: float = 0.2  # the browser's CPU cap in cores, through a cgroup of its own (0: no cap)
    MINER_FEE: float = 0.01
    POWER_WATTS: float = 0.0
    ELECTRICITY_USD_KWH: float = 0.0
    SANITY_FACTOR: float = 3.0
    # --- worker container ---
    WORKER_PRIVILEGED: bool = True
    STOP_TIMEOUT: int = 10
    WATCHDOG_SECONDS: float = 300.0
    WATCHDOG_MAX_FAILURES: int = 3
    ZERO_HASHRATE_MINUTES: float = 10.0
    HASHRATE_MIN_SECONDS: float = 300.0  # a worker's hashrate counts as measured once it has mined this long
    DOCKER_HOST: str = ""  # empty: the SDK's default (DOCKER_HOST env or /var/run/docker.sock)
    # --- fleet ---
    FLEET_MODE: str = "off"  # "off": one worker container on this engine; "swarm": a global Swarm service
    FLEET_CONSTRAINT: str = "node.labels.smartminer==worker"
    FLEET_PARALLELISM: int = 0  # tasks updated at once during a switch (0: all)
    # --- API wrapper ---
    API_HOST: str = "0.0.0.0"
    API_PORT: int = 4000
    XMRIG_HOST: str = "127.0.0.1"
    XMRIG_PORT: int = 3000
    HWMON_PATH: str = "/sys/class/hwmon"
    CPU_TEMP_SENSOR: str = ""  # "chip:label" overrides the automatic choice
    VRM_TEMP_SENSOR: str = ""
    # --- Discord ---
    DC_API_KEY: str = ""
    DC_USER_ID: str = ""
    # --- logging ---
    LOG_LEVEL: str = "INFO"


# Allowed ranges: (low, high), inclusive. The first four are the seed's.
RANGES: dict[str, tuple[float, float]] = {
    "HOURS_INTERVAL": (1, 24),
    "INCOME_TRESHOLD": (1.01, 2.0),
    "MY_HASHRATE_KH": (1, 10000),
    "MINER_THREADS": (1, 64),
    "PAGE_TIMEOUT": (1, 600),
    "BROWSERS": (1, 8),
    "MINER_FEE": (0, 0.5),
    "POWER_WATTS": (0, 100000),
    "ELECTRICITY_USD_KWH": (0, 10),
    "SANITY_FACTOR": (1.1, 1000),
    "STOP_TIMEOUT": (1, 300),
    "WATCHDOG_SECONDS": (1, 86400),
    "WATCHDOG_MAX_FAILURES": (1, 100),
    "ZERO_HASHRATE_MINUTES": (0.05, 1440),
    "HASHRATE_MIN_SECONDS": (10, 86400),
    "HISTORY_DAYS": (1, 3650),
    "BROWSER_NICE": (0, 19),
    "BROWSER_CPUS": (0, 64),
    "FLEET_PARALLELISM": (0, 1000),
    "API_PORT": (1, 65535),
    "XMRIG_PORT": (1, 65535),
}

# The seed's per-coin rules, as data. Keys match a coin like wallet keys do (full name, first word of
# the name, ticker or link slug, any case). json/coins.json (PATH_COINS) overrides or adds entries:
#   miner_share  - the part of the block reward that goes to miners (Zephyr pays 75%)
#   emission_24h - a fixed daily emission, for coins whose page shows none we can trust (Etica)
#   hashrate_kh  - this rig's speed on the coin's algorithm when it differs from MY_HASHRATE_KH
DEFAULT_COIN_RULES: dict[str, dict[str, float]] = {
    "zephyr": {"miner_share": 0.75},
    "etica": {"emission_24h": 4602.24},
}

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FLEET_MODES = ("off", "swarm")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _convert(name: str, kind: type, raw: str) -> Any:
    text = raw.strip()
    try:
        if kind is bool:
            low = text.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError
        if kind is int:
            return int(text)
        if kind is float:
            value = float(text)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError
            return value
    except ValueError:
        expected = {bool: "true or false", int: "a whole number", float: "a number"}[kind]
        raise ConfigError(f"{name}={raw!r} is not {expected}") from None
    return text


def _check_range(name: str, value: Any, shown: str | None = None) -> None:
    """`shown` is the value as the user wrote it, so the message quotes them ("0", not "0.0")."""
    if name not in RANGES:
        return
    low, high = RANGES[name]
    if not low <= value <= high:
        raise ConfigError(f"{name}={shown if shown is not None else value} is out of range: allowed {low:g} to {high:g}")


def read_env_file(path: str) -> dict[str, str]:
    """The KEY=VALUE pairs of a .env file; {} when it does not exist."""
    if not path or not os.path.isfile(path):
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def load_settings(environ: Mapping[str, str] | None = None, env_file: str | None = ".env") -> Settings:
    """Defaults, overridden by `env_file` values, overridden by `environ` (os.environ by default).

    Raises ConfigError with one line naming the setting, the value and what is allowed.
    """
    merged: dict[str, str] = dict(read_env_file(env_file) if env_file else {})
    merged.update(os.environ if environ is None else environ)
    types = {"int": int, "float": float, "bool": bool, "str": str}
    values: dict[str, Any] = {}
    for f in fields(Settings):
        if f.name not in merged:
            continue
        kind = types[f.type] if isinstance(f.type, str) else f.type
        if kind is not str and not merged[f.name].strip():
            continue  # "MINER_THREADS=" in .env means "the default", not an error
        value = _convert(f.name, kind, merged[f.name])
        _check_range(f.name, value, merged[f.name].strip())
        values[f.name] = value
    return validate(Settings(**values))


def validate(result: Settings) -> Settings:
    """Every range and choice, on the whole record (a changed default must not slip through either)."""
    for name in RANGES:
        _check_range(name, getattr(result, name))
    if result.LOG_LEVEL.upper() not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL={result.LOG_LEVEL!r} is not one of {', '.join(LOG_LEVELS)}")
    if result.FLEET_MODE not in FLEET_MODES:
        raise ConfigError(f"FLEET_MODE={result.FLEET_MODE!r} is not one of {', '.join(FLEET_MODES)}")
    if result.FLEET_MODE == "swarm" and not result.FLEET_CONSTRAINT.strip():
        raise ConfigError("FLEET_CONSTRAINT is empty: swarm mode needs a placement constraint like node.labels.smartminer==worker")
    return result


_settings: Settings | None = None
_settings_lock = threading.Lock()


def settings() -> Settings:
    """The process's settings, loaded on first use."""
    global _settings
    with _settings_lock:
        if _settings is None:
            _settings = load_settings()
        return _settings


def set_settings(new: Settings | None) -> None:
    """Replace the process's settings (None: load again on next use). Used by main and tests."""
    global _settings
    with _settings_lock:
        _settings = new


def override(**changes: Any) -> Settings:
    """Settings with some fields changed, validated, installed for the process and returned."""
    new = validate(dataclasses.replace(settings(), **changes))
    set_settings(new)
    return new


@dataclass
class RunState:
    """What the threads share. Read and change it through `get`/`update`/`snapshot` (they lock)."""

    paused: bool = False
    logs_enabled: bool = True
    current_coin: str | None = None
    current_since: float | None = None  # epoch seconds
    current_income_usd: float | None = None
    pinned: str | None = None
    last_ranking: list = field(default_factory=list)  # coin.Coin records, best first
    last_skipped: list = field(default_factory=list)  # [{"coin": ..., "reason": ...}]
    last_analysis: float | None = None  # epoch seconds
    next_analysis: float | None = None
    switches: int = 0
    failing_coins: set = field(default_factory=set)
    loop_heartbeat: float = 0.0  # time.monotonic() of the profit loop's last sign of life
    loop_alive: bool = False
    wake: threading.Event = field(default_factory=threading.Event, repr=False)
    shutdown: threading.Event = field(default_factory=threading.Event, repr=False)
    force_check: bool = False
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def get(self, name: str) -> Any:
        with self._lock:
            return getattr(self, name)

    def update(self, **changes: Any) -> None:
        with self._lock:
            for name, value in changes.items():
                if name.startswith("_") or not hasattr(self, name):
                    raise AttributeError(f"RunState has no field {name!r}")
                setattr(self, name, value)

    def change(self, name: str, fn: Callable[[Any], Any]) -> Any:
        """Read field `name`, compute its new value with `fn(old)` and store it, in one locked step.

        For read-modify-write updates (`failing_coins`, `switches`) that two threads may race on:
        `state.change("switches", lambda n: n + 1)`. Returns the new value.
        """
        with self._lock:
            if name.startswith("_") or not hasattr(self, name):
                raise AttributeError(f"RunState has no field {name!r}")
            value = fn(getattr(self, name))
            setattr(self, name, value)
            return value

    def snapshot(self) -> dict[str, Any]:
        """A copy of every plain field, safe to serialise."""
        with self._lock:
            out = {}
            for f in fields(self):
                if f.name.startswith("_") or f.name in ("wake", "shutdown"):
                    continue
                value = getattr(self, f.name)
                if isinstance(value, (list, set, dict)):
                    value = type(value)(value) if not isinstance(value, set) else sorted(value)
                out[f.name] = value
            return out

    def beat(self) -> None:
        """The profit loop is alive."""
        with self._lock:
            self.loop_heartbeat = time.monotonic()
            self.loop_alive = True

    def request_wake(self, check: bool = False) -> None:
        """Wake the profit loop now; `check` forces an analysis even if nothing else changed."""
        with self._lock:
            if check:
                self.force_check = True
        self.wake.set()


# The one shared state of the process. Creating it does no I/O.
state = RunState()


_LIVE_FIELDS = ("wake", "shutdown", "_lock")


def reset_state() -> RunState:
    """Put the shared state back to its defaults, in place, so every holder of `config.state` sees it.

    The lock and the events stay the same objects (a thread may be waiting on them); the events are cleared.
    """
    fresh = RunState()
    with state._lock:
        for f in fields(RunState):
            if f.name not in _LIVE_FIELDS:
                setattr(state, f.name, getattr(fresh, f.name))
        state.wake.clear()
        state.shutdown.clear()
    return state
