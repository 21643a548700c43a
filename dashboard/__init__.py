"""The staff dashboard: static files in `dashboard/static/`, served by the API's own Starlette app.

`/` and `/dashboard/` answer the page (`index.html`, never cached, so a new release is picked up at
once); the scripts, the stylesheet and the vendored Chart.js are served under names that carry a
hash of their content (`app.3f2a9c1e04.js`), so they can be cached for a year: a changed file gets
a new name, and the page names the new one. Every response carries a Content-Security-Policy that
lets the page load and call only this origin (no inline script or style, no other host).

The page is a client of the documented JSON API (see docs/dashboard.md); nothing here reads the
read model.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

STATIC_PREFIX = "/dashboard/static/"
# Files the page refers to; index.html names them as `{{name}}`, replaced by their fingerprinted names.
ASSETS = ("app.js", "app.css", "chart.umd.min.js", "favicon.svg")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self';"
    " font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
LONG_CACHE = "public, max-age=31536000, immutable"
PAGE_CACHE = "no-cache"
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str


def fingerprinted(name: str, body: bytes) -> str:
    """`app.js` -> `app.<first 10 hex digits of its sha256>.js` (the hash before the last suffix)."""
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}.{hashlib.sha256(body).hexdigest()[:10]}{dot}{suffix}"


def load() -> tuple[bytes, dict[str, Asset]]:
    """The page, with its references filled in, and the assets by their fingerprinted names."""
    static = resources.files(__package__) / "static"
    page = (static / "index.html").read_text(encoding="utf-8")
    assets: dict[str, Asset] = {}
    for name in ASSETS:
        body = (static / name).read_bytes()
        served = fingerprinted(name, body)
        suffix = name[name.rfind(".") :]
        media_type = _TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
        assets[served] = Asset(body, media_type)
        page = page.replace("{{" + name + "}}", served)
    if "{{" in page:
        raise RuntimeError("dashboard/static/index.html names a file that is not in dashboard.ASSETS")
    return page.encode(), assets


def routes() -> list[BaseRoute]:
    page, assets = load()

    async def index(request: Request) -> Response:
        headers = {"Cache-Control": PAGE_CACHE, "Content-Security-Policy": CSP}
        return Response(page, media_type="text/html; charset=utf-8", headers=headers)

    async def asset(request: Request) -> Response:
        found = assets.get(request.path_params["name"])
        if found is None:
            # JSON like every other 404 of the service.
            return Response(b'{"detail":"Not found."}', 404, media_type="application/json")
        headers = {"Cache-Control": LONG_CACHE, "Content-Security-Policy": CSP}
        return Response(found.body, media_type=found.media_type, headers=headers)

    return [
        Route("/", index, methods=["GET", "HEAD"]),
        Route("/dashboard/", index, methods=["GET", "HEAD"]),
        Route(STATIC_PREFIX + "{name}", asset, methods=["GET", "HEAD"]),
    ]
