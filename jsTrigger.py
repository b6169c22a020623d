"""Render JavaScript coin pages with headless Chromium (Selenium): one browser, several tabs at once.

`process_urls(urls)` returns `{url: PageResult}` (the html, or the reason it failed) and never raises
for a bad page. Pages load side by side in tabs of one browser (BROWSERS at once); each is
waited for inside the page (a MutationObserver on #nethash), not by polling from here, and its tab is
closed as soon as its values are in. Every browser is quit (its process tree killed if quitting fails)
before `process_urls` returns, errors and aborts included.
"""
from __future__ import annotations

import dataclasses
import math
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from selenium.common.exceptions import TimeoutException

import browser as chromium
import config
from browser import READY_SELECTOR, Browser, BrowserError, Tuning
from utils import log

Progress = Callable[[str, str], None]

ERROR_PREFIX = "Error: "
CONSENT_SELECTORS = ".fc-cta-consent, .fc-primary-button"
WAIT_SLICE_SECONDS = 1.0  # one in-page wait at most this long, so an abort is seen between slices
LOADING_PAUSE = 0.05  # while a tab still shows about:blank (navigation not committed yet)
POLL_SECONDS = 0.05
STARVED_FACTOR = 10  # a page held back by a busy CPU gets up to this many times PAGE_TIMEOUT
ABORT_GRACE_SECONDS = 1.0  # after an abort, how long workers get to stop before their browsers are killed
ABORT_GIVE_UP_SECONDS = 60.0  # a worker stuck outside any browser call (should not happen) is left behind

# One in-page wait: resolves when #nethash has text (clicking a consent button if one shows), when the
# page fails, or after arguments[2] ms. Returns [state, http status, #nethash text or null, html or null].
# "loading": the tab still shows about:blank or the previous page, which marked itself read (a tab is
# reused, and until the navigation commits the old document would answer).
WAIT_JS = """
const [consent, ready, ms] = arguments, done = arguments[arguments.length - 1];
if (location.href === 'about:blank' || window.__smartminerRead) { done(['loading', 0, null, null]); return; }
function answer(result) { if (result[0] !== 'empty' && result[0] !== 'missing') window.__smartminerRead = true; done(result); }
if (location.protocol === 'chrome-error:') { answer(['neterror', 0, null, null]); return; }
const nav = performance.getEntriesByType('navigation')[0];
const status = nav && nav.responseStatus ? nav.responseStatus : 0;
if (status >= 400) { answer(['http', status, null, null]); return; }
function look() {
  for (const b of document.querySelectorAll(consent)) {
    if (b.offsetParent !== null || b.getClientRects().length) { b.click(); break; }
  }
  const el = document.querySelector(ready);
  return el ? el.textContent.trim() : null;
}
let finished = false;
function finish(state) {
  if (finished) return;
  finished = true;
  const text = look();
  answer([text ? 'ready' : state, status, text, text ? document.documentElement.outerHTML : null]);
}
if (look()) { finish('ready'); return; }
const observer = new MutationObserver(() => { if (look()) { observer.disconnect(); finish('ready'); } });
observer.observe(document, {subtree: true, childList: true, characterData: true});
setTimeout(() => { observer.disconnect(); finish(document.querySelector(ready) ? 'empty' : 'missing'); }, ms);
"""


class RenderError(Exception):
    """A page could not be rendered; the message is the reason shown after "Error: "."""


class Aborted(RenderError):
    pass


class BrowserFault(RenderError):
    """The browser or its driver failed: every page open in it is retried on a fresh one."""


class DriverTimeout(BrowserFault):
    """A driver call ran out of its WebDriver timeout."""


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


def start_browser(tuning: Tuning | None = None) -> Browser:
    """A stealthy headless Chromium (browser.start). Raises RenderError when it cannot start."""
    try:
        browser = chromium.start(tuning)
    except BrowserError as exc:
        raise RenderError(str(exc)) from None
    try:  # chromedriver holds a script back while the tab's navigation is pending, this long at most
        browser.driver.set_script_timeout(WAIT_SLICE_SECONDS + 1.0)
    except Exception as exc:
        browser.close()
        raise RenderError(f"browser set-up failed: {chromium.short(exc)}") from None
    return browser


# --- one page in one tab ------------------------------------------------------------------------------
@dataclass
class _Page:
    url: str
    started: float  # monotonic, when it was first asked for
    deadline: float = 0.0  # set when its first navigation starts; moved on while the browser waits for CPU
    handle: str | None = None
    attempt: int = 1
    loading_since: float = 0.0  # monotonic, when its (latest) navigation started
    cpu_wait: float = 0.0  # the browser's cpu_wait() then
    extended: float = 0.0  # seconds added to the deadline so far


def extend_for_cpu_wait(browser: Browser, page: _Page, timeout: float) -> bool:
    """Move the page's deadline on by the time the browser has been waiting for a CPU since the page
    started loading (at most STARVED_FACTOR x PAGE_TIMEOUT in all). True when it moved.

    The browser runs at BROWSER_NICE: next to a miner on every core it gets a sliver of CPU, and a
    page that needs half a CPU-second then takes minutes. A timeout is for a page or server that does
    not answer, not for a browser the scheduler holds back on purpose."""
    now = time.monotonic()
    held = min(max(0.0, browser.cpu_wait() - page.cpu_wait), now - page.loading_since)
    wanted = min(held, timeout * (STARVED_FACTOR - 1))
    if wanted - page.extended < 0.5:
        return False
    page.deadline += wanted - page.extended
    page.extended = wanted
    return True


def _guard(abort: threading.Event, fn: Callable, *args):
    """A driver call; any failure is a fault of the browser (or the abort that killed it)."""
    try:
        return fn(*args)
    except TimeoutException:
        if fn.__name__ == "execute_async_script":  # held back by a navigation that has not committed
            return ["loading", 0, None, None]
        raise DriverTimeout("browser error: timeout") from None
    except Exception as exc:
        if abort.is_set():
            raise Aborted("aborted") from None
        raise BrowserFault(f"browser error: {chromium.short(exc)}") from None


def navigate(browser: Browser, page: _Page, abort: threading.Event) -> None:
    """Open a tab for the page and start loading it (returns at once: the page-load strategy is "none")."""
    if not page.deadline:
        page.deadline = time.monotonic() + config.settings().PAGE_TIMEOUT
    page.loading_since, page.cpu_wait = time.monotonic(), browser.cpu_wait()
    page.handle = _guard(abort, browser.open_tab)
    try:
        _guard(abort, browser.driver.get, page.url)
    except DriverTimeout:  # only a page-load strategy that waits ("eager") gets here
        raise RenderError(f"page did not load within {config.settings().PAGE_TIMEOUT:g} s") from None


def wait_for(browser: Browser, page: _Page, abort: threading.Event) -> str:
    """Wait, inside the page, for #nethash to have text; the page's html.

    Raises RenderError (timeout, HTTP error, network error), BrowserFault or Aborted.
    """
    driver = browser.driver
    timeout = config.settings().PAGE_TIMEOUT
    _guard(abort, driver.switch_to.window, page.handle)
    while True:
        if abort.is_set():
            raise Aborted("aborted")
        left = page.deadline - time.monotonic()
        budget_ms = int(max(0.0, min(WAIT_SLICE_SECONDS, left)) * 1000)
        state, status, _text, html = _guard(abort, driver.execute_async_script, WAIT_JS, CONSENT_SELECTORS, READY_SELECTOR, budget_ms)
        if state == "ready":
            return html
        if state == "http":
            raise RenderError(f"HTTP {status}")
        if state == "neterror":
            raise RenderError("page did not load (network error)")
        if time.monotonic() >= page.deadline and not extend_for_cpu_wait(browser, page, timeout):
            held = f" (and {page.extended:.0f} s more: the browser waited for CPU)" if page.extended else ""
            if state == "loading":
                raise RenderError(f"page did not load within {timeout:g} s{held}")
            what = "has no #nethash element" if state == "missing" else "#nethash stayed empty"
            raise RenderError(f"timed out after {timeout:g} s{held}: page {what}")
        if state == "loading":
            time.sleep(LOADING_PAUSE)


def _retryable(reason: str) -> bool:
    return not reason.startswith(("timed out", "page did not load"))


# --- the job and its workers ---------------------------------------------------------------------------
@dataclass
class _Job:
    urls: "queue.Queue[_Page]"
    results: dict[str, PageResult]
    abort: threading.Event
    progress: Progress | None
    tuning: Tuning
    tabs: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    browsers: list[Browser] = field(default_factory=list)

    def report(self, url: str, message: str) -> None:
        if self.progress is None:
            return
        try:
            self.progress(url, message)
        except Exception as exc:  # a broken progress callback must not cost a page
            log(f"[WARN] progress callback failed: {exc}")

    def finish(self, page: _Page, result: PageResult) -> None:
        with self.lock:
            self.results[page.url] = result
        took = time.monotonic() - page.started
        self.report(page.url, f"ok ({took:.1f} s)" if result.ok else str(result))

    def track(self, browser: Browser) -> None:
        with self.lock:
            self.browsers.append(browser)

    def untrack(self, browser: Browser) -> None:
        with self.lock:
            if browser in self.browsers:
                self.browsers.remove(browser)


class _Worker:
    """One browser, its open pages in order; pages are opened up to `job.tabs` at once."""

    def __init__(self, job: _Job) -> None:
        self.job = job
        self.tuning = job.tuning
        self.browser: Browser | None = None
        self.open: deque[_Page] = deque()

    def run(self) -> None:
        job = self.job
        try:
            while not job.abort.is_set():
                self.fill()
                if not self.open:
                    break
                self.settle(self.open.popleft())
        except Aborted:
            pass
        except BaseException as exc:  # e.g. SystemExit raised in this thread: loud, never silent
            log(f"[ERROR] Browser worker stopped ({type(exc).__name__}): {chromium.short(exc)}", force=True)
            for page in self.open:
                job.finish(page, PageResult.failed(f"worker stopped: {chromium.short(exc)}"))
            self.open.clear()
            raise
        finally:
            for page in self.open:
                job.finish(page, PageResult.failed("aborted"))
            self.retire()

    def fill(self) -> None:
        """Start pages until `tabs` are open or none are left."""
        job = self.job
        while len(self.open) < job.tabs and not job.abort.is_set():
            try:
                page = job.urls.get_nowait()
            except queue.Empty:
                return
            if page.attempt == 1:
                job.report(page.url, "rendering")
            self.start(page)

    def start(self, page: _Page) -> None:
        try:
            if self.browser is None:
                self.browser = start_browser(self.tuning)
                self.job.track(self.browser)
            navigate(self.browser, page, self.job.abort)
            self.open.append(page)
        except BrowserFault as exc:
            self.fault(page, str(exc))
        except Aborted:
            raise
        except RenderError as exc:  # the browser did not start
            self.fail_or_retry(page, str(exc))

    def settle(self, page: _Page) -> None:
        """Wait for one open page; record it, retry it, or, on a browser fault, retry every open page."""
        job = self.job
        try:
            html = wait_for(self.browser, page, job.abort)
        except BrowserFault as exc:
            self.fault(page, str(exc))
            return
        except Aborted:
            job.finish(page, PageResult.failed("aborted"))
            raise
        except RenderError as exc:
            self.done_with(page, read=False)
            self.fail_or_retry(page, str(exc))
            return
        except Exception as exc:  # last resort: a bug, not a page fault; the browser may be in any state
            log(f"[ERROR] {page.url}: rendering failed unexpectedly ({type(exc).__name__}): {chromium.short(exc)}", force=True)
            job.finish(page, PageResult.failed(chromium.short(exc)))
            self.fault(None, "browser error: replaced after an unexpected fault")
            return
        self.done_with(page, read=True)
        job.finish(page, PageResult(html=html))

    def fault(self, page: _Page | None, reason: str) -> None:
        """The browser broke: replace it, and give this page and every other open one their retry. The
        replacement runs Chromium's usual process model: --single-process is the cheap one, not the
        proven one, so a page that broke it gets its retry without it."""
        self.retire()
        self.tuning = dataclasses.replace(self.tuning, single_process=False)
        pages = ([page] if page is not None else []) + list(self.open)
        self.open.clear()
        for other in pages:
            self.fail_or_retry(other, reason)

    def fail_or_retry(self, page: _Page, reason: str) -> None:
        job = self.job
        if page.attempt == 1 and _retryable(reason) and not job.abort.is_set() and (
            not page.deadline or time.monotonic() < page.deadline
        ):
            log(f"[WARN] {page.url}: {reason}; retrying once")
            page.attempt = 2
            job.urls.put(page)
            return
        job.finish(page, PageResult.failed("aborted" if job.abort.is_set() else reason))

    def done_with(self, page: _Page, read: bool) -> None:
        """Free the page's tab for the next page (read), or close it (failed)."""
        if self.browser is None or page.handle is None:
            return
        try:
            if read:
                self.browser.release_tab(page.handle)
            else:
                self.browser.discard_tab(page.handle)
        except Exception as exc:  # the next driver call will find out whether the browser is broken
            log(f"[DEBUG] Letting a tab go failed: {chromium.short(exc)}")

    def retire(self) -> None:
        if self.browser is None:
            return
        browser, self.browser = self.browser, None
        _retire(self.job, browser)


def _retire(job: _Job, browser: Browser) -> None:
    job.untrack(browser)
    try:
        browser.close()
    except Exception as exc:  # close() handles its own faults; this only keeps a worker alive regardless
        log(f"[ERROR] Browser could not be closed: {chromium.short(exc)}")
        browser.kill()


def process_urls(
    urls: list[str],
    abort: threading.Event | None = None,
    progress: Progress | None = None,
    tuning: Tuning | None = None,
) -> dict[str, PageResult]:
    """Render every URL; `{url: PageResult}` (html, or the reason) in the order given.

    One browser loads BROWSERS pages at once, in tabs (`tuning` may say otherwise; the benchmark's
    levers do). `abort` set mid-run makes it return promptly: unfinished URLs get the reason "aborted".
    No Chromium process outlives this call.
    """
    abort = abort or threading.Event()
    tuning = tuning or Tuning()
    tabs = max(1, tuning.tabs or config.settings().BROWSERS)
    unique = list(dict.fromkeys(urls))
    job = _Job(queue.Queue(), {}, abort, progress, tuning, tabs)
    now = time.monotonic()
    for url in unique:
        job.urls.put(_Page(url, now))
    count = min(tuning.browsers, math.ceil(len(unique) / tabs))
    threads = [threading.Thread(target=_Worker(job).run, name=f"browser-{i}", daemon=True) for i in range(count)]
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
