"""`make demo`: the real daemon against a bundled offline market snapshot, until Ctrl-C.

It serves the snapshot's coin pages on loopback, starts a private dockerd with the stand-in worker
image when it can (root and Debian's docker.io), and runs `main.py` against them: you see the
ranking, the best coin's worker starting, the API, and the command pipe.
"""
from __future__ import annotations

import os
import signal
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from demo.rig import build_rig, free_port  # noqa: E402


def port_or_free(port: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            return free_port()


def main() -> int:
    ports = {"API_PORT": str(port_or_free(4000)), "XMRIG_PORT": str(port_or_free(3000))}
    args: list[str] = []
    try:
        rig = build_rig(with_docker=True, **ports)
        engine = "a private Docker engine with the stand-in worker image"
    except Exception as exc:
        print(f"demo: no private Docker engine ({exc}); running with --dry-run instead", file=sys.stderr)
        rig = build_rig(with_docker=False, **ports)
        args.append("--dry-run")
        engine = "--dry-run (no container is started)"
    pipe, api = rig.pipe, rig.api
    print(f"""
SmartMiner Manager demo
  market snapshot : {rig.market.url('')} (offline, served on loopback)
  worker          : {engine}
  API             : curl {api}/1/summary    curl {api}/status    curl {api}/metrics
  commands        : echo "status" > {pipe}     (also: help, check, miner stop, miner start, pin <coin>, unpin)
Press Ctrl-C to stop.
""", flush=True)
    rig.start_daemon(*args, to_terminal=True)
    signal.signal(signal.SIGINT, lambda *_: None)  # the daemon gets Ctrl-C too and stops itself
    signal.signal(signal.SIGTERM, lambda *_: rig.proc.send_signal(signal.SIGTERM))
    try:
        code = rig.proc.wait()
    finally:
        rig.close()
    print("demo: stopped, and everything it started is gone")
    return code


if __name__ == "__main__":
    sys.exit(main())
