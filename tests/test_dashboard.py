"""The dashboard: its files as the API serves them, and the page in a real Chromium against a real
history store, served over real HTTP on 127.0.0.1 (tests/dashboard_standin.py, until the daemon serves it)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time

import pytest

import api_bodies
import config
import dashboard
import history
import jsTrigger
from tests.conftest import make_coin
from tests.dashboard_standin import ApiStandin, simulate, wait_rendered
from tests.fixtures_chromium import chromium  # noqa: F401 (fixture)

WEB = dashboard.WEB_DIR
ARTIFACTS = os.environ.get("SMARTMINER_ARTIFACTS") or os.path.join(tempfile.gettempdir(), "smartminer-artifacts")
XSS = '<img src=x onerror="window.pwned=1">'


# --- files --------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", dashboard.PATHS)
def test_every_listed_file_is_served_as_it_is_on_disk(path):
    status, body, ctype = dashboard.route(path)
    relative, expected_type = dashboard.ASSETS[path]
    assert status == 200 and ctype == expected_type
    with open(os.path.join(WEB, relative), "rb") as fh:
        assert body == fh.read() and body


def test_types_are_what_a_browser_needs():
    assert dashboard.route("/")[2] == "text/html; charset=utf-8"
    assert dashboard.route("/dashboard.js")[2].startswith("text/javascript")
    assert dashboard.route("/dashboard.css")[2].startswith("text/css")


@pytest.mark.parametrize("path", ["/nope", "/../config.py", "/web/dashboard.html", "/vendor/uplot/", "/dashboard.js/", ""])
def test_anything_else_is_not_found(path):
    assert dashboard.asset(path) is None
    status, body, ctype = dashboard.route(path)
    assert status == 404 and json.loads(body)["error"].startswith("not found") and ctype == "application/json"


def test_a_missing_file_is_a_500_with_the_reason(tmp_path):
    dashboard._read.cache_clear()
    status, body, _ = dashboard.route("/dashboard.css", web_dir=str(tmp_path))
    assert status == 500 and "dashboard.css" in json.loads(body)["reason"]


def test_the_page_loads_nothing_from_outside_and_fetches_relative_urls():
    page = dashboard.route("/")[1].decode()
    script = dashboard.route("/dashboard.js")[1].decode()
    refs = [r for r in re.findall(r'(?:src|href)="([^"]+)"', page) if r != "data:,"]  # data:, = no favicon request
    assert refs and all(not re.match(r"^(?:[a-z]+:)?//", r) for r in refs), refs  # no http://, https://, //cdn
    for ref in refs:  # every file the page asks for is one the API serves
        assert dashboard.asset("/" + ref) is not None, ref
    assert "Content-Security-Policy" in page and "default-src 'self'" in page
    assert 'getJson("status")' in script and 'getJson("history?hours=" + hours)' in script
    assert "http://" not in script and "https://" not in script


def test_text_from_the_api_never_goes_in_as_html():
    script = dashboard.route("/dashboard.js")[1].decode()
    assert "innerHTML" not in script and "outerHTML" not in script and "insertAdjacentHTML" not in script
    assert "document.write" not in script and "eval(" not in script


def test_the_vendored_chart_library_is_written_down():
    version = open(os.path.join(WEB, "vendor", "uplot", "VERSION")).read().strip()
    code = dashboard.route("/vendor/uplot/uPlot.iife.min.js")[1]
    assert code.startswith(f"/*! https://github.com/leeoniya/uPlot (v{version}) */".encode())
    readme = open(os.path.join(WEB, "vendor", "README.md")).read()
    assert f"| {version} |" in readme and "MIT" in readme
    assert hashlib.sha256(code).hexdigest() in readme
    assert "The MIT License" in dashboard.route("/vendor/uplot/LICENSE")[1].decode()


# --- the page in Chromium -----------------------------------------------------------------------
def status_of(ranking, **state) -> dict:
    """What the daemon's /status answers for this run state (api_bodies.status_body, the real shape)."""
    config.state.update(last_ranking=ranking, **state)
    return api_bodies.status_body(config.state.snapshot(), {"name": "active_miner_worker", "state": "running"})


@pytest.fixture
def store(tmp_path):
    s = history.HistoryStore(str(tmp_path / "json" / "smartminer.db"), 90)
    s.start()
    yield s
    s.close()


@pytest.fixture
def browser(chromium):
    b = jsTrigger.start_browser()
    yield b
    b.close()


def save_screenshot(driver, name: str) -> str:
    """The whole page, 1366 px wide, as a PNG under ARTIFACTS (kept after the test)."""
    os.makedirs(ARTIFACTS, exist_ok=True)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": 1366, "height": 768, "deviceScaleFactor": 1, "mobile": False})
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": 1366, "height": height, "deviceScaleFactor": 1, "mobile": False})
    time.sleep(0.3)  # let the charts follow the resize (only the picture depends on it)
    path = os.path.join(ARTIFACTS, name)
    assert driver.save_screenshot(path)
    return path


@pytest.mark.slow
def test_the_page_draws_both_charts_and_the_switch_log(store, browser):
    now = time.time()
    keys = ["monero", "zephyr", "salvium"]
    counts = simulate(store, 3, keys, now - 7200, sample_seconds=900)
    monero, zephyr = make_coin("monero", 0.25, name="Monero", symbol="XMR"), make_coin("zephyr", 0.31, name="Zephyr", symbol="ZEPH")
    skipped = [{"coin": "Etica", "url": "https://miningpoolstats.stream/etica", "reason": "no wallet for Etica in wallets.json"}]
    store.record_analysis([zephyr, monero], skipped, when=now - 3700)
    store.record_switch(monero, zephyr, "better coin", 24.0, when=now - 3600)
    store.record_hashrate("zephyr", 17250.0, when=now - 3000)
    assert store.flush()
    api = ApiStandin(lambda: status_of([zephyr, monero], current_coin="zephyr", current_since=now - 3600,
                                       current_income_usd=0.31, next_analysis=now + 7 * 3600, switches=counts["switches"] + 1,
                                       last_skipped=skipped), store)
    try:
        driver = browser.driver
        driver.get(api.base + "/")
        wait_rendered(driver)
        page = driver.execute_script("""
            const charts = {};
            for (const id of ['income-chart', 'hashrate-chart']) {
              const c = document.querySelector('#' + id + ' canvas');
              charts[id] = c ? [c.width, c.height, document.querySelectorAll('#' + id + ' .u-legend .u-label').length] : null;
            }
            const rows = Array.from(document.querySelectorAll('#switches tbody tr')).map(r => Array.from(r.cells).map(c => c.textContent));
            const ranking = Array.from(document.querySelectorAll('#ranking tbody tr')).map(r => [r.className, r.cells[1].textContent]);
            return {charts, rows, ranking, state: document.getElementById('state').textContent,
                    coin: document.getElementById('coin').textContent, income: document.getElementById('income').textContent,
                    skipped: document.getElementById('skipped').textContent, problems: document.getElementById('problems').hidden};
        """)
        shot = save_screenshot(driver, "dashboard.png")
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    finally:
        api.close()
    for chart_id, legend_entries in (("income-chart", 4), ("hashrate-chart", 3)):  # x label + a coin each
        width, height, labels = page["charts"][chart_id]
        assert width > 0 and height > 0 and labels >= legend_entries, (chart_id, page["charts"])
    assert page["rows"][0] == [page["rows"][0][0], "Monero (XMR)", "Zephyr (ZEPH)", "better coin", "+24.0 %"]
    assert len(page["rows"]) == counts["switches"] + 1
    assert page["state"] == "running" and page["coin"] == "Zephyr (ZEPH)" and page["income"] == "$0.3100 / day"
    assert page["ranking"] == [["current", "Zephyr (ZEPH)"], ["", "Monero (XMR)"]]
    assert page["skipped"] == "Etica: no wallet for Etica in wallets.json"
    assert page["problems"] is True  # hidden: both /status and /history answered
    assert not errors, errors  # no script error, no Content-Security-Policy violation
    assert os.path.getsize(shot) > 10_000
    print(f"screenshot: {shot}")


@pytest.mark.slow
def test_with_history_off_the_page_shows_the_state_says_why_and_keeps_names_as_text(tmp_path, browser):
    bad = tmp_path / "smartminer.db"
    bad.write_bytes(b"not a database" * 100)
    store = history.HistoryStore(str(bad), 90)
    store.start()
    assert store.flush()
    evil = make_coin("evil", 0.01, name=XSS, symbol="EVL")  # coin names come from web pages
    api = ApiStandin(lambda: status_of([make_coin("monero", 0.25, name="Monero", symbol="XMR"), evil], current_coin="monero",
                                       paused=True, last_skipped=[{"coin": XSS, "url": "u/bad", "reason": XSS}]), store)
    try:
        driver = browser.driver
        driver.get(api.base + "/?hours=24")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and driver.execute_script("return document.getElementById('problems').hidden"):
            time.sleep(0.05)
        page = driver.execute_script("""
            const text = (id) => document.getElementById(id).textContent;
            return {problems: text('problems'), state: text('state'), coin: text('coin'), range: document.getElementById('range').value,
                    ranking: Array.from(document.querySelectorAll('#ranking tbody tr')).map(r => r.cells[1].textContent),
                    skipped: text('skipped'), imgs: document.querySelectorAll('img').length, pwned: window.pwned === 1};
        """)
    finally:
        api.close()
        store.close()
    assert page["problems"].startswith("History unavailable: History store off") and "not a database" in page["problems"]
    assert [page["state"], page["coin"], page["range"]] == ["paused", "Monero (XMR)", "24"]
    assert page["ranking"] == ["Monero (XMR)", f"{XSS} (EVL)"] and page["skipped"] == f"{XSS}: {XSS}"
    assert page["imgs"] == 0 and not page["pwned"]  # shown as text, never parsed as HTML
