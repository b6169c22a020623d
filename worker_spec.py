"""What the worker is, for one coin: XMRig's argument list, the worker's labels, its run parameters.

Pure given the Settings and a Coin (the one exception, `run_kwargs` without `with_config`, looks
whether json/config.json exists). The same arguments and labels serve a container or a Swarm service.
"""
from __future__ import annotations

import os
import re
from typing import Any

from docker.types import LogConfig

import config
import utils
from coin import Coin

MANAGED_LABEL = "smartminer.managed"
COIN_LABEL = "mining_coin"
INCOME_LABEL = "smartminer.income_usd"
SYMBOL_LABEL = "smartminer.symbol"
CONTAINER_CONFIG_PATH = "/config.json"

# Wallets, pools, algorithms and coin names are letters, digits and a few separators
# ("stratum+tcp://pool.example:3333", "WALLET.worker", "rx/0"). Anything else is refused.
_SAFE_ARG = re.compile(r"[A-Za-z0-9._:/@+=,%-]+")


def validate_arg(name: str, value: Any) -> str:
    """`value` if it is safe to hand to XMRig as one argument, else ValueError saying why.

    Refused: empty values, a leading "-" (it would become another XMRig option), whitespace,
    quotes, control characters and shell metacharacters. The message never shows the value in full.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} is empty")
    if value.startswith("-"):
        raise ValueError(f"{name} {utils.mask(value)} starts with '-' and would be read as an XMRig option")
    bad = next((ch for ch in value if not _SAFE_ARG.fullmatch(ch)), None)
    if bad is not None:
        raise ValueError(f"{name} {utils.mask(value)} contains {bad!r}; allowed: letters, digits and . _ : / @ + = , % -")
    return value


def checked_args(coin: Coin) -> dict[str, str]:
    """The coin's XMRig values (pool, wallet, and coin/algo when set), validated; ValueError names
    the coin and the bad field."""
    out: dict[str, str] = {}
    try:
        out["pool"] = validate_arg("pool", coin.pool)
        out["wallet"] = validate_arg("wallet", coin.wallet)
        for field_name, arg, value in (("XmrigCoin", "coin", coin.xmrig_coin), ("Algo", "algo", coin.algo)):
            if value:
                out[arg] = validate_arg(field_name, value)
    except ValueError as exc:
        raise ValueError(f"{coin.name or coin.key}: {exc}") from None
    return out


def host_config_path(s: config.Settings) -> str:
    """XMRig's config.json as the Docker host sees it (HOST_JSON_PATH, else this process's json/)."""
    folder = s.HOST_JSON_PATH or os.path.dirname(os.path.abspath(s.PATH_XMRIG_CONFIG))
    return os.path.join(folder, os.path.basename(s.PATH_XMRIG_CONFIG))


def has_xmrig_config(s: config.Settings) -> bool:
    """Whether json/config.json exists, and so is mounted and named with `--config`."""
    return os.path.isfile(s.PATH_XMRIG_CONFIG)


def worker_command(coin: Coin, s: config.Settings, with_config: bool) -> list[str]:
    """XMRig's argument list for `coin` (a list: the engine never splits a string).

    `--config` comes first on purpose. XMRig (BaseTransform::load) puts the options seen before
    `--config` in a chain document that sits *before* the file, and the later ones in a document
    after it; a top-level key is looked up newest first. Options after `--config` therefore win
    over config.json (its "http" block, any "pools" the owner adds), options before it would lose.
    The command line's "http" object replaces the file's whole, so it carries `--http-enabled` too.
    """
    args = checked_args(coin)
    cmd = [f"--config={CONTAINER_CONFIG_PATH}"] if with_config else []
    cmd += ["-o", args["pool"], "-u", args["wallet"], "-p", "x", "-k", f"--threads={s.MINER_THREADS}"]
    if "coin" in args:
        cmd += ["--coin", args["coin"]]
    if "algo" in args:
        cmd += ["--algo", args["algo"]]
    cmd += ["--http-enabled", "--http-host", "127.0.0.1", "--http-port", str(s.XMRIG_PORT)]
    return cmd


def worker_labels(coin: Coin) -> dict[str, str]:
    """The worker's labels: the coin it mines (read back after a manager restart), the mark that
    SmartMiner made it, and what the owner may want to see with `docker inspect`."""
    return {
        COIN_LABEL: coin.key,
        MANAGED_LABEL: "true",
        INCOME_LABEL: str(coin.income_usd),
        SYMBOL_LABEL: coin.symbol or "",
    }


def is_managed(labels: dict[str, str] | None) -> bool:
    """Whether a worker with these labels was made by SmartMiner (and so may be replaced)."""
    return (labels or {}).get(MANAGED_LABEL) == "true"


def run_kwargs(coin: Coin, s: config.Settings, with_config: bool | None = None) -> dict[str, Any]:
    """Everything `containers.create` gets for `coin` (`with_config` None: whether config.json
    exists). ValueError when the coin's values are unsafe."""
    if with_config is None:
        with_config = has_xmrig_config(s)
    kwargs: dict[str, Any] = {
        "image": s.IMAGE_NAME,
        "name": s.CONTAINER_NAME,
        "command": worker_command(coin, s, with_config),
        "privileged": s.WORKER_PRIVILEGED,
        "network_mode": "host",
        "restart_policy": {"Name": "unless-stopped"},
        "log_config": LogConfig(type="json-file", config={"max-size": "3m", "max-file": "3"}),
        "labels": worker_labels(coin),
    }
    if with_config:
        kwargs["volumes"] = {host_config_path(s): {"bind": CONTAINER_CONFIG_PATH, "mode": "ro"}}
    return kwargs
