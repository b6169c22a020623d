"""Which coin pays this rig the most: links -> rendered pages -> coins -> profit -> ranking.

`analyse()` runs one market analysis and returns an `Analysis` (typed `coin.Coin`s best first, plus
every coin left out and why); `get_best_coin_logic()` is the seed's interface on top of it, in the
seed's dict shape. A bad page or a coin without wallet/pool never raises; an unusable
links/wallets/pools file raises `market_setup.SetupError`.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import coin
import config
import jsTrigger
import utils
from coin import HASHRATE_CONFIGURED, Coin
from market_setup import SetupError, Setup, coin_rules, load_setup, parse_pool
from soupManager import PageError, coins_per_day, format_hashrate, page_identity, parse_page
from utils import log

HOURS_PER_DAY = 24.0


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
    best: Coin | None
    coins: list[Coin]
    skipped: list[Skipped]
    started: float
    finished: float
    power_cost_usd: float | None = None

    def skipped_dicts(self) -> list[dict]:
        """The shape of `config.state.last_skipped`."""
        return [{"coin": s.name, "url": s.url, "reason": s.reason, "data_fault": s.data_fault} for s in self.skipped]

    def untrusted_keys(self) -> set[str]:
        """The keys (link slugs) of coins whose reading could not be trusted this cycle."""
        return {coin.slug_of(s.url) for s in self.skipped if s.data_fault}


# --- pure helpers -----------------------------------------------------------------------------------
def power_cost_per_day(watts: float, usd_kwh: float) -> float | None:
    """Electricity per day in USD; None when either figure is unset (0)."""
    if watts <= 0 or usd_kwh <= 0:
        return None
    return watts / 1000.0 * usd_kwh * HOURS_PER_DAY


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


# (coin key, algorithm or None, configured H/s) -> (H/s to use, "measured" or "configured")
HashrateSource = Callable[[str, "str | None", float], "tuple[float, str]"]


def configured_hashrate(_key: str, _algo: str | None, configured_hs: float) -> tuple[float, str]:
    """The hashrate source without measurements: the configured figure."""
    return configured_hs, HASHRATE_CONFIGURED


def build_coin(html: str, url: str, setup: Setup, power_cost: float | None,
               hashrate_for: HashrateSource = configured_hashrate) -> Coin:
    """The ranked coin of one rendered page. Raises CoinSkip with the reason.

    The rig's hashrate is the coin's own measurement, else its algorithm's, else the configured one
    (a `hashrate_kh` rule, else MY_HASHRATE_KH): `hashrate_for` decides.
    """
    s = config.settings()
    key = coin.slug_of(url)
    try:
        name, symbol = page_identity(html)  # first: rules, wallet and pool depend on the name
    except PageError as exc:
        raise CoinSkip(str(exc)) from None
    rule = coin_rules(setup.rules, name, symbol, url)
    wallet_key = coin.match_key(setup.wallets, name, symbol, url)
    pool_key = coin.match_key(setup.pools, name, symbol, url)
    missing = [what for what, found in (("wallet", wallet_key), ("pool", pool_key)) if found is None]
    if missing:
        raise CoinSkip(f"no {' and no '.join(missing)} configured (keys: name, ticker or {key!r})", expected=True)
    try:
        pool = parse_pool(setup.pools[pool_key])
    except ValueError as exc:
        raise CoinSkip(f"pools.json {pool_key!r}: {exc}") from None
    algo = pool.algo or rule.get("algo")
    configured_hs = (_rule_number(rule, "hashrate_kh", 0.001, 1e7) or s.MY_HASHRATE_KH) * 1000.0
    hashrate_hs, hashrate_source = hashrate_for(key, algo, configured_hs)
    miner_share = _rule_number(rule, "miner_share", 0.0001, 1.0) or 1.0
    fixed_emission = _rule_number(rule, "emission_24h", 1e-12, 1e15)
    try:
        page = parse_page(html, need_emission=fixed_emission is None)
        emission = fixed_emission if fixed_emission is not None else page.emission_24h
        per_day = coins_per_day(hashrate_hs, page.network_hs, emission, miner_share, s.MINER_FEE, pool.fee)
    except PageError as exc:
        raise CoinSkip(str(exc)) from None
    income = per_day * page.price_usd
    return Coin(
        key=key, name=page.name, symbol=page.symbol, url=url, wallet=setup.wallets[wallet_key], pool=pool.url,
        price_usd=page.price_usd, nethash_hs=page.network_hs, emission_24h=emission, coins_per_day=per_day,
        income_usd=income, hashrate_hs=hashrate_hs, hashrate_source=hashrate_source,
        profit_usd=income - power_cost if power_cost is not None else None, pool_fee=pool.fee,
        algo=algo, xmrig_coin=pool.xmrig_coin or rule.get("xmrig_coin"),
    )


# --- the analysis -----------------------------------------------------------------------------------
def _warn_unmatched(setup: Setup, ranked: list[Coin]) -> None:
    """One warning per wallets/pools key that names no coin (parsed, or by the slug of a link)."""
    known: set[str] = set()
    for c in ranked:
        known |= coin.coin_keys(c.name, c.symbol, c.url)
    for link in setup.links:
        known.add(coin.slug_of(link))
    for label, mapping in (("wallets", setup.wallets), ("pools", setup.pools)):
        for key in mapping:
            if str(key).strip().lower() not in known and not str(key).startswith("_"):
                log(f"[WARN] {label} key {key!r} matches no coin in the links (use a name, ticker or link slug)")


def _apply_guard(ranked: list[Coin], skipped: list[Skipped]) -> list[Coin]:
    """Hold back coins whose income jumped past SANITY_FACTOR; persist the readings atomically."""
    s = config.settings()
    history = load_history(s.PATH_HISTORY)
    kept: list[Coin] = []
    for c in ranked:
        accepted, entry = sanity_check(history.get(c.key), c.income_usd, s.SANITY_FACTOR)
        history[c.key] = entry
        if accepted:
            kept.append(c)
            utils.incidents.clear(f"sanity:{c.key}", f"Sanity guard: {c.name} reads normally again")
            continue
        reason = (
            f"income jumped to ${c.income_usd:.4f}/day, over {s.SANITY_FACTOR:g}x the last "
            f"accepted ${entry['usd']:.4f}; held out this cycle (accepted if the next reading agrees)"
        )
        log(f"[WARN] Sanity guard: {c.name}: {reason}")
        utils.incidents.raise_(f"sanity:{c.key}", f"Sanity guard is holding {c.name} back: {reason}")
        skipped.append(Skipped(c.name, c.url, reason))
    try:
        utils.atomic_write_json(s.PATH_HISTORY, history)
    except OSError as exc:
        log(f"[WARN] Cannot write {s.PATH_HISTORY}: {exc}; the sanity guard forgets this cycle")
    return kept


def _skip(skipped: list[Skipped], name: str, url: str, reason: str, level: str = "[WARN]", data_fault: bool = True) -> None:
    log(f"{level} Skipping {name}: {reason}")
    skipped.append(Skipped(name, url, reason, data_fault))


def _name_of(html: str, fallback: str) -> str:
    try:
        return page_identity(html)[0]
    except PageError:
        return fallback


def _collect(setup: Setup, pages: dict[str, jsTrigger.PageResult], skipped: list[Skipped],
             power_cost: float | None, hashrate_for: HashrateSource) -> list[Coin]:
    failing = config.state.get("failing_coins")
    ranked: list[Coin] = []
    for url in setup.links:
        page = pages.get(url) or jsTrigger.PageResult.failed("not rendered")
        key = coin.slug_of(url)
        if not page.ok:
            _skip(skipped, key, url, page.reason or "not rendered")
            continue
        try:
            c = build_coin(page.html, url, setup, power_cost, hashrate_for)
        except CoinSkip as exc:
            level = "[INFO]" if exc.expected else "[WARN]"
            _skip(skipped, _name_of(page.html, key), url, str(exc), level, not exc.expected)
            continue
        if coin.is_failing(c, failing):
            _skip(skipped, c.name, url, "worker kept failing", "[INFO]", data_fault=False)
            continue
        ranked.append(c)
    return ranked


def analyse(
    abort: threading.Event | None = None,
    progress: Callable[[str, str], None] | None = None,
    hashrate_for: HashrateSource = configured_hashrate,
) -> Analysis:
    """One market analysis. Raises SetupError for unusable input files; never for a bad page."""
    started = time.time()
    setup = load_setup()
    s = config.settings()
    power_cost = power_cost_per_day(s.POWER_WATTS, s.ELECTRICITY_USD_KWH)
    log(f"[INFO] Analysing {len(setup.links)} coin pages with up to {s.BROWSERS} browsers")
    pages = jsTrigger.process_urls(setup.links, abort=abort, progress=progress)
    skipped: list[Skipped] = []
    ranked = _collect(setup, pages, skipped, power_cost, hashrate_for)
    _warn_unmatched(setup, ranked)
    if abort is None or not abort.is_set():
        ranked = _apply_guard(ranked, skipped)
    ranked.sort(key=lambda c: c.rank_value, reverse=True)
    return Analysis(ranked[0] if ranked else None, ranked, skipped, started, time.time(), power_cost)


def publish(analysis: Analysis) -> None:
    """Record an analysis in `config.state` (typed Coins) for the controller, the API, the commands and Discord."""
    config.state.update(
        last_ranking=list(analysis.coins),
        last_skipped=analysis.skipped_dicts(),
        last_analysis=analysis.finished,
    )


def get_best_coin_logic() -> tuple[dict | None, list[dict]]:
    """The seed's interface, in the seed's dict shape: (best coin, coins best first), or (None, [])
    with the reason logged."""
    try:
        analysis = analyse(abort=config.state.shutdown)
    except SetupError as exc:
        log(f"[ERROR] {exc}", force=True)
        return None, []
    if analysis.best is None:
        reasons = "; ".join(f"{s.name}: {s.reason}" for s in analysis.skipped) or "no coin pages"
        log(f"[WARN] No usable coin this cycle ({reasons})", force=True)
        return None, []
    return analysis.best.seed_dict(), [c.seed_dict() for c in analysis.coins]


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
    with_profit = analysis.power_cost_usd is not None or any(c.profit_usd is not None for c in analysis.coins)
    header = (["#", "Coin", "Symbol", "Net hashrate", "Price $", "Coins/day", "USD/day"]
              + (["Profit/day"] if with_profit else []) + ["Rig hashrate"])
    rows = []
    for rank, c in enumerate(analysis.coins, 1):
        value, unit = format_hashrate(c.nethash_hs)
        row = [str(rank), c.name, c.symbol, f"{value:g} {unit}", _amount(c.price_usd), _amount(c.coins_per_day),
               _money(c.income_usd)]
        if with_profit:
            row.append(_money(c.profit_usd))
        rig_value, rig_unit = format_hashrate(c.hashrate_hs)
        row.append(f"{rig_value:.4g} {rig_unit} {c.hashrate_source}")
        rows.append(row)
    return header, rows


def ranking_table(analysis: Analysis) -> str:
    """The ranking as a table a person can read, then one "skipped: reason" row per coin left out."""
    header, rows = ranking_rows(analysis)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    right = {i for i, name in enumerate(header) if name not in ("Coin", "Symbol", "Rig hashrate")}
    fmt = lambda r: "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    lines = [fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows]
    if not rows:
        lines.append("(no coin could be ranked)")
    if analysis.power_cost_usd is not None:
        lines.append(f"power cost: ${analysis.power_cost_usd:.4f}/day subtracted from USD/day")
    lines += [f"- {s.name}: skipped: {s.reason}" for s in analysis.skipped]
    return "\n".join(lines)


def ranking_json(analysis: Analysis) -> list[dict[str, Any]]:
    """The ranking for `--json`: the seed's dicts plus Key, Wallet, Pool (and the other added fields)."""
    return [c.seed_dict() for c in analysis.coins]
