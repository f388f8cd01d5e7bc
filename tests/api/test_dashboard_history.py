"""The dashboard's throughput chart starts with the last ten minutes: jobs that finished
before the page opened are bars as soon as a platform admin logs in (they came from
GET throughput: the live feed never replays them), live jobs are added on top without
counting anything twice, and a company admin's chart says it has no history.

Same set-up as tests/api/test_dashboard.py (tests/browser.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from api_client import PREFIX, token
from browser import WAIT_MS, log_in, needs_chromium, open_dashboard, start_daemon
from daemons import Fleet, wait_for

from fleetd.config import Config

OK_BEFORE, FAILED_BEFORE = 4, 2
OK_LIVE, FAILED_LIVE = 2, 1

# A ThroughputChart fed live events before and after its history arrives: the history
# (1 completed) was counted up to `until` = bucket + 5 ms. Held: a completion at +1 (in
# the history: dropped), a failure at +5 and a completion at +6 (after: counted); then a
# live completion at +7 and a retrying attempt (not a finish). 3 completed, 1 failed.
SEED_RACE = """async () => {
  const { ThroughputChart } = await import("./chart.js");
  const span = () => document.createElement("span");
  const summary = { throughput: span(), finished: span(), rate: span() };
  const chart = new ThroughputChart(document.createElement("div"), summary);
  const now = Date.now();
  const bucket = now - (now % 10000);
  const iso = (ms) => new Date(ms).toISOString();
  chart.expectHistory();
  chart.record({ type: "job.completed", ts: bucket + 1 });
  chart.record({ type: "job.failed", ts: bucket + 5 });
  chart.record({ type: "job.completed", ts: bucket + 6 });
  chart.seed({ until: iso(bucket + 5), buckets: [{ t: iso(bucket), completed: 1, failed: 0 }] });
  chart.record({ type: "job.completed", ts: bucket + 7 });
  chart.record({ type: "job.retrying", ts: bucket + 8 });
  chart.render();
  return { finished: summary.finished.textContent, rate: summary.rate.textContent };
}"""

pytestmark = needs_chromium


@pytest.fixture
def daemon_url(config: Config, fleet: Fleet) -> str:
    return start_daemon(config, fleet)


def run_jobs(http: httpx.Client, ok: int, failed: int) -> None:
    """Enqueue `ok` jobs that complete and `failed` that fail for good; wait for all."""
    bodies: list[dict[str, Any]] = [{"type": "noop"}] * ok + [
        {"type": "noop", "data": {"fail_attempts": 1}, "max_retries": 0}
    ] * failed
    expected = {}
    for body in bodies:
        r = http.post(f"{PREFIX}/enqueue", json=body)
        assert r.status_code == 201, r.text
        expected[r.json()["job_id"]] = (
            "failed" if "fail_attempts" in body.get("data", {}) else "completed"
        )

    def done() -> bool:
        return all(
            http.get(f"{PREFIX}/{job_id}").json()["status"] == status
            for job_id, status in expected.items()
        )

    wait_for(done, WAIT_MS / 1000, "jobs finished")


def api_totals(http: httpx.Client) -> tuple[int, int]:
    r = http.get(f"{PREFIX}/throughput", params={"window": "10m", "step": "10s"})
    assert r.status_code == 200, r.text
    buckets = r.json()["throughput"]["buckets"]
    return sum(b["completed"] for b in buckets), sum(b["failed"] for b in buckets)


def test_the_chart_shows_jobs_finished_before_the_page_opened(
    daemon_url: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    admin = token(subject="ops@fleet", ttl=600)
    headers = {"Authorization": f"Bearer {admin}"}
    with httpx.Client(base_url=daemon_url, headers=headers, timeout=10) as http:
        run_jobs(http, OK_BEFORE, FAILED_BEFORE)
        assert api_totals(http) == (OK_BEFORE, FAILED_BEFORE)

        with open_dashboard(daemon_url) as page:
            log_in(page, admin, "platform admin")
            chart = page.locator("#chart")
            # History, not the feed: these jobs finished before the page opened.
            expect(chart.locator("svg rect.bar.ok")).not_to_have_count(0)
            expect(chart.locator("svg rect.bar.bad")).not_to_have_count(0)
            expect(page.locator("#chart-finished")).to_have_text(str(OK_BEFORE + FAILED_BEFORE))
            expect(page.locator("#chart-note")).to_be_hidden()

            # Live jobs are added on top, each once: the chart agrees with the API.
            run_jobs(http, OK_LIVE, FAILED_LIVE)
            total = OK_BEFORE + FAILED_BEFORE + OK_LIVE + FAILED_LIVE
            assert sum(api_totals(http)) == total
            # The feed (only the live jobs) shows every live finish: the chart has
            # counted them all. Its next drawing (once a second) is then final.
            feed = page.locator("#feed")
            expect(feed.locator("li[data-type='job.completed']")).to_have_count(OK_LIVE)
            expect(feed.locator("li[data-type='job.failed']")).to_have_count(FAILED_LIVE)
            page.evaluate("document.querySelector('#chart svg').dataset.seen = '1'")
            expect(page.locator("#chart svg[data-seen]")).to_have_count(0)  # redrawn
            assert page.locator("#chart-finished").text_content() == str(total)
            shot = tmp_path / "dashboard-history.png"
            page.screenshot(path=str(shot))
            print(f"dashboard screenshot: {shot}")

            # The rule against counting twice, on a chart of its own: events held while
            # the history is on its way count only if they finished at or after `until`.
            assert page.evaluate(SEED_RACE) == {"finished": "4", "rate": "25.0%"}

            # A company admin: live only (the page reloads on log out: nothing carried).
            page.click("#logout")
            expect(page.locator("#login-error")).to_have_text("Logged out.")
            log_in(page, token("acme", subject="dispatch@acme", ttl=600), "company acme")
            note = page.locator("#chart-note")
            expect(note).to_be_visible()
            expect(note).to_contain_text("history needs a platform admin token")
            expect(page.locator("#chart-finished")).to_have_text("0")
