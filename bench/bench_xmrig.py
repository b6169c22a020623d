"""The real XMRig worker: its memory in light RandomX mode, and a switch from decision to the new
XMRig's first hashrate and first accepted share, through the controller and by a bare stop+run.

Run: .venv/bin/python bench/bench_xmrig.py [rounds]     (after `make xmrig`; about 30 s per round)
A private dockerd (own socket, data and exec roots under /tmp), the test XMRig image and two pool
stand-ins (one per coin) are set up first and torn down at the end; the script stops by itself.

The worker runs exactly as the controller starts it (worker_spec.run_kwargs: host network,
json/config.json in light mode mounted with --config, one thread). The pools hand out difficulty-4
jobs (target "ffffff3f") so that "first share" measures the pipeline, not luck at difficulty 256.

Each round does, one after the other on the same engine and image, a switch to the other coin:
  * controller: `miner_controller.manage_worker(target, ranking)` (reads the label, decides, stops
    the old XMRig with SIGTERM, removes it, starts the new one, writes status.json);
  * bare: `container.stop(); container.remove(); client.containers.run(...)` with the same arguments;
and times, from the start of that call: the call's return (new container running), the new XMRig's
first 10 s hashrate in its /1/summary (connected to the new pool), and the new pool's first
accepted share from the new wallet.
Memory: the worker container's RSS (cgroup) and XMRig's own resident_set_memory, after it has mined
for a while.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import docker  # noqa: E402

import config  # noqa: E402
import miner_controller as mc  # noqa: E402
import utils  # noqa: E402
import worker_spec  # noqa: E402
import xmrig  # noqa: E402
from coin import Coin  # noqa: E402
from demo.dockerd import build_xmrig_image, light_xmrig_config, start_private_dockerd  # noqa: E402
from demo.fetch_xmrig import VERSION, binary_path  # noqa: E402
from demo.pool import StratumPool  # noqa: E402
from demo.rig import free_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = "smartminer_xmrig:bench"
NAME = "smartminer_bench_xmrig"
EASY_TARGET = "ffffff3f"  # difficulty ~4
DEADLINE = 120.0


@dataclasses.dataclass
class Switch:
    running: float  # the call returned, the new container running
    hashrate: float  # the new XMRig's first 10 s hashrate
    share: float  # the new pool's first accepted share


def coin(key: str, pool: StratumPool, income: float) -> Coin:
    return Coin(key=key, name=key.capitalize(), symbol=key[:3].upper(), url=f"https://miningpoolstats.stream/{key}",
                wallet=f"4{key}WALLETabcdef0123456789", pool=pool.address, price_usd=1.0, nethash_hs=1e9,
                emission_24h=100.0, coins_per_day=income * 10, income_usd=income, hashrate_hs=30.0)


def first_hashrate(pool_address: str, deadline: float) -> float:
    """Poll XMRig's /1/summary until the XMRig on `pool_address` reports a 10 s hashrate; its time."""
    while time.monotonic() < deadline:
        answer = xmrig.fetch("/1/summary")
        data = answer.data if isinstance(answer.data, dict) else {}
        summary = xmrig.parse_summary(data)
        if summary and (summary.hashrate_10s or 0) > 0 and (data.get("connection") or {}).get("pool") == pool_address:
            return time.monotonic()
        time.sleep(0.05)
    raise SystemExit(f"no hashrate from the XMRig on {pool_address} within {DEADLINE:g}s")


def measure(do_switch, target: Coin, pool: StratumPool) -> Switch:
    """Run `do_switch()` and time its return, the first hashrate and the first share."""
    since, t0 = time.time(), time.monotonic()
    do_switch()
    running = time.monotonic()
    hashrate = first_hashrate(target.pool, t0 + DEADLINE)
    share = pool.wait_for_share(target.wallet, timeout=max(0.0, t0 + DEADLINE - time.monotonic()), since=since)
    if share is None:
        raise SystemExit(f"no accepted share for {target.key} within {DEADLINE:g}s")
    return Switch(running - t0, hashrate - t0, share.time - since)


def controller_switch(target: Coin, current: Coin) -> None:
    result = mc.manage_worker(target, [target, current])
    if result.outcome is not mc.Outcome.SWITCHED:
        raise SystemExit(f"controller did not switch: {result}")


def bare_switch(client: docker.DockerClient, target: Coin) -> None:
    old = client.containers.get(NAME)
    old.stop(timeout=config.settings().STOP_TIMEOUT)
    old.remove()
    client.containers.run(detach=True, **worker_spec.run_kwargs(target, config.settings()))


def memory(client: docker.DockerClient) -> tuple[float, float]:
    """(container RSS, XMRig's resident_set_memory), MiB."""
    stats = client.api.stats(NAME, stream=False)["memory_stats"]
    inner = stats.get("stats", {})
    rss = inner.get("rss", inner.get("anon", stats.get("usage", 0)))
    own = xmrig.fetch("/1/summary").data["resources"]["memory"]["resident_set_memory"]
    return rss / 2**20, own / 2**20


def line(label: str, xs: list[float]) -> str:
    return f"  {label:<24} median {statistics.median(xs):6.2f} s  min {min(xs):6.2f} s  max {max(xs):6.2f} s"


def report(rounds: int, client: docker.DockerClient, mem: list[tuple[float, float]],
           ours: list[Switch], bare: list[Switch]) -> None:
    print(f"real XMRig benchmark: XMRig {VERSION}, light RandomX mode, 1 thread, dockerd "
          f"{client.version()['Version']}, {rounds} rounds, pool difficulty ~4")
    print(f"worker memory: container RSS {max(m[0] for m in mem):.0f} MiB, XMRig resident_set_memory "
          f"{max(m[1] for m in mem):.0f} MiB (max of {len(mem)} samples)")
    for label, runs in (("controller", ours), ("bare stop+remove+run", bare)):
        print(f"{label}:")
        print(line("new worker running", [r.running for r in runs]))
        print(line("first hashrate (10 s)", [r.hashrate for r in runs]))
        print(line("first accepted share", [r.share for r in runs]))
    for what in ("hashrate", "share"):
        ratio = statistics.median(getattr(r, what) for r in ours) / statistics.median(getattr(r, what) for r in bare)
        print(f"ratio to first {what} (median controller / median bare): {ratio:.2f}x")


def main(rounds: int = 5) -> None:
    utils.setup_logging("WARNING")
    base = tempfile.mkdtemp(prefix="smd-x-", dir="/tmp")
    handle = start_private_dockerd(base)
    client = docker.DockerClient(base_url=handle.url, timeout=60)
    pools = [StratumPool(name, target=EASY_TARGET).start() for name in ("alpha", "beta")]
    try:
        build_xmrig_image(client, IMAGE, binary_path())
        cfg = os.path.join(base, "config.json")
        with open(cfg, "w", encoding="utf-8") as fh:
            json.dump(light_xmrig_config(os.path.join(ROOT, "json", "config.json")), fh)
        config.set_settings(config.load_settings(environ={
            "DOCKER_HOST": handle.url, "IMAGE_NAME": IMAGE, "CONTAINER_NAME": NAME, "WORKER_PRIVILEGED": "false",
            "XMRIG_PORT": str(free_port()), "MINER_THREADS": "1", "PATH_XMRIG_CONFIG": cfg,
            "PATH_STATUS": os.path.join(base, "status.json"),
        }, env_file=None))
        coins = {p.name: coin(p.name, p, 1.0) for p in pools}
        by_key = {p.name: p for p in pools}
        mc.manage_worker(coins["alpha"], [coins["alpha"]])  # the first worker, and a warm client
        first_hashrate(coins["alpha"].pool, time.monotonic() + DEADLINE)
        mem = [memory(client)]
        ours: list[Switch] = []
        bare: list[Switch] = []
        for i in range(rounds):
            running_key = mc.running_coin()
            other = "beta" if running_key == "alpha" else "alpha"
            # The target pays 50% more than the running coin: always a switch.
            target = dataclasses.replace(coins[other], income_usd=1.5 * (i + 2))
            current = dataclasses.replace(coins[running_key], income_usd=1.0 * (i + 2))
            ours.append(measure(lambda: controller_switch(target, current), target, by_key[other]))
            mem.append(memory(client))
            bare.append(measure(lambda: bare_switch(client, current), current, by_key[running_key]))
            mc.manage_worker(current, [current])  # the engine now runs `current`: in step again
        report(rounds, client, mem, ours, bare)
    finally:
        mc.stop_current_container()
        mc.reset_client()
        client.close()
        for pool in pools:
            pool.stop()
        handle.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
