"""The rig's measured hashrate, per coin and per algorithm, kept across manager restarts.

The watchdog records what XMRig reports for the running worker; the analysis asks for a coin's
figure: its own measurement, else its algorithm's, else the configured `MY_HASHRATE_KH`. A coin with
no algorithm configured is mined with XMRig's default, RandomX (`rx/0`), which is also what
`MY_HASHRATE_KH` describes, so one RandomX measurement serves every such coin.
"""
from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import utils
from coin import HASHRATE_CONFIGURED, HASHRATE_MEASURED
from utils import log

DEFAULT_ALGO = "rx/0"
# A measurement this far from the configured figure is worth a warning (a throttled or misconfigured rig).
LOW_RATIO = 0.2
HIGH_RATIO = 5.0


@dataclass(frozen=True)
class Measurement:
    hs: float
    time: float  # epoch seconds of the reading
    coin: str  # the coin key the worker mined
    algo: str


def algo_of(algo: str | None) -> str:
    """The algorithm a coin is mined with, as XMRig names it ("rx/0" when none is configured)."""
    return (algo or DEFAULT_ALGO).strip().lower() or DEFAULT_ALGO


def preferred_reading(total: Sequence[Any] | None) -> float | None:
    """From XMRig's `hashrate.total` ([10 s, 60 s, 15 min], null until enough data): the 15-minute
    average when it has one, else the 60 s one. None when neither is a positive number."""
    if not isinstance(total, (list, tuple)):
        return None
    for index in (2, 1):
        if len(total) > index:
            value = total[index]
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                return float(value)
    return None


def oddness(measured_hs: float, configured_hs: float) -> str | None:
    """Why a measurement looks wrong against the configured figure, or None when it looks plausible."""
    if configured_hs <= 0:
        return None
    ratio = measured_hs / configured_hs
    if ratio < LOW_RATIO:
        return f"is {ratio:.2f}x the configured {configured_hs:,.0f} H/s (a throttled rig, or MY_HASHRATE_KH set too high?)"
    if ratio > HIGH_RATIO:
        return f"is {ratio:.1f}x the configured {configured_hs:,.0f} H/s (MY_HASHRATE_KH set too low?)"
    return None


class HashrateBook:
    """Measurements by coin key and by algorithm, saved atomically to a JSON file on every change."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._coins: dict[str, Measurement] = {}
        self._algos: dict[str, Measurement] = {}

    def load(self) -> None:
        """Read the file; a missing one is an empty book, a broken one is one warning and an empty book."""
        try:
            data = utils.read_json(self._path, default={}, expect=dict)
            coins = {k: Measurement(**v) for k, v in data.get("coins", {}).items()}
            algos = {k: Measurement(**v) for k, v in data.get("algos", {}).items()}
        except (utils.DataFileError, TypeError, AttributeError) as exc:
            log(f"[WARN] Measured hashrates not loaded ({exc}); MY_HASHRATE_KH is used until new readings come in", force=True)
            coins, algos = {}, {}
        with self._lock:
            self._coins, self._algos = coins, algos

    def record(self, coin_key: str, algo: str | None, hs: float, now: float) -> Measurement:
        """Keep a reading for the coin and for its algorithm, and save the book."""
        reading = Measurement(float(hs), now, coin_key, algo_of(algo))
        with self._lock:
            self._coins[coin_key] = reading
            self._algos[reading.algo] = reading
            data = {"coins": {k: asdict(v) for k, v in self._coins.items()},
                    "algos": {k: asdict(v) for k, v in self._algos.items()}}
        try:
            utils.atomic_write_json(self._path, data)
        except OSError as exc:
            utils.incidents.raise_("hashrates-file", f"Cannot save measured hashrates to {self._path}: {exc}", notify=False)
        else:
            utils.incidents.clear("hashrates-file", f"Measured hashrates are saved to {self._path} again", notify=False)
        return reading

    def lookup(self, coin_key: str, algo: str | None) -> Measurement | None:
        """The coin's own measurement, else its algorithm's, else None."""
        with self._lock:
            return self._coins.get(coin_key) or self._algos.get(algo_of(algo))

    def hashrate_for(self, coin_key: str, algo: str | None, configured_hs: float) -> tuple[float, str]:
        """(H/s, "measured" or "configured") to compute a coin's income with."""
        found = self.lookup(coin_key, algo)
        if found is None:
            return configured_hs, HASHRATE_CONFIGURED
        return found.hs, HASHRATE_MEASURED

    def snapshot(self) -> dict[str, dict[str, Measurement]]:
        with self._lock:
            return {"coins": dict(self._coins), "algos": dict(self._algos)}


def observe(book: HashrateBook, coin_key: str, algo: str | None, total: Sequence[Any] | None,
            mined_seconds: float, min_seconds: float, configured_hs: float, now: float) -> Measurement | None:
    """One watchdog reading of the running worker: recorded once it has mined `min_seconds`.

    A reading far from the configured figure is warned about once (per algorithm) and still used.
    Returns the recorded measurement, or None when the reading does not count yet.
    """
    hs = preferred_reading(total)
    if hs is None or mined_seconds < min_seconds:
        return None
    reading = book.record(coin_key, algo, hs, now)
    why = oddness(hs, configured_hs)
    key = f"hashrate-odd:{reading.algo}"
    if why:
        utils.incidents.raise_(key, f"Measured hashrate on {reading.algo}: {hs:,.1f} H/s {why}; it is used", notify=False)
    else:
        utils.incidents.clear(key, f"Measured hashrate on {reading.algo} is plausible again: {hs:,.1f} H/s", notify=False)
    return reading
