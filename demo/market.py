"""A fake MiningPoolStats on loopback: coin pages with the real DOM, filled in by JavaScript.

The values of a page are empty when it loads and appear after `delay_ms`, as on the real site, so a
plain HTTP fetch sees nothing and only a real browser gets the numbers. Options reproduce what the
real site (and the seed's bugs) met: a consent overlay, a basic bot check, a page that never renders,
garbage values. `MarketServer` serves a mutable market so tests can change prices at runtime.

`realistic=True` makes a page weigh what a real MiningPoolStats coin page weighs (for benchmarks):
a ~1 MB chart script that works the CPU when it runs and animates its chart for a second, ~600 KB of
images, a web font, two async third-party scripts (ads, slow to arrive and CPU-hungry; analytics),
and values fetched as JSON once the DOM is ready. Third-party URLs keep the real host name in the
path (`/ext/pagead2.googlesyndication.com/...`), so URL patterns that block the real hosts match
them too. Assets are made on first request, never at import.
"""
from __future__ import annotations

import dataclasses
import functools
import html
import json
import random
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_DELAY_MS = 300
IMAGES = 12  # pool logos, 128x128 RGB noise each: ~49 KB of PNG, ~590 KB together
CHART_POINTS = 55000  # the chart script's data: ~1 MB of JavaScript
AD_DELAY_S = 2.5  # the ad script arrives late, as third-party scripts often do
ANALYTICS_DELAY_S = 0.8


@dataclass
class CoinValues:
    """What one coin page shows, as the texts the real site displays."""

    name: str = "Monero"
    symbol: str = "XMR"
    nethash: str = "5.12 GH/s"
    poolshash: str = "2.10 GH/s"
    price: str = "$162.45"
    emission: str = "432.00 XMR"
    title_suffix: str = " NEW"  # the real title reads "Monero (XMR) NEW ..."; "" tests a plain title
    consent: bool = False  # a consent overlay whose button must be clicked before data appears
    botcheck: bool = False  # withhold data from navigator.webdriver or a "Headless" user agent
    never: bool = False  # never fill the values in
    delay_ms: int = DEFAULT_DELAY_MS
    realistic: bool = False  # the weight of a real coin page (see the module docstring)


_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title} - MiningPoolStats</title>
<style>#fc-root{{position:fixed;inset:0;background:rgba(0,0,0,.6)}}</style>{head}</head>
<body>
{consent}
<h1 class="box-title">{title}</h1>
<div class="columnhome_left">Network hashrate <span id="nethash">{shown[nethash]}</span>
 Pools hashrate <span id="poolshash">{shown[poolshash]}</span></div>
<div class="columnhome_right"><div id="stats_priceusd">Price <b>{shown[price]}</b></div>
 Emission 24h <span id="stats_supply_emission">{shown[emission]}</span></div>
{body}
<script>
const DATA = {data};
const OPTS = {opts};
function fill() {{
  document.getElementById('nethash').textContent = DATA.nethash;
  document.getElementById('poolshash').textContent = DATA.poolshash;
  document.querySelector('.columnhome_right #stats_priceusd b').textContent = DATA.price;
  document.getElementById('stats_supply_emission').textContent = DATA.emission;
}}
function isBot() {{
  return navigator.webdriver === true || /Headless/i.test(navigator.userAgent);
}}
function fetched() {{
  fetch('/data' + location.pathname + '.json').then(function (r) {{ return r.json(); }}).then(function (d) {{
    Object.assign(DATA, d);
    fill();
    if (window.MPSChart) window.MPSChart.draw(document.getElementById('chart'));
  }});
}}
function later() {{ if (OPTS.fetch_data) fetched(); else setTimeout(fill, OPTS.delay_ms); }}
window.addEventListener(OPTS.fetch_data ? 'DOMContentLoaded' : 'load', function () {{
  if (OPTS.never) return;
  if (OPTS.botcheck && isBot()) return;
  if (OPTS.consent) {{
    document.querySelector('.fc-cta-consent').addEventListener('click', function () {{
      document.getElementById('fc-root').remove();
      later();
    }});
    return;
  }}
  later();
}});
</script>
</body></html>
"""

_CONSENT = """<div id="fc-root"><div class="fc-dialog">We value your privacy
<button class="fc-button fc-cta-consent fc-primary-button">Consent</button></div></div>"""


_REALISTIC_HEAD = """
<style>@font-face{font-family:Mps;src:url(/static/fonts/mps.woff2) format('woff2')}body{font-family:Mps,sans-serif}</style>
<script src="/static/js/charts.js"></script>
<script async src="/ext/pagead2.googlesyndication.com/pagead/js/adsbygoogle.js?client=ca-pub-0"></script>
<script async src="/ext/www.googletagmanager.com/gtag/js?id=G-MPS"></script>"""

_REALISTIC_BODY = '<div id="chart"></div>\n<div class="pools">' + "".join(
    f'<img src="/static/img/pool{i}.png" width="128" height="128" alt="pool {i}">' for i in range(IMAGES)
) + "</div>"


def coin_page_html(values: CoinValues | None = None, rendered: bool = False, **changes: Any) -> str:
    """One coin page. `changes` override fields of `values` (or of the defaults).

    `rendered=True` gives the page as a browser holds it once the script has run (values in the DOM),
    for parser tests that need no browser.
    """
    v = dataclasses.replace(values or CoinValues(), **changes)
    data = {"nethash": v.nethash, "poolshash": v.poolshash, "price": v.price, "emission": v.emission}
    shown = {k: html.escape(t) if rendered else "" for k, t in data.items()}
    opts = {"delay_ms": v.delay_ms, "never": v.never or rendered, "botcheck": v.botcheck, "consent": v.consent,
            "fetch_data": v.realistic}
    # json.dumps escapes quotes; "</" must not close the script element early.
    as_js = lambda obj: json.dumps(obj).replace("</", "<\\/")  # noqa: E731
    return _PAGE.format(
        title=html.escape(f"{v.name} ({v.symbol}){v.title_suffix}"),
        consent=_CONSENT if v.consent else "",
        head=_REALISTIC_HEAD if v.realistic else "",
        body=_REALISTIC_BODY if v.realistic else "",
        shown=shown,
        data=as_js(data),
        opts=as_js(opts),
    )


def load_snapshot(path: str) -> dict[str, CoinValues]:
    """A snapshot file: {slug: {field: value}} with CoinValues field names."""
    with open(path, encoding="utf-8") as fh:
        raw = json.load(fh)
    return {slug: CoinValues(**fields) for slug, fields in raw.items() if not slug.startswith("_")}


# --- the realistic page's assets (made on first request) -------------------------------------------
# JavaScript CPU work is counted in loop iterations, so it scales with the machine like real code does.
_WORK_JS = "function mpsWork(n){var x=0;for(var i=0;i<n;i++){x+=Math.sqrt(i)*Math.sin(i);}return x;}"

_CHART_CODE = """
function smooth(a,w){var o=new Array(a.length),s=0;for(var i=0;i<a.length;i++){s+=a[i];if(i>=w)s-=a[i-w];o[i]=s/Math.min(i+1,w);}return o;}
function path(a,w,h,step){var mx=-Infinity,mn=Infinity,i;for(i=0;i<a.length;i++){if(a[i]>mx)mx=a[i];if(a[i]<mn)mn=a[i];}
var p=[],n=a.length;for(i=0;i<n;i+=step){p.push((i?'L':'M')+(i*w/n).toFixed(1)+' '+(h-(a[i]-mn)*h/(mx-mn||1)).toFixed(1));}return p.join('');}
var ready=[smooth(SERIES,24),smooth(SERIES,168)];mpsWork(6000000);
window.MPSChart={draw:function(el){mpsWork(3000000);
el.innerHTML='<svg width="800" height="300"><path fill="none" stroke="#36c" d="'+path(ready[0],800,300,4)+'"/></svg>';
var line=el.querySelector('path'),t0=performance.now();
function frame(t){var k=Math.min(1,(t-t0)/1000);line.setAttribute('d',path(ready[1],800,300*k,8));if(k<1)requestAnimationFrame(frame);}
requestAnimationFrame(frame);}};
"""


@functools.cache
def chart_js() -> bytes:
    """~1 MB: the chart library's stand-in and a long hashrate series; parsing it and preparing the
    chart work the CPU, drawing works it again and animates for a second."""
    rnd = random.Random(7)
    series = ",".join(f"{5.1e9 + rnd.uniform(-4e8, 4e8):.6f}" for _ in range(CHART_POINTS))
    text = f"/* MPS charts */\n(function(){{{_WORK_JS}\nvar SERIES=[{series}];\n{_CHART_CODE}}})();\n"
    return text.encode()


def _padding(kb: int, seed: int) -> str:
    """Minified-looking dead code, to give a script its real size."""
    rnd = random.Random(seed)
    chunk = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(1000))
    return "".join(f"var _p{i}='{chunk}';" for i in range(kb))


@functools.cache
def ads_js() -> bytes:
    """~150 KB of ad script that works the CPU and fills an ad slot (an iframe with a 100 KB image)."""
    code = (f"(function(){{{_WORK_JS}{_padding(150, 1)}mpsWork(8000000);"
            "var f=document.createElement('iframe');f.width=728;f.height=90;"
            "f.src='/ext/googleads.g.doubleclick.net/pagead/ads?slot=1';document.body.appendChild(f);})();")
    return code.encode()


@functools.cache
def analytics_js() -> bytes:
    code = (f"(function(){{{_WORK_JS}{_padding(80, 2)}mpsWork(2000000);"
            "fetch('/ext/www.google-analytics.com/g/collect?v=2&t=pageview',{method:'POST'});})();")
    return code.encode()


AD_HTML = b'<html><body style="margin:0"><img src="/ext/tpc.googlesyndication.com/simgad/1.png" width="728" height="90"></body></html>'


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


@functools.cache
def noise_png(seed: int, size: int = 128) -> bytes:
    """A valid RGB PNG of noise (incompressible: ~3 bytes a pixel)."""
    rnd = random.Random(seed)
    rows = b"".join(b"\x00" + rnd.randbytes(size * 3) for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(rows, 1)) + _png_chunk(b"IEND", b"")


@functools.cache
def font_bytes() -> bytes:
    return random.Random(3).randbytes(60 * 1024)


# path prefix -> (content type, body maker, delay in seconds, cacheable)
_ASSETS: dict[str, tuple[str, Any, float, bool]] = {
    "/static/js/charts.js": ("application/javascript", lambda p: chart_js(), 0.0, True),
    "/static/img/pool": ("image/png", lambda p: noise_png(int("".join(c for c in p if c.isdigit()) or 0)), 0.0, True),
    "/static/fonts/": ("font/woff2", lambda p: font_bytes(), 0.0, True),
    "/ext/pagead2.googlesyndication.com/": ("application/javascript", lambda p: ads_js(), AD_DELAY_S, False),
    "/ext/www.googletagmanager.com/": ("application/javascript", lambda p: analytics_js(), ANALYTICS_DELAY_S, False),
    "/ext/googleads.g.doubleclick.net/": ("text/html", lambda p: AD_HTML, 0.3, False),
    "/ext/tpc.googlesyndication.com/": ("image/png", lambda p: noise_png(99, 182), 0.2, False),
    "/ext/www.google-analytics.com/": ("text/plain", lambda p: b"", 0.1, False),
}


def asset_for(path: str) -> tuple[str, Any, float, bool] | None:
    for prefix, asset in _ASSETS.items():
        if path.startswith(prefix):
            return asset
    return None


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def do_POST(self) -> None:  # noqa: N802 (analytics beacons)
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.split("?", 1)[0]
        self.server.market.note_request(path)
        asset = asset_for(path)
        if asset is not None:
            kind, make, delay, cacheable = asset
            if delay and self.server.closing.wait(delay):
                return
            self._send_bytes(200, make(path), kind, cacheable)
            return
        if path.startswith("/data/") and path.endswith(".json"):
            self._send_data(path[len("/data/"):-len(".json")].strip("/"))
            return
        slug = path.strip("/")
        if slug == "hang":  # accepts the request and never answers (until the server closes)
            self.server.closing.wait()
            return
        if slug == "error500":
            self._send(500, "<html><body><h1>Internal Server Error</h1></body></html>")
            return
        values = self.server.market.get(slug)
        if values is None:
            self._send(404, "<html><body><h1>Not Found</h1></body></html>")
            return
        self._send(200, coin_page_html(values))

    def _send_data(self, slug: str) -> None:
        """A realistic page's values, as JSON, after the coin's delay (the site's data request)."""
        values = self.server.market.get(slug)
        if values is None:
            self._send_bytes(404, b"{}", "application/json")
            return
        if self.server.closing.wait(values.delay_ms / 1000):
            return
        data = {"nethash": values.nethash, "poolshash": values.poolshash, "price": values.price, "emission": values.emission}
        self._send_bytes(200, json.dumps(data).encode(), "application/json")

    def _send(self, status: int, body: str) -> None:
        self._send_bytes(status, body.encode("utf-8"), "text/html; charset=utf-8")

    def _send_bytes(self, status: int, data: bytes, kind: str, cacheable: bool = False) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "public, max-age=3600" if cacheable else "no-store")
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the browser left the page (window.stop, a closed tab)
            pass

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read their own output
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    market: "Market"
    closing: threading.Event


class Market:
    """The coins on offer, changeable while the server runs."""

    def __init__(self, coins: dict[str, CoinValues] | None = None) -> None:
        self._coins = dict(coins or {})
        self._lock = threading.Lock()
        self._requests: list[tuple[float, str]] = []

    def note_request(self, path: str) -> None:
        with self._lock:
            self._requests.append((time.monotonic(), path))

    def take_requests(self) -> list[tuple[float, str]]:
        """(monotonic time, path) of every request since the last call: which assets a browser fetched."""
        with self._lock:
            taken, self._requests = self._requests, []
        return taken

    def get(self, slug: str) -> CoinValues | None:
        with self._lock:
            return self._coins.get(slug)

    def set(self, slug: str, values: CoinValues) -> None:
        with self._lock:
            self._coins[slug] = values

    def slugs(self) -> list[str]:
        with self._lock:
            return list(self._coins)


class MarketServer:
    """A ThreadingHTTPServer on 127.0.0.1 serving `/<slug>` coin pages, `/error500` (HTTP 500) and
    `/hang` (never answers).

    Starts on construction (port 0 picks a free port); `close()` stops it. Usable as a context manager.
    """

    def __init__(self, coins: dict[str, CoinValues] | None = None, port: int = 0, host: str = "127.0.0.1") -> None:
        self.market = Market(coins)
        self._server = _Server((host, port), _Handler)
        self._server.market = self.market
        self._server.closing = threading.Event()
        self._thread = threading.Thread(target=self._server.serve_forever, name="market-server", daemon=True)
        self._thread.start()

    @classmethod
    def from_snapshot(cls, path: str, port: int = 0, **changes: Any) -> "MarketServer":
        """Serve a snapshot file (e.g. demo/snapshot.json); `changes` apply to every coin (e.g. delay_ms)."""
        coins = {slug: dataclasses.replace(v, **changes) for slug, v in load_snapshot(path).items()}
        return cls(coins, port=port)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, slug: str) -> str:
        return f"http://127.0.0.1:{self.port}/{slug}"

    def set_coin(self, slug: str, **values: Any) -> CoinValues:
        """Add a coin or change some of its fields; the next page load shows the change."""
        current = self.market.get(slug) or CoinValues()
        new = dataclasses.replace(current, **values)
        self.market.set(slug, new)
        return new

    def close(self) -> None:
        self._server.closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "MarketServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    """Serve a snapshot in a process of its own (benchmarks keep the server's CPU out of their figures):
    prints the port, then serves until stdin closes."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="Serve a market snapshot on 127.0.0.1")
    parser.add_argument("snapshot")
    parser.add_argument("--realistic", action="store_true", help="pages with the weight of a real coin page")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    with MarketServer.from_snapshot(args.snapshot, port=args.port, realistic=args.realistic) as server:
        print(server.port, flush=True)
        sys.stdin.read()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
