"""One headless Chromium with its chromedriver: start it cheaply and at the lowest CPU priority, open tabs,
and kill its whole process tree whatever state it is in.

What makes an analysis cheap here was measured (bench/bench_analysis.py --levers, BENCHMARKS.md):
- one browser, pages side by side in a few tabs, each tab reused for the next page (a new tab costs
  ~0.2 CPU-s, a second browser a whole start);
- --single-process: browser, renderer and network service in one process, no IPC between them
  (-12 % CPU on realistic pages, -20 % on light ones). Chromium calls it unsupported, so a browser
  that breaks is replaced by one with the usual process model (jsTrigger);
- about:blank as the start page: headless Chromium otherwise opens its WebUI new-tab page, a renderer
  that costs ~0.2 CPU-s and is thrown away at the first navigation;
- minimised windows: hidden pages draw no frames (no compositing, no requestAnimationFrame), which
  halves the browser process's work per page; timers and fetches run as usual;
- images, media, fonts and ad/analytics hosts blocked through CDP (Network.setBlockedURLs), never the
  page's own scripts or data;
- chromedriver (and so Chromium, which inherits it) started from a thread at BROWSER_NICE, and moved
  into a cgroup of its own capped at BROWSER_CPUS cores where the machine allows it (cpu_cap.py: beside
  a miner on every core, nice alone stalls the browser).
"""
from __future__ import annotations

import ctypes
import functools
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable
from urllib import request
from urllib.error import URLError

import psutil
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

import config
import cpu_cap
import reaper
from utils import log

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

# The start page: about:blank, not the new-tab page (see the module docstring).
START_PREFS = {
    "session.restore_on_startup": 4,
    "session.startup_urls": ["about:blank"],
    "homepage": "about:blank",
    "homepage_is_newtabpage": False,
}

# What a coin page never needs to show its values: pictures, sound, fonts, and the ad and analytics
# networks. Scripts and data of the page itself are never on this list.
BLOCKED_URLS = (
    "*.png", "*.jpg", "*.jpeg", "*.gif", "*.webp", "*.avif", "*.svg", "*.ico",
    "*.woff", "*.woff2", "*.ttf", "*.otf", "*.eot",
    "*.mp3", "*.mp4", "*.webm", "*.ogg", "*.m3u8",
    "*googlesyndication.com*", "*doubleclick.net*", "*googletagmanager.com*", "*google-analytics.com*",
    "*googletagservices.com*", "*adservice.google.*", "*amazon-adsystem.com*", "*adnxs.com*",
    "*cloudflareinsights.com*", "*hotjar.com*", "*facebook.net*", "*scorecardresearch.com*",
    "*coinzilla.*", "*bitmedia.io*", "*a-ads.com*", "*mellowads.com*",
)

READY_SELECTOR = "#nethash"  # the element whose text says a coin page has its values

# A lever measured, not kept: stop loading the moment the values are in. A page's tab is closed at once
# anyway, and a later value fetched by its own request would be cut off.
STOP_WHEN_READY_JS = """new MutationObserver((_, observer) => {
  const el = document.querySelector('%s');
  if (el && el.textContent.trim()) { observer.disconnect(); window.stop(); }
}).observe(document, {subtree: true, childList: true, characterData: true});""" % READY_SELECTOR

# Runs before any page script: a basic bot check reads navigator.webdriver.
HIDE_WEBDRIVER_JS = "Object.defineProperty(Navigator.prototype, 'webdriver', {get: () => false, configurable: true});"


@dataclass(frozen=True)
class Tuning:
    """The levers of an analysis's cost; the defaults are the measured winners. The benchmark varies them."""

    tabs: int | None = None  # pages loading at once in one browser (None: the BROWSERS setting)
    browsers: int = 1  # browsers sharing the pages (a second one costs a whole start: see BENCHMARKS.md)
    block: bool = True  # Network.setBlockedURLs(BLOCKED_URLS)
    hidden: bool = True  # minimised window: pages draw no frames
    blank_start: bool = True  # about:blank as the start page
    sched_idle: bool = False  # SCHED_IDLE on top of BROWSER_NICE
    stop_when_ready: bool = False  # window.stop() once #nethash has text (measured: no gain, see the module docstring)
    page_load: str = "none"  # WebDriver page-load strategy; "eager" makes each navigation wait for DOMContentLoaded
    reuse_tabs: bool = True  # a finished page's tab (and renderer process) takes the next page
    process_per_site: bool = False  # --process-per-site: one renderer for all pages of a site
    single_process: bool = True  # --single-process: browser, renderers and services in one process


class BrowserError(Exception):
    """Chromium or chromedriver could not be started or set up; the message says why, in one line."""


def short(exc: BaseException) -> str:
    """An exception as one short line (Selenium messages carry stack traces)."""
    text = (getattr(exc, "msg", None) or str(exc) or type(exc).__name__).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


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


# --- CPU priority -----------------------------------------------------------------------------------
PR_CAPBSET_DROP = 24  # <linux/prctl.h>
CAP_SYS_NICE = 23  # <linux/capability.h>


def drop_sys_nice() -> None:
    """Take CAP_SYS_NICE out of the calling thread's bounding set, so programs it starts cannot raise
    their priority again. Chromium and chromedriver, run as root, otherwise set most of their threads
    to nice 0 and their UI threads to -8, whatever nice they were started with."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_CAPBSET_DROP, CAP_SYS_NICE, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot drop CAP_SYS_NICE: {os.strerror(err)}")


def lower_this_thread(nice: int, sched_idle: bool) -> None:
    """Lower the calling thread's CPU priority for good. Linux keeps nice, the scheduling policy and the
    capability bounding set per thread, and a child process starts with those of the thread that forked it."""
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, max(nice, os.getpriority(os.PRIO_PROCESS, tid)))
        if sched_idle:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except OSError as exc:  # not permitted: the browser runs at our own priority
        log(f"[WARN] Could not lower the browser's CPU priority: {exc}")
    try:
        drop_sys_nice()
    except (OSError, AttributeError) as exc:  # no CAP_SETPCAP: without CAP_SYS_NICE either, nothing to drop
        log(f"[DEBUG] {exc}")


def run_lowered(fn: Callable[[], None], nice: int, sched_idle: bool) -> None:
    """Run `fn` in a short-lived thread at the lowered priority (the caller's thread keeps its own)."""
    errors: list[BaseException] = []

    def body() -> None:
        lower_this_thread(nice, sched_idle)
        try:
            fn()
        except BaseException as exc:  # handed back to the caller
            errors.append(exc)

    thread = threading.Thread(target=body, name="browser-spawn", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def cap_cpu(pid: int) -> str | None:
    """Put chromedriver (pid) in the browser's CPU-capped cgroup; its folder, or None when off or not possible."""
    cpus = config.settings().BROWSER_CPUS
    if cpus <= 0:
        return None
    try:
        return cpu_cap.confine(pid, cpus)
    except cpu_cap.CapError as exc:
        _uncapped(str(exc))
        return None


@functools.cache
def _uncapped(reason: str) -> None:
    """Say once per reason that the browser runs uncapped."""
    log(f"[INFO] Browser CPU not capped at BROWSER_CPUS={config.settings().BROWSER_CPUS:g} ({reason}): "
        f"it runs at nice {config.settings().BROWSER_NICE} only; in a container, cap the manager with compose's `cpus`")


@functools.cache
def _service_class() -> type:
    """chromedriver's Service, started at a low CPU priority and tracked by the reaper, with a quick
    shutdown: Selenium polls for the driver's exit in whole seconds, which made every quit() cost over a second."""

    class LowPriorityService(Service):
        tuning: Tuning = Tuning()
        cap_group: str | None = None  # the cgroup capping the browser's CPU, when one was made

        def _start_process(self, path: str) -> None:
            with reaper.spawning():  # no reaping pass between the fork and track()
                run_lowered(lambda: Service._start_process(self, path), config.settings().BROWSER_NICE, self.tuning.sched_idle)
                reaper.track(self.process)
            self.cap_group = cap_cpu(self.process.pid)  # before the session starts Chromium, which inherits it

        def send_remote_shutdown_command(self) -> None:
            try:
                request.urlopen(f"{self.service_url}/shutdown", timeout=5)
            except (URLError, OSError):
                return
            deadline = time.monotonic() + 5
            while self.is_connectable() and time.monotonic() < deadline:
                time.sleep(0.05)

    return LowPriorityService


# --- the browser ------------------------------------------------------------------------------------
@dataclass
class Browser:
    """One Chromium with its chromedriver and its own throw-away profile folder."""

    driver: webdriver.Chrome
    profile_dir: str
    tuning: Tuning = field(default_factory=Tuning)
    procs: dict = field(default_factory=dict)  # pid -> psutil.Process (which guards against pid reuse)
    user_agent: str = ""
    free: list[str] = field(default_factory=list)  # tabs ready for the next page (the start tab first)
    cap_group: str | None = None  # its CPU-capped cgroup (cpu_cap), if any

    def remember_tree(self) -> None:
        """Note chromedriver's and Chromium's processes, so they can be killed even after the driver is gone."""
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

    def prepare_tab(self) -> None:
        """The current tab's stealth and blocking; CDP settings hold per tab, so every new tab needs them."""
        d = self.driver
        override = {"userAgent": self.user_agent, "acceptLanguage": "en-US,en", "userAgentMetadata": ua_metadata(self.user_agent)}
        d.execute_cdp_cmd("Network.setUserAgentOverride", override)
        d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": HIDE_WEBDRIVER_JS})
        if self.tuning.stop_when_ready:
            d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": STOP_WHEN_READY_JS})
        if self.tuning.block:  # the block list holds only while the Network domain is on
            d.execute_cdp_cmd("Network.enable", {})
            d.execute_cdp_cmd("Network.setBlockedURLs", {"urls": list(BLOCKED_URLS)})

    def open_tab(self) -> str:
        """A tab for the next page, switched to: a free one (the start tab, or one whose page is done),
        else a new one. A page's renderer process serves the next page of the same site in that tab."""
        if self.free:
            handle = self.free.pop()
            self.driver.switch_to.window(handle)
            return handle
        # Headless Chromium shows a new tab even in a minimised window: a hidden page gets a window of its own.
        self.driver.switch_to.new_window("window" if self.tuning.hidden else "tab")
        handle = self.driver.current_window_handle
        if self.tuning.hidden:
            self.driver.minimize_window()
        self.prepare_tab()
        return handle

    def release_tab(self, handle: str) -> None:
        """The page in this tab was read (it marked itself so, see jsTrigger.WAIT_JS): the tab is free."""
        if self.tuning.reuse_tabs:
            self.free.append(handle)
        else:
            self.discard_tab(handle)

    def discard_tab(self, handle: str) -> None:
        """A tab whose page failed: closed, unless it is the last one (closing that would end the session),
        which is marked read and kept for the next page."""
        d = self.driver
        others = [h for h in d.window_handles if h != handle]
        d.switch_to.window(handle)
        if others:
            d.close()
            d.switch_to.window(others[0])
        else:
            d.execute_script("window.__smartminerRead = true;")
            self.free.append(handle)

    def close(self) -> None:
        """Quit the browser; kill whatever of its process tree survives; remove its profile."""
        self.remember_tree()
        try:
            self.driver.quit()
        except Exception as exc:  # a dead or hung driver: the kill below does the job
            log(f"[WARN] Browser did not quit cleanly ({type(exc).__name__}); killing its processes")
        kill_tree(list(self.procs.values()))
        self._release_driver()
        shutil.rmtree(self.profile_dir, ignore_errors=True)
        if self.cap_group:
            cpu_cap.release(self.cap_group)  # refused while another browser of ours still runs in the group

    def cpu_wait(self) -> float:
        """Seconds the browser's threads have spent runnable but waiting for a CPU (their run delay in
        /proc/PID/task/TID/schedstat), summed over every thread alive now, plus the time its capped
        cgroup was throttled. At BROWSER_NICE 19 next to a miner on every core, or at its BROWSER_CPUS
        cap, this grows about as fast as the clock: the browser is being held back."""
        self.remember_tree()
        total = 0
        for pid in list(self.procs):
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                try:
                    with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as fh:
                        total += int(fh.read().split()[1])
                except (OSError, ValueError, IndexError):
                    continue
        return total / 1e9 + self._throttled()

    def _throttled(self) -> float:
        """Seconds the kernel held the browser's capped group back at its quota. The scheduler may take
        throttled threads off the run queue, so their run delay need not show it."""
        if not self.cap_group:
            return 0.0
        try:
            return cpu_cap.throttled_seconds(self.cap_group)
        except (OSError, ValueError):
            return 0.0

    def kill(self) -> None:
        """Stop it now, from another thread: any call the worker is blocked in fails at once."""
        self.remember_tree()
        kill_tree(list(self.procs.values()))

    def _release_driver(self) -> None:
        """Collect chromedriver through its own Popen (so no zombie is left), then stop tracking it."""
        process = getattr(self.driver.service, "process", None)
        if process is not None:
            process.poll()
            reaper.untrack(process)


def _running(proc: psutil.Process) -> bool:
    """Alive and not a zombie. A zombie is already dead: only its parent's reaping is left."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def kill_tree(procs: list[psutil.Process], timeout: float = 3.0) -> None:
    """SIGKILL those of these psutil processes still running (psutil checks the pid was not reused)
    and wait until they are dead. Chromium's helpers are re-parented when chromedriver exits, so their
    zombies are not ours to reap here (the reaper does, when orphans come to us)."""
    alive = [p for p in procs if _running(p)]
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    deadline = time.monotonic() + timeout
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _running(p)]
        if alive:
            time.sleep(0.02)


def _options(profile_dir: str, tuning: Tuning) -> Options:
    opts = Options()
    opts.binary_location = config.settings().CHROME_BIN
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile_dir}")
    if tuning.process_per_site:
        opts.add_argument("--process-per-site")
    if tuning.single_process:
        opts.add_argument("--single-process")
    opts.add_experimental_option("excludeSwitches", ["enable-automation"])
    if tuning.blank_start:
        opts.add_experimental_option("prefs", START_PREFS)
    opts.page_load_strategy = tuning.page_load  # "none": navigation returns at once, pages load side by side
    return opts


def browser_env(profile_dir: str) -> dict[str, str]:
    """chromedriver's (and so Chromium's) environment: TMPDIR inside the profile folder, so the
    org.chromium.Chromium.* socket folder Chromium makes in TMPDIR goes when the profile does."""
    return {**os.environ, "TMPDIR": profile_dir}


def start(tuning: Tuning | None = None) -> Browser:
    """A stealthy headless Chromium at BROWSER_NICE. Raises BrowserError when it cannot start."""
    tuning = tuning or Tuning()
    profile = tempfile.mkdtemp(prefix="smartminer-chrome-")
    try:
        service = _service_class()(executable_path=config.settings().CHROMEDRIVER_PATH, env=browser_env(profile))
        service.tuning = tuning
        driver = webdriver.Chrome(service=service, options=_options(profile, tuning))
    except Exception as exc:
        shutil.rmtree(profile, ignore_errors=True)
        raise BrowserError(f"browser failed to start: {short(exc)}") from None
    browser = Browser(driver, profile, tuning, cap_group=service.cap_group)
    browser.remember_tree()
    try:
        browser.user_agent = desktop_user_agent(driver.execute_cdp_cmd("Browser.getVersion", {})["userAgent"])
        driver.set_page_load_timeout(config.settings().PAGE_TIMEOUT)  # matters with page_load "eager" only
        browser.prepare_tab()
        if tuning.hidden:
            driver.minimize_window()
        browser.free.append(driver.current_window_handle)
    except Exception as exc:
        browser.close()
        raise BrowserError(f"browser set-up failed: {short(exc)}") from None
    return browser
