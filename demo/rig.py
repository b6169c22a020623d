"""A whole rig on one machine, offline: the market snapshot on loopback, a private dockerd with a
worker image, and the real daemon (`main.py`) as a subprocess pointed at them.

The worker is the stand-in (busybox serving a fake XMRig API) unless `real_xmrig`: then it is the
test XMRig (`make xmrig`) in light RandomX mode, and each snapshot coin's pools.json entry points at
its own local pool stand-in (demo/pool.py), so the rig really mines and its shares are accepted.

Used by `make demo`, the end-to-end test and the idle benchmark, so all three run the same set-up.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field

import docker

from demo.dockerd import build_standin_image, build_xmrig_image, light_xmrig_config, start_private_dockerd
from demo.fetch_xmrig import binary_path
from demo.market import MarketServer
from demo.pool import StratumPool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SNAPSHOT = os.path.join(ROOT, "demo", "snapshot.json")
STANDIN_IMAGE = "smartminer_standin:demo"
XMRIG_IMAGE = "smartminer_xmrig:demo"
# Settings the sandbox may have in its environment that must not leak into the daemon.
_SCRUB = ("CONTAINER_NAME", "DOCKER_HOST")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Rig:
    """Everything one rig needs, and the means to take it down again."""

    workdir: str
    market: MarketServer
    env: dict[str, str]
    dockerd: object | None = None  # demo.dockerd.DockerdHandle
    pools: dict[str, StratumPool] = field(default_factory=dict)  # slug -> its pool stand-in (real XMRig)
    proc: subprocess.Popen | None = None
    log_path: str = ""
    _log: object | None = field(default=None, repr=False)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.env['API_PORT']}"

    @property
    def pipe(self) -> str:
        return self.env["PIPE_PATH"]

    def get_json(self, path: str, timeout: float = 5.0):
        with urllib.request.urlopen(self.api + path, timeout=timeout) as resp:
            return json.loads(resp.read())

    def send(self, command: str) -> None:
        """Write one command line into the daemon's FIFO, as `echo "..." > PIPE_PATH` would."""
        with open(self.pipe, "w", encoding="utf-8") as fh:
            fh.write(command + "\n")

    def docker(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.env["DOCKER_HOST"], timeout=30)

    def logs(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    def start_daemon(self, *args: str, to_terminal: bool = False) -> subprocess.Popen:
        """Run `main.py ARGS` with this rig's environment; its log goes to `log_path` (or the terminal)."""
        self.log_path = os.path.join(self.workdir, "daemon.log")
        out = None
        if not to_terminal:
            self._log = out = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "main.py"), *args],
            cwd=self.workdir, env=self.env, stdout=out, stderr=subprocess.STDOUT if out else None,
            stdin=subprocess.DEVNULL,
        )
        return self.proc

    def wait_for(self, predicate, timeout: float, what: str, interval: float = 0.2):
        """Poll `predicate` until it returns something truthy; fail with the daemon's log tail."""
        deadline = time.monotonic() + timeout
        last_exc = None
        while time.monotonic() < deadline:
            try:
                value = predicate()
                if value:
                    return value
            except Exception as exc:  # not up yet
                last_exc = exc
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(interval)
        tail = "\n".join(self.logs().splitlines()[-40:])
        raise AssertionError(f"timed out waiting for {what} (last error: {last_exc})\n--- daemon log ---\n{tail}")

    def stop_daemon(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def close(self) -> None:
        """Stop the daemon, the engine (and with it the worker), the pools, the market; remove the folder."""
        self.stop_daemon()
        if self.dockerd is not None:
            self.dockerd.stop()
            shutil.rmtree(self.dockerd.base_dir, ignore_errors=True)
        for pool in self.pools.values():
            pool.stop()
        self.market.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_pools(slugs: list[str]) -> dict[str, StratumPool]:
    """One running pool stand-in per coin slug (stops those already started when one fails)."""
    pools: dict[str, StratumPool] = {}
    try:
        for slug in slugs:
            pools[slug] = StratumPool(name=slug).start()
    except BaseException:
        for pool in pools.values():
            pool.stop()
        raise
    return pools


def pool_tally(pools: dict[str, StratumPool]) -> list[str]:
    """"monero: 1 login, 7 accepted shares" for each pool that saw a login."""
    return [f"{slug}: {len(pool.logins())} login(s), {len(pool.shares())} accepted share(s)"
            for slug, pool in pools.items() if pool.logins()]


def write_rig_files(workdir: str, market: MarketServer, pools: dict[str, StratumPool] | None = None) -> None:
    """links.txt, wallets, pools and XMRig config for the snapshot's coins, inside `workdir`.

    With `pools` (the real XMRig), pools.json points each coin at its pool stand-in and config.json
    is json/config.json in light RandomX mode; without, both are the repository's own files."""
    os.makedirs(os.path.join(workdir, "json"), exist_ok=True)
    slugs = market.market.slugs()
    with open(os.path.join(workdir, "links.txt"), "w", encoding="utf-8") as fh:
        fh.write("# the offline market snapshot, served on loopback\n")
        fh.writelines(market.url(slug) + "\n" for slug in slugs)
    wallets = {slug: f"DEMO_WALLET_{slug.upper()}" for slug in slugs}
    _write_json(os.path.join(workdir, "json", "wallets.json"), wallets)
    if not pools:
        for name in ("pools.json", "config.json"):
            shutil.copy(os.path.join(ROOT, "json", name), os.path.join(workdir, "json", name))
        return
    _write_json(os.path.join(workdir, "json", "pools.json"), {slug: pool.address for slug, pool in pools.items()})
    _write_json(os.path.join(workdir, "json", "config.json"), light_xmrig_config(os.path.join(ROOT, "json", "config.json")))


def _write_json(path: str, data: object) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)


def rig_env(workdir: str, **overrides: str) -> dict[str, str]:
    """The daemon's environment: this machine's, minus leaking settings, plus the rig's own."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    j = os.path.join(workdir, "json")
    env.update(
        PATH_LINKS=os.path.join(workdir, "links.txt"),
        PATH_WALLETS=os.path.join(j, "wallets.json"),
        PATH_POOLS=os.path.join(j, "pools.json"),
        PATH_COINS=os.path.join(j, "coins.json"),
        PATH_STATUS=os.path.join(j, "status.json"),
        PATH_HISTORY=os.path.join(j, "history.json"),
        PATH_XMRIG_CONFIG=os.path.join(j, "config.json"),
        PATH_RUNTIME=os.path.join(j, "runtime.json"),
        PATH_HASHRATES=os.path.join(j, "hashrates.json"),
        PATH_DB=os.path.join(j, "smartminer.db"),
        PIPE_PATH=os.path.join(workdir, "miner_comm"),
        API_HOST="127.0.0.1",
        API_PORT=str(free_port()),
        XMRIG_PORT=str(free_port()),
        CONTAINER_NAME="smartminer_demo_worker",
        IMAGE_NAME=STANDIN_IMAGE,
        WORKER_PRIVILEGED="false",
        STOP_TIMEOUT="3",
        PAGE_TIMEOUT="20",
        BROWSER_CPUS="0",  # no miner on every core here: a capped browser would only slow the tests down
        HOURS_INTERVAL="1",
        DC_API_KEY="",
        DC_USER_ID="",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


def build_rig(with_docker: bool = True, real_xmrig: bool = False, **overrides: str) -> Rig:
    """Market + files + (when asked and possible) a private dockerd with the worker image: the
    stand-in, or with `real_xmrig` the test XMRig (binary from demo.fetch_xmrig.binary_path()) and
    one pool stand-in per coin.

    With `with_docker`, a dockerd that cannot start (or an XMRig image that cannot be built) raises:
    callers that can do without (the demo) catch it and fall back.
    """
    workdir = tempfile.mkdtemp(prefix="smartminer-rig-")
    market = MarketServer.from_snapshot(SNAPSHOT)
    rig = Rig(workdir=workdir, market=market, env={})
    try:
        if real_xmrig:
            rig.pools = start_pools(market.market.slugs())
        write_rig_files(workdir, market, rig.pools)
        image = {"IMAGE_NAME": XMRIG_IMAGE} if real_xmrig else {}
        rig.env = rig_env(workdir, **{**image, **overrides})
        if with_docker:
            rig.dockerd = start_private_dockerd(tempfile.mkdtemp(prefix="smd-", dir="/tmp"))
            rig.env["DOCKER_HOST"] = rig.dockerd.url
            if real_xmrig:
                build_xmrig_image(rig.dockerd.url, rig.env["IMAGE_NAME"], binary_path())
            else:
                build_standin_image(rig.dockerd.url, rig.env["IMAGE_NAME"])
    except BaseException:
        rig.close()
        raise
    return rig
