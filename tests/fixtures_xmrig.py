"""The real test XMRig: where its binary is, and its worker image on the session's private dockerd.

`make xmrig` (a dependency of `make test`) fetches and verifies the binary (demo/fetch_xmrig.py);
a missing binary fails the test that needs it, never skips it.
"""
from __future__ import annotations


import pytest

from demo.dockerd import build_xmrig_image
from demo.fetch_xmrig import ENV_OVERRIDE, binary_path
from tests.conftest import require, wait_until  # noqa: F401  (wait_until: re-exported for the XMRig tests)

XMRIG_IMAGE = "smartminer_xmrig:test"
def xmrig_binary() -> str:
    """The test XMRig's path ($SMARTMINER_XMRIG, else the `make xmrig` cache); fails when missing."""
    return require(binary_path(), f"The test XMRig (`make xmrig` fetches it; {ENV_OVERRIDE} points elsewhere)")


@pytest.fixture(scope="session")
def xmrig_image(docker_engine) -> str:
    """The real XMRig as a worker image (entrypoint /xmrig) on the private engine, built once."""
    build_xmrig_image(docker_engine.client, XMRIG_IMAGE, xmrig_binary())
    return XMRIG_IMAGE
