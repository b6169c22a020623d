"""Docker's HEALTHCHECK: exit 0 when the running daemon's /healthz on loopback says healthy, else 1.

    python healthcheck.py            (what the image's HEALTHCHECK runs: it imports only the settings)
    python main.py --healthcheck     (the same check through the full command line)

Kept apart from main.py because the check runs every minute on the rig: importing the whole daemon
(browser driver, Docker and Discord clients) for one HTTP GET would cost the miner a second of CPU.
"""
from __future__ import annotations

import sys
import urllib.request

import config

EXIT_HEALTHY = 0
EXIT_UNHEALTHY = 1


def healthcheck(port: int | None = None) -> int:
    """Ask /healthz on 127.0.0.1 (API_PORT by default); print why when unhealthy."""
    port = config.settings().API_PORT if port is None else port
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return EXIT_HEALTHY if resp.status == 200 else EXIT_UNHEALTHY
    except Exception as exc:  # refused, timed out, 503: all mean unhealthy
        print(f"unhealthy: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_UNHEALTHY


def main(argv: list[str] | None = None) -> int:
    """Settings from the environment and `--env-file FILE` (default .env), as main.py reads them."""
    args = list(sys.argv[1:] if argv is None else argv)
    env_file = args[args.index("--env-file") + 1] if "--env-file" in args[:-1] else ".env"
    try:
        config.set_settings(config.load_settings(env_file=env_file))
    except config.ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    return healthcheck()


if __name__ == "__main__":
    sys.exit(main())
