"""One rendered MiningPoolStats coin page -> one coin record (BeautifulSoup).

`parse_page(html)` gives a typed `CoinPage` (hashrates in H/s) or raises `PageError(reason)`;
`SoupManagerCoin(html, hashrate_kh).getInformation()` keeps the seed's interface and dict keys.
Garbage never becomes a silent zero: every missing, non-numeric, zero or negative value is a reason.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from bs4 import BeautifulSoup

TITLE_SELECTOR = "h1.box-title"
NETHASH_SELECTOR = "#nethash"
POOLSHASH_SELECTOR = "#poolshash"
PRICE_SELECTOR = ".columnhome_right #stats_priceusd b"
EMISSION_SELECTOR = "#stats_supply_emission"

UNIT_FACTORS = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
UNIT_ORDER = ("E", "P", "T", "G", "M", "K")

# A number with optional thousands separators ("86,400.00"), optional sign and exponent.
_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?"
_NUMBER_RE = re.compile(rf"^\s*\$?\s*({_NUMBER})(?=\s|$|[A-Za-z$])")
_HASHRATE_RE = re.compile(rf"^\s*({_NUMBER})\s*([KkMGTPE]?)\s*[Hh](?:/s)?\s*$")
_TITLE_RE = re.compile(r"^\s*(?P<name>[^()]+?)\s*\((?P<symbol>[^()]+)\)")


class PageError(ValueError):
    """A coin page lacks a value or shows garbage; str() is the reason, fit for a log line."""


@dataclass(frozen=True)
class CoinPage:
    """What one coin page says. Hashrates in H/s; emission in coins per 24 h (None when not shown)."""

    name: str
    symbol: str
    net_hashrate_hs: float
    pool_hashrate_hs: float | None
    price_usd: float
    emission_24h: float | None

    @property
    def network_hs(self) -> float:
        """The network's hashrate: small coins' network estimate can be below the pools' sum."""
        return max(self.net_hashrate_hs, self.pool_hashrate_hs or 0.0)


def parse_number(text: str | None) -> float:
    """The leading number of a text: "$1,234.50" -> 1234.5, "86,400.00 XDAG" -> 86400.0.

    Raises PageError for empty or non-numeric text ("N/A", "-"). Sign and size are the caller's check.
    """
    raw = (text or "").strip()
    match = _NUMBER_RE.match(raw)
    if not raw or not match or not re.search(r"\d", match.group(1)):
        raise PageError(f"no number in {raw!r}" if raw else "empty value")
    return float(match.group(1).replace(",", ""))


def parse_hashrate(text: str | None) -> float:
    """A hashrate text in H/s: "5.12 GH/s" -> 5.12e9, "830 kH/s" -> 830000.0. Raises PageError."""
    raw = (text or "").strip()
    match = _HASHRATE_RE.match(raw)
    if not raw:
        raise PageError("empty hashrate")
    if not match or not re.search(r"\d", match.group(1)):
        raise PageError(f"not a hashrate: {raw!r}")
    return float(match.group(1).replace(",", "")) * UNIT_FACTORS[match.group(2).upper()]


def format_hashrate(hs: float) -> tuple[float, str]:
    """H/s in the largest unit that keeps the number >= 1: 5.12e9 -> (5.12, "GH/s")."""
    for unit in UNIT_ORDER:
        if hs >= UNIT_FACTORS[unit]:
            return round(hs / UNIT_FACTORS[unit], 4), f"{unit}H/s"
    return round(hs, 4), "H/s"


def parse_title(text: str | None) -> tuple[str, str]:
    """ "Monero (XMR) NEW ..." -> ("Monero", "XMR"); the "NEW" badge is optional."""
    match = _TITLE_RE.match(text or "")
    if not match:
        raise PageError(f"title {(text or '').strip()[:60]!r} has no 'Name (SYMBOL)'" if text else "no coin title")
    return match.group("name").strip(), match.group("symbol").strip()


def page_identity(html: str) -> tuple[str, str]:
    """(name, symbol) from a page's title. Raises PageError."""
    return parse_title(_texts(html)["title"])


def _positive(field: str, value: float) -> float:
    if not value > 0:
        raise PageError(f"{field} is {value:g}, expected a positive value")
    return value


def _field(field: str, parse, text: str | None) -> float:
    """Parse one page value; a failure names the field."""
    try:
        return _positive(field, parse(text))
    except PageError as exc:
        raise PageError(f"{field}: {exc}") from None


def _texts(html: str) -> dict[str, str | None]:
    soup = BeautifulSoup(html or "", "lxml")
    out: dict[str, str | None] = {}
    for key, selector in (
        ("title", TITLE_SELECTOR),
        ("nethash", NETHASH_SELECTOR),
        ("poolshash", POOLSHASH_SELECTOR),
        ("price", PRICE_SELECTOR),
        ("emission", EMISSION_SELECTOR),
    ):
        node = soup.select_one(selector)
        out[key] = node.get_text(" ", strip=True) if node is not None else None
    return out


def parse_page(html: str, need_emission: bool = True) -> CoinPage:
    """The typed facts of one rendered coin page. Raises PageError with the first fault found.

    `need_emission=False` for coins whose emission is fixed by a rule (Etica): theirs may be absent.
    The pools' hashrate is optional (it only raises the network figure).
    """
    t = _texts(html)
    name, symbol = parse_title(t["title"])
    net = _field("network hashrate", parse_hashrate, t["nethash"])
    try:
        pools = _positive("pools hashrate", parse_hashrate(t["poolshash"]))
    except PageError:
        pools = None
    price = _field("price", parse_number, t["price"])
    emission: float | None
    if need_emission:
        emission = _field("24h emission", parse_number, t["emission"])
    else:
        try:
            emission = _positive("24h emission", parse_number(t["emission"]))
        except PageError:
            emission = None
    return CoinPage(name, symbol, net, pools, price, emission)


def coins_per_day(
    hashrate_hs: float,
    network_hs: float,
    emission_24h: float,
    miner_share: float = 1.0,
    miner_fee: float = 0.01,
    pool_fee: float = 0.0,
) -> float:
    """This rig's coins per day: its share of the network times the miners' part of the emission, net of fees."""
    if network_hs <= 0:
        raise PageError("network hashrate must be positive")
    return hashrate_hs / network_hs * emission_24h * miner_share * (1.0 - miner_fee - pool_fee)


def seed_record(name: str, symbol: str, network_hs: float, price_usd: float, emission_24h: float | None,
                coins_per_day_: float, income_usd: float) -> dict:
    """The seed's coin record, keyed by its display strings (shared by getInformation and Coin.seed_dict)."""
    value, unit = format_hashrate(network_hs)
    return {
        "Coin name": name,
        "Symbol": symbol,
        "Net hashrate": value,
        "Net hashrate unit": unit,
        "Price": price_usd,
        "Emission": emission_24h,
        "Income per day": coins_per_day_,
        "Income per day in usd": income_usd,
    }


class SoupManagerCoin:
    """The seed's class: `SoupManagerCoin(html, hashrate_kh).getInformation()` -> the seed's dict.

    The keyword arguments carry what the seed hard-coded per coin (now data, see config.DEFAULT_COIN_RULES).
    """

    def __init__(
        self,
        html: str,
        hashrate_kh: float,
        *,
        miner_share: float = 1.0,
        emission_24h: float | None = None,
        miner_fee: float = 0.01,
        pool_fee: float = 0.0,
    ) -> None:
        self.html = html
        self.hashrate_kh = hashrate_kh
        self.miner_share = miner_share
        self.fixed_emission = emission_24h
        self.miner_fee = miner_fee
        self.pool_fee = pool_fee

    def page(self) -> CoinPage:
        return parse_page(self.html, need_emission=self.fixed_emission is None)

    def getInformation(self) -> dict:  # noqa: N802 (the seed's name)
        """The seed's record. Raises PageError (with the reason) for a page without usable values."""
        page = self.page()
        emission = self.fixed_emission if self.fixed_emission is not None else page.emission_24h
        coins = coins_per_day(
            self.hashrate_kh * 1000.0, page.network_hs, emission, self.miner_share, self.miner_fee, self.pool_fee
        )
        return seed_record(page.name, page.symbol, page.network_hs, page.price_usd, emission, coins, coins * page.price_usd)
