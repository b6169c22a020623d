"""`make demo`: the real daemon against a bundled offline market snapshot, until Ctrl-C.

It serves the snapshot's coin pages on loopback, starts a private dockerd (root and Debian's
docker.io) and runs `main.py` against them: you see the ranking, the best coin's worker starting,
the API, and the command pipe. The worker is the real test XMRig (`make xmrig`) mining in light
RandomX mode on one thread against one local pool stand-in per coin, so /1/summary shows XMRig's own
version, hashrate and accepted shares. Without that binary the worker is the stand-in (a fake XMRig
API); without a Docker engine the daemon runs with --dry-run.
"""
from __future__ import annotations

import os
import signal
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from demo.fetch_xmrig import VERSION, binary_path  # noqa: E402
from demo.rig import Rig, build_rig, free_port, pool_tally  # noqa: E402


def port_or_free(port: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            return free_port()


def choose_rig(ports: dict[str, str]) -> tuple[Rig, str, list[str]]:
    """The best rig this machine can run: real XMRig, else the stand-in worker, else --dry-run.
    Returns the rig, what its worker is, and the daemon's extra arguments."""
    if os.access(binary_path(), os.X_OK):
        try:
            rig = build_rig(with_docker=True, real_xmrig=True, **ports)
            return rig, (f"the real XMRig {VERSION} (light RandomX mode, 1 thread) on a private Docker engine,"
                         f" against one local pool stand-in per coin"), []
        except Exception as exc:
            print(f"demo: the real XMRig cannot run here ({exc}); trying the stand-in worker", file=sys.stderr)
    else:
        print(f"demo: no test XMRig at {binary_path()} (`make xmrig` fetches it); using the stand-in worker",
              file=sys.stderr)
    try:
        return build_rig(with_docker=True, **ports), "the stand-in worker (a fake XMRig API) on a private Docker engine", []
    except Exception as exc:
        print(f"demo: no private Docker engine ({exc}); running with --dry-run instead", file=sys.stderr)
    return build_rig(with_docker=False, **ports), "--dry-run (no container is started)", ["--dry-run"]


def main() -> int:
    ports = {"API_PORT": str(port_or_free(4000)), "XMRIG_PORT": str(port_or_free(3000))}
    rig, engine, args = choose_rig(ports)
    pipe, api = rig.pipe, rig.api
    pools = "".join(f"\n    {slug:<10} {pool.address}" for slug, pool in rig.pools.items())
    print(f"""
SmartMiner Manager demo
  market snapshot : {rig.market.url('')} (offline, served on loopback)
  worker          : {engine}{pools}
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
        tally = pool_tally(rig.pools)
        rig.close()
    if tally:
        print("demo: the pool stand-ins saw " + "; ".join(tally))
    print("demo: stopped, and everything it started is gone")
    return code


if __name__ == "__main__":
    sys.exit(main())
