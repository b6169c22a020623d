"""Private Docker engines in swarm mode, each in its own network namespace, for the fleet tests.

Why a namespace even for one node: a swarm engine binds its gossip port (7946) on its advertise
address, so two private swarms on the machine's loopback (another session's tests, a benchmark)
would collide. In its own namespace an engine has its own loopback and ports; only the unix socket
(a file) is shared. The engine is started with `nsenter --net` (not `ip netns exec`, which mounts a
fresh /sys and hides the cgroup mounts dockerd needs) and `unshare --uts`, so each node has its own
hostname. Addresses: 127.0.0.1 inside a namespace, and 10.213.0.1/.2 on a veth pair that joins two
namespaces created here; the host's own interfaces and routes are not touched.

Teardown: every engine leaves its swarm (force) before it is stopped by the pid in its pidfile.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import docker
import pytest

from demo.dockerd import DockerdHandle, build_standin_image, dockerd_command
from tests.conftest import require

STANDIN_IMAGE = "smartminer_standin:swarm"
SWARM_PORT = 2377  # inside a namespace nothing else listens
WORKER_LABEL = ("smartminer", "worker")  # the default FLEET_CONSTRAINT's label


@dataclass
class SwarmNode:
    """One private engine in its own network namespace."""

    hostname: str
    netns: str
    base_dir: str
    handle: DockerdHandle
    client: Any

    @property
    def url(self) -> str:
        return self.handle.url

    @property
    def node_id(self) -> str:
        return self.client.info()["Swarm"]["NodeID"]


@dataclass
class SwarmCluster:
    """A manager node (and worker nodes) with the stand-in image on every one."""

    manager: SwarmNode
    workers: list[SwarmNode] = field(default_factory=list)
    image: str = STANDIN_IMAGE

    @property
    def client(self) -> Any:
        return self.manager.client

    @property
    def url(self) -> str:
        return self.manager.url


def _run(*args: str) -> None:
    out = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {out.stderr.strip()}")


def add_netns(name: str) -> None:
    """A network namespace with its loopback up."""
    _run("ip", "netns", "add", name)
    _run("ip", "-n", name, "link", "set", "lo", "up")


def del_netns(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def link_netns(a: str, b: str, addr_a: str, addr_b: str, prefix: int = 30) -> None:
    """A veth pair with one end in each namespace (deleting a namespace deletes its end)."""
    dev_a, dev_b = f"{a}v", f"{b}v"
    _run("ip", "link", "add", dev_a, "netns", a, "type", "veth", "peer", "name", dev_b, "netns", b)
    for ns, dev, addr in ((a, dev_a, addr_a), (b, dev_b, addr_b)):
        _run("ip", "-n", ns, "addr", "add", f"{addr}/{prefix}", "dev", dev)
        _run("ip", "-n", ns, "link", "set", dev, "up")


def _connect(url: str, proc: subprocess.Popen, log_path: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            client = docker.DockerClient(base_url=url, timeout=30)
            client.ping()
            return client
        except docker.errors.DockerException:
            time.sleep(0.2)
    with open(log_path, encoding="utf-8", errors="replace") as fh:
        tail = " | ".join(fh.read().splitlines()[-5:])
    raise RuntimeError(f"dockerd in its namespace did not answer on {url}: {tail}")


def start_node(netns: str, hostname: str) -> SwarmNode:
    """dockerd (DESIGN.md's flags) in `netns`, as `hostname`, with the stand-in image imported."""
    base = tempfile.mkdtemp(prefix="smd-s", dir="/tmp")
    log_path = os.path.join(base, "dockerd.log")
    log = open(log_path, "ab")
    inner = f'echo {hostname} > /proc/sys/kernel/hostname && exec "$@"'
    cmd = ["nsenter", f"--net=/run/netns/{netns}", "--", "unshare", "--uts", "--", "sh", "-c", inner, "sh"]
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    proc = subprocess.Popen(cmd + dockerd_command(base), stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    handle = DockerdHandle(base_dir=base, url=f"unix://{base}/docker.sock", proc=proc, log_path=log_path, _log=log)
    try:
        client = _connect(handle.url, proc, log_path)
        build_standin_image(client, STANDIN_IMAGE)
    except BaseException:
        handle.stop()
        shutil.rmtree(base, ignore_errors=True)
        raise
    return SwarmNode(hostname, netns, base, handle, client)


def stop_node(node: SwarmNode) -> None:
    """Leave the swarm (force), then stop dockerd by its pidfile and remove its folder."""
    try:
        node.client.swarm.leave(force=True)
    except docker.errors.APIError:
        pass  # not in a swarm
    finally:
        node.client.close()
        node.handle.stop()
        shutil.rmtree(node.base_dir, ignore_errors=True)


def label_node(client: Any, node_id: str, key: str, value: str | None) -> None:
    """Set (or, with None, remove) one label on a node, as `docker node update --label-add` does."""
    node = client.nodes.get(node_id)
    spec = node.attrs["Spec"]
    labels = spec.setdefault("Labels", {})
    if value is None:
        labels.pop(key, None)
    else:
        labels[key] = value
    node.update(spec)


def set_availability(client: Any, node_id: str, availability: str) -> None:
    node = client.nodes.get(node_id)
    spec = node.attrs["Spec"]
    spec["Availability"] = availability
    node.update(spec)


def _require_tools() -> None:
    require("dockerd", "Docker engine (Debian package docker.io)")
    require("/bin/busybox", "busybox (Debian package busybox-static)")
    require("ip", "ip (Debian package iproute2)")
    require("nsenter", "nsenter (Debian package util-linux)")
    require("unshare", "unshare (Debian package util-linux)")


def _prefix() -> str:
    """Namespace names unique to this process (interface names are limited to 15 characters)."""
    return f"smf{os.getpid() % 100000}"


def _remove_services(client: Any) -> None:
    for service in client.services.list():
        service.remove()
    for cfg in client.configs.list():
        try:
            cfg.remove()
        except docker.errors.APIError:
            pass


@pytest.fixture(scope="module")
def swarm_engine():
    """A single-node swarm (advertise 127.0.0.1 in its own namespace), node labelled smartminer=worker."""
    _require_tools()
    netns = f"{_prefix()}s"
    add_netns(netns)
    node = None
    try:
        node = start_node(netns, "rig-solo")
        node.client.swarm.init(advertise_addr="127.0.0.1", listen_addr=f"127.0.0.1:{SWARM_PORT}")
        label_node(node.client, node.node_id, *WORKER_LABEL)
        yield SwarmCluster(manager=node)
    finally:
        if node is not None:
            _remove_services(node.client)
            stop_node(node)
        del_netns(netns)


@pytest.fixture(scope="module")
def swarm_pair():
    """Two nodes joined by a veth pair: rig-a (manager) and rig-b (worker), both labelled."""
    _require_tools()
    ns_a, ns_b = f"{_prefix()}a", f"{_prefix()}b"
    nodes: list[SwarmNode] = []
    try:
        add_netns(ns_a)
        add_netns(ns_b)
        link_netns(ns_a, ns_b, "10.213.0.1", "10.213.0.2")
        manager = start_node(ns_a, "rig-a")
        nodes.append(manager)
        worker = start_node(ns_b, "rig-b")
        nodes.append(worker)
        manager.client.swarm.init(advertise_addr="10.213.0.1", listen_addr=f"10.213.0.1:{SWARM_PORT}")
        token = manager.client.swarm.attrs["JoinTokens"]["Worker"]
        worker.client.swarm.join(remote_addrs=[f"10.213.0.1:{SWARM_PORT}"], join_token=token,
                                 listen_addr=f"10.213.0.2:{SWARM_PORT}", advertise_addr="10.213.0.2")
        for node in nodes:
            label_node(manager.client, node.node_id, *WORKER_LABEL)
        yield SwarmCluster(manager=manager, workers=[worker])
    finally:
        if nodes:
            _remove_services(nodes[0].client)
        for node in reversed(nodes):  # the worker leaves first
            stop_node(node)
        del_netns(ns_a)
        del_netns(ns_b)
