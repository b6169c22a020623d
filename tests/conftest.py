"""Shared test set-up. Real components only: a missing one fails the test (never skips).

Two tiers: `make test` runs everything; `make test-fast` runs `-m "not slow"` with SMARTMINER_FAST_TESTS=1,
and then a test that starts Chromium, dockerd, XMRig or the daemon anyway FAILS (it lacks its `slow`
mark): `require` refuses those programs, and no subprocess may start them.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from typing import Any, Callable, TypeVar

import pytest

import config
import utils
from coin import Coin


FAST_TIER_ENV = "SMARTMINER_FAST_TESTS"
# What only the slow tier may start: the browser, the container engine, the miner, the daemon itself.
SLOW_PROGRAMS = frozenset({"chromium", "chromedriver", "dockerd", "containerd", "docker", "xmrig"})
SLOW_SCRIPTS = ("main.py",)


def fast_tier() -> bool:
    """Whether this run is the fast tier: `make test-fast` sets SMARTMINER_FAST_TESTS=1."""
    return os.environ.get(FAST_TIER_ENV) == "1"


def slow_component(args: Any) -> str | None:
    """The slow program a command line would start ("dockerd", "main.py"...), or None."""
    argv = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args or [])
    words = [os.fsdecode(a) for a in argv if isinstance(a, (str, bytes, os.PathLike))]
    if len(words) == 1:
        words = words[0].split()  # a shell string
    if not words:
        return None
    program = os.path.basename(words[0])
    if program in SLOW_PROGRAMS:
        return program
    return next((os.path.basename(w) for w in words[1:] if os.path.basename(w) in SLOW_SCRIPTS), None)


def require(path_or_name: str, what: str) -> str:
    """The full path of a required program; fails the test when it is missing.

    `make test` installs every component, so a missing one is a broken install step, in CI or not.
    In the fast tier, asking for a slow program fails the test: it belongs in the slow tier.
    """
    if fast_tier() and os.path.basename(path_or_name) in SLOW_PROGRAMS:
        pytest.fail(f"{what} ({path_or_name}) is wanted in the fast tier: mark the test @pytest.mark.slow")
    found = path_or_name if os.path.isabs(path_or_name) and os.access(path_or_name, os.X_OK) else shutil.which(path_or_name)
    if not found:
        pytest.fail(f"{what} is missing ({path_or_name}); `make test` installs it (see Makefile APT_PACKAGES)")
    return found


def make_coin(key: str, income: float, *, profit: float | None = None, name: str | None = None,
              symbol: str | None = None, **fields) -> Coin:
    """A ranked coin as strategy makes them, with plausible figures for the fields a test leaves out."""
    values = dict(
        key=key, name=name or key.capitalize(), symbol=symbol or key[:3].upper(),
        url=f"https://miningpoolstats.stream/{key}", wallet=f"4{key}WALLETabcdef0123456789", pool="127.0.0.1:3333",
        price_usd=1.0, nethash_hs=1e9, emission_24h=100.0, coins_per_day=income, income_usd=income,
        hashrate_hs=17300.0, profit_usd=profit,
    )
    values.update(fields)
    return Coin(**values)


_started_in_fast_tier: list[str] = []


@pytest.fixture(scope="session", autouse=True)
def _fast_tier_refuses_slow_programs():
    """In the fast tier, a subprocess that would start a slow program is refused (and recorded)."""
    if not fast_tier():
        yield
        return
    real_init = subprocess.Popen.__init__

    def guarded_init(self, args, *more, **kw):
        what = slow_component(args)
        if what:
            _started_in_fast_tier.append(what)
            raise RuntimeError(f"{what} may not start in the fast tier (SMARTMINER_FAST_TESTS=1)")
        real_init(self, args, *more, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(subprocess.Popen, "__init__", guarded_init)
        yield


@pytest.fixture(autouse=True)
def _fast_tier_guard(request):
    """Fail a fast-tier test that tried to start a slow program, even if the code under test caught the refusal."""
    before = len(_started_in_fast_tier)
    yield
    tried = _started_in_fast_tier[before:]
    if tried:
        pytest.fail(f"{request.node.nodeid} tried to start {', '.join(sorted(set(tried)))} in the fast tier: "
                    "mark it @pytest.mark.slow")


@pytest.fixture(autouse=True)
def _fresh_state():
    """Each test starts from default settings and a clean run state. The browser runs uncapped
    (BROWSER_CPUS=0): no miner competes here, and tests/test_cpu_cap.py tests the cap itself."""
    config.set_settings(config.load_settings(environ={}, env_file=None))
    config.override(BROWSER_CPUS=0)
    config.reset_state()
    utils.incidents = utils.Incidents()
    yield
    config.set_settings(None)
    config.reset_state()
from tests.fixtures_docker import docker_engine  # noqa: F401


T = TypeVar("T")


def wait_until(what: str, probe: Callable[[], T], timeout: float, step: float = 0.25) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` and its last value."""
    deadline = time.monotonic() + timeout
    value = probe()
    while not value:
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what} (last: {value!r})")
        time.sleep(step)
        value = probe()
    return value
