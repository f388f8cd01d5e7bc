"""The dashboard in a real browser (tests/browser.py): the Daemons page lists the named
queues with their ready jobs and their own limits, and its Pause / Resume buttons pause
and resume a queue on every daemon (what `GET /api/v1/admin/queues` then answers); after
a workload over two queues each row shows the daemons serving it (none for an unserved
queue), its jobs completed and failed in the last hour and its throughput."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from api_client import PREFIX, SECRET, token
from browser import log_in, needs_chromium, open_dashboard
from conftest import fleetd_env
from daemons import Fleet, settings, wait_for
from engine_jobs import enqueue

from fleetd.config import Config
from fleetd.engine import Engine

pytestmark = needs_chromium


def test_daemons_page_lists_queues_and_pauses_one(
    config: Config, engine: Engine, fleet: Fleet, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    env = fleetd_env(config) | {"FLEETD_AUTH_SECRET": SECRET} | settings(limits_queues="bulk=4")
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
            expect(row.locator("[data-limit]")).to_have_text("limit 4 running")
            expect(row.locator("td[data-waiting]")).to_have_text("0")
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
            # Past 10,000 delayed jobs the figures come from a sample, marked ≈.
            later = {"type": "noop", "run_at": "2099-01-01T00:00:00Z", "queue": "bulk"}
            enqueue(engine, [later] * 10_001)
            page.reload()  # still signed in: the view reads the queues anew
            page.click("nav.views a[data-view='daemons']")
            waiting = page.locator("#queues-body tr[data-queue='bulk'] td[data-waiting]")
            expect(waiting).to_have_text(re.compile(r"^≈"))
            expect(waiting).to_have_attribute("title", re.compile("sample"))


def test_queues_table_shows_daemons_and_finished_jobs_per_queue(
    config: Config, fleet: Fleet, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    env = fleetd_env(config) | {"FLEETD_AUTH_SECRET": SECRET}
    fleet.start(env | settings(worker_queues="mail,default", worker_poll_interval="100ms"))
    url = fleet.api_url(Path(config.state_dir))
    admin = token(subject="ops@fleet", ttl=600)
    headers = {"Authorization": f"Bearer {admin}"}
    fails = {"type": "noop", "data": {"fail_attempts": 5}, "max_retries": 0}
    bodies = [{"type": "noop", "queue": "mail"}] * 4 + [fails | {"queue": "mail"}]
    bodies += [{"type": "noop"}] * 3 + [{"type": "noop", "queue": "bulk"}]
    with httpx.Client(base_url=url, headers=headers, timeout=10) as http:
        for body in bodies:
            r = http.post(f"{PREFIX}/enqueue", json=body)
            assert r.status_code == 201, r.text

        def finished() -> bool:
            stats = http.get(f"{PREFIX}/stats").json()["stats"]
            return bool(stats["completed"] + stats["failed"] == 8)

        wait_for(finished, 30, "the mail and default jobs", fleet.tails)
        stats = http.get(f"{PREFIX}/stats").json()["stats"]  # the totals, as the spec has it
        assert (stats["completed"], stats["failed"], stats["pending"]) == (7, 1, 1)
        queues = {q["name"]: q for q in http.get("/api/v1/admin/queues").json()["queues"]}
        daemon = queues["mail"]["daemons"][0]
        assert queues["default"]["daemons"] == [daemon] and queues["bulk"]["daemons"] == []

        with open_dashboard(url) as page:
            log_in(page, admin, "platform admin")
            page.click("nav.views a[data-view='daemons']")
            mail = page.locator("#queues-body tr[data-queue='mail']")
            expect(mail.locator("td[data-daemons]")).to_have_text("1")
            expect(mail.locator("td[data-daemons]")).to_have_attribute("title", daemon)
            expect(mail.locator("td[data-completed]")).to_have_text("4")
            expect(mail.locator("td[data-failed]")).to_have_text("1")
            # 5 jobs over the last 5 minutes, the current one partly gone: 1 to 1.25/min
            # (it falls as the minute goes on).
            rate = mail.locator("td[data-throughput]")
            expect(rate).to_have_text(re.compile(r"^\d+(\.\d+)?/min$"))
            assert 5 / 5 <= float(rate.inner_text().removesuffix("/min")) <= 5 / 4
            plain = page.locator("#queues-body tr[data-queue='default']")
            expect(plain.locator("td[data-completed]")).to_have_text("3")
            expect(plain.locator("td[data-failed]")).to_have_text("0")
            bulk = page.locator("#queues-body tr[data-queue='bulk']")
            expect(bulk.locator("td[data-daemons]")).to_have_text("none")
            expect(bulk.locator("td.num").first).to_have_text("1")
            shot = tmp_path / "queue-figures.png"
            page.screenshot(path=str(shot))
            print(f"queue figures screenshot: {shot}")
