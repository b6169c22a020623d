"""Fleet benchmark: a switch in swarm mode against the single container, and what one analysis for N rigs saves.

Run: .venv/bin/python bench/bench_fleet.py [--rounds 8] [--analyses 3] [--realistic]
Stops by itself (a few minutes). Everything runs on private engines in network namespaces made here
(tests/fixtures_swarm.py), torn down at the end.

1. Switch time, from the decision to every task running the new coin:
   * swarm, 1 node and 2 nodes (a manager and a worker engine joined over a veth pair): the
     controller (`miner_controller.Controller` on `fleet.SwarmBackend`) decides and updates the
     service; the clock stops when the engine reports a running task of the new coin on every node
     (polled every 20 ms). Update settings: the product's (parallelism FLEET_PARALLELISM=0, delay
     0, stop-first) with Docker's default 5 s monitor; each round starts once the previous update
     has completed.
   * single container, on the 1-node engine with the same image: the controller on
     `ContainerBackend` (stop, remove, create, start; the call returns with the new one running),
     and the bare SDK stop + remove + run with the same arguments.
   Rounds alternate between the sides.
2. CPU-seconds of one market analysis (`strategy.analyse()` on the offline market's pages, as many
   as links.txt has): this process and every descendant (Chromium, chromedriver), counted exactly
   by making this process the subreaper of its tree and reaping it (`os.times()` children), then
   multiplied by the analyses per day at HOURS_INTERVAL=8. In a fleet of N rigs one manager
   analyses for all: (N - 1) analyses a day are saved, (N - 1)/N of one per rig.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import config  # noqa: E402
import fleet  # noqa: E402
import strategy  # noqa: E402
import utils  # noqa: E402
from coin import Coin  # noqa: E402
from demo.market import MarketServer  # noqa: E402
from demo.rig import SNAPSHOT, free_port, write_rig_files  # noqa: E402
from engine import Engine  # noqa: E402
from fleet_health import task_coin  # noqa: E402
from miner_controller import Controller, Outcome  # noqa: E402
from tests.fixtures_swarm import (STANDIN_IMAGE, add_netns, del_netns, label_node, link_netns, start_node,  # noqa: E402
                                  stop_node)
from worker_backend import ContainerBackend  # noqa: E402
from worker_spec import run_kwargs  # noqa: E402

SERVICE = "smartminer_bench_fleet"
CONTAINER = "smartminer_bench_single"
BENCH_TIMINGS = fleet.Timings(monitor_s=5.0)  # Docker's default monitor; the rest as in production
HOURS_INTERVAL = 8
PR_SET_CHILD_SUBREAPER = 36


def make_coin(key: str, income: float) -> Coin:
    return Coin(key=key, name=key.capitalize(), symbol=key[:3].upper(), url=f"https://miningpoolstats.stream/{key}",
                wallet=f"4{key}WALLETabcdef0123456789", pool="127.0.0.1:3333", price_usd=1.0, nethash_hs=1e9,
                emission_24h=100.0, coins_per_day=income * 10, income_usd=income, hashrate_hs=17300.0, algo="rx/0")


def settings_for(url: str, name: str, base: str) -> config.Settings:
    return config.load_settings(environ={
        "DOCKER_HOST": url, "IMAGE_NAME": STANDIN_IMAGE, "CONTAINER_NAME": name, "WORKER_PRIVILEGED": "false",
        "FLEET_MODE": "swarm", "XMRIG_PORT": str(free_port()), "PATH_STATUS": os.path.join(base, "status.json"),
        "PATH_XMRIG_CONFIG": os.path.join(base, "config.json"), "PATH_RUNTIME": os.path.join(base, "runtime.json"),
    }, env_file=None)


def wait(what: str, cond, deadline_s: float = 120.0, step: float = 0.02):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(step)
    raise SystemExit(f"never happened within {deadline_s:g}s: {what}")


def every_node_runs(client, nodes: int, coin: str) -> bool:
    tasks = client.services.get(SERVICE).tasks()
    wanted = [t for t in tasks if t["DesiredState"] == "running"]
    running = {t["NodeID"] for t in wanted if t["Status"]["State"] == "running" and task_coin(t) == coin}
    return len(running) == nodes and all(task_coin(t) == coin for t in wanted)


def update_done(client) -> bool:
    status = client.services.get(SERVICE).attrs.get("UpdateStatus") or {}
    return status.get("State") not in ("updating", "rollback_started")


class Pair:
    """Two coins that take turns: each round's target beats the running one by 50%."""

    def __init__(self) -> None:
        self.round = 0

    def next(self, running: str) -> tuple[Coin, list[Coin]]:
        self.round += 1
        target_key = "beta" if running == "alpha" else "alpha"
        target, current = make_coin(target_key, 1.5 * self.round), make_coin(running, 1.0 * self.round)
        return target, [target, current]


def swarm_switch(ctl: Controller, client, nodes: int, pair: Pair) -> float:
    wait("the previous update to complete", lambda: update_done(client))
    running = ctl.backend.find().coin_key
    target, ranking = pair.next(running)
    t0 = time.perf_counter()
    result = ctl.manage_worker(target, ranking)
    if result.outcome is not Outcome.SWITCHED:
        raise SystemExit(f"swarm controller did not switch: {result}")
    wait(f"every node running {target.key}", lambda: every_node_runs(client, nodes, target.key))
    return time.perf_counter() - t0


def container_switch(ctl: Controller, pair: Pair) -> float:
    running = ctl.backend.find().coin_key
    target, ranking = pair.next(running)
    t0 = time.perf_counter()
    result = ctl.manage_worker(target, ranking)
    elapsed = time.perf_counter() - t0
    if result.outcome is not Outcome.SWITCHED or not ctl.backend.find().running:
        raise SystemExit(f"container controller did not switch: {result}")
    return elapsed


def bare_switch(client, s: config.Settings, pair: Pair) -> float:
    old = client.containers.get(CONTAINER)
    target, _ = pair.next(old.labels["mining_coin"])
    kwargs = run_kwargs(target, s)
    t0 = time.perf_counter()
    old.stop(timeout=s.STOP_TIMEOUT)
    old.remove()
    client.containers.run(detach=True, **kwargs)
    elapsed = time.perf_counter() - t0
    if not client.containers.get(CONTAINER).attrs["State"]["Running"]:
        raise SystemExit("bare run did not start the worker")
    return elapsed


def line(label: str, xs: list[float]) -> str:
    return (f"{label:<28} median {statistics.median(xs) * 1000:8.1f} ms  mean {statistics.mean(xs) * 1000:8.1f} ms  "
            f"min {min(xs) * 1000:8.1f} ms  max {max(xs) * 1000:8.1f} ms  (n={len(xs)})")


def bench_switch(rounds: int) -> dict[str, list[float]]:
    pid = os.getpid() % 100000
    solo_ns, ns_a, ns_b = f"sbf{pid}s", f"sbf{pid}a", f"sbf{pid}b"
    base = tempfile.mkdtemp(prefix="smartminer-bench-fleet-")
    made: list = []
    out: dict[str, list[float]] = {"swarm, 1 node": [], "swarm, 2 nodes": [], "container (controller)": [],
                                   "container (bare SDK)": []}
    try:
        for ns in (solo_ns, ns_a, ns_b):
            add_netns(ns)
        link_netns(ns_a, ns_b, "10.213.0.1", "10.213.0.2")
        solo = start_node(solo_ns, "rig-solo")
        made.append(solo)
        solo.client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
        label_node(solo.client, solo.node_id, "smartminer", "worker")
        rig_a = start_node(ns_a, "rig-a")
        made.append(rig_a)
        rig_b = start_node(ns_b, "rig-b")
        made.append(rig_b)
        rig_a.client.swarm.init(advertise_addr="10.213.0.1", listen_addr="10.213.0.1:2377")
        rig_b.client.swarm.join(remote_addrs=["10.213.0.1:2377"], join_token=rig_a.client.swarm.attrs["JoinTokens"]["Worker"],
                                listen_addr="10.213.0.2:2377", advertise_addr="10.213.0.2")
        for node in (rig_a, rig_b):
            label_node(rig_a.client, node.node_id, "smartminer", "worker")

        s_solo, s_pair = settings_for(solo.url, SERVICE, base), settings_for(rig_a.url, SERVICE, base)
        s_single = settings_for(solo.url, CONTAINER, base)
        swarm_solo = Controller(fleet.SwarmBackend(Engine(lambda: s_solo), lambda: s_solo, BENCH_TIMINGS), read_summary=lambda: None)
        swarm_pair = Controller(fleet.SwarmBackend(Engine(lambda: s_pair), lambda: s_pair, BENCH_TIMINGS), read_summary=lambda: None)
        single = Controller(ContainerBackend(Engine(lambda: s_single), lambda: s_single), read_summary=lambda: None)
        first = make_coin("alpha", 0.5)
        for ctl, s in ((swarm_solo, s_solo), (swarm_pair, s_pair), (single, s_single)):
            config.set_settings(s)
            ctl.manage_worker(first, [first])
        wait("the first tasks", lambda: every_node_runs(solo.client, 1, "alpha") and every_node_runs(rig_a.client, 2, "alpha"))
        pairs = {name: Pair() for name in out}
        for _ in range(rounds):
            config.set_settings(s_solo)
            out["swarm, 1 node"].append(swarm_switch(swarm_solo, solo.client, 1, pairs["swarm, 1 node"]))
            config.set_settings(s_pair)
            out["swarm, 2 nodes"].append(swarm_switch(swarm_pair, rig_a.client, 2, pairs["swarm, 2 nodes"]))
            config.set_settings(s_single)
            out["container (controller)"].append(container_switch(single, pairs["container (controller)"]))
            out["container (bare SDK)"].append(bare_switch(solo.client, s_single, pairs["container (bare SDK)"]))
        print(f"switch: {rounds} rounds, dockerd {solo.client.version()['Version']}, stand-in XMRig (exits on SIGTERM), "
              f"STOP_TIMEOUT {s_solo.STOP_TIMEOUT}s, update monitor {BENCH_TIMINGS.monitor_s:g}s, parallelism "
              f"{s_solo.FLEET_PARALLELISM} (all at once)")
        for name, xs in out.items():
            print(line(name, xs))
        base_median = statistics.median(out["container (controller)"])
        for name in ("swarm, 1 node", "swarm, 2 nodes"):
            print(f"ratio {name} / container (controller): {statistics.median(out[name]) / base_median:.1f}x")
        return out
    finally:
        for node in reversed(made):
            try:
                manager = node.client.info()["Swarm"].get("ControlAvailable")
                for service in node.client.services.list() if manager else []:  # a worker node cannot list them
                    service.remove()
                for container in node.client.containers.list(all=True):
                    container.remove(force=True)
            except Exception as exc:  # teardown goes on: the engines are stopped below anyway
                print(f"teardown: {type(exc).__name__}: {exc}")
            stop_node(node)
        for ns in (solo_ns, ns_a, ns_b):
            del_netns(ns)
        shutil.rmtree(base, ignore_errors=True)


def reap_all(deadline_s: float = 20.0) -> bool:
    """Reap every finished descendant (this process is their subreaper), waiting for stragglers.
    False when some were still running at the deadline (their CPU is then not counted)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True  # no children left
        if pid == 0:
            time.sleep(0.05)
    return False


def cpu_now() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def bench_analysis(analyses: int, realistic: bool) -> float:
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise SystemExit("prctl(PR_SET_CHILD_SUBREAPER) failed: the descendants' CPU could not be counted")
    market = MarketServer.from_snapshot(SNAPSHOT, realistic=True) if realistic else MarketServer.from_snapshot(SNAPSHOT)
    work = tempfile.mkdtemp(prefix="smartminer-bench-analysis-")
    try:
        write_rig_files(work, market)
        j = os.path.join(work, "json")
        config.set_settings(config.load_settings(environ={
            "PATH_LINKS": os.path.join(work, "links.txt"), "PATH_WALLETS": os.path.join(j, "wallets.json"),
            "PATH_POOLS": os.path.join(j, "pools.json"), "PATH_COINS": os.path.join(j, "coins.json"),
            "PATH_HISTORY": os.path.join(j, "history.json"), "PATH_HASHRATES": os.path.join(j, "hashrates.json"),
        }, env_file=None))
        pages = len(market.market.slugs())
        cpu: list[float] = []
        for i in range(analyses):
            before, t0 = cpu_now(), time.monotonic()
            result = strategy.analyse()
            complete = reap_all()
            used, wall = cpu_now() - before, time.monotonic() - t0
            cpu.append(used)
            print(f"analysis {i + 1}: {pages} pages, {len(result.coins)} ranked, wall {wall:.2f} s, "
                  f"CPU {used:.2f} s (this process + Chromium + chromedriver)"
                  f"{'' if complete else ' [some descendants still running: not counted]'}")
    finally:
        market.close()
        shutil.rmtree(work, ignore_errors=True)
    one = statistics.median(cpu)
    per_day = 24 / HOURS_INTERVAL
    print(f"one analysis: {one:.2f} CPU-seconds (median of {analyses}{', realistic pages' if realistic else ''}); "
          f"{per_day:g} analyses a day at HOURS_INTERVAL={HOURS_INTERVAL}: {one * per_day:.1f} CPU-s per rig and day")
    for n in (2, 5, 10, 50):
        saved = (n - 1) * one * per_day
        print(f"  fleet of {n:>2} rigs: {n} analyses -> 1 saves {saved:7.1f} CPU-s a day, {saved / n:5.1f} CPU-s per rig and day")
    return one


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--analyses", type=int, default=3)
    parser.add_argument("--realistic", action="store_true", help="pages that weigh what real coin pages weigh")
    args = parser.parse_args()
    utils.setup_logging("WARNING")
    bench_switch(args.rounds)
    bench_analysis(args.analyses, args.realistic)
    return 0


if __name__ == "__main__":
    sys.exit(main())
