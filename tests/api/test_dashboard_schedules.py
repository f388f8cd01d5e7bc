"""The dashboard's schedules in pages, in Debian's chromium (tests/browser.py), against a
real daemon with more schedules than one page of the API holds (500): the Schedules
page shows the first 100 and says more are available, "Load more" adds the next ones
until every schedule is shown exactly once (then the button goes), a schedule deleted
elsewhere leaves the others shown; and the Analytics page's lateness chart reads every
page, so a schedule past the first 500 that fired late is drawn."""

from __future__ import annotations

from pathlib import Path

import pytest
from api_client import PREFIX, token
from browser import log_in, needs_chromium, open_dashboard, start_daemon
from daemons import Fleet
from test_dashboard_charts import plant_lateness

from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.schedules.store import ScheduleOps

pytestmark = needs_chromium

TOTAL = 520


@pytest.fixture
def daemon_url(config: Config, fleet: Fleet) -> str:
    return start_daemon(config, fleet)


def test_schedules_load_more_and_lateness_read_every_page(
    config: Config, engine: Engine, daemon_url: str, tmp_path: Path
) -> None:
    import httpx
    from playwright.sync_api import expect

    ops = ScheduleOps.from_engine(engine)
    body = {"job_type": "noop", "schedule": "@yearly"}
    made = [
        engine.link.run_sync(lambda c, i=i: ops.add(c, {**body, "name": f"s{i:03d}"}))
        for i in range(TOTAL)
    ]
    last = made[-1]
    plant_lateness(config, last.id, 60)
    admin = token(subject="ops@fleet", ttl=600)
    headers = {"Authorization": f"Bearer {admin}"}
    with (
        httpx.Client(base_url=daemon_url, headers=headers, timeout=10) as http,
        open_dashboard(daemon_url) as page,
    ):
        log_in(page, admin, "platform admin")
        page.click("nav.views a[data-view='scheduled']")
        rows = page.locator("#schedules-body tr")
        more = page.locator("#schedules-more")
        count = page.locator("#schedules-count")
        expect(rows).to_have_count(100)
        expect(count).to_have_text("100 loaded, more available")
        expect(page.locator("#schedule-stats")).to_contain_text(f"{TOTAL}")
        for shown in (200, 300, 400, 500, TOTAL):
            more.click()
            expect(rows).to_have_count(shown)
        expect(more).to_be_hidden()
        expect(count).to_have_text(f"{TOTAL} schedules")
        ids = [rows.nth(i).get_attribute("data-schedule-id") for i in range(TOTAL)]
        assert ids == [
            j.id for j in sorted(made, key=lambda j: (j.created_at_ms, j.id))
        ]  # each once, oldest first
        page.screenshot(path=str(tmp_path / "schedules.png"))

        # Deleted elsewhere: the event reloads the list, every other schedule stays shown.
        assert http.delete(f"{PREFIX}/scheduled/{made[7].id}").status_code == 200
        expect(rows).to_have_count(TOTAL - 1)
        expect(page.locator(f"#schedules-body tr[data-schedule-id='{made[7].id}']")).to_have_count(
            0
        )
        expect(count).to_have_text(f"{TOTAL - 1} schedules")

        # The lateness chart ranks every schedule, not the first page's.
        page.click("nav.views a[data-view='analytics']")
        expect(page.locator("#analytics-lateness svg g[data-bar]")).to_have_count(1)
        assert page.locator("#analytics-lateness svg g[data-bar]").get_attribute("data-bar") == (
            last.name
        )
