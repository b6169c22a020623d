"""The owner's input files for an analysis: links, wallets, pools and per-coin rules.

Every reader raises `SetupError` with one line naming the file and what to fix. The start-up checks
and the analysis use these very readers, so both judge a file the same way.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import coin
import config
import utils


class SetupError(Exception):
    """A links/wallets/pools/coins file is missing or malformed. One line naming the file and the fix."""


@dataclass(frozen=True)
class Pool:
    """One pools.json entry: the seed's plain "host:port", or {"url", "fee", "algo", "coin"}."""

    url: str
    fee: float = 0.0
    algo: str | None = None
    xmrig_coin: str | None = None


@dataclass
class Setup:
    links: list[str]
    wallets: dict[str, str]
    pools: dict[str, Any]  # raw entries; parsed per coin so one bad entry costs only its coin
    rules: dict[str, dict]


# --- pools.json entries (pure) ------------------------------------------------------------------
def parse_fee(raw: Any) -> float:
    """A pool fee as a fraction: 0.01, or the string "1%". Raises ValueError outside 0..0.5."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise ValueError(f"pool fee {raw!r} is not a number")
    text = str(raw).strip()
    try:
        fee = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise ValueError(f"pool fee {raw!r} is not a number (a fraction like 0.01, or \"1%\")") from None
    if not 0 <= fee <= 0.5:
        raise ValueError(f"pool fee {raw!r} is out of range 0 to 0.5 (a fraction: 0.01 is 1%)")
    return fee


def parse_pool(raw: Any) -> Pool:
    """A pools.json value. Raises ValueError with the reason."""
    if isinstance(raw, str) and raw.strip():
        return Pool(raw.strip())
    if isinstance(raw, dict) and isinstance(raw.get("url"), str) and raw["url"].strip():
        optional = lambda k: str(raw[k]) if raw.get(k) else None  # noqa: E731
        return Pool(raw["url"].strip(), parse_fee(raw.get("fee", 0.0)), optional("algo"), optional("coin"))
    raise ValueError(f"pool entry {raw!r} is neither \"host:port\" nor an object with a \"url\"")


def coin_rules(rules: dict[str, dict], name: str, symbol: str | None = None, url: str | None = None) -> dict:
    """Every rule entry that names this coin, merged in order (built-in first, then the coins file),
    so a file entry keyed "ETI" still overrides the built-in "etica" one."""
    keys = coin.coin_keys(name, symbol, url)
    merged: dict = {}
    for key, rule in rules.items():
        if key.strip().lower() in keys:
            merged.update(rule)
    return merged


# --- the files ----------------------------------------------------------------------------------
def _without_comment(line: str) -> str:
    """A links.txt line without its "#" comment (a whole-line one, or one after a space: URLs keep fragments)."""
    text = line.strip()
    return "" if text.startswith("#") else re.split(r"\s+#", text, maxsplit=1)[0]


def read_links(path: str) -> list[str]:
    """One URL per line; blank lines and "#" comments ignored."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        raise SetupError(f"{path} not found: put one coin page URL per line in it (PATH_LINKS)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SetupError(f"{path} cannot be read: {exc}") from None
    links = [link for link in map(_without_comment, lines) if link]
    bad = [link for link in links if not link.startswith(("http://", "https://"))]
    if bad:
        raise SetupError(f"{path}: {bad[0]!r} is not an http(s) URL")
    if not links:
        raise SetupError(f"{path} lists no coin page URL: add one per line (PATH_LINKS)")
    return list(dict.fromkeys(links))


def _read_mapping(path: str, what: str, default: Any = ...) -> dict:
    try:
        return utils.read_json(path, default=default, expect=dict)
    except utils.DataFileError as exc:
        raise SetupError(f"{exc}: it must map coin names to {what}") from None


def read_wallets(path: str) -> dict[str, str]:
    data = _read_mapping(path, "wallet addresses (see json/wallets.example.json)")
    data = {k: v for k, v in data.items() if not k.startswith("_")}  # "_comment" keys document the file
    bad = [k for k, v in data.items() if not isinstance(v, str) or not v.strip()]
    if bad:
        raise SetupError(f"{path}: the wallet of {bad[0]!r} must be a non-empty string")
    return {k: v.strip() for k, v in data.items()}


def read_pools(path: str) -> dict[str, Any]:
    return _read_mapping(path, "\"host:port\" strings or {\"url\": ...} objects")


def read_rules(path: str) -> dict[str, dict]:
    """config.DEFAULT_COIN_RULES with the optional coins file merged over it (per coin, per field)."""
    rules = {k: dict(v) for k, v in config.DEFAULT_COIN_RULES.items()}
    data = _read_mapping(path, "rule objects (see json/coins.example.json)", default={})
    for key, entry in data.items():
        if key.startswith("_"):
            continue  # "_comment" keys document the file
        if not isinstance(entry, dict):
            raise SetupError(f"{path}: the rules of {key!r} must be an object like {{\"miner_share\": 0.75}}")
        target = rules.setdefault(key.strip().lower(), {})
        target.update(entry)
    return rules


def load_setup(s: config.Settings | None = None) -> Setup:
    """Read every input file. Raises SetupError naming the file and what to fix."""
    s = s or config.settings()
    return Setup(
        links=read_links(s.PATH_LINKS),
        wallets=read_wallets(s.PATH_WALLETS),
        pools=read_pools(s.PATH_POOLS),
        rules=read_rules(s.PATH_COINS),
    )
