"""jsTrigger against the real Chromium and a fake MiningPoolStats on loopback."""
from __future__ import annotations

import glob
import os
import tempfile
import threading

import psutil
import pytest

import config
import jsTrigger
from demo.market import CoinValues, MarketServer
from tests.fixtures_chromium import chromium, chromium_descendants  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow


@pytest.fixture
def market():
    server = MarketServer(
        {
            "monero": CoinValues(),
            "consent": CoinValues(name="Dagger", symbol="XDAG", consent=True),
            "botcheck": CoinValues(name="Zephyr", symbol="ZEPH", botcheck=True),
            "never": CoinValues(name="Etica", symbol="ETI", never=True),
            "garbage": CoinValues(name="Quantum Resistant Ledger", symbol="QRL", nethash="N/A", price="-"),
        }
    )
    yield server
    server.close()


def profiles() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "smartminer-chrome-*")))


def nethash_of(html: str) -> str:
    from bs4 import BeautifulSoup

    return BeautifulSoup(html, "lxml").select_one("#nethash").get_text(strip=True)


def test_renders_every_kind_of_page_and_leaves_no_browser(chromium, market):
    before = profiles()
    events: list[tuple[str, str]] = []
    urls = [market.url(s) for s in ("monero", "consent", "botcheck", "never", "garbage", "error500")]

    result = jsTrigger.process_urls(urls, progress=lambda url, msg: events.append((url, msg)))

    assert list(result) == urls
    assert nethash_of(result[market.url("monero")].html) == "5.12 GH/s"
    assert nethash_of(result[market.url("consent")].html) == "5.12 GH/s"  # the consent button was clicked
    assert nethash_of(result[market.url("botcheck")].html) == "5.12 GH/s"  # stealth passed the bot check
    assert nethash_of(result[market.url("garbage")].html) == "N/A"  # rendered: judging values is soupManager's job
    assert str(result[market.url("never")]).startswith("Error: timed out after 3 s")
    assert str(result[market.url("error500")]) == "Error: HTTP 500"
    for url in urls:
        assert (url, "rendering") in events
        assert any(u == url and (m.startswith("ok") or m.startswith("Error:")) for u, m in events)
    assert chromium_descendants() == []
    assert profiles() - before == set()


def test_browsers_are_reused_across_urls(chromium, market, monkeypatch):
    config.override(BROWSERS=2)
    started = []
    real_start = jsTrigger.start_browser

    def counting_start():
        started.append(1)
        return real_start()

    monkeypatch.setattr(jsTrigger, "start_browser", counting_start)
    urls = [market.url("monero") + f"?n={i}" for i in range(5)]
    result = jsTrigger.process_urls(urls)
    assert all(page.ok for page in result.values())
    assert 1 <= len(started) <= 2
    assert chromium_descendants() == []


def test_stealth_hides_webdriver_and_headless(chromium, market):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    # Without stealth, the bot-check page's test would see a bot: proves that page can fail.
    plain = Options()
    plain.binary_location = config.settings().CHROME_BIN
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        plain.add_argument(flag)
    driver = webdriver.Chrome(service=Service(config.settings().CHROMEDRIVER_PATH), options=plain)
    try:
        driver.get(market.url("monero"))
        assert driver.execute_script("return navigator.webdriver") is True
        assert "Headless" in driver.execute_script("return navigator.userAgent")
    finally:
        driver.quit()

    browser = jsTrigger.start_browser()
    try:
        browser.driver.get(market.url("monero"))
        assert browser.driver.execute_script("return navigator.webdriver") is False
        ua = browser.driver.execute_script("return navigator.userAgent")
        assert "Headless" not in ua and "Chrome/" in ua
        brands = browser.driver.execute_script("return navigator.userAgentData.brands.map(b => b.brand)")
        assert "Chromium" in brands and not any("Headless" in b for b in brands)
    finally:
        browser.close()
    assert chromium_descendants() == []


def test_abort_returns_with_every_browser_quit(chromium, market):
    config.override(PAGE_TIMEOUT=120, BROWSERS=2)
    abort = threading.Event()
    urls = [market.url("never") + f"?n={i}" for i in range(4)]

    def progress(url, message):
        if message == "rendering":
            threading.Timer(0.5, abort.set).start()

    result = jsTrigger.process_urls(urls, abort=abort, progress=progress)
    assert {str(v) for v in result.values()} == {"Error: aborted"}  # not "timed out": the abort cut the wait short
    assert chromium_descendants() == []


def test_a_page_that_never_answers_costs_its_timeout_only(chromium, market):
    config.override(PAGE_TIMEOUT=2, BROWSERS=1)
    urls = [market.url("hang"), market.url("monero")]
    result = jsTrigger.process_urls(urls)
    assert str(result[urls[0]]) == "Error: page did not load within 2 s"
    assert nethash_of(result[urls[1]].html) == "5.12 GH/s"  # the same browser carried on
    assert chromium_descendants() == []


def test_abort_while_a_page_load_blocks(chromium, market):
    config.override(PAGE_TIMEOUT=120, BROWSERS=1)
    abort = threading.Event()

    def progress(url, message):
        if message == "rendering":
            threading.Timer(0.5, abort.set).start()

    result = jsTrigger.process_urls([market.url("hang"), market.url("monero")], abort=abort, progress=progress)
    assert {str(v) for v in result.values()} == {"Error: aborted"}
    assert chromium_descendants() == []


def test_killed_driver_leaves_no_chromium(chromium, market):
    browser = jsTrigger.start_browser()
    browser.driver.get(market.url("monero"))
    browser.remember_tree()
    tree = list(browser.procs.values())
    assert len(tree) >= 2  # chromedriver and Chromium
    psutil.Process(browser.driver.service.process.pid).kill()  # quit() can no longer work
    browser.close()
    assert [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []
    assert chromium_descendants() == []


def test_missing_driver_gives_reasons_not_exceptions(chromium, market):
    config.override(CHROMEDRIVER_PATH="/nonexistent/chromedriver")
    result = jsTrigger.process_urls([market.url("monero"), market.url("consent")])
    assert all(str(v).startswith("Error: browser failed to start") for v in result.values())
    assert chromium_descendants() == []


def test_desktop_user_agent():
    ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36"
    assert jsTrigger.desktop_user_agent(ua) == ua.replace("HeadlessChrome", "Chrome")


def _pool_process(which: str) -> psutil.Process:
    """This test's chromedriver, or the Chromium main process it started (BROWSERS=1: exactly one of each)."""
    drivers = [p for p in chromium_descendants() if "chromedriver" in p.name().lower()]
    assert len(drivers) == 1, drivers
    if which == "chromedriver":
        return drivers[0]
    mains = [
        p for p in drivers[0].children()
        if "chrom" in p.name().lower() and not any(a.startswith("--type=") for a in p.cmdline())
    ]
    assert len(mains) == 1, mains
    return mains[0]


def _kill(proc: psutil.Process) -> int:
    proc.kill()
    psutil.wait_procs([proc], timeout=5)
    return proc.pid


@pytest.mark.parametrize("victim", ["chromedriver", "chromium", "chromium-before-page_source"])
def test_a_browser_killed_mid_run_is_replaced_and_later_pages_render(chromium, market, monkeypatch, victim):
    """A genuine WebDriver fault on one page (chromedriver or Chromium killed as that page starts, or
    just before its source is read) costs a fresh browser, not the worker: with a single browser, every
    later page still renders and no Chromium is left."""
    from selenium.webdriver.remote.webdriver import WebDriver

    config.override(BROWSERS=1, PAGE_TIMEOUT=30)  # room for the retry on a fresh browser, whatever the machine
    urls = [market.url("monero") + f"?n={i}" for i in range(4)]
    killed: list[int] = []
    if victim == "chromium-before-page_source":
        real_source = WebDriver.page_source

        def source_after_a_crash(driver):
            if not killed and driver.current_url == urls[1]:
                killed.append(_kill(_pool_process("chromium")))
            return real_source.fget(driver)

        monkeypatch.setattr(WebDriver, "page_source", property(source_after_a_crash))
    faults: list[str] = []
    real_render = jsTrigger.render

    def spying_render(browser, url, deadline, abort):
        try:
            return real_render(browser, url, deadline, abort)
        except jsTrigger.RenderError as exc:
            faults.append(f"{url}: {exc}")
            raise

    monkeypatch.setattr(jsTrigger, "render", spying_render)

    def progress(url, message):
        if url == urls[1] and message == "rendering" and victim in ("chromedriver", "chromium"):
            killed.append(_kill(_pool_process(victim)))

    result = jsTrigger.process_urls(urls, progress=progress)

    assert killed, "the pool's process was never killed"
    assert faults and all(f.startswith(urls[1] + ": browser error") for f in faults), faults  # a genuine fault
    assert nethash_of(result[urls[0]].html) == "5.12 GH/s"
    assert nethash_of(result[urls[1]].html) == "5.12 GH/s"  # retried on a fresh browser within its budget
    assert nethash_of(result[urls[2]].html) == "5.12 GH/s"
    assert nethash_of(result[urls[3]].html) == "5.12 GH/s"
    assert chromium_descendants() == []


def test_an_unexpected_exception_costs_one_page_not_the_worker(chromium, market, monkeypatch):
    """Last resort: an exception no handler expects is that page's "Error: <reason>"; the worker goes on
    with a fresh browser and the broken one is quit."""
    config.override(BROWSERS=1)
    urls = [market.url("monero") + f"?n={i}" for i in range(3)]
    real_retry = jsTrigger._render_with_retry

    def flaky(job, browser, url):
        if url == urls[1]:
            raise LookupError("something nobody expected")
        return real_retry(job, browser, url)

    monkeypatch.setattr(jsTrigger, "_render_with_retry", flaky)
    result = jsTrigger.process_urls(urls)
    assert str(result[urls[1]]) == "Error: something nobody expected"
    assert nethash_of(result[urls[0]].html) == "5.12 GH/s"
    assert nethash_of(result[urls[2]].html) == "5.12 GH/s"
    assert chromium_descendants() == []
