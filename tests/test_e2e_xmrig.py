"""The daemon end to end with the real XMRig: `main.py` as a subprocess with real Chromium, the test
XMRig 6.16.0 image on a private dockerd (light RandomX mode, one thread) and one pool stand-in per
coin (demo/rig.py's build_rig(real_xmrig=True)).

One daemon run serves every step, in order: the best coin's pool sees XMRig's login and accepted
shares, /1/summary shows XMRig's own figures, the measured hashrate reaches /status's ranking, a
market flip switches pools, a dead pool is seen as 0 H/s and handled, and SIGTERM leaves XMRig mining.
Everything polls with a deadline; nothing asserts on time taken.
"""
from __future__ import annotations

import json
import os
import signal
import time

import docker
import pytest

from demo.pool import StratumPool
from demo.rig import Rig, build_rig
from tests.conftest import require
from tests.fixtures_xmrig import xmrig_binary
from tests.test_e2e import check_now, set_income, status

pytestmark = pytest.mark.slow  # the daemon, Chromium, a private dockerd and the real XMRig

MINING_TIMEOUT = 180.0  # a share at the stand-in's difficulty 256 takes ~10 s at light-mode speed
THRESHOLD = 1.05
XMRIG_VERSION = "6.16.0"


@pytest.fixture(scope="module")
def rig():
    for prog, what in (("/usr/bin/chromium", "Chromium"), ("/usr/bin/chromedriver", "ChromeDriver"),
                       ("dockerd", "Debian's docker.io")):
        require(prog, what)
    xmrig_binary()  # fails clearly when `make xmrig` has not run
    r = build_rig(with_docker=True, real_xmrig=True, MINER_THREADS="1", INCOME_TRESHOLD=str(THRESHOLD),
                  PAGE_TIMEOUT="15", HASHRATE_MIN_SECONDS="10", WATCHDOG_SECONDS="2",
                  ZERO_HASHRATE_MINUTES="0.05", SANITY_FACTOR="1000", STOP_TIMEOUT="5")
    try:
        r.env["PATH_HASHRATES"] = os.path.join(r.workdir, "json", "hashrates.json")
        r.env["PATH_DB"] = os.path.join(r.workdir, "json", "smartminer.db")
        r.start_daemon()
        yield r
    finally:
        r.close()


# --- helpers -------------------------------------------------------------------------------------
def wallet_of(key: str) -> str:
    """The demo wallet build_rig writes for a coin."""
    return f"DEMO_WALLET_{key.upper()}"


def worker(rig: Rig):
    try:
        return rig.docker().containers.get(rig.env["CONTAINER_NAME"])
    except docker.errors.NotFound:
        return None


def running_coin(rig: Rig) -> str | None:
    c = worker(rig)
    return c.labels.get("mining_coin") if c is not None and c.status == "running" else None


def pool_of(rig: Rig, key: str) -> StratumPool:
    return rig.pools[key]


def xmrig_tail(rig: Rig) -> str:
    c = worker(rig)
    return c.logs(tail=30).decode("utf-8", errors="replace") if c is not None else "(no worker)"


def wait_login_and_share(rig: Rig, key: str, since: float) -> None:
    """The coin's pool sees XMRig log in with the coin's wallet and gets an accepted share, after `since`."""
    pool, wallet = pool_of(rig, key), wallet_of(key)
    login = pool.wait_for_login(wallet, MINING_TIMEOUT, since=since)
    assert login, f"no login on {key}'s pool\n{xmrig_tail(rig)}"
    assert login.agent.startswith(f"XMRig/{XMRIG_VERSION}")
    share = pool.wait_for_share(wallet, MINING_TIMEOUT, since=since)
    assert share, f"no accepted share on {key}'s pool\n{xmrig_tail(rig)}"


def summary(rig: Rig) -> dict | None:
    """XMRig's summary through the manager's API, once it carries a hashrate."""
    s = rig.get_json("/1/summary")
    return s if isinstance(s.get("hashrate"), dict) else None


def preferred(total: list) -> float | None:
    """XMRig's 15-minute average when it has one, else its 60 s one (what the watchdog records)."""
    for value in (total[2], total[1]):
        if isinstance(value, (int, float)) and value > 0:
            return float(value)
    return None


def measured(rig: Rig, key: str) -> float | None:
    """The coin's measured hashrate in the manager's hashrate book (PATH_HASHRATES), or None."""
    try:
        with open(rig.env["PATH_HASHRATES"], encoding="utf-8") as fh:
            entry = json.load(fh).get("coins", {}).get(key)
    except (OSError, ValueError):
        return None
    return float(entry["hs"]) if entry else None


def log_since(rig: Rig, offset: int) -> str:
    return rig.logs()[offset:]


# --- the steps -----------------------------------------------------------------------------------
def test_1_the_best_coins_pool_sees_the_login_and_accepted_shares(rig):
    t0 = time.time() - 600  # any login of this run
    st = rig.wait_for(lambda: (s := status(rig)) and s.get("current_coin") and s, 180, "the first worker")
    best = st["ranking"][0]["key"]
    assert st["current_coin"] == best
    assert rig.wait_for(lambda: running_coin(rig), 60, "a running XMRig") == best
    wait_login_and_share(rig, best, t0)
    others = [k for k in rig.pools if k != best]
    assert all(not rig.pools[k].logins() for k in others)  # only the best coin's pool was used


def test_2_summary_shows_xmrigs_version_and_a_hashrate(rig):
    s = rig.wait_for(lambda: (x := summary(rig)) and (x["hashrate"]["total"][0] or 0) > 0 and x,
                     MINING_TIMEOUT, "a hashrate above 0 in /1/summary")
    assert s["version"] == XMRIG_VERSION and s["algo"] == "rx/0"
    assert s["hashrate"]["total"][0] > 0
    assert "sensors" in s and "host" in s


def test_3_status_ranks_with_the_measured_hashrate_after_a_check(rig):
    key = status(rig)["current_coin"]
    # XMRig's 60 s average exists after a minute of mining; the watchdog records it after HASHRATE_MIN_SECONDS.
    rig.wait_for(lambda: measured(rig, key), 240, f"a measured hashrate for {key} in the hashrate book")
    book_readings: set[float] = set()
    xmrig_readings: list[float] = []

    def analysed_and_sampled(t0: float):
        reading = measured(rig, key)
        if reading:
            book_readings.add(reading)
        s = summary(rig)
        if s and preferred(s["hashrate"]["total"]):
            xmrig_readings.append(preferred(s["hashrate"]["total"]))
        st = status(rig)
        return st if (st.get("last_analysis") or 0) > t0 else None

    book_readings.add(measured(rig, key))  # sampled from before the check: the reading in force is seen
    t0 = time.time()
    rig.send("check")
    st = rig.wait_for(lambda: analysed_and_sampled(t0), 120, "an analysis after 'check'")
    row = next(c for c in st["ranking"] if c["key"] == key)
    assert row["hashrate_source"] == "measured"
    assert any(abs(row["hashrate_hs"] - r) < 0.01 for r in book_readings), (row["hashrate_hs"], book_readings)
    assert xmrig_readings, "no XMRig reading sampled during the check"
    low, high = min(xmrig_readings), max(xmrig_readings)
    assert low * 0.95 <= row["hashrate_hs"] <= high * 1.05, (row["hashrate_hs"], xmrig_readings)


def test_4_a_market_flip_switches_coins_and_the_new_pool_sees_the_login(rig):
    st = status(rig)
    ranking, current_key = st["ranking"], st["current_coin"]
    current = next(c for c in ranking if c["key"] == current_key)
    challenger = next(c for c in ranking if c["key"] != current_key)
    set_income(rig, challenger["key"], ranking, current["income_usd"] * 1.5)
    t0 = time.time()
    check_now(rig)
    rig.wait_for(lambda: running_coin(rig) == challenger["key"], 120, f"a switch to {challenger['key']}")
    rig.wait_for(lambda: status(rig)["current_coin"] == challenger["key"], 30, "the state to follow")
    wait_login_and_share(rig, challenger["key"], t0)
    args = worker(rig).attrs["Args"]
    assert wallet_of(challenger["key"]) in args and pool_of(rig, challenger["key"]).address in args


def test_5_a_dead_pool_is_seen_as_zero_hashrate_and_handled(rig):
    key = running_coin(rig)
    assert key
    pool = pool_of(rig, key)
    rig.wait_for(lambda: (x := summary(rig)) and (x["hashrate"]["total"][0] or 0) > 0, MINING_TIMEOUT,
                 "XMRig hashing before the pool dies")
    offset = len(rig.logs())
    pool.stop()  # a dead pool: XMRig loses its connection and stops hashing
    try:
        said = rig.wait_for(
            lambda: [l for l in log_since(rig, offset).splitlines() if f"Watchdog: worker for {key} is 0 H/s" in l],
            120, "the watchdog handling 0 H/s")
        assert "restarting (failure 1 of" in said[0] or "giving up" in said[0], said[0]
    finally:
        revived = time.time()
        pool.start()  # the pool comes back on the same port
    rig.wait_for(lambda: running_coin(rig), 60, "a running worker after the dead pool")
    mining = running_coin(rig)
    wait_login_and_share(rig, mining, revived)  # mining again once the pool answers


def test_6_sigterm_exits_cleanly_and_leaves_xmrig_mining(rig):
    key = running_coin(rig)
    assert key
    rig.proc.send_signal(signal.SIGTERM)
    assert rig.proc.wait(timeout=30) == 0
    assert "worker container keeps mining" in rig.logs()
    assert running_coin(rig) == key  # the container still runs...
    after = time.time()
    assert pool_of(rig, key).wait_for_share(wallet_of(key), MINING_TIMEOUT, since=after), \
        f"no share after the manager exited\n{xmrig_tail(rig)}"  # ...and its pool still gets shares
