"""Helpers of the dashboard's browser tests: Debian's chromium driven by Playwright's
sync API (its async API needs asyncio; the daemon under test is a `fleetd run`
subprocess, so no trio loop is involved).

Owns:
- `CHROMIUM`, `needs_chromium` (skip, saying why, where /usr/bin/chromium is missing:
  `.ci/run` installs it) and the launch flags: no sandbox (containers lack user
  namespaces), nothing fetched in the background, no QUIC. `playwright install` is
  never used;
- `start_daemon(config, fleet)`: one `fleetd run --roles api,worker` on the test's
  namespace, its API URL;
- `open_dashboard(url)`: chromium on /admin/ (the login form), failing the test if the
  page raised a JavaScript error; `log_in(page, token, who)` until the feed is live.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from api_client import SECRET
from conftest import fleetd_env
from daemons import Fleet

from fleetd.config import Config

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Generous bounds for things that take well under a second here: a starved CI box must
# not fail a test, and nothing here measures speed.
WAIT_MS = 15_000

needs_chromium = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} not installed (.ci/run installs it)"
)


def start_daemon(config: Config, fleet: Fleet) -> str:
    """One `fleetd run --roles api,worker` on `config`'s namespace; its API URL (the
    fleet fixture stops it, then the namespace fixture deletes its keys)."""
    # The dashboard's fleet-data jobs run on the demo fleet: a real Redis without [data]
    # url uses it only when asked (fleetdata plugin, #19).
    env = fleetd_env(config) | {"FLEETD_AUTH_SECRET": SECRET, "FLEETD_DATA_DEMO": "true"}
    fleet.start(env, "--roles", "api,worker")
    return fleet.api_url(Path(config.state_dir))


@contextmanager
def open_dashboard(url: str) -> Iterator[Page]:
    """Chromium on `url`/admin/ (the login form). Fails the test if the page raised a
    JavaScript error."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{url}/admin/")
            expect(page.locator("#login-form")).to_be_visible()
            yield page
        finally:
            browser.close()
    assert not errors, errors


def log_in(page: Page, token: str, who: str) -> None:
    """Log in with `token`; wait until the header names `who` and the feed is live."""
    from playwright.sync_api import expect

    page.fill("#token", token)
    page.click("#login-submit")
    expect(page.locator("#who")).to_contain_text(who)
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
