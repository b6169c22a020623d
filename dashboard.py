"""The dashboard page at GET / and its static files, for the API to serve. No HTTP server here.

The page (web/dashboard.html, .js, .css) is read-only: it fetches /status and /history?hours=N, draws
its charts with the vendored uPlot (web/vendor/uplot, see web/vendor/README.md) and refreshes itself.
Nothing is fetched from the internet: a rig may have none.

Only the files listed in ASSETS are served, so a request path never reaches the file system.
Files are read on first request and kept in memory (about 60 kB).
"""
from __future__ import annotations

import functools
import json
import os

WEB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web")

HTML = "text/html; charset=utf-8"
JS = "text/javascript; charset=utf-8"
CSS = "text/css; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"

# URL path -> (file under web/, content type)
ASSETS: dict[str, tuple[str, str]] = {
    "/": ("dashboard.html", HTML),
    "/dashboard.js": ("dashboard.js", JS),
    "/dashboard.css": ("dashboard.css", CSS),
    "/vendor/uplot/uPlot.iife.min.js": ("vendor/uplot/uPlot.iife.min.js", JS),
    "/vendor/uplot/uPlot.min.css": ("vendor/uplot/uPlot.min.css", CSS),
    "/vendor/uplot/LICENSE": ("vendor/uplot/LICENSE", TEXT),
}
PATHS: tuple[str, ...] = tuple(ASSETS)


@functools.lru_cache(maxsize=None)
def _read(relative: str, web_dir: str) -> bytes:
    with open(os.path.join(web_dir, relative), "rb") as fh:
        return fh.read()


def asset(path: str, web_dir: str = WEB_DIR) -> tuple[bytes, str] | None:
    """(body, content type) of the file served at `path`; None when `path` is not one of ours.
    Raises OSError when one of ours is missing from web/ (a broken install)."""
    entry = ASSETS.get(path)
    if entry is None:
        return None
    relative, ctype = entry
    return _read(relative, web_dir), ctype


def route(path: str, web_dir: str = WEB_DIR) -> tuple[int, bytes, str]:
    """The API's route for every path in PATHS: (status, body, content type), never raises."""
    try:
        found = asset(path, web_dir)
    except OSError as exc:
        body = {"error": "dashboard file missing", "reason": f"{exc.filename}: {exc.strerror} (reinstall SmartMiner)"}
        return 500, json.dumps(body).encode(), JSON
    if found is None:
        return 404, json.dumps({"error": f"not found: {path}"}).encode(), JSON
    return 200, found[0], found[1]
