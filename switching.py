"""The switching rule: given the running coin and the ranking, what should the worker mine? Pure.

The seed's rule: stay when the running coin is the best, or when running_usd x INCOME_TRESHOLD >=
best_usd. A pin overrides the ranking, and a running coin whose reading could not be trusted this
cycle is held (never switch on a failed page). Nothing here talks to Docker or logs: the caller
acts on the `Decision` and says what it did.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import AbstractSet

import coin as coins
from coin import Coin


class Action(Enum):
    """Every answer `decide` gives."""

    START = "start"  # nothing runs: start the target
    STAY = "stay"  # keep the running coin (the target)
    SWITCH = "switch"  # replace the running coin by the target
    HOLD = "hold"  # the running coin could not be read this cycle: keep it, no target
    NONE = "none"  # nothing to mine (empty ranking)


@dataclass(frozen=True)
class Decision:
    """What to do with the worker, and why. `note`: a remark for the log (a pin that matches no
    ranked coin), None when there is nothing to remark."""

    action: Action
    target: Coin | None
    reason: str
    gain_pct: float | None = None
    note: str | None = None


def value_of(coin: Coin) -> float:
    """The figure the rule compares: `Coin.rank_value` (profit when a power cost is set, else
    income). A coin without a finite figure counts as 0: rank_value says -inf for "no figure",
    which would make the gain arithmetic meaningless."""
    value = coin.rank_value
    return value if math.isfinite(value) else 0.0


def gain_pct(old: float, new: float) -> float | None:
    """The gain of `new` over `old` in %, None when `old` is 0 (no meaningful ratio)."""
    if old == 0:
        return None
    return (new - old) / abs(old) * 100.0


def worth_switching(old: float, new: float, threshold: float) -> bool:
    """The seed's rule: stay when old x threshold >= new.

    For a negative `old` (power costing more than mining) the seed's rule would switch to a
    *worse* coin; there the gain must beat |old| x (threshold - 1) instead.
    """
    if old >= 0:
        return not old * threshold >= new
    return new - old > -old * (threshold - 1.0)


def _pinned(running: str | None, ranking: list[Coin], pin: str) -> Decision | None:
    """The decision a pin forces, or None with no pin; a pin naming no ranked coin is only noted."""
    pinned = coins.find(ranking, pin)
    if pinned is None:
        return None
    if running and pinned.matches(running):
        return Decision(Action.STAY, pinned, f"pinned coin {pinned.key} is running")
    return Decision(Action.SWITCH if running else Action.START, pinned, f"pinned to {pinned.key}")


def decide(running: str | None, ranking: list[Coin], threshold: float, pin: str | None = None,
           hold: AbstractSet[str] = frozenset()) -> Decision:
    """What to do, given the running coin's key (or None), the ranking (best first), and a pin.

    A pin (any name, ticker or slug) overrides the ranking; one that matches no ranked coin is
    ignored (the decision's `note` says so). `hold` lists the keys whose reading could not be
    trusted this cycle: a running coin among them keeps mining (HOLD), because a switch must never
    rest on a failed page or a held-back reading. A pin still rules over a hold.
    """
    if not ranking:
        return Decision(Action.NONE, None, "no coin to mine (empty ranking)")
    note = None
    if pin:
        forced = _pinned(running, ranking, pin)
        if forced is not None:
            return forced
        note = f"Pinned coin {pin!r} is not in the ranking; ignoring the pin"
    best = ranking[0]
    if not running:
        return Decision(Action.START, best, "no worker running", note=note)
    if running.strip().lower() in hold:
        return Decision(Action.HOLD, None, f"no trustworthy reading of the running coin {running} this cycle", note=note)
    if best.matches(running):
        return Decision(Action.STAY, best, "stable: the running coin is the best", note=note)
    current = coins.find(ranking, running)
    if current is None:
        return Decision(Action.SWITCH, best, f"running coin {running} is not in the ranking", note=note)
    old, new = value_of(current), value_of(best)
    gain = gain_pct(old, new)
    if worth_switching(old, new, threshold):
        return Decision(Action.SWITCH, best, f"{best.key} beats {running} by more than the threshold", gain, note)
    return Decision(Action.STAY, current, f"gain over {running} is below the threshold", gain, note)
