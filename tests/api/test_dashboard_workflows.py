"""The dashboard's workflow view in a real browser (headless chromium, tests/browser.py):
a diamond submitted over HTTP is drawn as a graph, its nodes recoloured live from the
WebSocket feed as they run, and a click on a node opens its job. The screenshot's path
is printed (`pytest -s` shows it)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from api_client import token
from browser import log_in, needs_chromium, open_dashboard, start_daemon
from daemons import Fleet

from fleetd.config import Config

pytestmark = needs_chromium

# The middle node runs this long: the page is open before it finishes, so its colour
# and the fan-in's change live.
SLOW_MS = 2500


@pytest.fixture
def daemon_url(config: Config, fleet: Fleet) -> str:
    return start_daemon(config, fleet)


def test_workflow_graph_live_and_click_through(daemon_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    admin = token(subject="ops@fleet", ttl=600)
    with httpx.Client(base_url=daemon_url, headers={"Authorization": f"Bearer {admin}"},
                      timeout=10) as http, open_dashboard(daemon_url) as page:  # fmt: skip
        log_in(page, admin, "platform admin")
        r = http.post("/api/v1/admin/workflows", json={"name": "diamond", "nodes": [
            {"name": "export", "type": "noop"},
            {"name": "slow", "type": "noop", "depends_on": ["export"],
             "data": {"sleep_ms": SLOW_MS}},
            {"name": "fast", "type": "noop", "depends_on": ["export"]},
            {"name": "mail", "type": "noop", "depends_on": ["slow", "fast"]},
            {"name": "on-error", "type": "noop",
             "depends_on": [{"node": "slow", "on": "failure"}]},
        ]})  # fmt: skip
        assert r.status_code == 201, r.text
        wid = r.json()["workflow_id"]
        page.goto(f"{daemon_url}/admin/#/workflows/{wid}")
        graph = page.locator("#workflow-graph svg")
        expect(graph.locator("g.wf-node")).to_have_count(5)
        expect(graph.locator("line.wf-edge")).to_have_count(5)
        mail = graph.locator("g.wf-node[data-name='mail']")
        # Drawn while "slow" runs, then recoloured by the live feed (no reload).
        expect(mail).not_to_have_attribute("data-state", "completed")
        expect(mail).to_have_attribute("data-state", "completed", timeout=SLOW_MS + 15_000)
        expect(graph.locator("g.wf-node[data-name='on-error']")).to_have_attribute(
            "data-state", "skipped"
        )
        expect(page.locator("#workflow-status")).to_have_text("completed")
        ok = "rgb(22, 163, 74)"  # --ok in style.css: completed nodes are drawn green
        expect(mail.locator("rect")).to_have_css("stroke", ok)
        expect(graph.locator("g.wf-node[data-name='on-error'] rect")).not_to_have_css("stroke", ok)
        shot = tmp_path / "workflow-graph.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot: {shot}")
        mail.click()
        expect(page.locator("#job-dialog")).to_be_visible()
        expect(page.locator("#job-dialog-title")).to_have_text(r.json()["nodes"]["mail"])
        # An unknown id says so, with no graph.
        page.goto(f"{daemon_url}/admin/#/workflows/wf_nope")
        expect(page.locator("#workflow-error")).to_contain_text("no workflow")
        expect(page.locator("#workflow-graph svg")).to_have_count(0)
