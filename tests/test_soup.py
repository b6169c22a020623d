"""soupManager: number and unit parsing, the typed page parse, the seed's record."""
from __future__ import annotations

import pytest

from demo.market import CoinValues, coin_page_html
from soupManager import (
    CoinPage,
    PageError,
    SoupManagerCoin,
    coins_per_day,
    format_hashrate,
    parse_hashrate,
    parse_number,
    parse_page,
    parse_title,
)


def rendered(**values) -> str:
    """A coin page as the browser holds it after its script ran."""
    return coin_page_html(CoinValues(**values), rendered=True)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("432.00 XMR", 432.0),
        ("86,400.00 XDAG", 86400.0),
        ("5,760.00", 5760.0),  # the seed read this as 0
        ("1,234,567.5", 1234567.5),
        ("$162.45", 162.45),
        ("$ 0.003310", 0.00331),
        ("162.45", 162.45),
        ("  7 ", 7.0),
        ("1e3 ZEPH", 1000.0),
        ("-5", -5.0),  # a sign is read; positivity is the page parser's check
    ],
)
def test_parse_number(text, expected):
    assert parse_number(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["N/A", "-", "", "   ", None, "$", "1,23", "abc", "--"])
def test_parse_number_rejects_garbage(text):
    with pytest.raises(PageError):
        parse_number(text)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("12 H/s", 12.0),
        ("830 kH/s", 830e3),
        ("830 KH/s", 830e3),
        ("5.12 MH/s", 5.12e6),
        ("5.12 GH/s", 5.12e9),
        ("1.5 TH/s", 1.5e12),
        ("2 PH/s", 2e15),
        ("3 EH/s", 3e18),
        ("1,234.5 MH/s", 1234.5e6),
        ("5.12GH/s", 5.12e9),
        ("4 GH", 4e9),
    ],
)
def test_parse_hashrate_units(text, expected):
    assert parse_hashrate(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["N/A", "-", "", "5 XH/s", "GH/s", "5.12", "fast"])
def test_parse_hashrate_rejects_garbage(text):
    with pytest.raises(PageError):
        parse_hashrate(text)


def test_format_hashrate_picks_the_largest_unit():
    assert format_hashrate(5.12e9) == (5.12, "GH/s")
    assert format_hashrate(830e3) == (830.0, "KH/s")
    assert format_hashrate(12.0) == (12.0, "H/s")


@pytest.mark.parametrize(
    "title, expected",
    [
        ("Monero (XMR) NEW mining pools", ("Monero", "XMR")),
        ("Monero (XMR)", ("Monero", "XMR")),
        ("Quantum Resistant Ledger (QRL) NEW", ("Quantum Resistant Ledger", "QRL")),
    ],
)
def test_parse_title_with_and_without_new(title, expected):
    assert parse_title(title) == expected


def test_parse_page_typed_and_in_hs():
    page = parse_page(rendered(nethash="5.12 GH/s", poolshash="2.1 GH/s", price="$162.45", emission="432.00 XMR"))
    assert page == CoinPage("Monero", "XMR", 5.12e9, 2.1e9, 162.45, 432.0)
    assert page.network_hs == 5.12e9


def test_network_is_the_larger_of_nethash_and_poolshash():
    page = parse_page(rendered(nethash="100 MH/s", poolshash="121.7 MH/s"))
    assert page.network_hs == pytest.approx(121.7e6)


def test_title_without_new_and_price_without_dollar():
    page = parse_page(rendered(title_suffix="", price="1.84", emission="3,852.00 ZEPH"))
    assert (page.name, page.price_usd, page.emission_24h) == ("Monero", 1.84, 3852.0)


@pytest.mark.parametrize(
    "values, field",
    [
        ({"nethash": "N/A"}, "network hashrate"),
        ({"nethash": ""}, "network hashrate"),
        ({"nethash": "0 H/s"}, "network hashrate"),
        ({"price": "-"}, "price"),
        ({"price": "$0.00"}, "price"),
        ({"price": "$-1.5"}, "price"),
        ({"emission": "N/A"}, "24h emission"),
        ({"emission": "0.00 XMR"}, "24h emission"),
    ],
)
def test_garbage_gives_a_reason_naming_the_field(values, field):
    with pytest.raises(PageError, match=field):
        parse_page(rendered(**values))


def test_page_without_title_or_values():
    with pytest.raises(PageError, match="title"):
        parse_page("<html><body><h1>Internal Server Error</h1></body></html>")
    with pytest.raises(PageError, match="network hashrate"):
        parse_page(coin_page_html())  # as a plain HTTP fetch sees it: values not filled in yet


def test_garbage_pools_hashrate_is_ignored():
    assert parse_page(rendered(poolshash="N/A")).network_hs == pytest.approx(5.12e9)


def test_emission_may_be_missing_when_fixed_by_a_rule():
    html = rendered(name="Etica", symbol="ETI", emission="-")
    with pytest.raises(PageError, match="emission"):
        SoupManagerCoin(html, 17.3).getInformation()
    info = SoupManagerCoin(html, 17.3, emission_24h=4602.24).getInformation()
    assert info["Emission"] == 4602.24


def test_get_information_keeps_the_seed_keys_and_math():
    html = rendered(nethash="5.00 GH/s", poolshash="1 GH/s", price="$200", emission="432.00 XMR")
    info = SoupManagerCoin(html, 10.0, miner_fee=0.01, pool_fee=0.01).getInformation()
    assert list(info) == [
        "Coin name", "Symbol", "Net hashrate", "Net hashrate unit", "Price", "Emission", "Income per day",
        "Income per day in usd",
    ]
    coins = 10_000 / 5e9 * 432 * 0.98
    assert info["Income per day"] == pytest.approx(coins)
    assert info["Income per day in usd"] == pytest.approx(coins * 200)
    assert (info["Net hashrate"], info["Net hashrate unit"]) == (5.0, "GH/s")


def test_coins_per_day_formula():
    # 17.3 kH/s on a 5.12 GH/s network emitting 432/day, Zephyr-like share 0.75, 1% + 0.9% fees
    assert coins_per_day(17_300, 5.12e9, 432, 0.75, 0.01, 0.009) == pytest.approx(
        17_300 / 5.12e9 * 432 * 0.75 * (1 - 0.019)
    )
    with pytest.raises(PageError):
        coins_per_day(17_300, 0, 432)
