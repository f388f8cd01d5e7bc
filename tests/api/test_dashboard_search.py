"""The dashboard's jobs search, tab counts, schedule events and narrow screens (#19), in
Debian's chromium (tests/browser.py): the search goes to the server on every status
(`?q=`), each status tab shows its count (the overview's counters, or the matches of a
search), a `schedule.fired` feed row reads as a sentence, and the counter cards fit a
420 px wide screen; an e-mail written to the outbox reads "not sent"."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from api_client import PREFIX, token
from browser import log_in, needs_chromium, open_dashboard, start_daemon
from daemons import Fleet

from fleetd.config import Config

pytestmark = needs_chromium

FAR_FUTURE = "2999-01-01T00:00:00Z"


@pytest.fixture
def daemon_url(config: Config, fleet: Fleet) -> str:
    return start_daemon(config, fleet)


def enqueue(http: httpx.Client, body: dict[str, object]) -> str:
    r = http.post(f"{PREFIX}/enqueue", json=body)
    assert r.status_code == 201, r.text
    job_id: str = r.json()["job_id"]
    return job_id


def test_search_is_server_side_across_statuses_and_tabs_count(
    daemon_url: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    admin = token(subject="ops@fleet", ttl=600)
    headers = {"Authorization": f"Bearer {admin}"}
    with (
        httpx.Client(base_url=daemon_url, headers=headers, timeout=10) as http,
        open_dashboard(daemon_url) as page,
    ):
        waiting = [enqueue(http, {"type": "noop", "data": {}, "run_at": FAR_FUTURE}) for _ in "ab"]
        done = enqueue(http, {"type": "noop", "data": {}})
        log_in(page, admin, "platform admin")
        expect(page.locator("#counters .value[data-status='completed']")).to_have_text("1")
        page.click("nav.views a[data-view='jobs']")
        tabs = page.locator("#job-tabs")
        expect(tabs.locator(".tab-count[data-count='pending']")).to_have_text("2")
        expect(tabs.locator(".tab-count[data-count='completed']")).to_have_text("1")
        expect(page.locator("#jobs-body tr")).to_have_count(2)

        # A part of the completed job's id: not among the loaded (pending) rows, found
        # by the server on the completed tab.
        page.fill("#job-search", done[-10:])
        expect(page.locator("#jobs-body tr")).to_have_count(0)
        expect(page.locator("#jobs-empty")).to_contain_text("matches")
        expect(tabs.locator(".tab-count[data-count='completed']")).to_have_text("1")
        expect(tabs.locator(".tab-count[data-count='pending']")).to_have_text("0")
        page.click("#job-tabs .tab[data-status='completed']")
        expect(page.locator(f"#jobs-body tr[data-job-id='{done}']")).to_have_count(1)

        # Cleared: every job of the tab again, and the counters on the tabs.
        page.fill("#job-search", "")
        page.click("#job-tabs .tab[data-status='pending']")
        expect(page.locator("#jobs-body tr")).to_have_count(len(waiting))
        expect(tabs.locator(".tab-count[data-count='pending']")).to_have_text("2")
        page.screenshot(path=str(tmp_path / "tabs.png"))


def test_schedule_rows_read_and_cards_fit_420px(daemon_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    admin = token(subject="ops@fleet", ttl=600)
    with open_dashboard(daemon_url) as page:
        log_in(page, admin, "platform admin")
        text = page.evaluate(
            """async () => (await import("./overview.js")).describe({
                type: "schedule.fired", job_id: "job_x", ts: Date.now(),
                data: {schedule_id: "nightly", due: "2026-01-01T00:00:00.000Z",
                       occurrence: "2026-01-01T00:00:00.000Z", missed: 2, error: null}})"""
        )
        assert text.startswith("schedule nightly fired for "), text
        assert text.endswith(", 2 runs missed") and "{" not in text, text

        page.set_viewport_size({"width": 420, "height": 900})
        cards = page.locator("#counters .counter")
        expect(cards).to_have_count(7)
        expect(page.locator("#counters .value[data-status='total']")).not_to_have_text("–")
        # A busy queue's counts (the test's own are one digit), as refreshCounters
        # writes them.
        page.evaluate(
            """() => document.querySelectorAll("#counters .value")
                .forEach((v) => { v.textContent = "1,234,567"; })"""
        )
        boxes = page.evaluate(
            """() => [...document.querySelectorAll("#counters .counter")].map((c) => {
                const r = c.getBoundingClientRect();
                return [r.left, r.right, c.scrollWidth, c.clientWidth];
            })"""
        )
        for left, right, scroll, client in boxes:
            assert left >= 0 and right <= 420, boxes
            assert scroll <= client, boxes  # nothing spills out of a card
        assert page.evaluate("document.documentElement.scrollWidth") <= 420
        page.screenshot(path=str(tmp_path / "narrow.png"))


def test_an_outbox_email_is_marked_not_sent(daemon_url: str, tmp_path: Path) -> None:
    """The test daemon runs in outbox mode (the default): its e-mail job completes,
    and its row and detail say the message was not sent, and where it went."""
    from playwright.sync_api import expect

    admin = token(subject="ops@fleet", ttl=600)
    headers = {"Authorization": f"Bearer {admin}"}
    with (
        httpx.Client(base_url=daemon_url, headers=headers, timeout=10) as http,
        open_dashboard(daemon_url) as page,
    ):
        mail = {"to": "ops@example.com", "subject": "Fleet Update", "body": "Status changed"}
        sent = enqueue(http, {"type": "email_notification", "data": mail})
        other = enqueue(http, {"type": "noop", "data": {}})
        log_in(page, admin, "platform admin")
        expect(page.locator("#counters .value[data-status='completed']")).to_have_text("2")
        path = http.get(f"{PREFIX}/{sent}").json()["job"]["result"]["path"]
        page.click("nav.views a[data-view='jobs']")
        page.click("#job-tabs .tab[data-status='completed']")
        row = page.locator(f"#jobs-body tr[data-job-id='{sent}']")
        mark = row.locator("[data-delivery='outbox']")
        expect(mark).to_have_text("e-mail not sent: outbox")
        assert path in (mark.get_attribute("title") or "")
        plain = page.locator(f"#jobs-body tr[data-job-id='{other}'] [data-delivery]")
        expect(plain).to_have_count(0)
        row.click()
        detail = page.locator("#job-detail [data-delivery='outbox']")
        expect(detail).to_contain_text(
            f"Not sent: [email] mode is outbox, the message was written to {path}"
        )
        page.screenshot(path=str(tmp_path / "outbox.png"))
