"""Switch time: from the decision to the new worker running, against a bare stop + remove + run.

Run: .venv/bin/python bench/bench_switch.py [rounds]
A private dockerd (its own socket, data and exec roots under /tmp) and the stand-in XMRig image are
set up first and torn down at the end; the script stops by itself (about 20 s for 15 rounds).

Each round does, one after the other on the same engine and image:
  * controller: `miner_controller.manage_worker(best, ranking)` with a ranking whose best coin beats
    the running one by more than the threshold (so it reads the label, decides, stops, removes,
    starts, writes status.json and notifies), timed until the call returns with the new worker
    running;
  * bare: `container.stop(); container.remove(); client.containers.run(...)` with the same
    arguments, labels and host config, timed the same way.
The rounds alternate the two, so both see the same engine state.
"""
from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import dataclasses  # noqa: E402

import config  # noqa: E402
import miner_controller as mc  # noqa: E402
import utils  # noqa: E402
import worker_spec  # noqa: E402
from coin import Coin  # noqa: E402
from demo.dockerd import build_standin_image, start_private_dockerd  # noqa: E402
from demo.rig import free_port  # noqa: E402

IMAGE = "smartminer_standin:bench"
NAME = "smartminer_bench_worker"


def coin(key: str, income: float) -> Coin:
    return Coin(key=key, name=key.capitalize(), symbol=key[:3].upper(), url=f"https://miningpoolstats.stream/{key}",
                wallet=f"4{key}WALLETabcdef0123456789", pool="127.0.0.1:3333", price_usd=1.0, nethash_hs=1e9,
                emission_24h=100.0, coins_per_day=income * 10, income_usd=income, hashrate_hs=17300.0, algo="rx/0")


def running(client, name: str) -> bool:
    return client.containers.get(name).attrs["State"]["Running"]


def controller_switch(client, rank: list) -> float:
    """Seconds from the decision call to the new worker running (checked on the engine after)."""
    t0 = time.perf_counter()
    result = mc.manage_worker(rank[0], rank)
    elapsed = time.perf_counter() - t0
    if result.outcome is not mc.Outcome.SWITCHED or not running(client, NAME):
        raise SystemExit(f"controller did not switch: {result}")
    return elapsed


def bare_switch(client, target) -> float:
    """The same change done by hand with the SDK: stop, remove, run."""
    kwargs = worker_spec.run_kwargs(target, config.settings())
    t0 = time.perf_counter()
    old = client.containers.get(NAME)
    old.stop(timeout=config.settings().STOP_TIMEOUT)
    old.remove()
    client.containers.run(detach=True, **kwargs)
    elapsed = time.perf_counter() - t0
    if not running(client, NAME):
        raise SystemExit("bare run did not start the worker")
    return elapsed


def summary(label: str, xs: list[float]) -> str:
    return (f"{label:<11} median {statistics.median(xs) * 1000:7.1f} ms  mean {statistics.mean(xs) * 1000:7.1f} ms  "
            f"min {min(xs) * 1000:7.1f} ms  max {max(xs) * 1000:7.1f} ms")


def main(rounds: int = 15) -> None:
    import docker

    utils.setup_logging("WARNING")
    base = tempfile.mkdtemp(prefix="smd-b-", dir="/tmp")
    handle = start_private_dockerd(base)
    client = docker.DockerClient(base_url=handle.url, timeout=30)
    try:
        build_standin_image(client, IMAGE)
        config.set_settings(config.load_settings(environ={
            "DOCKER_HOST": handle.url, "IMAGE_NAME": IMAGE, "CONTAINER_NAME": NAME,
            "WORKER_PRIVILEGED": "false", "XMRIG_PORT": str(free_port()),
            "PATH_STATUS": os.path.join(base, "status.json"),
            "PATH_XMRIG_CONFIG": os.path.join(base, "no-config.json"),
        }, env_file=None))
        a, b = coin("alpha", 1.0), coin("beta", 1.0)
        mc.manage_worker(a, [a])  # the first worker, and a warm client
        ours: list[float] = []
        bare: list[float] = []
        for i in range(rounds):
            # Each round's best pays 50% more than the running coin: always a switch.
            running_key = mc.running_coin()
            target = dataclasses.replace(b if running_key == "alpha" else a, income_usd=1.5 * (i + 2))
            current = dataclasses.replace(a if running_key == "alpha" else b, income_usd=1.0 * (i + 2))
            ours.append(controller_switch(client, [target, current]))
            bare.append(bare_switch(client, current))
            mc.manage_worker(current, [current])  # the engine now runs `current`: in step again
        ratio = statistics.median(ours) / statistics.median(bare)
        print(f"switch benchmark: {rounds} rounds, dockerd {client.version()['Version']}, stand-in XMRig, STOP_TIMEOUT "
              f"{config.settings().STOP_TIMEOUT}s (the worker exits on SIGTERM)")
        print(summary("controller", ours))
        print(summary("bare SDK", bare))
        print(f"ratio (median controller / median bare): {ratio:.2f}x  (target <= 1.2x)")
    finally:
        mc.stop_current_container()
        mc.reset_client()
        client.close()
        handle.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
