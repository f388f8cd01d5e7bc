"""The dashboard's Analytics and Capacity pages in a real browser (tests/browser.py),
from a real daemon that ran real jobs: the per-type table (run and wait percentiles,
throughput, failure rate, a sparkline) over hour/day/week, and the capacity plan
(utilisation gauge, recommended concurrency, backlog drain time). A company admin sees
Analytics of its own company and no Capacity link. Screenshots go to tmp_path
(`pytest -s` prints them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from api_client import PREFIX, SECRET, token
from browser import log_in, needs_chromium, open_dashboard
from conftest import fleetd_env
from daemons import Fleet, wait_for

from fleetd.config import Config

pytestmark = needs_chromium


def test_analytics_and_capacity_pages(config: Config, fleet: Fleet, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    env = fleetd_env(config) | {"FLEETD_AUTH_SECRET": SECRET}
    fleet.start(env, "--roles", "api,worker")
    url = fleet.api_url(Path(config.state_dir))
    admin = token(subject="ops@fleet", ttl=600)
    headers = {"Authorization": f"Bearer {admin}"}
    with httpx.Client(base_url=url, headers=headers, timeout=10) as http:
        jobs: list[dict[str, Any]] = [
            {"type": "noop", "data": {"sleep_ms": 20 * i}, "company_id": "acme"} for i in range(8)
        ]
        jobs += [{"type": "noop", "data": {"fail_attempts": 1}, "max_retries": 0,
                  "company_id": "beta"}] * 2  # fmt: skip
        for body in jobs:
            r = http.post(f"{PREFIX}/enqueue", json=body)
            assert r.status_code in (200, 201), r.text

        def finished() -> bool:
            got = http.get(f"{PREFIX}/analytics", params={"window": "hour"}).json()
            groups = got["analytics"]["groups"]
            return bool(groups) and groups[0]["completed"] + groups[0]["failed"] == 10

        wait_for(finished, 20, "10 finished jobs")
    with open_dashboard(url) as page:
        log_in(page, admin, "platform admin")
        page.click("nav.views a[data-view='analytics']")
        row = page.locator("#analytics-body tr[data-type='noop']")
        expect(row).to_have_count(1)
        expect(row.locator("[data-failure-rate]")).to_have_text("20.0 %")
        expect(row.locator("svg.spark")).to_have_count(1)
        shot = tmp_path / "analytics.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"analytics screenshot: {shot}")
        page.click("#analytics-windows button[data-window='week']")
        expect(page.locator("#analytics-note")).to_contain_text("Last week in 1h buckets")
        expect(row.locator("[data-failure-rate]")).to_have_text("20.0 %")
        page.click("nav.views a[data-view='capacity']")
        expect(page.locator("#capacity-plan [data-recommended] .value")).not_to_be_empty()
        expect(page.locator("#capacity-plan svg.gauge")).to_have_count(1)
        expect(page.locator("#capacity-body tr[data-type='noop']")).to_have_count(1)
        expect(page.locator("#capacity-plan [data-drain] .value")).to_have_text("no backlog")
        shot = tmp_path / "capacity.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"capacity screenshot: {shot}")

    company = token(subject="acme-admin", company_id="acme", ttl=600)
    with open_dashboard(url) as page:
        log_in(page, company, "company acme")
        expect(page.locator("nav.views a[data-view='capacity']")).to_be_hidden()
        page.click("nav.views a[data-view='analytics']")
        row = page.locator("#analytics-body tr[data-type='noop']")
        expect(row.locator("[data-failure-rate]")).to_have_text("0.0 %")  # acme's only
        shot = tmp_path / "analytics-company.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"company analytics screenshot: {shot}")
