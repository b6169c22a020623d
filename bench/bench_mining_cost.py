"""What an analysis costs the miner: the real XMRig's hashrate while analyses of realistic pages run back
to back, against its hashrate just before and just after (XMRig alone).

XMRig 6.16.0 (the test binary, `make xmrig`) mines RandomX in light mode on every core (--threads =
cores) at normal priority against the pool stand-in (demo/pool.py). An idle window lasts --window
seconds; a window of analyses lasts at least that long and until at least one whole analysis has
finished (cut at --cap), since at nice 19 beside a busy miner one analysis can take minutes and its
whole cost is what the miner pays. Hashrate is the mean of XMRig's 10 s averages sampled every 2 s
from 10 s into the window, so it covers the whole window. Windows, in this order: idle, ours with its
defaults (BROWSER_NICE=19, BROWSER_CPUS=0.2: a cgroup of its own capped at 0.2 core), idle, the
seed's approach (a fresh Chromium per page at normal priority, see bench_analysis.py), idle, ours at
nice 0 uncapped, idle, [ours with SCHED_IDLE, idle]. `--nices 19,10` runs ours uncapped at those
nice values instead (what nice alone does beside a busy miner: it stalls the browser).
"Kept" = the window's hashrate / the mean of the idle windows on either side; "hashes lost per
analysis" = (idle - during) x the window's length / the analyses it finished.

Arrangements:
- host: XMRig and the analyses are processes on this machine;
- containers (--containers): XMRig is the worker container (Docker's default CPU weight, 1024) and
  the analyses run in a manager container with a quota of 0.2 CPU (as docker-compose.yml sets) or,
  with --weights, a low weight (cpu_shares 128) alone and with the quota; the seed's approach with
  neither. The manager container is unprivileged, so the browser's own cap cannot be made there
  (BROWSER_CPUS falls back to nice): the container's quota is what holds it. Both containers run on a
  private dockerd; the manager container runs this machine's Python, venv and Chromium through
  read-only bind mounts (no registry here to build the real image from).

    .venv/bin/python bench/bench_mining_cost.py [--window 70] [--cap 600] [--containers] [--no-host] [--sched-idle]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import docker  # noqa: E402

import config  # noqa: E402
import jsTrigger  # noqa: E402
import reaper  # noqa: E402
from bench.bench_analysis import seed_process_urls  # noqa: E402
from bench.measure import ROOT, MarketProcess, load1  # noqa: E402
from browser import Tuning  # noqa: E402
from demo.dockerd import build_standin_image, build_xmrig_image, light_xmrig_config, start_private_dockerd  # noqa: E402
from demo.fetch_xmrig import binary_path  # noqa: E402
from demo.pool import StratumPool  # noqa: E402

WALLET = "4BENCHWALLET0123456789abcdef"
VENV_PYTHON = os.path.join(ROOT, ".venv", "bin", "python")


# --- analyses back to back ------------------------------------------------------------------------
@dataclass
class Loop:
    analyses: int = 0  # finished within the window
    pages: int = 0  # of the analyses finished within the window
    rendered: int = 0
    walls: list[float] = field(default_factory=list)  # each counted analysis's wall time
    seconds: float = 0.0  # how long the analyses ran, the cut one included

    def median_wall(self) -> float:
        ordered = sorted(self.walls)
        return ordered[len(ordered) // 2] if ordered else 0.0


def analyse_once(approach: str, urls: list[str], abort: threading.Event) -> int:
    """One analysis; how many pages were rendered."""
    if approach == "seed":
        return sum(1 for h in seed_process_urls(urls).values() if "H/s</span>" in h)
    tuning = Tuning(sched_idle=approach == "ours-idle")
    return sum(1 for r in jsTrigger.process_urls(urls, abort=abort, tuning=tuning).values() if r.ok)


def loop(approach: str, urls: list[str], seconds: float, cap: float) -> Loop:
    """Analyses back to back for at least `seconds` and at least one whole analysis: at nice 19 beside a
    busy miner one analysis can outlast a fixed window, and its whole cost is what the miner pays. At
    `cap` seconds ours is aborted (the daemon's shutdown path; the seed's approach has no abort and
    finishes its page); an analysis cut by the cap is not counted."""
    out = Loop()
    start = time.monotonic()
    abort = threading.Event()
    timer = threading.Timer(cap, abort.set)
    timer.start()
    while not abort.is_set():
        started = time.monotonic()
        ok = analyse_once(approach, urls, abort)
        if abort.is_set():
            break
        out.analyses += 1
        out.pages += len(urls)
        out.rendered += ok
        out.walls.append(time.monotonic() - started)
        if time.monotonic() - start >= seconds:
            break
    timer.cancel()
    out.seconds = time.monotonic() - start
    return out


def loop_main(args: argparse.Namespace) -> int:
    """The manager container's command: analyses back to back, the figures as JSON in --out."""
    config.set_settings(config.load_settings(environ={}, env_file=None))
    config.override(BROWSER_NICE=args.nice, BROWSER_CPUS=args.cpus)  # the cap needs a writable cgroup: not in this container
    stop = threading.Event()
    reaper.start(stop)  # PID 1 of its container: Chromium's orphans are ours
    with open(args.urls, encoding="utf-8") as fh:
        urls = [line.strip() for line in fh if line.strip()]
    result = loop(args.approach, urls, args.seconds, args.cap)
    stop.set()
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(result.__dict__, fh)
    return 0


# --- XMRig -----------------------------------------------------------------------------------------
def xmrig_config(http_port: int) -> dict:
    cfg = light_xmrig_config(os.path.join(ROOT, "json", "config.json"), http_port)
    cfg["randomx"].update({"rdmsr": False, "wrmsr": False})  # never touch this shared machine's MSRs
    cfg["http"]["restricted"] = True
    return cfg


def hashrate(port: int) -> list[float | None]:
    """XMRig's [10 s, 60 s, 15 min] hashrate (None until it has the data)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/2/summary", timeout=5) as resp:
        return json.loads(resp.read())["hashrate"]["total"]


def wait_hashing(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if hashrate(port)[0]:
                return
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError("XMRig reported no hashrate")


@dataclass
class Window:
    name: str
    h10_mean: float  # mean of XMRig's 10 s averages sampled every 2 s from 10 s in: the whole window
    h60: float  # XMRig's 60 s average at the window's end (for reference: it sees the last minute only)
    load: float  # 1-minute load average at the window's end
    run: Loop | None = None


def window(name: str, port: int, seconds: float, work=None) -> Window:
    """XMRig alone for `seconds`, or beside `work()` (in a thread) for as long as the work runs."""
    result: list[Loop] = []
    thread = None
    if work is not None:
        thread = threading.Thread(target=lambda: result.append(work()), daemon=True)
        thread.start()
    start = time.monotonic()
    samples = []
    while (thread.is_alive() if thread is not None else time.monotonic() - start < seconds):
        time.sleep(2)
        if time.monotonic() - start >= 10:
            samples.append(hashrate(port)[0] or 0.0)
    h60 = hashrate(port)[1] or 0.0
    load = load1()
    w = Window(name, sum(samples) / max(1, len(samples)), h60, load, result[0] if result else None)
    print(f"  {name:34} {time.monotonic() - start:5.0f} s  10 s mean {w.h10_mean:6.1f} H/s  60 s avg {w.h60:6.1f}  load {load:.2f}"
          + (f"  analyses {w.run.analyses} ({w.run.rendered}/{w.run.pages} pages rendered), "
             f"each {w.run.median_wall():.1f} s (median)" if w.run else ""), flush=True)
    return w


def alternate(port: int, seconds: float, works: list[tuple[str, object]]) -> list[Window]:
    """Past XMRig's start-up, an idle window, then each (label, work) window followed by another idle one."""
    wait_hashing(port)
    time.sleep(20)  # past the start-up: the 60 s average settles
    windows = [window("idle", port, seconds)]
    for label, work in works:
        windows.append(window(label, port, seconds, work))
        windows.append(window("idle", port, seconds))
    return windows


def report(windows: list[Window]) -> None:
    print("  kept = the window's mean hashrate / the mean of the idle windows on either side;")
    print("  hashes lost per analysis = (idle - during) x the window's length / the analyses it finished:")
    for i, w in enumerate(windows):
        if w.run is None:
            continue
        idle = (windows[i - 1].h10_mean + windows[i + 1].h10_mean) / 2
        if w.run.analyses:
            cost = (f"an analysis takes {w.run.median_wall():.1f} s; "
                    f"~{(idle - w.h10_mean) * w.run.seconds / w.run.analyses:,.0f} hashes lost per analysis")
        else:
            cost = f"no analysis finished in {w.run.seconds:.0f} s"
        print(f"    {w.name:44} kept {w.h10_mean / idle:5.3f}  (idle {idle:.1f} H/s, during {w.h10_mean:.1f}; {cost}; "
              f"{w.run.rendered}/{w.run.pages} pages rendered)")


# --- the arrangements ------------------------------------------------------------------------------
# (label, approach, BROWSER_NICE, BROWSER_CPUS)
SCHEDULE = (("ours (defaults: nice 19, capped 0.2 core)", "ours", 19, 0.2), ("seed approach (nice 0)", "seed", 0, 0.0),
            ("ours at nice 0, uncapped", "ours", 0, 0.0))


def nice_schedule(values: list[int]) -> tuple:
    """Ours at each nice without the cap (what nice alone does), then the seed's approach."""
    return tuple((f"ours at nice {n}, uncapped", "ours", n, 0.0) for n in values) + (("seed approach (nice 0)", "seed", 0, 0.0),)


SCHED_IDLE = ("ours nice 19 + SCHED_IDLE, capped 0.2", "ours-idle", 19, 0.2)


def host(seconds: float, cap: float, binary: str, market: MarketProcess, pool_address: str, threads: int, schedule: tuple) -> None:
    print(f"\n== host: XMRig ({threads} threads, light mode, nice 0) and the analyses as processes ==")
    work = tempfile.mkdtemp(prefix="smartminer-bench-")
    port = _free_port()
    cfg_path = os.path.join(work, "config.json")
    with open(cfg_path, "w", encoding="utf-8") as fh:
        json.dump(xmrig_config(port), fh)
    log = open(os.path.join(work, "xmrig.log"), "wb")
    xmrig = subprocess.Popen([binary, f"--config={cfg_path}", "-o", pool_address, "-u", WALLET, "-p", "x",
                              f"--threads={threads}", "--no-color"], stdout=log, stderr=subprocess.STDOUT)
    urls = market.urls()

    def work(approach: str, nice: int, cpus: float) -> Loop:
        config.override(BROWSER_NICE=nice, BROWSER_CPUS=cpus)
        return loop(approach, urls, seconds, cap)

    try:
        report(alternate(port, seconds, [(name, lambda a=a, n=n, c=c: work(a, n, c)) for name, a, n, c in schedule]))
    finally:
        xmrig.terminate()
        xmrig.wait(20)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def containers(seconds: float, cap: float, binary: str, market: MarketProcess, pool_address: str, threads: int,
               schedule: tuple) -> None:
    print(f"\n== containers: worker (XMRig, {threads} threads, cpu_shares default 1024) and manager on a private dockerd ==")
    base = tempfile.mkdtemp(prefix="smd-", dir="/tmp")
    engine = start_private_dockerd(base)
    work = tempfile.mkdtemp(prefix="smartminer-bench-", dir="/tmp")
    try:
        client = docker.DockerClient(base_url=engine.url, timeout=int(cap) + 900)  # wait() outlasts a starved analysis
        build_xmrig_image(client, "smartminer_xmrig:bench", binary)
        build_standin_image(client, "smartminer_manager:bench")
        port = _free_port()
        with open(os.path.join(work, "config.json"), "w", encoding="utf-8") as fh:
            json.dump(xmrig_config(port), fh)
        with open(os.path.join(work, "urls.txt"), "w", encoding="utf-8") as fh:
            fh.write("\n".join(market.urls()) + "\n")
        worker = client.containers.run(
            "smartminer_xmrig:bench", ["--config=/config.json", "-o", pool_address, "-u", WALLET, "-p", "x", f"--threads={threads}"],
            name="bench_worker", network_mode="host", detach=True,
            volumes={os.path.join(work, "config.json"): {"bind": "/config.json", "mode": "ro"}})
        try:
            print(f"  worker cgroup: cpu.shares {cgroup_value(worker.id, 'cpu.shares')}")
            report(alternate(port, seconds, [
                (label, lambda a=a, n=n, s=s, c=c: manager_loop(client, work, a, n, s, c, seconds, cap))
                for label, a, n, s, c in schedule]))
        finally:
            worker.remove(force=True)
    finally:
        engine.stop()
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


# (label, approach, BROWSER_NICE, manager cpu_shares, manager cpus (0: no quota))
CONTAINER_SCHEDULE = (
    ("ours, manager cpus 0.2 (compose)", "ours", 19, 1024, 0.2),
    ("seed approach, default weight", "seed", 0, 1024, 0.0),
)
WEIGHT_SCHEDULE = (  # --weights: a low CPU weight instead of (or with) the quota
    ("ours, manager cpu_shares 128", "ours", 19, 128, 0.0),
    ("ours, cpu_shares 128 + cpus 0.2", "ours", 19, 128, 0.2),
)


def manager_loop(client, work: str, approach: str, nice: int, shares: int, cpus: float, seconds: float, cap: float) -> Loop:
    """Analyses back to back inside a manager container with `shares` CPU weight and a `cpus` quota."""
    out = os.path.join(work, f"loop-{time.monotonic_ns()}.json")
    python_home = os.path.dirname(os.path.dirname(os.path.realpath(VENV_PYTHON)))  # the interpreter the venv uses
    binds = {p: {"bind": p, "mode": "ro"} for p in ("/usr", "/lib", "/lib64", "/etc", os.path.realpath(ROOT), python_home)
             if os.path.exists(p)}
    binds[work] = {"bind": work, "mode": "rw"}
    cmd = [VENV_PYTHON, os.path.join(ROOT, "bench", "bench_mining_cost.py"), "loop", "--approach", approach,
           "--nice", str(nice), "--seconds", str(seconds), "--cap", str(cap), "--urls", os.path.join(work, "urls.txt"), "--out", out]
    limits = {"nano_cpus": int(cpus * 1e9)} if cpus else {}
    container = client.containers.run("smartminer_manager:bench", cmd, entrypoint=[], network_mode="host", detach=True,
                                      cpu_shares=shares, volumes=binds, tmpfs={"/tmp": ""}, working_dir=ROOT,
                                      environment={"HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1"}, **limits)
    try:
        time.sleep(1)
        print(f"    manager cgroup: cpu.shares {cgroup_value(container.id, 'cpu.shares')}, "
              f"cpu.cfs_quota_us {cgroup_value(container.id, 'cpu.cfs_quota_us')}", flush=True)
        status = container.wait(timeout=cap + 300)
        if status.get("StatusCode") != 0:
            print(container.logs(tail=20).decode(errors="replace"))
            return Loop()
        with open(out, encoding="utf-8") as fh:
            return Loop(**json.load(fh))
    finally:
        container.remove(force=True)


def cgroup_value(container_id: str, name: str) -> str:
    """A cpu-controller file of the container's cgroup as the kernel has it (cgroup v1), or why it cannot be read."""
    for path in (f"/sys/fs/cgroup/cpu/docker/{container_id}/{name}", f"/sys/fs/cgroup/cpu,cpuacct/docker/{container_id}/{name}"):
        try:
            with open(path, encoding="ascii") as fh:
                return fh.read().strip()
        except OSError:
            continue
    return "unreadable (no cgroup v1 cpu folder for the container)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    lp = sub.add_parser("loop", help="(the manager container's command) analyses back to back")
    lp.add_argument("--approach", default="ours")
    lp.add_argument("--nice", type=int, default=19)
    lp.add_argument("--cpus", type=float, default=0.2)
    lp.add_argument("--seconds", type=float, default=70)
    lp.add_argument("--cap", type=float, default=600)
    lp.add_argument("--urls", required=True)
    lp.add_argument("--out", required=True)
    parser.add_argument("--window", type=float, default=70, help="idle windows, and the least a window of analyses lasts")
    parser.add_argument("--cap", type=float, default=600, help="a window of analyses is cut here (ours aborted)")
    parser.add_argument("--containers", action="store_true", help="the two-container arrangement too")
    parser.add_argument("--no-host", action="store_true", help="skip the host arrangement")
    parser.add_argument("--weights", action="store_true", help="containers: also a low cpu_shares, alone and with the quota")
    parser.add_argument("--sched-idle", action="store_true", help="also ours with SCHED_IDLE (host)")
    parser.add_argument("--nices", help="host: ours at these BROWSER_NICE values (comma-separated) and the seed, instead of the default schedule")
    args = parser.parse_args()
    if args.command == "loop":
        return loop_main(args)
    if args.window < 12:
        parser.error("--window must be at least 12 s: hashrate samples start 10 s into a window")
    config.set_settings(config.load_settings(environ={}, env_file=None))
    binary = binary_path()
    if not os.access(binary, os.X_OK):
        print(f"XMRig missing at {binary}: run `make xmrig`", file=sys.stderr)
        return 2
    threads = os.cpu_count() or 1
    print(f"cores: {threads}, window {args.window:g} s, load at start {load1():.2f}")
    pool = StratumPool(name="bench").start()
    market = MarketProcess(realistic=True)
    reaper_stop = threading.Event()
    try:
        if not args.no_host:
            schedule = nice_schedule([int(n) for n in args.nices.split(",")]) if args.nices else SCHEDULE
            host(args.window, args.cap, binary, market, pool.address, threads, schedule + ((SCHED_IDLE,) if args.sched_idle else ()))
        if args.containers:
            containers(args.window, args.cap, binary, market, pool.address, threads,
                       CONTAINER_SCHEDULE + (WEIGHT_SCHEDULE if args.weights else ()))
    finally:
        reaper_stop.set()
        market.close()
        pool.stop()
    print(f"load at end {load1():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
