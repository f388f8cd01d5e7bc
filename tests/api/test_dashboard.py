"""The dashboard in a real browser: Debian's chromium, headless, driven by Playwright's
sync API (tests/browser.py).

One daemon (roles api, worker) against the test Redis. The page logs in with a minted
token, watches a job enqueued over HTTP appear and finish live (feed and counters),
cancels a running job with a click (checked through the API), and shows a company
admin only that company's jobs. Screenshots go to the test's tmp_path; their paths are
printed (`pytest -s` shows them).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from api_client import PREFIX, token
from browser import WAIT_MS, log_in, needs_chromium, open_dashboard, start_daemon
from daemons import Fleet, wait_for

from fleetd.config import Config

if TYPE_CHECKING:
    from playwright.sync_api import Page

# The job watched live runs this long, so it is seen processing, then completed.
SLOW_JOB_MS = 1500
# The job cancelled from the page would run this long (an hour: it never finishes).
ENDLESS_MS = 3_600_000
FAR_FUTURE = "2999-01-01T00:00:00Z"

pytestmark = needs_chromium


@pytest.fixture
def daemon_url(config: Config, fleet: Fleet) -> str:
    return start_daemon(config, fleet)


def enqueue(http: httpx.Client, body: dict[str, Any]) -> str:
    r = http.post(f"{PREFIX}/enqueue", json=body)
    assert r.status_code == 201, r.text
    job_id: str = r.json()["job_id"]
    return job_id


def status_of(http: httpx.Client, job_id: str) -> str:
    r = http.get(f"{PREFIX}/{job_id}")
    assert r.status_code == 200, r.text
    status: str = r.json()["status"]
    return status


@contextmanager
def dashboard(daemon_url: str, admin: str) -> Iterator[Page]:
    """The dashboard, logged in with `admin` (a platform admin's token) and live."""
    with open_dashboard(daemon_url) as page:
        log_in(page, admin, "platform admin")
        yield page


def test_dashboard_live_cancel_and_company_scope(daemon_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    admin = token(subject="ops@fleet", ttl=600)
    headers = {"Authorization": f"Bearer {admin}"}
    with (
        httpx.Client(base_url=daemon_url, headers=headers, timeout=10) as http,
        dashboard(daemon_url, admin) as page,
    ):
        expect(page.locator("#who")).to_contain_text("ops@fleet")
        completed = page.locator("#counters .value[data-status='completed']")
        expect(completed).to_have_text("0")

        # A job enqueued over HTTP appears in the feed, runs, and completes, live.
        watched = enqueue(http, {"type": "noop", "data": {"sleep_ms": SLOW_JOB_MS}})
        feed = page.locator("#feed")
        for kind in ("job.enqueued", "job.started", "job.completed"):
            row = feed.locator(f"li[data-job-id='{watched}'][data-type='{kind}']")
            expect(row).to_have_count(1)
        expect(completed).to_have_text("1")
        assert status_of(http, watched) == "completed"

        # A running job, cancelled from the Jobs page (two clicks: cancel, confirm).
        endless = enqueue(http, {"type": "noop", "data": {"sleep_ms": ENDLESS_MS}})
        expect(feed.locator(f"li[data-job-id='{endless}'][data-type='job.started']")).to_have_count(
            1
        )
        expect(page.locator("#counters .value[data-status='processing']")).to_have_text("1")
        page.click("nav.views a[data-view='jobs']")
        page.click("#job-tabs .tab[data-status='processing']")
        row = page.locator(f"#jobs-body tr[data-job-id='{endless}']")
        cancel = row.locator("button[data-action='cancel']")
        cancel.click()
        expect(cancel).to_have_text("Confirm cancel")
        cancel.click()
        wait_for(lambda: status_of(http, endless) == "cancelled", WAIT_MS / 1000, "cancel")
        expect(row).to_have_count(0)  # the listing follows the live feed
        page.click("nav.views a[data-view='overview']")
        expect(page.locator("#counters .value[data-status='cancelled']")).to_have_text("1")
        cancelled = feed.locator(f"li[data-job-id='{endless}'][data-type='job.cancelled']")
        expect(cancelled).to_have_count(1)

        # A little traffic for the chart (some failing), then the screenshot.
        for i in range(12):
            fails = i % 4 == 0
            enqueue(
                http,
                {
                    "type": "noop",
                    "data": {"sleep_ms": 50 * i, "fail_attempts": 1 if fails else 0},
                    "max_retries": 0,
                },
            )
        expect(completed).to_have_text("10")
        expect(page.locator("#counters .value[data-status='failed']")).to_have_text("3")
        expect(page.locator("#chart svg rect.bar.bad")).not_to_have_count(0)
        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot))
        print(f"dashboard screenshot: {shot}")

        # A company admin sees only that company's jobs.
        ours = enqueue(http, {"type": "noop", "company_id": "acme", "run_at": FAR_FUTURE})
        theirs = enqueue(http, {"type": "noop", "company_id": "globex", "run_at": FAR_FUTURE})
        page.click("#logout")
        expect(page.locator("#login-error")).to_have_text("Logged out.")
        assert page.evaluate("sessionStorage.length") == 0
        log_in(page, token("acme", subject="dispatch@acme", ttl=600), "company acme")
        # The feed carries this company's events only (the stream keeps order: the
        # other company's job, enqueued first, would show before ours).
        theirs_live = enqueue(http, {"type": "noop", "company_id": "globex", "run_at": FAR_FUTURE})
        ours_live = enqueue(http, {"type": "noop", "company_id": "acme", "run_at": FAR_FUTURE})
        expect(feed.locator(f"li[data-job-id='{ours_live}']")).to_have_count(1)
        assert feed.locator(f"li[data-job-id='{theirs_live}']").count() == 0
        assert feed.locator("li", has_text="globex").count() == 0
        page.click("nav.views a[data-view='jobs']")
        page.click("#job-tabs .tab[data-status='pending']")
        expect(page.locator(f"#jobs-body tr[data-job-id='{ours}']")).to_have_count(1)
        expect(page.locator("#jobs-body tr")).to_have_count(2)
        for other in (theirs, theirs_live):
            assert page.locator(f"tr[data-job-id='{other}']").count() == 0
        # Queue-wide stats are for platform admins: the counters are the company's.
        page.click("nav.views a[data-view='overview']")
        expect(page.locator("#counters-note")).to_be_visible()
        expect(page.locator("#counters .value[data-status='pending']")).to_have_text("2")
        expect(completed).to_have_text("0")
        company_shot = tmp_path / "dashboard-company.png"
        page.screenshot(path=str(company_shot))
        print(f"company admin screenshot: {company_shot}")


def test_job_detail_downloads_the_artifact(daemon_url: str, tmp_path: Path) -> None:
    """A real export (the fleetdata plugin on its embedded SQLite demo fleet), opened
    from the jobs list; its file downloaded by the page equals the API's bytes."""
    from playwright.sync_api import expect

    admin = token(subject="ops@fleet", ttl=600)
    headers = {"Authorization": f"Bearer {admin}"}
    with (
        httpx.Client(base_url=daemon_url, headers=headers, timeout=10) as http,
        dashboard(daemon_url, admin) as page,
    ):
        job_id = enqueue(http, {"type": "data_export",
                                "data": {"export_type": "vehicles", "format": "csv"}})  # fmt: skip
        row = page.locator(f"#feed li[data-job-id='{job_id}'][data-type='job.completed']")
        expect(row).to_have_count(1)
        body = http.get(f"{PREFIX}/{job_id}").json()["job"]
        artifacts = body.get("result", {}).get("artifacts")
        assert artifacts and len(artifacts) == 1, body
        name = artifacts[0]["name"]
        served = http.get(f"{PREFIX}/{job_id}/artifact", params={"name": name})
        assert served.status_code == 200 and served.content.startswith(b"id,"), served.text[:200]

        page.click("nav.views a[data-view='jobs']")
        page.click("#job-tabs .tab[data-status='completed']")
        page.click(f"#jobs-body tr[data-job-id='{job_id}']")
        detail = page.locator("#job-detail")
        expect(detail).to_contain_text("export_type")
        button = detail.locator(".artifacts button", has_text=f"Download {name}")
        with page.expect_download(timeout=WAIT_MS) as download:
            button.click()
        saved = tmp_path / "downloaded" / download.value.suggested_filename
        download.value.save_as(saved)
        assert saved.name == name
        assert saved.read_bytes() == served.content
