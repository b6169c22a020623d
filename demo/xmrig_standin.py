"""A stand-in for XMRig's HTTP API, for tests, benchmarks and the demo (no XMRig binary here).

Modes:
  up      - serves /1/summary, /2/summary, /1/threads, /2/backends in XMRig's shape
  garbage - answers 200 with a body that is not JSON
  hung    - accepts TCP connections and never answers (what a paused container looks like)
  down    - holds the port bound but not listening, so connections are refused

Run as a script: `python demo/xmrig_standin.py --port 3000 --mode up`.
"""
from __future__ import annotations

import argparse
from collections import Counter
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("up", "hung", "garbage", "down")


def summary(hashrate: float, started: float, now: float) -> dict:
    """XMRig 6.x's /1/summary (and /2/summary) for a rig doing `hashrate` H/s since `started`."""
    uptime = max(0, int(now - started))
    shares = uptime // 30
    return {
        "id": "7b4e1c2d9a8f3e60",
        "worker_id": "standin-rig",
        "uptime": uptime,
        "restricted": True,
        "resources": {
            "memory": {"free": 1 << 30, "total": 4 << 30, "resident_set_memory": 8 << 20},
            "load_average": [1.0, 1.0, 1.0],
            "hardware_concurrency": 2,
        },
        "features": ["api", "asm", "http", "hwloc", "tls"],
        "results": {
            "diff_current": 120001,
            "shares_good": shares,
            "shares_total": shares + (1 if shares > 10 else 0),
            "avg_time": 30,
            "avg_time_ms": 30000,
            "hashes_total": int(hashrate * uptime),
            "best": [0] * 10,
            "error_log": [],
        },
        "algo": "rx/0",
        "connection": {
            "pool": "127.0.0.1:3333",
            "ip": "127.0.0.1",
            "uptime": uptime,
            "uptime_ms": uptime * 1000,
            "ping": 12,
            "failures": 0,
            "tls": None,
            "tls-fingerprint": None,
            "algo": "rx/0",
            "diff": 120001,
            "accepted": shares,
            "rejected": 0,
            "avg_time": 30,
            "avg_time_ms": 30000,
            "hashes_total": int(hashrate * uptime),
            "error_log": [],
        },
        "version": "6.21.0",
        "kind": "miner",
        "ua": "XMRig/6.21.0 (Linux x86_64) libuv/1.44.2 gcc/12.2.0",
        "cpu": {
            "brand": "Stand-in CPU",
            "family": 25,
            "model": 33,
            "stepping": 0,
            "proc_info": 0,
            "aes": True,
            "avx2": True,
            "x64": True,
            "64_bit": True,
            "l2": 1 << 20,
            "l3": 32 << 20,
            "cores": 2,
            "threads": 2,
            "packages": 1,
            "nodes": 1,
            "backend": "hwloc/2.9.0",
            "msr": "ryzen_19h",
            "assembly": "ryzen",
            "arch": "x86_64",
            "flags": ["aes", "avx", "avx2", "bmi2", "osxsave", "pdpe1gb", "sse2", "ssse3", "sse4.1", "popcnt"],
        },
        "donate_level": 1,
        "paused": False,
        "algorithms": ["rx/0", "rx/wow", "rx/arq", "rx/graft", "rx/sfx", "rx/keva"],
        "hashrate": {"total": [hashrate, hashrate, hashrate], "highest": hashrate},
        "hugepages": [0, 1168],
    }


def threads(hashrate: float) -> dict:
    """XMRig's legacy /1/threads."""
    return {
        "hugepages": [0, 1168],
        "threads": [{"type": "cpu", "algo": "rx/0", "intensity": 1, "affinity": -1, "hashrate": [hashrate] * 3}],
    }


def backends(hashrate: float) -> list:
    """XMRig's /2/backends: one CPU backend."""
    return [
        {
            "type": "cpu",
            "enabled": True,
            "algo": "rx/0",
            "profile": "rx",
            "hw-aes": True,
            "priority": -1,
            "msr": True,
            "asm": "ryzen",
            "argon2-impl": "AVX2",
            "hugepages": [0, 1168],
            "memory": 2 << 20,
            "hashrate": [hashrate, hashrate, hashrate],
            "threads": [{"intensity": 1, "affinity": -1, "av": 1, "hashrate": [hashrate] * 3}],
        }
    ]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "XMRig/6.21.0"
    sys_version = ""
    timeout = 10

    def log_message(self, format: str, *args) -> None:  # quiet: no access log
        pass

    def parse_request(self) -> bool:
        ok = super().parse_request()
        if ok:  # every request that reached us, whatever its method: tests check what was forwarded
            self.server.standin.seen[(self.command, self.path)] += 1  # type: ignore[attr-defined]
        return ok

    def do_GET(self) -> None:
        standin: XmrigStandin = self.server.standin  # type: ignore[attr-defined]
        if standin.mode == "garbage":
            self._send(200, b'{"hashrate": {"total": [17300, nul')
            return
        path = self.path.split("?", 1)[0]
        routes = {
            "/1/summary": lambda: summary(standin.hashrate, standin.started, time.time()),
            "/2/summary": lambda: summary(standin.hashrate, standin.started, time.time()),
            "/1/threads": lambda: threads(standin.hashrate),
            "/2/backends": lambda: backends(standin.hashrate),
        }
        if path not in routes:
            self._send(404, b'{"status":404,"error":"Not Found"}')
            return
        self._send(200, json.dumps(routes[path]()).encode())

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class XmrigStandin:
    """An XMRig API on 127.0.0.1:`port` (0: a free port) in `mode`; `set_mode` switches on the same port."""

    def __init__(self, mode: str = "up", hashrate: float = 17300.0, port: int = 0, host: str = "127.0.0.1") -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.host = host
        self.port = port
        self.hashrate = hashrate
        self.started = time.time()
        self.seen: Counter[tuple[str, str]] = Counter()  # (method, path) -> requests received
        self.mode = mode
        self._http: _HttpServer | None = None
        self._sock: socket.socket | None = None  # the listener of hung/down modes
        self._held: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()
        self._open(mode)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def set_mode(self, mode: str) -> None:
        """Switch to another mode on the same port ("up" <-> "garbage" needs no new socket)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if {mode, self.mode} <= {"up", "garbage"} and self._http is not None:
            self.mode = mode
            return
        self._shut()
        self._open(mode)

    def close(self) -> None:
        self._shut()

    def __enter__(self) -> "XmrigStandin":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- internals ---
    def _open(self, mode: str) -> None:
        self.mode = mode
        self._closing.clear()
        if mode in ("up", "garbage"):
            self._http = _HttpServer((self.host, self.port), _Handler)
            self._http.standin = self  # type: ignore[attr-defined]
            self.port = self._http.server_address[1]
            self._spawn(self._http.serve_forever, 0.05)
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._sock = sock
        if mode == "hung":
            sock.listen(128)
            self._spawn(self._hold_connections)

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, name="xmrig-standin", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _hold_connections(self) -> None:
        """Accept every connection and never answer it."""
        while not self._closing.is_set():
            try:
                conn, _ = self._sock.accept()  # type: ignore[union-attr]
            except OSError:  # the listener was shut down by close()
                return
            self._held.append(conn)

    def _shut(self) -> None:
        self._closing.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            except OSError:
                pass  # "down" mode: bound, never listening
            self._sock.close()
            self._sock = None
        for thread in self._threads:
            thread.join(timeout=2)
        self._threads.clear()
        for conn in self._held:
            conn.close()
        self._held.clear()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="XMRig HTTP API stand-in")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--mode", choices=MODES, default="up")
    parser.add_argument("--hashrate", type=float, default=17300.0, help="H/s to report")
    args = parser.parse_args(argv)
    standin = XmrigStandin(mode=args.mode, hashrate=args.hashrate, port=args.port, host=args.host)
    print(f"XMRig stand-in ({args.mode}) on {standin.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        standin.close()


if __name__ == "__main__":
    main()
