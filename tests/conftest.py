"""Shared test set-up. Real components only: a missing one fails the test (never skips)."""
from __future__ import annotations

import os
import shutil

import pytest

import config
import utils


def require(path_or_name: str, what: str) -> str:
    """The full path of a required program; fails the test when it is missing.

    `make test` installs every component, so a missing one is a broken install step, in CI or not.
    """
    found = path_or_name if os.path.isabs(path_or_name) and os.access(path_or_name, os.X_OK) else shutil.which(path_or_name)
    if not found:
        pytest.fail(f"{what} is missing ({path_or_name}); `make test` installs it (see Makefile APT_PACKAGES)")
    return found


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
