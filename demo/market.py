"""A fake MiningPoolStats on loopback: coin pages with the real DOM, filled in by JavaScript.

The values of a page are empty when it loads and appear after `delay_ms`, as on the real site, so a
plain HTTP fetch sees nothing and only a real browser gets the numbers. Options reproduce what the
real site (and the seed's bugs) met: a consent overlay, a basic bot check, a page that never renders,
garbage values. `MarketServer` serves a mutable market so tests can change prices at runtime.
"""
from __future__ import annotations

import dataclasses
import html
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_DELAY_MS = 300


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


_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title} - MiningPoolStats</title>
<style>#fc-root{{position:fixed;inset:0;background:rgba(0,0,0,.6)}}</style></head>
<body>
{consent}
<h1 class="box-title">{title}</h1>
<div class="columnhome_left">Network hashrate <span id="nethash">{shown[nethash]}</span>
 Pools hashrate <span id="poolshash">{shown[poolshash]}</span></div>
<div class="columnhome_right"><div id="stats_priceusd">Price <b>{shown[price]}</b></div>
 Emission 24h <span id="stats_supply_emission">{shown[emission]}</span></div>
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
function later() {{ setTimeout(fill, OPTS.delay_ms); }}
window.addEventListener('load', function () {{
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


def coin_page_html(values: CoinValues | None = None, rendered: bool = False, **changes: Any) -> str:
    """One coin page. `changes` override fields of `values` (or of the defaults).

    `rendered=True` gives the page as a browser holds it once the script has run (values in the DOM),
    for parser tests that need no browser.
    """
    v = dataclasses.replace(values or CoinValues(), **changes)
    data = {"nethash": v.nethash, "poolshash": v.poolshash, "price": v.price, "emission": v.emission}
    shown = {k: html.escape(t) if rendered else "" for k, t in data.items()}
    opts = {"delay_ms": v.delay_ms, "never": v.never or rendered, "botcheck": v.botcheck, "consent": v.consent}
    # json.dumps escapes quotes; "</" must not close the script element early.
    as_js = lambda obj: json.dumps(obj).replace("</", "<\\/")  # noqa: E731
    return _PAGE.format(
        title=html.escape(f"{v.name} ({v.symbol}){v.title_suffix}"),
        consent=_CONSENT if v.consent else "",
        shown=shown,
        data=as_js(data),
        opts=as_js(opts),
    )


def load_snapshot(path: str) -> dict[str, CoinValues]:
    """A snapshot file: {slug: {field: value}} with CoinValues field names."""
    with open(path, encoding="utf-8") as fh:
        raw = json.load(fh)
    return {slug: CoinValues(**fields) for slug, fields in raw.items() if not slug.startswith("_")}


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        slug = self.path.split("?", 1)[0].strip("/")
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

    def _send(self, status: int, body: str) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

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
