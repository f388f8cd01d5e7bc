"""The dashboard in a real browser (tests/browser.py): the Daemons page lists the named
queues with their ready jobs, and its Pause / Resume buttons pause and resume a queue
on every daemon (what `GET /api/v1/admin/queues` then answers)."""

from __future__ import annotations

from pathlib import Path

import httpx
from api_client import PREFIX, SECRET, token
from browser import log_in, needs_chromium, open_dashboard
from conftest import fleetd_env
from daemons import Fleet

from fleetd.config import Config

pytestmark = needs_chromium


def test_daemons_page_lists_queues_and_pauses_one(
    config: Config, fleet: Fleet, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    env = fleetd_env(config) | {"FLEETD_AUTH_SECRET": SECRET}
    fleet.start(env, "--roles", "api")  # no worker: the jobs stay ready
    url = fleet.api_url(Path(config.state_dir))
    admin = token(subject="ops@fleet", ttl=600)
    headers = {"Authorization": f"Bearer {admin}"}
    with httpx.Client(base_url=url, headers=headers, timeout=10) as http:
        for _ in range(3):
            r = http.post(f"{PREFIX}/enqueue", json={"type": "noop", "queue": "bulk"})
            assert r.status_code == 201, r.text

        def paused() -> bool:
            queues = http.get("/api/v1/admin/queues").json()["queues"]
            return bool(next(q["paused"] for q in queues if q["name"] == "bulk"))

        with open_dashboard(url) as page:
            log_in(page, admin, "platform admin")
            page.click("nav.views a[data-view='daemons']")
            row = page.locator("#queues-body tr[data-queue='bulk']")
            expect(row).to_contain_text("active")
            expect(row.locator("td.num").first).to_have_text("3")
            expect(page.locator("#queues-body tr[data-queue='default']")).to_have_count(1)
            row.locator("button[data-queue-action='pause']").click()
            expect(row).to_contain_text("paused")
            assert paused()
            shot = tmp_path / "queues.png"
            page.screenshot(path=str(shot))
            print(f"queues screenshot: {shot}")
            row.locator("button[data-queue-action='resume']").click()
            expect(row).to_contain_text("active")
            assert not paused()
