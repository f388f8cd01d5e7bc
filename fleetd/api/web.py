"""The dashboard: the static files of fleetd/web served under /admin/.

Owns `GET /admin/` (index.html), `GET /admin/<asset>` and `GET /admin` (a 308 to
`admin/`: an explicit route, so the app's "routing never guesses" rule still holds —
only this one path is redirected, by name). The files are the page, its ES modules and
its stylesheet; no build step, nothing from a CDN. Every answer carries a strict
Content-Security-Policy (scripts and styles from this origin only, no inline code, no
framing), `X-Content-Type-Options: nosniff` and `X-Frame-Options: DENY`.

The views are `@public`: the files hold no data. The page reads everything through the
authenticated API with the bearer token the operator types in, and a company-bound
token gets company-scoped answers there.

Only files found in fleetd/web when the first asset is asked for are served, from an
allow-list keyed by bare file name: no path from the request ever reaches the file
system, so `..`, encoded slashes and absolute paths cannot name another file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from quart import Blueprint, Response, request

from fleetd.api.context import public
from fleetd.api.errors import ApiError

__all__ = ["CONTENT_SECURITY_POLICY", "asset_names", "bp"]

bp = Blueprint("web", __name__)

INDEX = "index.html"
# The file types the dashboard is made of; any other file in fleetd/web is not served.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Scripts, styles and images from this origin only; no inline script or style (the
# page sets none), no plugins, no <base> tricks, never framed. connect-src lists ws:
# and wss: besides 'self' because browsers before CSP level 3 do not match a
# WebSocket URL to 'self'; the page opens one only to its own origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
# The file names carry no version, so a browser keeps a copy but asks each time; an
# unchanged file costs a 304 of a few hundred bytes, and an upgrade shows at once.
CACHE_CONTROL = "no-cache"


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


@cache
def _assets() -> dict[str, Asset]:
    """Every servable file of fleetd/web, read once (the dashboard is ~60 KiB)."""
    folder = resources.files("fleetd") / "web"
    out: dict[str, Asset] = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.name.startswith(".") or suffix not in CONTENT_TYPES or not entry.is_file():
            continue
        body = entry.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        out[entry.name] = Asset(body, CONTENT_TYPES[suffix], etag)
    return out


def asset_names() -> list[str]:
    """The names served under /admin/, sorted."""
    return sorted(_assets())


def _serve(name: str) -> Response:
    asset = _assets().get(name)
    if asset is None:
        raise ApiError.not_found(f"no dashboard file {name!r}")
    if asset.etag in request.headers.get("If-None-Match", ""):
        response = Response(b"", status=304)
    else:
        response = Response(asset.body, content_type=asset.content_type)
    response.headers["ETag"] = asset.etag
    response.headers["Cache-Control"] = CACHE_CONTROL
    return response


@bp.after_request
async def harden(response: Response) -> Response:
    """The security headers, on every answer of these routes (404s included)."""
    response.headers.update(SECURITY_HEADERS)
    return response


@bp.get("/admin")
@public
async def admin_redirect() -> Any:
    # Relative, so that behind a proxy that mounts fleetd under a prefix the browser
    # still lands on <prefix>/admin/.
    return Response(
        b"", status=308, headers={"Location": "admin/"}, content_type="text/plain; charset=utf-8"
    )


@bp.get("/admin/")
@public
async def index() -> Any:
    return _serve(INDEX)


@bp.get("/admin/<asset>")
@public
async def asset(asset: str) -> Any:
    return _serve(asset)
