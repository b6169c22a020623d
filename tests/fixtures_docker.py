"""A private Docker engine for the whole test session, with the stand-in XMRig image imported.

The engine lives in a short folder under /tmp (unix socket paths are limited to 108 bytes), is
stopped by the pid in its own pidfile, and its folder is removed afterwards.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import require

STANDIN_IMAGE = "smartminer_standin:test"


@dataclass
class DockerEngine:
    url: str
    client: Any
    image: str


@pytest.fixture(scope="session")
def docker_engine():
    require("dockerd", "Docker engine (Debian package docker.io)")
    require("containerd", "containerd (Debian package containerd, a docker.io dependency)")
    require("/bin/busybox", "busybox (Debian package busybox-static)")
    import docker

    from demo.dockerd import build_standin_image, start_private_dockerd

    base = tempfile.mkdtemp(prefix="smd-", dir="/tmp")
    handle = start_private_dockerd(base)
    client = None
    try:
        client = docker.DockerClient(base_url=handle.url, timeout=30)
        build_standin_image(client, STANDIN_IMAGE)
        yield DockerEngine(url=handle.url, client=client, image=STANDIN_IMAGE)
    finally:
        if client is not None:
            for container in client.containers.list(all=True):
                container.remove(force=True)
            client.close()
        handle.stop()
        shutil.rmtree(base, ignore_errors=True)
