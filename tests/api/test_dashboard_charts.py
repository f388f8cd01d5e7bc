"""The Analytics and Capacity pages' charts in a real browser (tests/browser.py), from a
real daemon (api, worker, scheduler) that ran a real workload: the run and wait
p50/p95/p99 charts of the picked job type draw exactly the per-bucket percentiles the
API answers (hour and week windows, and another type picked), a schedule firing every
second has its lateness bars (of many schedules, the 20 latest), and the capacity trend
chart draws the week's 168 hourly arrivals with the trend, the projection, now and the
capacity line. Screenshots of each page go to tmp_path (`pytest -s` prints them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import redis
from api_client import PREFIX, SECRET, token
from browser import log_in, needs_chromium, open_dashboard
from conftest import fleetd_env
from daemons import Fleet, wait_for

from fleetd.backend.keys import Keys
from fleetd.config import Config

pytestmark = needs_chromium

EMAIL = {"to": "ops@example.com", "subject": "tick", "body": "tock"}


def drawn(page: Any, chart: str, line: str) -> list[float]:
    g = page.locator(f"{chart} svg g[data-line='{line}']")
    text = g.get_attribute("data-values") or ""
    return [float(v) for v in text.split(",") if v]


def answered(series: list[dict[str, Any]], key: str) -> list[float]:
    return [float(p[key]) for p in series if p[key] is not None]


def plant_lateness(config: Config, schedule_id: str, bucket: int) -> None:
    """Two firings in one lateness bucket (fleetd.analytics.histogram: bucket k holds
    [2^((k-1)/4), 2^(k/4)) ms), as schedule_fire.lua records them."""
    client = redis.Redis.from_url(config.redis.url, decode_responses=True)
    try:
        key = Keys(config.redis.namespace).schedule(schedule_id)
        client.hset(key, mapping={f"late:{bucket}": 2, "late_ms": int(2 * 2 ** (bucket / 4))})
    finally:
        client.close()


def test_percentile_lateness_and_trend_charts(config: Config, fleet: Fleet, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    env = fleetd_env(config) | {"FLEETD_AUTH_SECRET": SECRET}
    fleet.start(env, "--roles", "api,worker,scheduler")
    url = fleet.api_url(Path(config.state_dir))
    admin = token(subject="ops@fleet", ttl=600)
    headers = {"Authorization": f"Bearer {admin}"}
    with httpx.Client(base_url=url, headers=headers, timeout=10) as http:
        # 16 noop jobs of spread run times on the worker's slots: spread waits too.
        for i in range(16):
            r = http.post(f"{PREFIX}/enqueue", json={"type": "noop", "data": {"sleep_ms": 15 * i}})
            assert r.status_code in (200, 201), r.text
        tick = {"name": "tick", "job_type": "email_notification", "schedule": "1s", "data": EMAIL}
        r = http.post(f"{PREFIX}/scheduled", json=tick)
        assert r.status_code in (200, 201), r.text

        def analytics(window: str, jtype: str) -> dict[str, Any]:
            got = http.get(f"{PREFIX}/analytics", params={"window": window, "type": jtype})
            groups = got.json()["analytics"]["groups"]
            return groups[0] if groups else {}

        def settled() -> bool:
            noop = analytics("hour", "noop")
            ticks = [s for s in http.get(f"{PREFIX}/scheduled").json()["scheduled_jobs"]
                     if s["name"] == "tick"]  # fmt: skip
            late = ticks and (ticks[0].get("lateness") or {}).get("count", 0) >= 2
            return bool(noop) and noop["completed"] == 16 and bool(late)

        wait_for(settled, 30, "16 noop jobs finished and 2 firings of the schedule")

        with open_dashboard(url) as page:
            log_in(page, admin, "platform admin")
            page.click("nav.views a[data-view='analytics']")
            run, wait = "#analytics-run-chart", "#analytics-wait-chart"
            expect(page.locator("#analytics-charts")).to_be_visible()
            page.select_option("#analytics-type", "noop")
            expect(page.locator("#analytics-body tr.picked")).to_have_attribute("data-type", "noop")
            expect(page.locator(f"{run} svg g[data-line='p95']")).not_to_have_attribute(
                "data-points", "0"
            )
            series = analytics("hour", "noop")["series"]
            for chart, kind in ((run, "run"), (wait, "wait")):
                for p in ("p50", "p95", "p99"):
                    assert drawn(page, chart, p) == answered(series, f"{kind}_{p}"), (kind, p)
            # The workload's spread: 0-225 ms runs, so p99 of some minute is ≥ 100 ms.
            assert max(drawn(page, run, "p99")) >= 100
            assert sum(p["completed"] for p in series) == 16
            # Lateness: the schedule's p50 and p99, as the schedules API answers them.
            bar = page.locator("#analytics-lateness svg g[data-bar='tick']")
            expect(bar).to_have_count(1)
            p50, p99 = (
                float(bar.get_attribute("data-p50") or -1),
                float(bar.get_attribute("data-p99") or -1),
            )
            assert 0 < p50 <= p99
            expect(page.locator("#analytics-lateness [data-lateness-shown]")).to_have_count(0)
            shot = tmp_path / "analytics-charts.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"analytics charts screenshot: {shot}")

            # Another type picked by its row: its own series.
            page.click("#analytics-body tr[data-type='email_notification']")
            expect(page.locator("#analytics-chart-title")).to_contain_text("email_notification")

            def emails_as_answered() -> bool:
                """The schedule's e-mails keep completing, so this minute's bucket moves
                between the page's read and ours: reload the page's and compare again
                until one pair of reads agrees (closed buckets never move)."""
                emails = analytics("hour", "email_notification")["series"]
                shown = drawn(page, run, "p50")
                if shown and set(shown) <= set(answered(emails, "run_p50")) | {0.5}:
                    return True
                page.click("#analytics-windows button[data-window='hour']")
                expect(page.locator("#analytics-chart-title")).to_contain_text("email_notification")
                return False

            wait_for(emails_as_answered, 20, "the e-mails' run p50 drawn as answered")

            # The week: the same jobs in hour buckets.
            page.select_option("#analytics-type", "noop")
            page.click("#analytics-windows button[data-window='week']")
            expect(page.locator("#analytics-note")).to_contain_text("Last week in 1h buckets")
            week = analytics("week", "noop")["series"]
            assert len(week) == 168
            expect(page.locator(f"{run} svg g[data-line='p99']")).to_have_attribute(
                "data-values", ",".join(f"{v:g}" for v in answered(week, "run_p99")))  # fmt: skip

            page.click("nav.views a[data-view='capacity']")
            trend = "#capacity-trend svg"
            expect(page.locator(f"{trend} g[data-line='arrivals']")).to_have_attribute(
                "data-points", "168"
            )
            arrivals = drawn(page, "#capacity-trend", "arrivals")
            # This hour's arrivals (the noop jobs and the firings) are the last point.
            assert arrivals[-1] > 0 and sum(arrivals[:-2]) == 0
            assert len(drawn(page, "#capacity-trend", "trend")) == 2
            assert len(drawn(page, "#capacity-trend", "projection")) == 2
            expect(page.locator(f"{trend} line[data-mark='now']")).to_have_count(1)
            capacity = http.get(f"{PREFIX}/capacity").json()["capacity"]
            assert capacity["capacity_rate"] is not None and len(capacity["hourly"]) == 168
            expect(page.locator(f"{trend} line[data-mark='capacity']")).to_have_count(1)
            shot = tmp_path / "capacity-trend.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"capacity trend screenshot: {shot}")

            # 24 more schedules that fired (planted: later and later): the chart draws
            # the 20 latest by p99, and says how many fired in all.
            for i in range(24):
                body = {"name": f"late-{i:02d}", "job_type": "email_notification",
                        "schedule": "@yearly", "data": EMAIL}  # fmt: skip
                r = http.post(f"{PREFIX}/scheduled", json=body)
                assert r.status_code == 201, r.text
                plant_lateness(config, r.json()["scheduled_job"]["id"], 40 + i)
            page.click("nav.views a[data-view='analytics']")
            page.click("#analytics-windows button[data-window='hour']")
            bars = page.locator("#analytics-lateness svg g[data-bar]")
            expect(page.locator("#analytics-lateness [data-lateness-shown]")).to_have_attribute(
                "data-lateness-shown", "20/25"
            )
            expect(bars).to_have_count(20)
            names = [bars.nth(i).get_attribute("data-bar") for i in range(20)]
            assert names == [f"late-{i:02d}" for i in range(23, 3, -1)]  # latest first
