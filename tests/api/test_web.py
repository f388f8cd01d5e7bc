"""The dashboard's static files under /admin/ (fleetd.api.web): served without a token,
with their content types, a strict CSP and the hardening headers; nothing outside the
allow-list, whatever the path says; and packed into the wheel."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import trio
from api_client import api_config, running_api

from fleetd.api.web import CONTENT_SECURITY_POLICY, asset_names
from fleetd.config import Config

ROOT = Path(__file__).parents[2]
WEB = ROOT / "fleetd" / "web"
TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}


async def raw_get(url: str, target: str) -> tuple[int, bytes]:
    """GET with the request target sent byte for byte (httpx would normalise `..`).
    Reads one response by its Content-Length (the server may keep the connection)."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(parts.hostname, parts.port)
        async with stream:
            request = f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n"
            await stream.send_all(request.encode())
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(65536)
                assert chunk, f"connection closed before the headers: {data!r}"
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            while length is not None and len(body) < int(length.group(1)):
                chunk = await stream.receive_some(65536)
                assert chunk, "connection closed before the body"
                body += chunk
    return int(head.split(b" ", 2)[1]), body


def test_the_dashboard_is_its_files() -> None:
    served = set(asset_names())
    assert {"index.html", "app.js", "style.css"} <= served
    assert served == {p.name for p in WEB.iterdir() if p.suffix in TYPES}
    # Every module and file the page refers to is one that is served.
    for path in WEB.glob("*.js"):
        for name in re.findall(r'from "\./([^"]+)"', path.read_text()):
            assert name in served, (path.name, name)
    index = (WEB / "index.html").read_text()
    for name in re.findall(r'(?:src|href)="([^"#:]+)"', index):
        assert name in served, name


def test_every_element_the_scripts_look_up_by_id_is_in_the_page() -> None:
    """`$("#x")` of a missing id is null at run time (e.g. the edit dialog's hint that
    sealed values show as ***): every id looked up is one index.html has."""
    ids = set(re.findall(r'\bid="([^"]+)"', (WEB / "index.html").read_text()))
    assert "schedule-sealed-hint" in ids
    for path in WEB.glob("*.js"):
        for name in re.findall(r'\$\("#([A-Za-z0-9_-]+)"\)', path.read_text()):
            assert name in ids, (path.name, name)


def test_no_html_from_strings_and_no_persistent_token() -> None:
    """Job data and errors are attacker-controlled: the page builds DOM nodes and sets
    textContent, never parses strings as HTML; the token lives in sessionStorage only."""
    for path in WEB.glob("*.js"):
        text = path.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, (path.name, sink)
        assert not re.search(r"localStorage\s*[.\[]", text), path.name
    index = (WEB / "index.html").read_text()
    assert "<script>" not in index and " style=" not in index and " on" + "click=" not in index


def test_the_wheel_holds_every_dashboard_file() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["fleetd"]
    for path in WEB.iterdir():
        relative = f"web/{path.name}"
        assert any(fnmatch.fnmatch(relative, g) for g in globs), relative


async def test_index_and_assets_need_no_token_and_carry_the_headers(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        r = await api.client.get("/admin/")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="app.js"></script>' in r.text
        csp = r.headers["content-security-policy"]
        assert csp == CONTENT_SECURITY_POLICY
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["default-src"] == "'self'"
        assert directives["script-src"] == "'self'"
        assert directives["frame-ancestors"] == "'none'"
        assert directives["object-src"] == "'none'"
        assert "unsafe" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["cache-control"] == "no-cache"
        etag = r.headers["etag"]

        # A copy the browser holds is revalidated with a 304 and no body.
        r = await api.client.get("/admin/", headers={"If-None-Match": etag})
        assert r.status_code == 304 and r.content == b""
        assert r.headers["etag"] == etag

        for name in asset_names():
            # A bad token changes nothing: the files are public, the data is not.
            r = await api.client.get(f"/admin/{name}", headers={"Authorization": "Bearer x"})
            assert r.status_code == 200, name
            assert r.headers["content-type"].startswith(TYPES[Path(name).suffix]), name
            assert r.content == (WEB / name).read_bytes(), name
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY

        # The data behind the page still needs the token.
        assert (await api.client.get("/api/v1/admin/jobs/worker/health")).status_code == 401


async def test_admin_without_slash_is_redirected_by_an_explicit_route(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        r = await api.client.get("/admin")
        assert r.status_code == 308
        assert r.headers["location"] == "admin/"
        # No other path is redirected: routing still never guesses.
        assert (await api.client.get("/admin/app.js/")).status_code == 404
        assert (await api.client.get("/healthz/")).status_code == 404


async def test_nothing_outside_the_dashboard_is_served(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        for target in [
            "/admin/../fleetd/api/web.py",
            "/admin/..%2Fapi%2Fweb.py",
            "/admin/%2e%2e/%2e%2e/pyproject.toml",
            "/admin/%2e%2e%2fweb.py",
            "/admin/..%5cweb.py",
            "/admin/%2Fetc%2Fpasswd",
            "/admin//etc/passwd",
            "/admin/web.py",
            "/admin/__init__.py",
            "/admin/nope.js",
            "/admin/.hidden",
            "/admin/app.js%00.html",
            "/admin/app.js/",
            "/admin/app.JS",
            "/ADMIN/",
            "/admin/index.html/..",
        ]:
            status, body = await raw_get(api.url, target)
            assert status in (400, 404), (target, status)
            assert b"import" not in body and b"root:" not in body, target
        r = await api.client.get("/admin/missing.css")
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        r = await api.client.post("/admin/app.js")
        assert r.status_code == 405
