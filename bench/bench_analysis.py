"""Market analysis benchmark: jsTrigger.process_urls vs the seed's approach, side by side in one run.

Renders N local JavaScript pages (demo/market.py on 127.0.0.1, values filled in after 300 ms) and
measures wall time and the peak memory (sum of RSS, sampled every 50 ms) of this whole process tree.
The seed's approach, re-created here: a new Chromium per URL, two at a time, a fixed 3 s wait for a
consent button that is absent, then a fixed 1 s sleep.

    .venv/bin/python bench/bench_analysis.py [--pages 7] [--runs 3] [--pss]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import psutil  # noqa: E402

import config  # noqa: E402
import jsTrigger  # noqa: E402
from demo.market import MarketServer  # noqa: E402

SNAPSHOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "demo", "snapshot.json")
SEED_FLAGS = jsTrigger.CHROMIUM_FLAGS[:8]  # DESIGN.md's flags, the minimum Chromium needs here


class PeakMemory:
    """Samples the RSS sum of this process and all its descendants in a background thread."""

    def __init__(self, interval: float = 0.05, pss: bool = False) -> None:
        self.interval = interval
        self.pss = pss  # reading smaps costs CPU that the measured side then lacks: off by default
        self.peak = 0
        self.peak_pss = 0
        self.max_chromium = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        total, pss, browsers = 0, 0, 0
        for proc in [me] + me.children(recursive=True):
            try:
                if self.pss:
                    info = proc.memory_full_info()  # PSS: shared pages counted once across the tree
                    total += info.rss
                    pss += info.pss
                else:
                    total += proc.memory_info().rss
                browsers += proc.name() == "chromedriver"  # one per browser
            except psutil.Error:
                continue
        self.peak = max(self.peak, total)
        self.peak_pss = max(self.peak_pss, pss)
        self.max_chromium = max(self.max_chromium, browsers)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


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


def rendered(results: dict) -> int:
    """Pages with values: ours are PageResults, the seed approach's are html strings ("Error: ..." on failure)."""
    htmls = [r.html if isinstance(r, jsTrigger.PageResult) else r for r in results.values()]
    return sum(1 for html in htmls if html and not html.startswith(jsTrigger.ERROR_PREFIX) and "H/s</span>" in html)


def measure(fn, urls: list[str], pss: bool = False) -> tuple[float, int, int, int, int]:
    with PeakMemory(interval=0.2 if pss else 0.05, pss=pss) as mem:
        start = time.monotonic()
        results = fn(urls)
        wall = time.monotonic() - start
    return wall, mem.peak, mem.max_chromium, rendered(results), mem.peak_pss


def market_urls(server: MarketServer, pages: int) -> list[str]:
    slugs = server.market.slugs()
    while len(slugs) < pages:
        slug = f"extra{len(slugs)}"
        server.set_coin(slug, name=f"Extra{len(slugs)}", symbol=f"EX{len(slugs)}")
        slugs.append(slug)
    return [server.url(s) for s in slugs[:pages]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=7)
    parser.add_argument("--runs", type=int, default=3, help="runs of process_urls (the seed's runs once: it is slow)")
    parser.add_argument("--pss", action="store_true", help="also sample PSS (every 200 ms; costs CPU, slows the fast side)")
    args = parser.parse_args()
    config.set_settings(config.load_settings(environ={}, env_file=None))
    server = MarketServer.from_snapshot(SNAPSHOT)
    try:
        urls = market_urls(server, args.pages)
        idle = psutil.Process().memory_info().rss
        ours = [measure(jsTrigger.process_urls, urls, args.pss) for _ in range(args.runs)]
        seed = measure(seed_process_urls, urls, args.pss)
    finally:
        server.close()
    mib = 1024 * 1024
    wall = statistics.median(r[0] for r in ours)
    peak = max(r[1] for r in ours)
    peak_pss = max(r[4] for r in ours)
    print(f"pages: {args.pages} (JS fills values after 300 ms), BROWSERS={config.settings().BROWSERS}, cores: {os.cpu_count()}")
    print(f"python process alone: {idle / mib:.0f} MiB RSS")
    for i, (w, p, b, ok, pss) in enumerate(ours, 1):
        print(f"process_urls run {i}: {w:.2f} s, peak tree RSS {p / mib:.0f} MiB (PSS {pss / mib:.0f}), "
              f"browsers at once {b}, rendered {ok}/{args.pages}")
    print(f"seed approach      : {seed[0]:.2f} s, peak tree RSS {seed[1] / mib:.0f} MiB (PSS {seed[4] / mib:.0f}), "
          f"browsers at once {seed[2]}, rendered {seed[3]}/{args.pages}")
    print(f"wall time ratio (median ours / seed): {wall / seed[0]:.3f}  (target <= 0.200)")
    pss_ratio = f", PSS {peak_pss / seed[4]:.2f}" if args.pss else ""
    print(f"peak memory ratio (max ours / seed's two concurrent browsers): RSS {peak / seed[1]:.2f}{pss_ratio}  (target <= 1.00)")
    leftover = [p for p in psutil.Process().children(recursive=True) if "chrom" in p.name()]
    print(f"chromium processes left: {len(leftover)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
