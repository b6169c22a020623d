"""jsTrigger against the real Chromium and a fake MiningPoolStats on loopback."""
from __future__ import annotations

import glob
import os
import subprocess
import sys
import tempfile
import threading
import time

import psutil
import pytest

import config
import jsTrigger
import reaper
import browser
from browser import Tuning, browser_env
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
    """Our profile folders and the socket folders Chromium makes in TMPDIR."""
    tmp = tempfile.gettempdir()
    return set(glob.glob(os.path.join(tmp, "smartminer-chrome-*")) + glob.glob(os.path.join(tmp, "org.chromium.Chromium.*")))


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


@pytest.mark.parametrize("tuning, browsers", [(Tuning(), 1), (Tuning(browsers=2), 2), (Tuning(tabs=5, browsers=2), 1)])
def test_one_browser_holds_browsers_pages_at_once_in_tabs(chromium, market, monkeypatch, tuning, browsers):
    """Five pages, BROWSERS=2 at once: one browser with two tabs. A second browser only when asked for
    (the benchmark's lever) and only when the pages do not fit the first one's tabs."""
    config.override(BROWSERS=2)
    started = []
    real_start = jsTrigger.start_browser

    def counting_start(tuning=None):
        started.append(1)
        return real_start(tuning)

    monkeypatch.setattr(jsTrigger, "start_browser", counting_start)
    urls = [market.url("monero") + f"?n={i}" for i in range(5)]
    result = jsTrigger.process_urls(urls, tuning=tuning)
    assert all(page.ok for page in result.values())
    assert len(started) == browsers
    assert chromium_descendants() == []


def load(driver, url: str) -> None:
    """Navigate and wait until the page's document is in (the browser's page-load strategy is "none")."""
    driver.get(url)
    for _ in range(200):
        if driver.execute_script("return location.href.startsWith('http') && document.readyState === 'complete'"):
            return
        time.sleep(0.05)
    raise AssertionError(f"{url} did not load")


def test_stealth_hides_webdriver_and_headless(chromium, market, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    # Without stealth, the bot-check page's test would see a bot: proves that page can fail.
    plain = Options()
    plain.binary_location = config.settings().CHROME_BIN
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        plain.add_argument(flag)
    service = Service(config.settings().CHROMEDRIVER_PATH, env=browser_env(str(tmp_path)))
    driver = webdriver.Chrome(service=service, options=plain)
    try:
        driver.get(market.url("monero"))
        assert driver.execute_script("return navigator.webdriver") is True
        assert "Headless" in driver.execute_script("return navigator.userAgent")
    finally:
        driver.quit()

    browser = jsTrigger.start_browser()
    try:
        load(browser.driver, market.url("monero"))
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
    assert str(result[urls[0]]).startswith("Error: page did not load within 2 s")
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
    load(browser.driver, market.url("monero"))
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
    assert browser.desktop_user_agent(ua) == ua.replace("HeadlessChrome", "Chrome")


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


@pytest.mark.parametrize("victim", ["chromedriver", "chromium", "chromium-while-waiting"])
def test_a_browser_killed_mid_run_is_replaced_and_later_pages_render(chromium, market, monkeypatch, victim):
    """A genuine WebDriver fault (chromedriver or Chromium killed as a page starts, or while the worker
    waits for a page) costs a fresh browser, not the worker: the pages open in the broken browser are
    retried on the new one, every page renders and no Chromium is left."""
    config.override(BROWSERS=1, PAGE_TIMEOUT=30)  # room for the retry on a fresh browser, whatever the machine
    urls = [market.url("monero") + f"?n={i}" for i in range(4)]
    killed: list[int] = []
    faults: list[str] = []

    def spy(real):
        def call(browser, page, abort):
            if victim == "chromium-while-waiting" and real is real_wait and page.url == urls[1] and not killed:
                killed.append(_kill(_pool_process("chromium")))
            try:
                return real(browser, page, abort)
            except jsTrigger.RenderError as exc:
                faults.append(f"{page.url}: {exc}")
                raise
        return call

    real_wait, real_navigate, real_start = jsTrigger.wait_for, jsTrigger.navigate, jsTrigger.start_browser
    monkeypatch.setattr(jsTrigger, "wait_for", spy(real_wait))
    monkeypatch.setattr(jsTrigger, "navigate", spy(real_navigate))
    started: list[Tuning] = []
    monkeypatch.setattr(jsTrigger, "start_browser", lambda tuning=None: started.append(tuning) or real_start(tuning))

    def progress(url, message):
        if url == urls[1] and message == "rendering" and victim in ("chromedriver", "chromium"):
            killed.append(_kill(_pool_process(victim)))

    result = jsTrigger.process_urls(urls, progress=progress)

    assert killed, "the pool's process was never killed"
    assert faults and all(": browser error" in f for f in faults), faults  # a genuine fault, nothing else
    for url in urls:
        assert nethash_of(result[url].html) == "5.12 GH/s", url  # retried on a fresh browser within its budget
    assert [t.single_process for t in started] == [True, False]  # the replacement: Chromium's usual process model
    assert chromium_descendants() == []


def test_an_unexpected_exception_costs_one_page_not_the_worker(chromium, market, monkeypatch):
    """Last resort: an exception no handler expects is that page's "Error: <reason>"; the worker goes on
    with a fresh browser (the pages open in the old one are retried there) and the broken one is quit."""
    config.override(BROWSERS=1)
    urls = [market.url("monero") + f"?n={i}" for i in range(3)]
    real_wait = jsTrigger.wait_for

    def flaky(browser, page, abort):
        if page.url == urls[1]:
            raise LookupError("something nobody expected")
        return real_wait(browser, page, abort)

    monkeypatch.setattr(jsTrigger, "wait_for", flaky)
    result = jsTrigger.process_urls(urls)
    assert str(result[urls[1]]) == "Error: something nobody expected"
    assert nethash_of(result[urls[0]].html) == "5.12 GH/s"
    assert nethash_of(result[urls[2]].html) == "5.12 GH/s"
    assert chromium_descendants() == []


def thread_nices(pid: int) -> set[int]:
    """The nice value of every thread of a process (Linux keeps nice per thread)."""
    out = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat", encoding="ascii") as fh:
            text = fh.read()
        out.add(int(text[text.rfind(")") + 2:].split()[16]))
    return out


def test_the_browser_runs_at_browser_nice_every_thread_and_is_tracked_by_the_reaper(chromium):
    """Chromium and chromedriver run as root here and would set their own threads to nice 0 and -8;
    every thread stays at BROWSER_NICE or lower priority. chromedriver's Popen is the reaper's to spare."""
    config.override(BROWSER_NICE=17, BROWSERS=1)
    seen: dict[str, set[int]] = {}
    tracked: list[set[int]] = []
    with MarketServer({"slow": CoinValues(delay_ms=1500), "monero": CoinValues(realistic=True)}) as m:
        def progress(url, message):
            if url == m.url("monero") and message.startswith("ok"):  # the slow page is still open
                tracked.append(reaper.tracked())
                for proc in chromium_descendants():
                    seen[f"{proc.name()} {proc.pid}"] = thread_nices(proc.pid)

        result = jsTrigger.process_urls([m.url("monero"), m.url("slow")], progress=progress, tuning=Tuning(tabs=2))
    assert all(page.ok for page in result.values())
    assert any(name.startswith("chromedriver") for name in seen) and len(seen) >= 3, seen
    low = {name: nices for name, nices in seen.items() if min(nices) < 17}
    assert low == {}, low
    driver_pid = next(int(name.split()[1]) for name in seen if name.startswith("chromedriver"))
    assert tracked and driver_pid in tracked[0]
    assert driver_pid not in reaper.tracked()  # released once the browser quit
    assert chromium_descendants() == []


@pytest.mark.parametrize("block", [True, False])
def test_a_realistic_page_renders_without_fetching_pictures_fonts_or_ads(chromium, block):
    """Blocking (the default) keeps the page's own script and data and drops the rest; without it the
    same page fetches them all, which shows the page really asks for them."""
    with MarketServer({"monero": CoinValues(realistic=True)}) as m:
        m.market.take_requests()
        result = jsTrigger.process_urls([m.url("monero")], tuning=Tuning(block=block))
        paths = [path for _, path in m.market.take_requests()]
    assert nethash_of(result[m.url("monero")].html) == "5.12 GH/s"
    assert "/static/js/charts.js" in paths and "/data/monero.json" in paths  # the page's own
    extras = [p for p in paths if p.startswith(("/static/img/", "/static/fonts/", "/ext/"))]
    if block:
        assert extras == []
    else:
        assert any(p.startswith("/static/fonts/") for p in extras) and any("googlesyndication" in p for p in extras)
    assert chromium_descendants() == []


def test_pages_load_in_a_hidden_window_in_every_tab(chromium, market):
    """A minimised window: pages draw no frames. Timers and the page's own scripts still run (the other
    tests' pages fill their values through setTimeout and fetch)."""
    b = jsTrigger.start_browser()
    try:
        states = []
        for slug in ("monero", "consent"):
            b.open_tab()
            load(b.driver, market.url(slug))
            states.append(b.driver.execute_script("return document.visibilityState"))
        assert states == ["hidden", "hidden"]
        assert len(b.driver.window_handles) == 2
    finally:
        b.close()
    assert chromium_descendants() == []


class _WaitingBrowser:
    """Only what extend_for_cpu_wait reads: the browser's cumulative CPU wait, set by the test."""

    def __init__(self) -> None:
        self.waited = 0.0

    def cpu_wait(self) -> float:
        return self.waited


def test_a_page_deadline_moves_on_by_the_cpu_wait_up_to_its_cap():
    b = _WaitingBrowser()
    now = time.monotonic()
    page = jsTrigger._Page("u", now - 5, deadline=now, loading_since=now - 5, cpu_wait=1.0)
    assert not jsTrigger.extend_for_cpu_wait(b, page, timeout=5)  # no wait: a real timeout
    b.waited = 1.2
    assert not jsTrigger.extend_for_cpu_wait(b, page, timeout=5)  # 0.2 s is noise
    b.waited = 9.0  # 8 s of thread waits in 5 s: several threads waited at once; at most the elapsed time counts
    assert jsTrigger.extend_for_cpu_wait(b, page, timeout=5)
    assert page.extended == pytest.approx(5, abs=0.1) and page.deadline == pytest.approx(now + 5, abs=0.1)
    page.loading_since -= 1000  # a browser held back for ages: capped at (STARVED_FACTOR - 1) x timeout
    b.waited = 1000
    assert jsTrigger.extend_for_cpu_wait(b, page, timeout=5)
    assert page.extended == 5 * (jsTrigger.STARVED_FACTOR - 1)
    assert not jsTrigger.extend_for_cpu_wait(b, page, timeout=5)


def test_cpu_wait_grows_while_busy_cpus_hold_the_browser_back(chromium, market):
    """What moves a page's deadline on: with every core busy at nice 0, the browser at BROWSER_NICE 19
    loading a page spends far more time waiting for a CPU than the same load on this machine as it is."""
    b = jsTrigger.start_browser()
    hogs: list[subprocess.Popen] = []
    try:
        def load_for(seconds: float, slug: str) -> float:
            before = b.cpu_wait()
            b.driver.get(market.url(slug))
            time.sleep(seconds)
            return b.cpu_wait() - before

        as_is = load_for(3, "monero")
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
        held = load_for(3, "consent")
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
        b.close()
    assert held > 1.0 and held > as_is, (held, as_is)
    assert chromium_descendants() == []
