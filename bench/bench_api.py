"""API benchmark: dashboard-like load (16 clients, a fresh connection per GET) for 10 s per phase.

Phases, in one run on the same machine:
  1. the XMRig stand-in directly (its own rate: the reference)
  2. the wrapper's /1/summary with the stand-in up
  3. the wrapper's /1/summary with the stand-in hung (accepts connections, never answers)
  4. and 5. a re-creation of the seed's proxy (single-threaded HTTPServer, fetches XMRig per request
     with a 2 s timeout and reads the sensors per request), stand-in up and hung, for scale
then the wrapper's CPU use while idle. The phases run interleaved in --rounds rounds (default 2 x 5 s =
10 s per phase) so that a neighbour's load on this shared machine hits every phase alike.

Method: every server runs in its own process, and the load comes from 4 client processes of 4 threads
each (raw sockets: connect, GET with `Connection: close`, read to EOF), so that the clients' GIL is not
the bottleneck. Client timeout 5 s; a timeout, a refused connection or a non-200 answer is an error.

Run: .venv/bin/python bench/bench_api.py [--seconds 10] [--clients 16] [--procs 4] [--rounds 2]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import config  # noqa: E402
from demo.rig import free_port  # noqa: E402

CLIENT_TIMEOUT = 5.0
SEED_TIMEOUT = 2.0


# --- servers, each in its own process --------------------------------------------------------------
def standin_process(port: int, commands: mp.Queue, ready: mp.Event) -> None:
    """The XMRig stand-in; reads "up"/"hung"/"stop" from `commands`."""
    from demo.xmrig_standin import XmrigStandin

    standin = XmrigStandin(mode="up", port=port)
    ready.set()
    while (mode := commands.get()) != "stop":
        standin.set_mode(mode)
        ready.set()
    standin.close()


def wrapper_process(api_port: int, xmrig_port: int, stop: mp.Event) -> None:
    import api_wrapper

    config.set_settings(config.load_settings(
        environ={"XMRIG_PORT": str(xmrig_port), "API_HOST": "127.0.0.1", "API_PORT": str(api_port)}, env_file=None))
    server = api_wrapper.make_server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stop.wait()
    server.shutdown()
    server.server_close()


def seed_process(api_port: int, xmrig_port: int, stop: mp.Event) -> None:
    """The seed's approach: one thread, XMRig fetched and sensors read for every request."""
    import requests

    import sensors as rig_sensors

    class SeedHandler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            sensors = rig_sensors.read_sensors("/sys/class/hwmon")
            extra = {"sensors": {"cpu_temp": sensors.cpu_temp, "vrm_temp": sensors.vrm_temp},
                     "host": {"uptime": rig_sensors.host_uptime()}}
            try:
                data = requests.get(f"http://127.0.0.1:{xmrig_port}/1/summary", timeout=SEED_TIMEOUT).json()
            except Exception:
                data = {"error": "XMRig offline"}
            body = json.dumps({**data, **extra}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = HTTPServer(("127.0.0.1", api_port), SeedHandler)
    server.handle_error = lambda *a: None  # clients that gave up: expected here, not news
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stop.wait()
    server.shutdown()
    server.server_close()


# --- load ------------------------------------------------------------------------------------------
def one_get(port: int, path: str) -> int:
    """One GET on a fresh connection; the status code."""
    with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head = b"".join(chunks).split(b"\r\n", 1)[0].split()
    return int(head[1]) if len(head) > 1 and head[1].isdigit() else 0


def client_process(port: int, path: str, threads: int, start: float, seconds: float, out: mp.Queue) -> None:
    results: list[tuple[float, bool]] = []
    lock = threading.Lock()

    def loop() -> None:
        mine = []
        while time.time() < start:
            time.sleep(0.001)
        end = start + seconds
        while (t0 := time.perf_counter()) and time.time() < end:
            try:
                ok = one_get(port, path) == 200
            except OSError:
                ok = False
            mine.append((time.perf_counter() - t0, ok))
        with lock:
            results.extend(mine)

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.put(results)


@dataclass
class Figures:
    name: str
    requests: int
    errors: int
    rate: float
    p50_ms: float
    p99_ms: float

    def row(self) -> str:
        return f"| {self.name} | {self.rate:.0f} | {self.requests} | {self.errors} | {self.p50_ms:.1f} | {self.p99_ms:.1f} |"


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def load(port: int, path: str, clients: int, procs: int, seconds: float) -> list[tuple[float, bool]]:
    """(latency s, ok) of every GET made by `clients` clients in `procs` processes for `seconds`."""
    out: mp.Queue = mp.Queue()
    start = time.time() + 0.5
    per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    workers = [mp.Process(target=client_process, args=(port, path, n, start, seconds, out)) for n in per if n]
    for w in workers:
        w.start()
    results = [r for _ in workers for r in out.get()]
    for w in workers:
        w.join()
    return results


def figures(name: str, results: list[tuple[float, bool]], seconds: float) -> Figures:
    """Requests still in flight at the end finish late (<= the 5 s client timeout) but are counted."""
    good = sorted(t for t, ok in results if ok)
    return Figures(name, len(results), len(results) - len(good), len(good) / seconds,
                   percentile(good, 0.5) * 1000, percentile(good, 0.99) * 1000)


def get_json(port: int, path: str) -> dict:
    import requests

    return requests.get(f"http://127.0.0.1:{port}{path}", timeout=CLIENT_TIMEOUT).json()


def wait_for(check, what: str, timeout: float = 10.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"bench: {what} did not happen within {timeout:.0f} s")


def idle_cpu(pid: int, seconds: float) -> float:
    """Percent of one core the process used while nobody asked anything."""
    import psutil

    proc = psutil.Process(pid)
    before = sum(proc.cpu_times()[:2])
    time.sleep(seconds)
    return (sum(proc.cpu_times()[:2]) - before) / seconds * 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="phases interleaved in this many rounds (noise)")
    args = parser.parse_args()
    xmrig_port, api_port, seed_port = free_port(), free_port(), free_port()
    commands, ready, stop = mp.Queue(), mp.Event(), mp.Event()
    standin = mp.Process(target=standin_process, args=(xmrig_port, commands, ready))
    wrapper = mp.Process(target=wrapper_process, args=(api_port, xmrig_port, stop))
    seed = mp.Process(target=seed_process, args=(seed_port, xmrig_port, stop))
    servers = [standin, wrapper, seed]
    for p in servers:
        p.start()
    try:
        ready.wait(10)
        wait_for(lambda: "hashrate" in get_json(api_port, "/1/summary"), "wrapper sees the stand-in")
        wait_for(lambda: "hashrate" in get_json(seed_port, "/1/summary"), "seed proxy sees the stand-in")
        print(f"{args.clients} clients in {args.procs} processes, fresh connection per GET, {args.seconds:g} s per phase"
              f" in {args.rounds} interleaved rounds, {os.cpu_count()} cores", flush=True)
        names = ("stand-in direct (up)", "wrapper /1/summary, stand-in up", "wrapper /1/summary, stand-in hung",
                 "seed proxy, stand-in up", "seed proxy, stand-in hung")
        raw: dict[str, list] = {n: [] for n in names}
        part = args.seconds / args.rounds

        def run(name: str, port: int) -> None:
            got = load(port, "/1/summary", args.clients, args.procs, part)
            raw[name] += got
            f = figures(name, got, part)
            print(f"  {name:36s} {f.rate:7.0f} req/s  errors {f.errors:5d}  p50 {f.p50_ms:7.1f} ms  p99 {f.p99_ms:8.1f} ms", flush=True)

        def switch(mode: str, reason: str) -> None:
            ready.clear()
            commands.put(mode)
            ready.wait(10)
            wait_for(lambda: reason in json.dumps(get_json(api_port, "/1/summary")), f"wrapper sees the stand-in {mode}")

        for r in range(args.rounds):
            print(f"round {r + 1}", flush=True)
            run(names[0], xmrig_port)
            run(names[1], api_port)
            run(names[3], seed_port)
            switch("hung", "did not answer")
            run(names[2], api_port)
            run(names[4], seed_port)
            switch("up", "hashrate")
            # the seed's single thread still works off connections queued while XMRig hung: let it drain
            wait_for(lambda: "hashrate" in get_json(seed_port, "/1/summary"), "seed proxy recovers", 60)
        direct, up, hung, seed_up, seed_hung = (figures(n, raw[n], args.seconds) for n in names)
        idle = idle_cpu(wrapper.pid, 10.0)
        print(f"\nwrapper/stand-in, up:   {up.rate / direct.rate:.2f}x (need >= 1.0, errors {up.errors})")
        print(f"wrapper/stand-in, hung: {hung.rate / direct.rate:.2f}x (need >= 0.5, errors {hung.errors}, p99 {hung.p99_ms:.1f} ms <= 50)")
        print(f"seed proxy/stand-in:    up {seed_up.rate / direct.rate:.2f}x, hung {seed_hung.rate / direct.rate:.4f}x ({seed_hung.rate:.2f} req/s)")
        print(f"wrapper idle CPU over 10 s after the load: {idle:.2f}% of one core")
        print("\n| phase | req/s | requests | errors | p50 ms | p99 ms |\n|---|---|---|---|---|---|")
        for fig in (direct, up, hung, seed_up, seed_hung):
            print(fig.row())
    finally:
        stop.set()
        commands.put("stop")
        for p in servers:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=2)


if __name__ == "__main__":
    main()
