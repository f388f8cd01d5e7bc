"""The dashboard's templates list in a real browser (headless chromium, tests/browser.py):
templates saved over HTTP are listed with kind, version, owner and parameters; a new
version appears live (`template.saved` on the feed); a company admin sees its
company's and the platform's, not another company's. The screenshot's path is printed
(`pytest -s` shows it)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from api_client import token
from browser import log_in, needs_chromium, open_dashboard, start_daemon
from daemons import Fleet

from fleetd.config import Config

pytestmark = needs_chromium

REPORT = {
    "name": "monthly-report",
    "description": "one company's monthly report",
    "params": {"type": "object", "required": ["company_id"],
               "properties": {"company_id": {"type": "string"},
                              "rows": {"type": "integer", "default": 10}}},
    "job": {"type": "noop", "company_id": {"$param": "company_id"}},
}  # fmt: skip
FLOW = {"name": "acme-flow", "company_id": "acme",
        "workflow": {"chain": [{"type": "noop"}, {"type": "noop"}]}}  # fmt: skip
OTHER = {"name": "globex-ping", "company_id": "globex", "job": {"type": "noop"}}


@pytest.fixture
def daemon_url(config: Config, fleet: Fleet) -> str:
    return start_daemon(config, fleet)


def test_templates_listed_live_and_scoped_by_company(daemon_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    admin = token(subject="ops@fleet", ttl=600)
    with httpx.Client(base_url=daemon_url, headers={"Authorization": f"Bearer {admin}"},
                      timeout=10) as http, open_dashboard(daemon_url) as page:  # fmt: skip
        for body in (REPORT, FLOW, OTHER):
            r = http.post("/api/v1/admin/templates", json=body)
            assert r.status_code == 201, r.text
        log_in(page, admin, "platform admin")
        page.click("nav.views a[data-view='templates']")
        rows = page.locator("#templates-body tr")
        expect(rows).to_have_count(3)
        report = page.locator("#templates-body tr[data-template='monthly-report']")
        expect(report).to_contain_text("one company's monthly report")
        expect(report).to_contain_text("company_id (string, required), rows (integer) = 10")
        expect(report).to_contain_text("platform")
        expect(report.locator("td.num")).to_have_text("v1")
        expect(page.locator("#templates-body tr[data-template='acme-flow']")).to_contain_text(
            "workflow"
        )
        # A new version shows without a reload, from the live feed.
        r = http.post("/api/v1/admin/templates", json={**REPORT, "description": "v2"})
        assert r.status_code == 201, r.text
        expect(report.locator("td.num")).to_have_text("v2")
        shot = tmp_path / "templates.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot: {shot}")

        page.click("#logout")
        log_in(page, token("acme", subject="dispatch@acme", ttl=600), "company acme")
        page.click("nav.views a[data-view='templates']")
        expect(rows).to_have_count(2)
        expect(page.locator("#templates-body tr[data-template='globex-ping']")).to_have_count(0)
        expect(page.locator("#templates-body tr[data-template='acme-flow']")).to_have_count(1)
