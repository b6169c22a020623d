"""Fixtures and checks shared by the tests that drive the real Chromium (jsTrigger, strategy)."""
from __future__ import annotations

import psutil
import pytest

import config
from tests.conftest import require


@pytest.fixture
def chromium():
    """The real Chromium and chromedriver (fail when missing), with a short page timeout."""
    config.override(
        CHROME_BIN=require(config.settings().CHROME_BIN, "Chromium (Debian package chromium)"),
        CHROMEDRIVER_PATH=require(config.settings().CHROMEDRIVER_PATH, "chromedriver (Debian package chromium-driver)"),
        PAGE_TIMEOUT=3,
    )


def chromium_descendants() -> list[psutil.Process]:
    """Live Chromium/chromedriver processes started by this test process (never other engineers')."""
    out = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if "chrom" in proc.name().lower() and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except psutil.Error:
            continue
    return out
