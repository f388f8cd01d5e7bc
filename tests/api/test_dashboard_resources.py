"""The dashboard in a real browser (tests/browser.py) shows what issue #21 added to
existing pages: each daemon's resource use on the Daemons page (CPU %, memory, open
files, loop lag, from its heartbeat) and each schedule's firing lateness p50 / p99 on
the Scheduled page. Screenshots go to the test's tmp_path (`pytest -s` prints them)."""

from __future__ import annotations

from pathlib import Path

import httpx
from api_client import PREFIX, SECRET, token
from browser import log_in, needs_chromium, open_dashboard
from conftest import fleetd_env
from daemons import Fleet, wait_for

from fleetd.config import Config

pytestmark = needs_chromium


def test_daemons_show_resources_and_schedules_their_lateness(
    config: Config, fleet: Fleet, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    env = fleetd_env(config) | {"FLEETD_AUTH_SECRET": SECRET}
    fleet.start(env, "--roles", "api,worker,scheduler")
    url = fleet.api_url(Path(config.state_dir))
    admin = token(subject="ops@fleet", ttl=600)
    headers = {"Authorization": f"Bearer {admin}"}
    with httpx.Client(base_url=url, headers=headers, timeout=10) as http:
        body = {"name": "tick", "job_type": "noop", "schedule": "1s", "data": {}}
        r = http.post(f"{PREFIX}/scheduled", json=body)
        assert r.status_code == 201, r.text
        schedule_id = r.json()["scheduled_job"]["id"]

        def fired() -> bool:
            got = http.get(f"{PREFIX}/scheduled/{schedule_id}").json()["scheduled_job"]
            return "lateness" in got

        wait_for(fired, 10, "a firing")
    with open_dashboard(url) as page:
        log_in(page, admin, "platform admin")
        page.click("nav.views a[data-view='daemons']")
        cell = page.locator("#daemons-body tr td[data-resources]")
        expect(cell).to_have_count(1)
        expect(cell).to_contain_text("MiB")
        expect(cell).to_contain_text("fds · lag")
        shot = tmp_path / "daemons.png"
        page.screenshot(path=str(shot))
        print(f"daemons screenshot: {shot}")
        page.click("nav.views a[data-view='scheduled']")
        late = page.locator(f"tr[data-schedule-id='{schedule_id}'] [data-lateness]")
        expect(late).to_contain_text("late ")
        expect(late).to_contain_text(" ms / ")
        shot = tmp_path / "schedules.png"
        page.screenshot(path=str(shot))
        print(f"schedules screenshot: {shot}")
