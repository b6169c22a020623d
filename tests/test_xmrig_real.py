"""The real XMRig 6.16.0 (make xmrig) on the private dockerd, mining against the pool stand-in.

One light-mode, one-thread worker started exactly as the controller starts it serves most checks;
one more container shows XMRig refusing its arguments. Everything polls with a deadline.
"""
from __future__ import annotations

import dataclasses
import json
import os
import threading
import urllib.request
import uuid

import pytest

import api_wrapper
import config
import watchdog
import worker_spec
import xmrig
from coin import Coin
from demo.dockerd import light_xmrig_config
from demo.pool import StratumPool
from demo.rig import free_port
from tests.fixtures_xmrig import wait_until, xmrig_image  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MINING_TIMEOUT = 180.0  # a share at difficulty 256 takes ~10 s at light-mode speed; a loaded machine is slower
LIGHT_MODE_LINE = "fast RandomX mode disabled by config"


def monero(pool: StratumPool) -> Coin:
    return Coin(key="monero", name="Monero", symbol="XMR", url="https://miningpoolstats.stream/monero",
                wallet="4MONEROtestWALLET0123456789abcdef", pool=pool.address, price_usd=160.0, nethash_hs=5e9,
                emission_24h=432.0, coins_per_day=0.001, income_usd=0.16, hashrate_hs=30.0)


class Mining:
    """The one real worker of this module and what it runs against."""

    def __init__(self, engine, image: str, workdir: str) -> None:
        self.engine = engine
        self.pool = StratumPool(name="monero").start()
        self.coin = monero(self.pool)
        self.file_port, self.cli_port = free_port(), free_port()
        config_path = os.path.join(workdir, "config.json")
        with open(config_path, "w", encoding="utf-8") as fh:
            json.dump(light_xmrig_config(os.path.join(ROOT, "json", "config.json"), http_port=self.file_port), fh)
        self.settings = config.load_settings(environ={
            "XMRIG_PORT": str(self.cli_port), "PATH_XMRIG_CONFIG": config_path, "IMAGE_NAME": image,
            "CONTAINER_NAME": f"smartminer_xmrig_{uuid.uuid4().hex[:8]}", "WORKER_PRIVILEGED": "false",
            "MINER_THREADS": "1",
        }, env_file=None)
        self.kwargs = worker_spec.run_kwargs(self.coin, self.settings)
        self.container = engine.client.containers.run(detach=True, **self.kwargs)

    def log(self) -> str:
        return self.container.logs(stdout=True, stderr=True).decode("utf-8", errors="replace")

    def summary(self, path: str = "/1/summary") -> xmrig.Upstream:
        return xmrig.fetch(path, host="127.0.0.1", port=self.cli_port)

    def close(self) -> None:
        self.container.remove(force=True)
        self.pool.stop()


@pytest.fixture(scope="module")
def mining(docker_engine, xmrig_image, tmp_path_factory):  # noqa: F811
    m = Mining(docker_engine, xmrig_image, str(tmp_path_factory.mktemp("xmrig")))
    try:
        yield m
    finally:
        m.close()


def hashing(m: Mining) -> xmrig.Summary | None:
    """XMRig's summary once it reports a 10 s hashrate above 0."""
    summary = xmrig.parse_summary(m.summary().data)
    return summary if summary and (summary.hashrate_10s or 0) > 0 else None


def test_the_controllers_arguments_mine_on_the_pool(mining):
    m = mining
    expected = worker_spec.worker_command(m.coin, m.settings, with_config=True)
    assert m.container.attrs["Config"]["Cmd"] == expected
    assert expected[0] == f"--config={worker_spec.CONTAINER_CONFIG_PATH}"
    login = m.pool.wait_for_login(m.coin.wallet, MINING_TIMEOUT)
    assert login, f"no login from XMRig\n{m.log()[-2000:]}"
    assert login.agent.startswith("XMRig/6.16.0")
    assert m.pool.wait_for_share(m.coin.wallet, MINING_TIMEOUT), f"no accepted share\n{m.log()[-2000:]}"
    assert {x.wallet for x in m.pool.logins()} == {m.coin.wallet}
    wait_until("XMRig's own 'accepted' line", lambda: "cpu      accepted (" in m.log(), 60)
    summary = wait_until("XMRig counting the accepted share",
                        lambda: (s := xmrig.parse_summary(m.summary().data)) and (s.shares_good or 0) >= 1 and s, 60)
    assert summary.shares_good <= m.pool.accepted(m.coin.wallet)


def test_config_file_randomx_block_holds_and_its_http_port_loses(mining):
    m = mining
    wait_until("XMRig's RandomX start", lambda: "randomx" in m.log(), 60)
    assert LIGHT_MODE_LINE in wait_until("the RandomX mode line", lambda: LIGHT_MODE_LINE in m.log() and m.log(), 60)
    wait_until("XMRig's API on the command line's port", lambda: m.summary().data, 60)
    refused = xmrig.fetch("/1/summary", host="127.0.0.1", port=m.file_port)
    assert refused.data is None and "connection refused" in refused.error
    memory = m.summary().data["resources"]["memory"]["resident_set_memory"]
    assert memory < 1 << 30  # light mode: a 256 MB cache, no 2 GB dataset


def test_xmrig_real_summaries_are_read_over_http(mining):
    m = mining
    summary = wait_until("a hashrate in /1/summary", lambda: hashing(m), MINING_TIMEOUT)
    assert summary.version == "6.16.0" and summary.algo == "rx/0"
    v2 = m.summary("/2/summary")
    assert v2.error is None and v2.data["version"] == "6.16.0"
    assert v2.data["ua"].startswith("XMRig/6.16.0") and v2.data["connection"]["pool"] == m.pool.address
    assert len(v2.data["hashrate"]["total"]) == 3


def test_api_passes_xmrigs_summary_through_with_sensors_and_host(mining):
    m = mining
    config.set_settings(m.settings)
    wait_until("a hashrate in XMRig's summary", lambda: hashing(m), MINING_TIMEOUT)
    server = api_wrapper.make_server(host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        url = "http://127.0.0.1:%d" % server.server_address[1]

        def body(path: str) -> dict | None:
            with urllib.request.urlopen(url + path, timeout=5) as resp:
                data = json.loads(resp.read())
            return data if data.get("version") else None

        for path in ("/1/summary", "/2/summary"):
            data = wait_until(f"XMRig's summary through the API's {path}", lambda: body(path), 30)
            assert data["version"] == "6.16.0" and data["algo"] == "rx/0"
            assert data["hashrate"]["total"][0] > 0
            assert set(data["sensors"]) == {"cpu_temp", "vrm_temp"} and "uptime" in data["host"]
            assert data["connection"]["pool"] == m.pool.address
    finally:
        server.shutdown()
        server.server_close()


def test_xmrig_refusing_its_arguments_exits_with_its_own_error_line(docker_engine, mining):
    """A pool address XMRig cannot use (port 0) passes the controller's argument rules; XMRig then
    finds no valid configuration and exits 2. (An unknown option or --algo value does not stop
    XMRig 6.16: it prints "unrecognized option" or mines with "algo auto".)"""
    m = mining
    coin = dataclasses.replace(m.coin, pool="127.0.0.1:0")
    kwargs = {**worker_spec.run_kwargs(coin, m.settings), "name": m.settings.CONTAINER_NAME + "_refused",
              "restart_policy": {"Name": "no"}}
    container = docker_engine.client.containers.run(detach=True, **kwargs)
    try:
        assert container.wait(timeout=60)["StatusCode"] == 2
        lines = container.logs(stdout=True, stderr=True).decode("utf-8", errors="replace").splitlines()
        assert watchdog.error_line(lines).endswith("no valid configuration found, try https://xmrig.com/wizard"), lines
    finally:
        container.remove(force=True)
