"""switching: the pure rule that says start, stay, switch, hold or nothing. No Docker, no browser."""
from __future__ import annotations

import math

import pytest

from switching import Action, Decision, decide, gain_pct, value_of, worth_switching
from tests.conftest import make_coin

A, B, C = make_coin("aaa", 1.0), make_coin("bbb", 1.04), make_coin("ccc", 1.2)


def test_decide_starts_the_best_when_nothing_runs():
    d = decide(None, [C, A], 1.05)
    assert (d.action, d.target.key) == (Action.START, "ccc")


def test_decide_stays_when_the_best_runs():
    d = decide("ccc", [C, A], 1.05)
    assert (d.action, d.target.key, d.gain_pct) == (Action.STAY, "ccc", None)
    assert d.reason.startswith("stable")


def test_decide_stays_when_the_gain_is_below_the_threshold():
    d = decide("aaa", [B, A], 1.05)
    assert (d.action, d.target.key) == (Action.STAY, "aaa")
    assert d.gain_pct == pytest.approx(4.0)


def test_decide_switches_when_the_gain_beats_the_threshold():
    d = decide("aaa", [C, A], 1.05)
    assert (d.action, d.target.key) == (Action.SWITCH, "ccc")
    assert d.gain_pct == pytest.approx(20.0)


def test_decide_holds_a_running_coin_whose_reading_failed():
    d = decide("aaa", [C], 1.05, hold={"aaa"})  # aaa's page failed: it is not even ranked
    assert (d.action, d.target) == (Action.HOLD, None) and "aaa" in d.reason
    assert decide("aaa", [C], 1.05).action is Action.SWITCH  # without the hold it would switch
    assert decide("aaa", [C, A], 1.05, pin="ccc", hold={"aaa"}).action is Action.SWITCH  # a pin still rules
    assert decide(None, [C], 1.05, hold={"aaa"}).action is Action.START  # nothing runs: nothing to hold


def test_decide_keeps_the_seeds_rule_at_the_threshold_itself():
    old, new = make_coin("old", 2.0), make_coin("new", 2.0 * 1.05)
    assert decide("old", [new, old], 1.05).action is Action.STAY


def test_decide_switches_away_from_a_coin_that_left_the_ranking():
    d = decide("gone", [C, A], 1.05)
    assert (d.action, d.target.key, d.gain_pct) == (Action.SWITCH, "ccc", None)


def test_decide_finds_the_running_coin_by_its_label_or_any_name():
    ranked = [C, make_coin("monero", 1.19, name="Monero", symbol="XMR")]
    assert decide("monero", ranked, 1.05).action is Action.STAY
    assert decide("XMR", ranked, 1.05).target.key == "monero"  # a seed-era label held the ticker


def test_decide_uses_profit_when_a_power_cost_is_set():
    rich_but_costly = make_coin("rich", 2.0, profit=-0.5)
    cheap = make_coin("cheap", 1.0, profit=0.4)
    d = decide("rich", [cheap, rich_but_costly], 1.05)
    assert (d.action, d.target.key) == (Action.SWITCH, "cheap")


def test_decide_never_switches_to_a_worse_negative_profit():
    running, worse = make_coin("run", 1.0, profit=-1.0), make_coin("worse", 1.0, profit=-1.02)
    assert decide("run", [worse, running], 1.05).action is Action.STAY
    better = make_coin("better", 1.0, profit=-0.5)
    assert decide("run", [better, running], 1.05).action is Action.SWITCH


@pytest.mark.parametrize("income, profit, value", [
    (1.5, None, 1.5),
    (1.5, -0.25, -0.25),
    (float("nan"), None, 0.0),  # rank_value: -inf, "no figure"
    (1.0, float("-inf"), 0.0),
])
def test_value_of_is_the_coins_rank_value_with_non_finite_as_zero(income, profit, value):
    c = make_coin("x", income, profit=profit)
    assert value_of(c) == value
    if math.isfinite(c.rank_value):
        assert value_of(c) == c.rank_value


def test_a_coin_without_a_figure_loses_to_any_paying_coin():
    blank = make_coin("blank", float("nan"))
    d = decide("blank", [A, blank], 1.05)
    assert (d.action, d.target.key, d.gain_pct) == (Action.SWITCH, "aaa", None)  # 0 -> 1.0: no ratio


def test_decide_with_nothing_ranked_does_nothing():
    assert decide("aaa", [], 1.05) == Decision(Action.NONE, None, "no coin to mine (empty ranking)")


def test_every_action_is_an_enum_member_with_the_seed_word():
    assert {a.value for a in Action} == {"start", "stay", "switch", "hold", "none"}


def test_a_pin_overrides_the_ranking_by_name_ticker_or_slug():
    ranked = [C, B, A]
    assert decide("ccc", ranked, 1.05, pin="BBB").action is Action.SWITCH
    assert decide("ccc", ranked, 1.05, pin="bbb").target.key == "bbb"
    assert decide(None, ranked, 1.05, pin="Aaa").target.key == "aaa"
    pinned_running = decide("aaa", ranked, 1.05, pin="aaa")
    assert (pinned_running.action, pinned_running.target.key) == (Action.STAY, "aaa")


def test_a_pin_on_an_unranked_coin_is_ignored_and_noted():
    d = decide("aaa", [C, A], 1.05, pin="dogecoin")
    assert (d.action, d.target.key) == (Action.SWITCH, "ccc")
    assert d.note == "Pinned coin 'dogecoin' is not in the ranking; ignoring the pin"
    assert decide("aaa", [C, A], 1.05).note is None


@pytest.mark.parametrize("old, new, expected", [(1.0, 1.2, 20.0), (2.0, 1.0, -50.0), (-1.0, -0.5, 50.0), (0.0, 1.0, None)])
def test_gain_pct(old, new, expected):
    assert gain_pct(old, new) == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize("old, new, switch", [
    (1.0, 1.05, False), (1.0, 1.0501, True), (0.0, 0.01, True), (0.0, 0.0, False),
    (-1.0, -0.96, False), (-1.0, -0.94, True), (-1.0, -2.0, False),
])
def test_worth_switching(old, new, switch):
    assert worth_switching(old, new, 1.05) is switch
