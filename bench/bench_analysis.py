"""Market analysis benchmark: jsTrigger.process_urls against the seed's approach and the limit, in one run.

The five coins of demo/snapshot.json, served from a process of its own, twice: as light test pages
(values filled in 300 ms after load) and as realistic pages (the weight of a real MiningPoolStats page:
a ~1 MB chart script that works the CPU, ~600 KB of images, a font, a slow async ad script and
analytics; values fetched as JSON). For each: wall time, tree and machine CPU-seconds (see
bench/measure.py), zombies left per analysis, and, in a separate pass, peak memory of the browsers.

- ours: jsTrigger.process_urls with its defaults (browser.Tuning());
- the seed's approach, re-created: a fresh Chromium per URL, two at a time, the default page-load
  strategy (waits for every subresource), a fixed 3 s wait for a consent button that is absent,
  then a fixed 1 s sleep;
- the limit: one browser start and quit, plus the pages' own script time (Chromium's ScriptDuration
  up to the values, pages loaded one after another in a warm browser); "limit+tasks" counts every
  page task (parsing, style, layout) instead of scripts only. Its wall: start and quit plus the
  slowest page's time to its values.

Both sides run at the same CPU priority (BROWSER_NICE=0 unless --nice), so that the wall times compare
how much work each does, not how the scheduler treats nice 19 next to other users of the machine.

    .venv/bin/python bench/bench_analysis.py [--runs 3] [--seed-runs 2] [--levers] [--nice 0]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import config  # noqa: E402
import jsTrigger  # noqa: E402
import market_setup  # noqa: E402
import reaper  # noqa: E402
from bench.measure import MarketProcess, PeakMemory, Run, Tree, become_subreaper, load1, measure, median  # noqa: E402
from browser import Tuning  # noqa: E402

SEED_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run")
MIB = 1024 * 1024


# --- the seed's approach ---------------------------------------------------------------------------
def seed_render(url: str) -> str:
    """One URL the seed's way: a fresh browser, 3 s consent wait, 1 s sleep, quit."""
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    opts = Options()
    opts.binary_location = config.settings().CHROME_BIN
    for flag in SEED_FLAGS:
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(config.settings().CHROMEDRIVER_PATH), options=opts)
    try:
        driver.get(url)
        try:
            WebDriverWait(driver, 3).until(ec.element_to_be_clickable((By.CSS_SELECTOR, ".fc-cta-consent"))).click()
        except TimeoutException:
            pass
        time.sleep(1)
        return driver.page_source
    finally:
        driver.quit()


def seed_process_urls(urls: list[str]) -> dict[str, str]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(urls, pool.map(seed_render, urls)))


def ours(urls: list[str], tuning: Tuning | None = None) -> dict[str, str]:
    return {u: (r.html or "") for u, r in jsTrigger.process_urls(urls, tuning=tuning).items()}


def rendered(htmls: dict[str, str]) -> int:
    return sum(1 for h in htmls.values() if h and "H/s</span>" in h)


# --- the limit ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class Limit:
    start_wall: float
    start_cpu: float
    scripts: float  # sum of the pages' ScriptDuration up to their values
    tasks: float  # sum of the pages' TaskDuration up to their values
    slowest: float  # the slowest page's time to its values (warm browser)

    @property
    def cpu(self) -> float:
        return self.start_cpu + self.scripts

    @property
    def cpu_tasks(self) -> float:
        return self.start_cpu + self.tasks

    @property
    def wall(self) -> float:
        return self.start_wall + self.slowest


def page_costs(urls: list[str]) -> tuple[float, float, float]:
    """(sum of ScriptDuration, sum of TaskDuration, slowest time to values) of the pages, one after
    another in one tab of a warm browser, with the Performance domain on."""
    browser = jsTrigger.start_browser()
    scripts = tasks = slowest = 0.0
    try:
        driver = browser.driver
        for url in urls:
            page = jsTrigger._Page(url, time.monotonic(), deadline=time.monotonic() + 60, handle=browser.open_tab())
            driver.execute_cdp_cmd("Performance.enable", {})
            driver.get(url)
            jsTrigger.wait_for(browser, page, threading.Event())
            slowest = max(slowest, time.monotonic() - page.started)
            metrics = {m["name"]: m["value"] for m in driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]}
            scripts += metrics.get("ScriptDuration", 0.0)
            tasks += metrics.get("TaskDuration", 0.0)
            browser.release_tab(page.handle)
    finally:
        browser.close()
    return scripts, tasks, slowest


def measure_limit(tree: Tree, urls: list[str], runs: int) -> Limit:
    starts = [measure(tree, lambda: jsTrigger.start_browser().close()) for _ in range(runs)]
    costs = [page_costs(urls) for _ in range(runs)]
    return Limit(median([r.wall for r in starts]), median([r.cpu for r in starts]),
                 median([c[0] for c in costs]), median([c[1] for c in costs]), median([c[2] for c in costs]))


# --- one comparison -----------------------------------------------------------------------------------
def peak_memory(tree: Tree, fn) -> PeakMemory:
    tree.settle()
    with PeakMemory(tree) as mem:
        fn()
    tree.settle()
    return mem


def zombies_with_reaper(tree: Tree, urls: list[str]) -> int:
    """One analysis of ours with the daemon's reaper thread running, as main.py starts it when orphans
    come to it (PID 1, or here a subreaper): the zombies still there two reaper intervals after."""
    stop = threading.Event()
    thread = reaper.start(stop)
    try:
        ours(urls)
        tree.wait_exited()
        time.sleep(2 * reaper.INTERVAL_SECONDS)
        return len([pid for pid in reaper.zombie_children() if pid not in tree.keep])
    finally:
        stop.set()
        if thread is not None:
            thread.join()
        tree.settle()


def compare(tree: Tree, realistic: bool, runs: int, seed_runs: int) -> None:
    market = MarketProcess(realistic)
    tree.keep.add(market.proc.pid)
    kind = "realistic" if realistic else "light"
    try:
        urls = market.urls()
        measure(tree, lambda: ours(urls))  # warm-up: imports, page cache of the OS
        mine: list[Run] = []
        seed: list[Run] = []
        for i in range(max(runs, seed_runs)):  # interleaved, so both see the same machine
            if i < runs:
                mine.append(measure(tree, lambda: ours(urls)))
            if i < seed_runs:
                seed.append(measure(tree, lambda: seed_process_urls(urls)))
        limit = measure_limit(tree, urls, 3)
        reaped = zombies_with_reaper(tree, urls)
        mem_ours = peak_memory(tree, lambda: ours(urls))
        mem_seed = peak_memory(tree, lambda: seed_process_urls(urls))
    finally:
        tree.keep.discard(market.proc.pid)
        market.close()
    print(f"\n== {kind} pages: {len(urls)} coins ==")
    for name, rs in (("ours", mine), ("seed approach", seed)):
        for r in rs:
            print(f"  {name:14} {r.wall:6.2f} s  tree {r.cpu:6.2f} CPU-s  machine {r.machine:6.2f} CPU-s  "
                  f"zombies {r.zombies:2d}  rendered {rendered(r.value)}/{len(urls)}  load {r.load:.2f}")
    w, c, m = (median([r.wall for r in mine]), median([r.cpu for r in mine]), median([r.machine for r in mine]))
    sw, sc, sm = (median([r.wall for r in seed]), median([r.cpu for r in seed]), median([r.machine for r in seed]))
    print(f"  limit          {limit.wall:6.2f} s  tree {limit.cpu:6.2f} CPU-s (start+quit {limit.start_cpu:.2f} "
          f"+ page scripts {limit.scripts:.2f}; with every page task {limit.cpu_tasks:.2f})  zombies  0")
    print(f"  zombies left with the daemon's reaper running (main.py as PID 1 or a subreaper): {reaped}")
    print(f"  medians: ours {w:.2f} s {c:.2f} CPU-s ({m:.2f} machine) | seed {sw:.2f} s {sc:.2f} CPU-s ({sm:.2f} machine)")
    print(f"  ours/seed: wall {w / sw:.3f}  tree CPU {c / sc:.3f}  machine CPU {m / sm:.3f}   "
          f"(goal <= 0.15{'; light pages: wall <= 0.20 in every run' if not realistic else ''})")
    if not realistic:
        print(f"  worst wall ratio of any run: {max(r.wall for r in mine) / min(r.wall for r in seed):.3f}")
    print(f"  ours/limit: wall {w / limit.wall:.2f}  CPU {c / limit.cpu:.2f} (against the limit with every page task {c / limit.cpu_tasks:.2f})")
    print(f"  peak memory of the browsers: ours RSS {mem_ours.rss / MIB:.0f} MiB, PSS {mem_ours.pss / MIB:.0f} MiB | "
          f"seed RSS {mem_seed.rss / MIB:.0f} MiB, PSS {mem_seed.pss / MIB:.0f} MiB | ours/seed PSS {mem_ours.pss / mem_seed.pss:.2f}")


# --- levers ----------------------------------------------------------------------------------------
LEVERS: dict[str, Tuning] = {
    "ours (defaults: BROWSERS=2 tabs)": Tuning(),
    "two browsers, 2 tabs each": Tuning(browsers=2),
    "one page at a time (1 tab)": Tuning(tabs=1),
    "3 tabs": Tuning(tabs=3),
    "5 tabs": Tuning(tabs=5),
    "no blocking": Tuning(block=False),
    "visible windows": Tuning(hidden=False),
    "new-tab start page": Tuning(blank_start=False),
    "window.stop() at #nethash": Tuning(stop_when_ready=True),
    "page load eager": Tuning(page_load="eager"),
    "a fresh tab per page": Tuning(reuse_tabs=False),
    "usual process model (no --single-process)": Tuning(single_process=False),
    "usual model + --process-per-site": Tuning(single_process=False, process_per_site=True),
}


def setup_seconds(repeat: int = 20) -> float:
    """Median time of one read of the analysis's input files (links, wallets, pools, rules)."""
    examples = dataclasses.replace(config.settings(), PATH_WALLETS="json/wallets.example.json", PATH_COINS="json/coins.example.json")
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        market_setup.load_setup(examples)
        times.append(time.perf_counter() - started)
    return median(times)


def levers(tree: Tree, runs: int) -> None:
    market = MarketProcess(realistic=True)
    tree.keep.add(market.proc.pid)
    results: dict[str, list[Run]] = {name: [] for name in LEVERS}
    try:
        urls = market.urls()
        measure(tree, lambda: ours(urls))
        for _ in range(runs):
            for name, tuning in LEVERS.items():
                results[name].append(measure(tree, lambda: ours(urls, tuning)))
    finally:
        tree.keep.discard(market.proc.pid)
        market.close()
    print(f"\n== levers, realistic pages, {runs} runs each, interleaved (medians) ==")
    print(f"  start the browser while the links are read? reading the input files (market_setup.load_setup, "
          f"the repo's examples) takes {setup_seconds() * 1000:.2f} ms: at most that could overlap the browser start")
    base = results["ours (defaults: BROWSERS=2 tabs)"]
    bw, bc = median([r.wall for r in base]), median([r.cpu for r in base])
    for name, rs in results.items():
        w, c = median([r.wall for r in rs]), median([r.cpu for r in rs])
        ok = min(rendered(r.value) for r in rs)
        print(f"  {name:28} wall {w:5.2f} s ({w - bw:+.2f})  tree CPU {c:5.2f} s ({c - bc:+.2f})  "
              f"rendered >= {ok}/{len(urls)}  load {median([r.load for r in rs]):.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="analyses of ours per page kind")
    parser.add_argument("--seed-runs", type=int, default=2, help="analyses the seed's way per page kind (slow)")
    parser.add_argument("--levers", action="store_true", help="also measure each lever against the defaults")
    parser.add_argument("--only-levers", action="store_true")
    parser.add_argument("--nice", type=int, default=0, help="BROWSER_NICE for ours (the seed's approach runs at 0)")
    args = parser.parse_args()
    config.set_settings(config.load_settings(environ={}, env_file=None))
    config.override(BROWSER_NICE=args.nice, BROWSER_CPUS=0, PAGE_TIMEOUT=60)  # the work compared, not the cap
    become_subreaper()  # Chromium's orphans come to us: their CPU is counted, their zombies too
    tree = Tree()
    print(f"cores: {os.cpu_count()}, load at start: {load1():.2f}, BROWSER_NICE={args.nice}, "
          f"BROWSERS={config.settings().BROWSERS}, defaults: {Tuning()}")
    if not args.only_levers:
        compare(tree, realistic=False, runs=args.runs, seed_runs=args.seed_runs)
        compare(tree, realistic=True, runs=args.runs, seed_runs=args.seed_runs)
    if args.levers or args.only_levers:
        levers(tree, args.runs)
    print(f"\nload at end: {load1():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
