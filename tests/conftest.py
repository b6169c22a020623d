"""Shared test set-up. Real components only: a missing one fails the test (never skips)."""
from __future__ import annotations

import os
import shutil

import pytest

import config
import utils
from coin import Coin


def require(path_or_name: str, what: str) -> str:
    """The full path of a required program; fails the test when it is missing.

    `make test` installs every component, so a missing one is a broken install step, in CI or not.
    """
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


@pytest.fixture(autouse=True)
def _fresh_state():
    """Each test starts from default settings and a clean run state."""
    config.set_settings(config.load_settings(environ={}, env_file=None))
    config.reset_state()
    utils.incidents = utils.Incidents()
    yield
    config.set_settings(None)
    config.reset_state()
from tests.fixtures_docker import docker_engine  # noqa: F401
