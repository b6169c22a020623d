"""One ranked coin: the typed record that flows from the analysis to the worker, the API and the commands.

A coin is identified by its `key` (the link slug, e.g. "monero"): that is what the worker's
`mining_coin` label, the failing-coin set and the sanity guard store. People call a coin by its full
name, the first word of it, its ticker or its slug, in any case: `Coin.matches` is the one place that
knows this. The seed's dict shape ("Coin name", "Income per day in usd", ...) exists only at the edges
(`--json`, `status.json`, `strategy.get_best_coin_logic()`), through `Coin.seed_dict()`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

from soupManager import seed_record


def slug_of(url: str) -> str:
    """The last path segment of a coin page URL: "https://miningpoolstats.stream/monero" -> "monero"."""
    return url.split("?", 1)[0].split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1].lower()


def coin_keys(name: str | None, symbol: str | None = None, url: str | None = None) -> frozenset[str]:
    """Every lower-case key a user may call a coin by: full name, first word of it, ticker, link slug.

    "Quantum Resistant Ledger", "QRL", ".../quantumrl" -> {"quantum resistant ledger", "quantum", "qrl", "quantumrl"}.
    """
    keys: set[str] = set()
    if name and name.strip():
        keys.add(name.strip().lower())
        keys.add(name.strip().split()[0].lower())
    if symbol and symbol.strip():
        keys.add(symbol.strip().lower())
    if url:
        slug = slug_of(url)
        if slug:
            keys.add(slug)
    return frozenset(keys)


def match_key(mapping: Iterable[str], name: str | None, symbol: str | None = None, url: str | None = None) -> str | None:
    """The first key of `mapping` (wallets, pools, rules) that names this coin, or None."""
    keys = coin_keys(name, symbol, url)
    for key in mapping:
        if str(key).strip().lower() in keys:
            return key
    return None


HASHRATE_MEASURED = "measured"
HASHRATE_CONFIGURED = "configured"


@dataclass(frozen=True)
class Coin:
    """What one analysis knows of one coin for this rig. Money in USD per day, hashrates in H/s."""

    key: str  # the link slug: the stable id
    name: str
    symbol: str
    url: str
    wallet: str
    pool: str  # "host:port"
    price_usd: float
    nethash_hs: float  # max(network, pools' total)
    emission_24h: float
    coins_per_day: float
    income_usd: float
    hashrate_hs: float  # the rig's hashrate this income was computed with
    hashrate_source: str = HASHRATE_CONFIGURED  # "measured" or "configured"
    profit_usd: float | None = None  # income minus power cost, when a power cost is set
    pool_fee: float = 0.0
    algo: str | None = None  # XMRig's --algo, when the pool entry or a rule names one
    xmrig_coin: str | None = None  # XMRig's --coin, likewise

    def matches(self, name: str | None) -> bool:
        """Whether `name` (any case, surrounding spaces ignored) calls this coin: name, first word,
        ticker or slug."""
        if not name or not name.strip():
            return False
        wanted = name.strip().lower()
        return wanted == self.key or wanted in coin_keys(self.name, self.symbol, self.url)

    @property
    def rank_value(self) -> float:
        """What ranking compares: profit when a power cost is set, else income (USD/day)."""
        value = self.profit_usd if self.profit_usd is not None else self.income_usd
        return float(value) if value is not None and not math.isnan(value) else -math.inf

    @property
    def label(self) -> str:
        """How a person reads it: "Monero (XMR)"."""
        return f"{self.name} ({self.symbol})" if self.symbol else self.name

    def seed_dict(self) -> dict[str, Any]:
        """The seed's record shape (plus the fields this project added), for `--json` and the seed API."""
        return seed_record(self.name, self.symbol, self.nethash_hs, self.price_usd, self.emission_24h,
                           self.coins_per_day, self.income_usd) | {
            "Key": self.key,
            "Url": self.url,
            "Wallet": self.wallet,
            "Pool": self.pool,
            "Pool fee": self.pool_fee,
            "Algo": self.algo,
            "XmrigCoin": self.xmrig_coin,
            "Hashrate H/s": self.hashrate_hs,
            "Hashrate source": self.hashrate_source,
            "Profit per day in usd": self.profit_usd,
        }


def find(coins: Iterable[Coin], name: str | None) -> Coin | None:
    """The first coin that `name` calls (key first, then any other name), or None."""
    coins = list(coins)
    if not name:
        return None
    wanted = name.strip().lower()
    return next((c for c in coins if c.key == wanted), None) or next((c for c in coins if c.matches(name)), None)


def is_failing(coin: Coin, failing: Iterable[str]) -> bool:
    """The one rule for the failing-coin set: a coin is failing when any entry names it."""
    return any(coin.matches(str(f)) for f in failing)
