"""watchdog: the rules (pure), and the watchdog's decisions over a worker whose states the test sets.

The worker here is an in-memory backend: what is tested is the watchdog's own logic (when to
restart, back off, give up, forgive, what to tell). The same watchdog against a real engine and a
real worker is in test_miner_controller.py.
"""
from __future__ import annotations

import dataclasses
import threading

import pytest

import config
import miner_controller
import utils
import watchdog
from engine import Engine
from fleet import SwarmBackend
from tests.conftest import make_coin
from worker_backend import ContainerBackend, ForeignWorker, Worker
from xmrig import Summary


# --- rules (pure) ----------------------------------------------------------------------------------
def test_backoff_grows_and_is_capped():
    assert [watchdog.backoff_seconds(n, 60) for n in (1, 2, 3, 4)] == [0, 60, 120, 240]
    assert watchdog.backoff_seconds(30, 60) == watchdog.MAX_BACKOFF_SECONDS


def test_forgive_after_is_long_enough_for_slow_settings():
    s = config.settings()
    assert watchdog.forgive_after(s) == watchdog.FORGIVE_SECONDS
    assert watchdog.forgive_after(config.override(WATCHDOG_SECONDS=86400)) == 3 * 86400


@pytest.mark.parametrize("lines, line", [
    (["\x1b[1;37m * ABOUT        XMRig/6.16.0\x1b[0m", "xmrig: unrecognized option '--bogus'", ""],
     "xmrig: unrecognized option '--bogus'"),
    (["[2024-01-01 10:00:00.000]  net  127.0.0.1:3333 connect error: \"connection refused\"", "  done  "],
     '[2024-01-01 10:00:00.000]  net  127.0.0.1:3333 connect error: "connection refused"'),
    (["starting", "mining"], "mining"),  # nothing reads like an error: the last words it said
    (["", "   "], None),
    ([], None),
])
def test_error_line_finds_why_the_worker_stopped(lines, line):
    assert watchdog.error_line(lines) == line


def worker(state: str = "running", restarts: int = 0, ident: str = "c1", coin: str = "aaa", exit_code: int | None = 0) -> Worker:
    return Worker(name="w", ident=ident, state=state, coin_key=coin, started_at=0.0, restarts=restarts,
                  exit_code=exit_code, image="img")


@pytest.mark.parametrize("w, seen, fault", [
    (worker(), 0, None),
    (worker("paused"), 0, None),  # paused by hand: not the watchdog's business
    (worker("exited", exit_code=1), 0, "exited (exit code 1)"),
    (worker("dead"), 0, "dead (exit code 0)"),
    (worker("restarting", restarts=2), 2, "restarting in a loop (2 restarts)"),
    (worker("running", restarts=3), 2, "restarting in a loop (3 restarts)"),  # restarted by the engine since
])
def test_state_fault(w, seen, fault):
    assert watchdog.state_fault(w, seen) == fault


# --- decisions over an in-memory worker ------------------------------------------------------------
class Rig:
    """A WorkerBackend whose worker is whatever the test sets; restarts and stops are recorded."""

    def __init__(self, current: Worker | None) -> None:
        self.current = current
        self.calls: list[tuple[str, str]] = []
        self.output: list[str] = ["xmrig: unrecognized option '--bogus'"]

    def find(self) -> Worker | None:
        return self.current

    def restart(self, w: Worker) -> Worker:
        self.calls.append(("restart", w.ident))
        self.current = dataclasses.replace(w, state="running")
        return self.current

    def stop(self, w: Worker) -> None:
        self.calls.append(("stop", w.ident))
        self.current = dataclasses.replace(w, state="exited")

    def log_tail(self, w: Worker, lines: int) -> list[str]:
        return self.output[-lines:]


class Readings:
    """XMRig's summaries, one per call (the last one repeats); None is "XMRig did not answer"."""

    def __init__(self, *rates: float | None) -> None:
        self.rates = list(rates)

    def __call__(self) -> Summary | None:
        rate = self.rates.pop(0) if len(self.rates) > 1 else self.rates[0]
        return None if rate is None else Summary(hashrate_10s=rate, hashrate_60s=rate)


@pytest.fixture
def notes(monkeypatch):
    sent: list[str] = []
    monkeypatch.setattr(utils, "incidents", utils.Incidents(notifier=sent.append))
    return sent


def make(rig: Rig, reader=None, on_reading=None) -> watchdog.Watchdog:
    return watchdog.Watchdog(rig, threading.RLock(), reader or Readings(100.0), on_reading)


def test_no_worker_is_missing():
    assert make(Rig(None)).check(0.0, config.settings()) == "missing"


def test_a_dead_worker_is_restarted_at_once_then_after_a_backoff(notes):
    s = config.override(WATCHDOG_SECONDS=60)
    rig = Rig(worker("exited", exit_code=1))
    dog = make(rig)
    assert dog.check(1000.0, s) == "fault" and rig.calls == [("restart", "c1")]
    rig.current = worker("exited", exit_code=1)  # it died again
    assert dog.check(1001.0, s) == "fault" and len(rig.calls) == 1  # failure 2: waits 60 s
    assert dog.check(1030.0, s) == "fault" and len(rig.calls) == 1
    assert dog.check(1061.0, s) == "fault" and len(rig.calls) == 2
    assert not config.state.get("failing_coins") and not notes


def test_giving_up_marks_the_coin_failing_and_tells_xmrigs_own_error(notes):
    s = config.override(WATCHDOG_MAX_FAILURES=2)
    config.state.update(failing_coins={"other"})
    rig = Rig(worker("exited", exit_code=1))
    dog = make(rig)
    dog.check(1000.0, s)
    rig.current = worker("exited", exit_code=1)
    assert dog.check(1001.0, s) == "fault"
    assert rig.calls == [("restart", "c1"), ("stop", "c1")]
    assert config.state.get("failing_coins") == {"other", "aaa"}  # added to, not replaced
    assert config.state.get("force_check") is True and config.state.wake.is_set()
    [note] = notes
    assert "giving up on aaa" in note and "exited (exit code 1): xmrig: unrecognized option '--bogus'" in note
    assert dog.check(2000.0, s) == "fault" and len(rig.calls) == 2  # given up: left for the next analysis


def test_zero_hashrate_for_long_enough_is_a_fault():
    s = config.override(ZERO_HASHRATE_MINUTES=1.0)
    rig = Rig(worker())
    dog = make(rig, Readings(0.0, 0.0, None, 0.0, 5.0))
    assert dog.check(1000.0, s) == "ok"  # 0 H/s seen first
    assert dog.check(1030.0, s) == "ok"
    assert dog.check(1050.0, s) == "ok"  # XMRig silent: no verdict
    assert dog.check(1060.0, s) == "fault" and rig.calls == [("restart", "c1")]
    assert dog.check(2000.0, s) == "ok"  # mining again
    assert dog.memory.zero_since == {}


def test_a_worker_replaced_meanwhile_is_not_restarted():
    class Switched(Rig):
        def find(self) -> Worker | None:  # the second look (under the lock) sees a new worker
            answer, self.current = self.current, worker(ident="c2")
            return answer

    rig = Switched(worker("exited"))
    assert make(rig).check(1000.0, config.settings()) == "ok" and rig.calls == []


def test_healthy_readings_are_handed_on():
    seen: list[tuple[str, float, float]] = []
    rig = Rig(worker())
    dog = make(rig, Readings(250.0), lambda w, summary, now: seen.append((w.coin_key, summary.hashrate_60s, now)))
    assert dog.check(1000.0, config.settings()) == "ok"
    assert seen == [("aaa", 250.0, 1000.0)]


def test_a_long_healthy_worker_is_forgiven(notes):
    s = config.settings()
    rig = Rig(worker("exited"))
    dog = make(rig)
    dog.check(1000.0, s)  # one failure, restarted
    utils.incidents.raise_("worker-failing:aaa", "worker for aaa failing")
    dog.check(1000.0 + watchdog.forgive_after(s) - 1, s)
    assert "aaa" in dog.memory.failures
    dog.check(1000.0 + watchdog.forgive_after(s), s)
    assert "aaa" not in dog.memory.failures and not utils.incidents.is_open("worker-failing:aaa")
    assert notes[-1] == "Worker for aaa healthy again: its failure record is cleared"


def test_reset_and_forget_end_the_failing_incidents(notes):
    dog = make(Rig(None))
    utils.incidents.raise_("worker-failing:aaa", "aaa failing")
    utils.incidents.raise_("worker-failing:bbb", "bbb failing")
    dog.memory.failures["bbb"] = watchdog.Failures(count=3, given_up=True)
    dog.forget("bbb")
    assert "bbb" not in dog.memory.failures and notes[-1] == "Worker for bbb started again"
    dog.reset()
    assert notes[-1] == "Watchdog record for aaa reset: it will be tried again"
    assert utils.incidents.open_keys() == []


# --- the controller's wording for the backend's unit (container or Swarm service) -------------------
class ForeignRig(Rig):
    """A backend whose worker name is held by something SmartMiner did not make."""

    class _Engine:
        def client(self) -> None:
            return None

    engine = _Engine()

    def find(self) -> Worker | None:
        raise ForeignWorker("a worker named w exists but SmartMiner did not start it")


def test_worker_noun_is_the_backends_kind():
    assert miner_controller.worker_noun(ContainerBackend(Engine())) == "container"
    assert miner_controller.worker_noun(SwarmBackend(Engine())) == "service"
    assert miner_controller.worker_noun(Rig(None)) == "container"  # a backend that does not say


@pytest.mark.parametrize("kind, noun", [("service", "service"), (None, "container")])
def test_the_controllers_foreign_worker_messages_name_the_backends_unit(notes, monkeypatch, kind, noun):
    rig = ForeignRig(None)
    if kind:
        rig.kind = kind
    c = miner_controller.Controller(rig, read_summary=Readings(None))
    result = c.manage_worker(make_coin("aaa", 1.0), [make_coin("aaa", 1.0)])
    assert result.reason == f"a {noun} SmartMiner did not make holds the worker's name"
    monkeypatch.setattr(rig, "find", lambda: None)
    c.manage_worker(None, [])  # no coin to mine, but the name is free again
    assert notes[-1] == f"The foreign {noun} named {config.settings().CONTAINER_NAME} is gone"


def test_a_null_hashrate_counts_as_zero_only_after_xmrigs_warm_up():
    """XMRig 6.16 whose pool is gone reports [null, null, null] (seen with the real binary), not zeros."""
    assert watchdog.mining_rate(None) is None
    assert watchdog.mining_rate(Summary(hashrate_10s=None, uptime=5.0)) is None  # warming up: no data yet
    assert watchdog.mining_rate(Summary(hashrate_10s=None, uptime=None)) is None
    assert watchdog.mining_rate(Summary(hashrate_10s=None, uptime=watchdog.WARM_UP_SECONDS)) == 0.0  # dead pool
    assert watchdog.mining_rate(Summary(hashrate_10s=28.5, uptime=5.0)) == 28.5
