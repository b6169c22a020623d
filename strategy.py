"""Which coin pays this rig the most: links -> rendered pages -> records -> profit -> ranking.

`analyse()` runs one market analysis and returns an `Analysis` (ranking best first, plus every coin
left out and why); `get_best_coin_logic()` is the seed's interface on top of it. A bad page or a coin
without wallet/pool never raises; an unusable links/wallets/pools file raises `SetupError`.
"""
from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import config
import jsTrigger
import utils
from soupManager import PageError, SoupManagerCoin, coins_per_day, page_identity
from utils import log

# The pure income math lives beside the parser (the seed's getInformation computed it); re-exported here.
income_per_day = coins_per_day

HOURS_PER_DAY = 24.0


class SetupError(Exception):
    """A links/wallets/pools/coins file is missing or malformed. One line naming the file and the fix."""


@dataclass(frozen=True)
class Skipped:
    name: str
    url: str
    reason: str
    # True when this cycle's reading of the coin cannot be trusted (page not rendered, garbage value,
    # sanity guard); False when the user's setup leaves it out (no wallet or pool, worker failing).
    # A running coin whose reading is untrusted keeps mining: no switch on data we cannot trust.
    data_fault: bool = True


@dataclass
class Analysis:
    best: dict | None
    coins: list[dict]
    skipped: list[Skipped]
    started: float
    finished: float
    power_cost_usd: float | None = None

    def skipped_dicts(self) -> list[dict]:
        """The shape of `config.state.last_skipped`."""
        return [{"coin": s.name, "url": s.url, "reason": s.reason, "data_fault": s.data_fault} for s in self.skipped]

    def untrusted_keys(self) -> set[str]:
        """The Keys (link slugs) of coins whose reading could not be trusted this cycle."""
        return {utils.slug_of(s.url) for s in self.skipped if s.data_fault}


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


# --- pure helpers -----------------------------------------------------------------------------------
def rank_value(coin: dict) -> float:
    """What ranking compares: profit when a power cost is set, else income (USD/day)."""
    profit = coin.get("Profit per day in usd")
    value = profit if profit is not None else coin.get("Income per day in usd")
    return float(value) if value is not None else -math.inf


def power_cost_per_day(watts: float, usd_kwh: float) -> float | None:
    """Electricity per day in USD; None when either figure is unset (0)."""
    if watts <= 0 or usd_kwh <= 0:
        return None
    return watts / 1000.0 * usd_kwh * HOURS_PER_DAY


def match_key(mapping: dict[str, Any], name: str | None, symbol: str | None = None, url: str | None = None) -> str | None:
    """The key of `mapping` that names this coin (full name, first word, ticker or link slug, any case)."""
    keys = utils.coin_keys(name, symbol, url)
    for key in mapping:
        if str(key).strip().lower() in keys:
            return key
    return None


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


def sanity_check(entry: dict | None, income_usd: float, factor: float, now: float | None = None) -> tuple[bool, dict]:
    """The sanity guard for one coin (pure given `now`). Returns (accepted, new history entry).

    A reading more than `factor` times the last accepted one is held back and remembered as pending;
    the next reading confirms it when it agrees with the pending one within the same factor, so a real
    jump costs one cycle while a one-off scraping glitch never reaches the ranking.
    """
    now = time.time() if now is None else now
    last = (entry or {}).get("usd")
    pending = (entry or {}).get("pending")
    if not isinstance(last, (int, float)) or last <= 0 or income_usd <= last * factor:
        return True, {"usd": income_usd, "at": now}
    if isinstance(pending, (int, float)) and pending > 0 and pending / factor <= income_usd <= pending * factor:
        return True, {"usd": income_usd, "at": now}
    return False, {"usd": last, "at": (entry or {}).get("at", now), "pending": income_usd}


# --- files -----------------------------------------------------------------------------------------
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
        data = utils.read_json(path, default=default, expect=dict)
    except utils.DataFileError as exc:
        raise SetupError(f"{exc}: it must map coin names to {what}") from None
    return data


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


def load_setup() -> Setup:
    """Read every input file. Raises SetupError naming the file and what to fix."""
    s = config.settings()
    return Setup(
        links=read_links(s.PATH_LINKS),
        wallets=read_wallets(s.PATH_WALLETS),
        pools=read_pools(s.PATH_POOLS),
        rules=read_rules(s.PATH_COINS),
    )


def load_history(path: str) -> dict[str, dict]:
    """The sanity guard's last readings; a damaged file is reported and started afresh."""
    try:
        data = utils.read_json(path, default={}, expect=dict)
    except utils.DataFileError as exc:
        log(f"[WARN] {exc}; the sanity guard starts afresh")
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict)}


# --- one coin ---------------------------------------------------------------------------------------
class CoinSkip(Exception):
    """This coin is left out of the ranking; str() is the reason. `expected` marks a user's choice
    (no wallet or pool configured), logged as info rather than as a warning."""

    def __init__(self, reason: str, expected: bool = False) -> None:
        super().__init__(reason)
        self.expected = expected


def _rule_number(rule: dict, name: str, low: float, high: float) -> float | None:
    value = rule.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise CoinSkip(f"coins rule {name}={value!r} is out of range {low:g} to {high:g}")
    return float(value)


def coin_rules(rules: dict[str, dict], name: str, symbol: str | None = None, url: str | None = None) -> dict:
    """Every rule entry that names this coin, merged in order (built-in first, then the coins file),
    so a file entry keyed "ETI" still overrides the built-in "etica" one."""
    keys = utils.coin_keys(name, symbol, url)
    merged: dict = {}
    for key, rule in rules.items():
        if key.strip().lower() in keys:
            merged.update(rule)
    return merged


def build_record(html: str, url: str, setup: Setup, power_cost: float | None) -> dict:
    """The ranked record of one rendered page. Raises CoinSkip with the reason."""
    s = config.settings()
    slug = utils.slug_of(url)
    try:
        name, symbol = page_identity(html)  # first: rules, wallet and pool depend on the name
    except PageError as exc:
        raise CoinSkip(str(exc)) from None
    rule = coin_rules(setup.rules, name, symbol, url)
    wallet_key = match_key(setup.wallets, name, symbol, url)
    pool_key = match_key(setup.pools, name, symbol, url)
    missing = [what for what, key in (("wallet", wallet_key), ("pool", pool_key)) if key is None]
    if missing:
        raise CoinSkip(f"no {' and no '.join(missing)} configured (keys: name, ticker or {slug!r})", expected=True)
    try:
        pool = parse_pool(setup.pools[pool_key])
    except ValueError as exc:
        raise CoinSkip(f"pools.json {pool_key!r}: {exc}") from None
    hashrate_kh = _rule_number(rule, "hashrate_kh", 0.001, 1e7) or s.MY_HASHRATE_KH
    soup = SoupManagerCoin(
        html,
        hashrate_kh,
        miner_share=_rule_number(rule, "miner_share", 0.0001, 1.0) or 1.0,
        emission_24h=_rule_number(rule, "emission_24h", 1e-12, 1e15),
        miner_fee=s.MINER_FEE,
        pool_fee=pool.fee,
    )
    try:
        record = soup.getInformation()
    except PageError as exc:
        raise CoinSkip(str(exc)) from None
    usd = record["Income per day in usd"]
    record.update(
        {
            "Key": slug,
            "Url": url,
            "Wallet": setup.wallets[wallet_key],
            "Pool": pool.url,
            "Pool fee": pool.fee,
            "Algo": pool.algo or rule.get("algo"),
            "XmrigCoin": pool.xmrig_coin or rule.get("xmrig_coin"),
            "Hashrate H/s": hashrate_kh * 1000.0,
            "Profit per day in usd": usd - power_cost if power_cost is not None else None,
        }
    )
    return record


# --- the analysis -----------------------------------------------------------------------------------
def _excluded_by_failures(record: dict, failing: Iterable[str]) -> bool:
    return any(utils.coin_matches(record, str(f)) for f in failing)


def _warn_unmatched(setup: Setup, records: list[dict]) -> None:
    """One warning per wallets/pools key that names no coin (parsed, or by the slug of a link)."""
    known: set[str] = set()
    for record in records:
        known |= utils.coin_keys(record.get("Coin name"), record.get("Symbol"), record.get("Url"))
    for link in setup.links:
        known.add(utils.slug_of(link))
    for label, mapping in (("wallets", setup.wallets), ("pools", setup.pools)):
        for key in mapping:
            if str(key).strip().lower() not in known and not str(key).startswith("_"):
                log(f"[WARN] {label} key {key!r} matches no coin in the links (use a name, ticker or link slug)")


def _apply_guard(records: list[dict], skipped: list[Skipped]) -> list[dict]:
    """Hold back coins whose income jumped past SANITY_FACTOR; persist the readings atomically."""
    s = config.settings()
    history = load_history(s.PATH_HISTORY)
    kept: list[dict] = []
    for record in records:
        key = record["Key"]
        accepted, entry = sanity_check(history.get(key), record["Income per day in usd"], s.SANITY_FACTOR)
        history[key] = entry
        if accepted:
            kept.append(record)
            utils.incidents.clear(f"sanity:{key}", f"Sanity guard: {record['Coin name']} reads normally again")
            continue
        reason = (
            f"income jumped to ${record['Income per day in usd']:.4f}/day, over {s.SANITY_FACTOR:g}x the last "
            f"accepted ${entry['usd']:.4f}; held out this cycle (accepted if the next reading agrees)"
        )
        log(f"[WARN] Sanity guard: {record['Coin name']}: {reason}")
        utils.incidents.raise_(f"sanity:{key}", f"Sanity guard is holding {record['Coin name']} back: {reason}")
        skipped.append(Skipped(record["Coin name"], record["Url"], reason))
    try:
        utils.atomic_write_json(s.PATH_HISTORY, history)
    except OSError as exc:
        log(f"[WARN] Cannot write {s.PATH_HISTORY}: {exc}; the sanity guard forgets this cycle")
    return kept


def _skip(skipped: list[Skipped], name: str, url: str, reason: str, level: str = "[WARN]", data_fault: bool = True) -> None:
    log(f"{level} Skipping {name}: {reason}")
    skipped.append(Skipped(name, url, reason, data_fault))


def _collect(setup: Setup, pages: "dict[str, jsTrigger.PageResult]", skipped: list[Skipped], power_cost: float | None) -> list[dict]:
    failing = config.state.get("failing_coins")
    records: list[dict] = []
    for url in setup.links:
        page = pages.get(url) or jsTrigger.PageResult.failed("not rendered")
        slug = utils.slug_of(url)
        if not page.ok:
            _skip(skipped, slug, url, page.reason or "not rendered")
            continue
        html = page.html
        try:
            record = build_record(html, url, setup, power_cost)
        except CoinSkip as exc:
            _skip(skipped, _name_of(html, slug), url, str(exc), "[INFO]" if exc.expected else "[WARN]", not exc.expected)
            continue
        if _excluded_by_failures(record, failing):
            _skip(skipped, record["Coin name"], url, "worker kept failing", "[INFO]", data_fault=False)
            continue
        records.append(record)
    return records


def _name_of(html: str, fallback: str) -> str:
    try:
        return page_identity(html)[0]
    except PageError:
        return fallback


def analyse(
    abort: threading.Event | None = None,
    progress: Callable[[str, str], None] | None = None,
) -> Analysis:
    """One market analysis. Raises SetupError for unusable input files; never for a bad page."""
    started = time.time()
    setup = load_setup()
    s = config.settings()
    power_cost = power_cost_per_day(s.POWER_WATTS, s.ELECTRICITY_USD_KWH)
    log(f"[INFO] Analysing {len(setup.links)} coin pages with up to {s.BROWSERS} browsers")
    pages = jsTrigger.process_urls(setup.links, abort=abort, progress=progress)
    skipped: list[Skipped] = []
    records = _collect(setup, pages, skipped, power_cost)
    _warn_unmatched(setup, records)
    if abort is None or not abort.is_set():
        records = _apply_guard(records, skipped)
    records.sort(key=rank_value, reverse=True)
    return Analysis(records[0] if records else None, records, skipped, started, time.time(), power_cost)


def publish(analysis: Analysis) -> None:
    """Record an analysis in `config.state` for the API, the commands and Discord."""
    config.state.update(
        last_ranking=list(analysis.coins),
        last_skipped=analysis.skipped_dicts(),
        last_analysis=analysis.finished,
    )


def get_best_coin_logic() -> tuple[dict | None, list[dict]]:
    """The seed's interface: (best coin, coins best first), or (None, []) with the reason logged."""
    try:
        analysis = analyse(abort=config.state.shutdown)
    except SetupError as exc:
        log(f"[ERROR] {exc}", force=True)
        return None, []
    if analysis.best is None:
        reasons = "; ".join(f"{s.name}: {s.reason}" for s in analysis.skipped) or "no coin pages"
        log(f"[WARN] No usable coin this cycle ({reasons})", force=True)
        return None, []
    return analysis.best, analysis.coins


# --- output -----------------------------------------------------------------------------------------
def _money(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.2f}" if abs(value) >= 100 else f"{value:.4f}"


def _amount(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.2f}" if abs(value) >= 100 else f"{value:.6g}"


def ranking_rows(analysis: Analysis) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the ranking table (pure)."""
    with_profit = analysis.power_cost_usd is not None or any(c.get("Profit per day in usd") is not None for c in analysis.coins)
    header = ["#", "Coin", "Symbol", "Net hashrate", "Price $", "Coins/day", "USD/day"] + (["Profit/day"] if with_profit else [])
    rows = []
    for rank, coin in enumerate(analysis.coins, 1):
        row = [
            str(rank),
            str(coin["Coin name"]),
            str(coin["Symbol"]),
            f"{coin['Net hashrate']:g} {coin['Net hashrate unit']}",
            _amount(coin["Price"]),
            _amount(coin["Income per day"]),
            _money(coin["Income per day in usd"]),
        ]
        if with_profit:
            row.append(_money(coin.get("Profit per day in usd")))
        rows.append(row)
    return header, rows


def ranking_table(analysis: Analysis) -> str:
    """The ranking as a table a person can read, then one "skipped: reason" row per coin left out."""
    header, rows = ranking_rows(analysis)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    right = {0, 3, 4, 5, 6, 7}
    fmt = lambda r: "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    lines = [fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows]
    if not rows:
        lines.append("(no coin could be ranked)")
    if analysis.power_cost_usd is not None:
        lines.append(f"power cost: ${analysis.power_cost_usd:.4f}/day subtracted from USD/day")
    lines += [f"- {s.name}: skipped: {s.reason}" for s in analysis.skipped]
    return "\n".join(lines)


JSON_KEYS = (
    "Coin name", "Symbol", "Net hashrate", "Net hashrate unit", "Price", "Emission", "Income per day",
    "Income per day in usd", "Key", "Url", "Wallet", "Pool", "Pool fee", "Algo", "XmrigCoin", "Hashrate H/s",
    "Profit per day in usd",
)


def ranking_json(analysis: Analysis) -> list[dict]:
    """The ranking for `--json`: the seed's dicts plus Key, Wallet, Pool (and the other added fields)."""
    return [{k: coin.get(k) for k in JSON_KEYS} for coin in analysis.coins]
