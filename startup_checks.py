"""Start-up checks: the owner's files, the browser and the Docker engine, each with the line that says
what to fix. `--once` stops on a fatal one; the daemon logs them, tells the owner how to set up, and
keeps serving (the API and the commands work before the files exist).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import config
import market_setup
from utils import log


@dataclass
class Check:
    """One start-up check: what it looked at, and the line that says what to fix (empty when fine)."""

    name: str
    problem: str = ""
    fatal_once: bool = True  # fatal for --once; the daemon logs it and keeps serving
    setup: bool = False  # a file the owner must set up: the start-up message gives its hint


def check_files(s: config.Settings) -> list[Check]:
    """Links, wallets and pools usable, read by the very readers the analysis uses, with a hint
    that says how to fix each."""
    files = (
        (s.PATH_LINKS, market_setup.read_links, "one MiningPoolStats coin URL per line (see links.txt in the repository)"),
        (s.PATH_WALLETS, market_setup.read_wallets, "copy json/wallets.example.json to json/wallets.json and put your addresses in"),
        (s.PATH_POOLS, market_setup.read_pools, "a JSON object mapping each coin to \"host:port\" (see json/pools.json in the repository)"),
    )
    out = []
    for path, read, hint in files:
        problem = ""
        if not os.path.isfile(path):
            problem = f"{path} not found: {hint}"
        else:
            try:
                read(path)
            except market_setup.SetupError as exc:
                problem = str(exc)
        out.append(Check(os.path.basename(path), problem, setup=True))
    return out


def check_browser(s: config.Settings) -> Check:
    missing = [p for p in (s.CHROME_BIN, s.CHROMEDRIVER_PATH) if not os.access(p, os.X_OK)]
    problem = ""
    if missing:
        problem = (f"{' and '.join(missing)} not found: install Debian's chromium and chromium-driver "
                   "(apt-get install chromium chromium-driver) or set CHROME_BIN / CHROMEDRIVER_PATH")
    return Check("chromium", problem)


def check_docker(engine_reachable: Callable[[], bool]) -> Check:
    """Docker is only warned about: the controller retries every cycle."""
    if engine_reachable():
        return Check("docker")
    return Check("docker", "Docker engine not reachable: mount /var/run/docker.sock or set DOCKER_HOST; "
                 "will retry every cycle", fatal_once=False)


def run_checks(s: config.Settings, engine_reachable: Callable[[], bool] | None = None) -> list[Check]:
    """Every check (Docker's only when `engine_reachable` is given); logs each problem, returns them."""
    checks = check_files(s) + [check_browser(s)]
    if engine_reachable is not None:
        checks.append(check_docker(engine_reachable))
    for c in checks:
        if c.problem:
            log(f"[{'ERROR' if c.fatal_once else 'WARN'}] {c.problem}", force=True)
    return [c for c in checks if c.problem]


def setup_hints(problems: list[Check]) -> str:
    """The first-time setup message for the owner, or "" when nothing is missing."""
    lines = [c.problem for c in problems if c.setup]
    if not lines:
        return ""
    return "Setup needed before mining can start:\n- " + "\n- ".join(lines)
