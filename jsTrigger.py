"""Render JavaScript coin pages with headless Chromium (Selenium), a small pool of browsers at a time.

`process_urls(urls)` returns `{url: PageResult}` (the html, or the reason it failed) and never raises
for a bad page. Each browser serves several URLs of one analysis, and every browser is quit (its process tree
killed if quitting fails) before `process_urls` returns, errors and aborts included.
"""
from __future__ import annotations

import functools
import queue
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import config
from utils import log

Progress = Callable[[str, str], None]

ERROR_PREFIX = "Error: "
CONSENT_SELECTORS = ".fc-cta-consent, .fc-primary-button"
READY_SELECTOR = "#nethash"
POLL_SECONDS = 0.05
ABORT_GRACE_SECONDS = 1.0  # after an abort, how long workers get to stop before their browsers are killed
ABORT_GIVE_UP_SECONDS = 60.0  # a worker stuck outside any browser call (should not happen) is left behind

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-crash-reporter",
    "--disable-breakpad",
    "--disable-blink-features=AutomationControlled",
    # lighter: we only read text, so no images, audio, GPU process, page cache or translate service, and
    # none of the browser-UI pages (omnibox popups) that headless Chromium otherwise preloads in renderers
    "--blink-settings=imagesEnabled=false",
    "--mute-audio",
    "--in-process-gpu",
    "--disable-back-forward-cache",
    "--disable-features=Translate,OptimizationHints,MediaRouter,BackForwardCache,"
    "WebUIOmniboxPopup,WebUIOmniboxFullPopup,WebUIOmniboxAimPopup,PreloadTopChromeWebUI",
    "--disable-client-side-phishing-detection",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-component-extensions-with-background-pages",
    "--password-store=basic",
    "--metrics-recording-only",
    "--window-size=1366,768",
    "--lang=en-US",
)

# Runs before any page script: a basic bot check reads navigator.webdriver.
HIDE_WEBDRIVER_JS = "Object.defineProperty(Navigator.prototype, 'webdriver', {get: () => false, configurable: true});"

# One round trip per poll: HTTP status of the document, consent click when a button shows, #nethash text.
POLL_JS = """
const nav = performance.getEntriesByType('navigation')[0];
const status = nav && nav.responseStatus ? nav.responseStatus : 0;
let clicked = false;
for (const b of document.querySelectorAll(arguments[0])) {
  if (b.offsetParent !== null || b.getClientRects().length) { b.click(); clicked = true; break; }
}
const el = document.querySelector(arguments[1]);
return [status, el ? el.textContent.trim() : null, clicked];
"""


class RenderError(Exception):
    """A page could not be rendered; the message is the reason shown after "Error: "."""


class Aborted(RenderError):
    pass


def desktop_user_agent(browser_ua: str) -> str:
    """The browser's own user agent with the headless marker removed ("HeadlessChrome/1.2" -> "Chrome/1.2")."""
    return browser_ua.replace("HeadlessChrome", "Chrome").replace("Headless", "")


def ua_metadata(user_agent: str) -> dict:
    """Client hints matching the user agent: without them `navigator.userAgentData.brands` is empty,
    which no ordinary desktop Chrome shows."""
    match = re.search(r"Chrome/((\d+)[\d.]*)", user_agent)
    full, major = (match.group(1), match.group(2)) if match else ("0.0.0.0", "0")
    brands = [("Chromium", major), ("Not)A;Brand", "24")]
    return {
        "brands": [{"brand": b, "version": v} for b, v in brands],
        "fullVersionList": [{"brand": b, "version": full if b == "Chromium" else f"{v}.0.0.0"} for b, v in brands],
        "fullVersion": full,
        "platform": "Linux",
        "platformVersion": "",
        "architecture": "x86",
        "model": "",
        "mobile": False,
    }


@dataclass(frozen=True)
class PageResult:
    """One page's outcome: its rendered `html`, or the `reason` it could not be rendered."""

    html: str | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.html is not None

    @classmethod
    def failed(cls, reason: str) -> "PageResult":
        return cls(reason=reason)

    def __str__(self) -> str:
        return "ok" if self.ok else f"{ERROR_PREFIX}{self.reason}"


@dataclass
class Browser:
    """One Chromium with its chromedriver and its own throw-away profile folder."""

    driver: object
    profile_dir: str
    procs: dict = field(default_factory=dict)  # pid -> psutil.Process (which guards against pid reuse)

    def remember_tree(self) -> None:
        """Note chromedriver's and Chromium's processes, so they can be killed even after the driver is gone."""
        import psutil

        try:
            root = psutil.Process(self.driver.service.process.pid)
            self.procs.setdefault(root.pid, root)
        except (psutil.Error, AttributeError):
            pass
        for proc in list(self.procs.values()):  # Chromium outlives a killed chromedriver: walk from each
            try:
                for child in proc.children(recursive=True):
                    self.procs.setdefault(child.pid, child)
            except psutil.Error:
                continue

    def close(self) -> None:
        """Quit the browser; kill whatever of its process tree survives; remove its profile."""
        self.remember_tree()
        try:
            self.driver.quit()
        except Exception as exc:  # a dead or hung driver: the kill below does the job
            log(f"[WARN] Browser did not quit cleanly ({type(exc).__name__}); killing its processes")
        kill_tree(list(self.procs.values()))
        shutil.rmtree(self.profile_dir, ignore_errors=True)

    def kill(self) -> None:
        """Stop it now, from another thread: any call the worker is blocked in fails at once."""
        self.remember_tree()
        kill_tree(list(self.procs.values()))


def _running(proc) -> bool:
    """Alive and not a zombie. A zombie is already dead: only its parent's reaping is left."""
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def kill_tree(procs: list, timeout: float = 3.0) -> None:
    """SIGKILL those of these psutil processes still running (psutil checks the pid was not reused)
    and wait until they are dead. Chromium's helpers are re-parented when chromedriver exits, so their
    zombies are not ours to reap: waiting for them to vanish would only cost time."""
    import psutil

    alive = [p for p in procs if _running(p)]
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    deadline = time.monotonic() + timeout
    while alive and time.monotonic() < deadline:
        for p in alive:
            try:
                p.wait(0)  # reaps our own children
            except (psutil.Error, psutil.TimeoutExpired):
                pass
        alive = [p for p in alive if _running(p)]
        if alive:
            time.sleep(0.02)


def _options(profile_dir: str):
    from selenium.webdriver.chrome.options import Options

    opts = Options()
    opts.binary_location = config.settings().CHROME_BIN
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile_dir}")
    opts.add_experimental_option("excludeSwitches", ["enable-automation"])
    opts.page_load_strategy = "eager"  # DOM ready is enough: we poll for the data ourselves
    return opts


@functools.cache
def _service_class() -> type:
    """chromedriver's Service with a quick shutdown: Selenium polls for the driver's exit in whole seconds,
    which made every quit() cost over a second."""
    from urllib import request
    from urllib.error import URLError

    from selenium.webdriver.chrome.service import Service

    class QuickStopService(Service):
        def send_remote_shutdown_command(self) -> None:
            try:
                request.urlopen(f"{self.service_url}/shutdown", timeout=5)
            except (URLError, OSError):
                return
            deadline = time.monotonic() + 5
            while self.is_connectable() and time.monotonic() < deadline:
                time.sleep(0.05)

    return QuickStopService


def start_browser() -> Browser:
    """A stealthy headless Chromium. Raises RenderError when it cannot start."""
    from selenium import webdriver

    s = config.settings()
    profile = tempfile.mkdtemp(prefix="smartminer-chrome-")
    try:
        service = _service_class()(executable_path=s.CHROMEDRIVER_PATH)
        driver = webdriver.Chrome(service=service, options=_options(profile))
    except Exception as exc:
        shutil.rmtree(profile, ignore_errors=True)
        raise RenderError(f"browser failed to start: {_short(exc)}") from None
    browser = Browser(driver, profile)
    browser.remember_tree()
    try:
        ua = desktop_user_agent(driver.execute_cdp_cmd("Browser.getVersion", {})["userAgent"])
        override = {"userAgent": ua, "acceptLanguage": "en-US,en", "userAgentMetadata": ua_metadata(ua)}
        driver.execute_cdp_cmd("Network.setUserAgentOverride", override)
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": HIDE_WEBDRIVER_JS})
    except Exception as exc:
        browser.close()
        raise RenderError(f"browser set-up failed: {_short(exc)}") from None
    return browser


def _short(exc: BaseException) -> str:
    """An exception as one short line (Selenium messages carry stack traces)."""
    text = (getattr(exc, "msg", None) or str(exc) or type(exc).__name__).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def render(browser: Browser, url: str, deadline: float, abort: threading.Event) -> str:
    """Load `url`, click a consent button if one shows, wait for #nethash text; the page source.

    Raises RenderError (timeout, HTTP error, browser fault) or Aborted.
    """
    from selenium.common.exceptions import TimeoutException

    if abort.is_set():
        raise Aborted("aborted")
    driver = browser.driver
    timeout = max(0.5, deadline - time.monotonic())
    # Every driver call is guarded: a dead tab, browser or chromedriver raises WebDriverException or, once
    # chromedriver is gone, urllib3's connection errors. Either becomes a "browser error" for this page,
    # which makes _render_with_retry replace the browser.
    try:
        driver.set_page_load_timeout(timeout)
    except Exception as exc:
        raise _fault(exc, abort) from None
    try:
        driver.get(url)
    except TimeoutException:
        raise RenderError(f"page did not load within {config.settings().PAGE_TIMEOUT:g} s") from None
    except Exception as exc:
        raise _fault(exc, abort) from None
    while True:
        if abort.is_set():
            raise Aborted("aborted")
        try:
            status, text, _clicked = driver.execute_script(POLL_JS, CONSENT_SELECTORS, READY_SELECTOR)
        except Exception as exc:
            raise _fault(exc, abort) from None
        if status >= 400:
            raise RenderError(f"HTTP {status}")
        if text:
            try:
                return driver.page_source
            except Exception as exc:
                raise _fault(exc, abort) from None
        if time.monotonic() >= deadline:
            what = "has no #nethash element" if text is None else "#nethash stayed empty"
            raise RenderError(f"timed out after {config.settings().PAGE_TIMEOUT:g} s: page {what}")
        time.sleep(POLL_SECONDS)


def _fault(exc: Exception, abort: threading.Event) -> RenderError:
    if abort.is_set():
        return Aborted("aborted")
    return RenderError(f"browser error: {_short(exc)}")


@dataclass
class _Job:
    urls: "queue.Queue[str]"
    results: dict[str, PageResult]
    abort: threading.Event
    progress: Progress | None
    lock: threading.Lock = field(default_factory=threading.Lock)
    browsers: list[Browser] = field(default_factory=list)

    def report(self, url: str, message: str) -> None:
        if self.progress is None:
            return
        try:
            self.progress(url, message)
        except Exception as exc:  # a broken progress callback must not cost a page
            log(f"[WARN] progress callback failed: {exc}")

    def track(self, browser: Browser) -> None:
        with self.lock:
            self.browsers.append(browser)

    def untrack(self, browser: Browser) -> None:
        with self.lock:
            if browser in self.browsers:
                self.browsers.remove(browser)


def _render_with_retry(job: _Job, browser: Browser | None, url: str) -> tuple[PageResult, Browser | None]:
    """One page, with one retry inside its time budget. Returns (result, browser to keep using)."""
    deadline: float | None = None  # the page's budget starts once a browser is up
    reason = "not tried"
    for attempt in (1, 2):
        if job.abort.is_set():
            return PageResult.failed("aborted"), browser
        try:
            if browser is None:
                browser = start_browser()
                job.track(browser)
            deadline = deadline or time.monotonic() + config.settings().PAGE_TIMEOUT
            return PageResult(html=render(browser, url, deadline, job.abort)), browser
        except Aborted:
            return PageResult.failed("aborted"), browser
        except RenderError as exc:
            reason = str(exc)
        except Exception as exc:  # render() should have wrapped it; still a fault of this browser
            if job.abort.is_set():
                return PageResult.failed("aborted"), browser
            reason = f"browser error: {_short(exc)}"
        if reason.startswith(("browser error", "browser set-up")) and browser is not None:
            _retire(job, browser)  # a broken browser is replaced for the retry
            browser = None
        if (deadline is not None and time.monotonic() >= deadline) or reason.startswith(("timed out", "page did not")):
            break
        if attempt == 1:
            log(f"[WARN] {url}: {reason}; retrying once")
    return PageResult.failed(reason), browser


def _retire(job: _Job, browser: Browser) -> None:
    job.untrack(browser)
    try:
        browser.close()
    except Exception as exc:  # close() handles its own faults; this only keeps a worker alive regardless
        log(f"[ERROR] Browser could not be closed: {_short(exc)}")
        browser.kill()


def _worker(job: _Job) -> None:
    """Render URLs from the queue until it is empty or the job is aborted. No exception ends it early:
    an unexpected one is that page's failure reason and the next page gets a fresh browser."""
    browser: Browser | None = None
    url: str | None = None
    try:
        while not job.abort.is_set():
            try:
                url = job.urls.get_nowait()
            except queue.Empty:
                url = None
                break
            job.report(url, "rendering")
            started = time.monotonic()
            try:
                result, browser = _render_with_retry(job, browser, url)
            except Exception as exc:  # last resort: a bug, not a page fault; the browser may be in any state
                log(f"[ERROR] {url}: rendering failed unexpectedly ({type(exc).__name__}): {_short(exc)}", force=True)
                result = PageResult.failed("aborted" if job.abort.is_set() else _short(exc))
                if browser is not None:
                    _retire(job, browser)
                    browser = None
            with job.lock:
                job.results[url] = result
            done, url = url, None
            took = time.monotonic() - started
            job.report(done, f"ok ({took:.1f} s)" if result.ok else str(result))
    except BaseException as exc:  # e.g. SystemExit raised in this thread: loud, never silent
        log(f"[ERROR] Browser worker stopped ({type(exc).__name__}): {_short(exc)}", force=True)
        if url is not None:
            with job.lock:
                job.results.setdefault(url, PageResult.failed(f"worker stopped: {_short(exc)}"))
        raise
    finally:
        if browser is not None:
            _retire(job, browser)


def process_urls(
    urls: list[str],
    abort: threading.Event | None = None,
    progress: Progress | None = None,
) -> dict[str, PageResult]:
    """Render every URL; `{url: PageResult}` (html, or the reason) in the order given.

    Uses BROWSERS browsers at most, each reused across URLs. `abort` set mid-run makes it return
    promptly: unfinished URLs get the reason "aborted". No Chromium process outlives this call.
    """
    abort = abort or threading.Event()
    unique = list(dict.fromkeys(urls))
    job = _Job(queue.Queue(), {}, abort, progress)
    for url in unique:
        job.urls.put(url)
    count = min(config.settings().BROWSERS, len(unique))
    threads = [threading.Thread(target=_worker, args=(job,), name=f"browser-{i}", daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    _wait(threads, job)
    with job.lock:
        leftovers = list(job.browsers)
    for browser in leftovers:  # normally none: each worker quits its own; this is the safety net
        _retire(job, browser)
    with job.lock:
        return {url: job.results.get(url, PageResult.failed("aborted" if abort.is_set() else "not rendered")) for url in unique}


def _wait(threads: list[threading.Thread], job: _Job) -> None:
    """Join the workers. On abort, give them a moment, then keep killing their browsers (one may just
    have finished starting) until every worker is done, so no browser outlives the call."""
    while any(t.is_alive() for t in threads):
        if job.abort.wait(POLL_SECONDS):
            break
    if not job.abort.is_set():
        return
    grace = time.monotonic() + ABORT_GRACE_SECONDS
    give_up = grace + ABORT_GIVE_UP_SECONDS
    while any(t.is_alive() for t in threads):
        now = time.monotonic()
        if now >= give_up:
            log("[ERROR] Browser workers did not stop after an abort; leaving them to finish", force=True)
            return
        if now >= grace:
            with job.lock:
                stuck = list(job.browsers)
            for browser in stuck:
                browser.kill()
        for t in threads:
            t.join(POLL_SECONDS)
