"""/metrics, worker health thresholds and the audit log, against a real daemon."""

from __future__ import annotations

import dataclasses
from typing import Any

import trio
from api_client import PREFIX, Api, api_config, auth, running_api
from prometheus_client.parser import text_string_to_metric_families
from sandbox_handlers import Sandboxed

from fleetd.config import Config
from fleetd.engine import build_registry
from fleetd.jobs.context import JobContext
from fleetd.jobs.handlers import JobHandler, PermanentError


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class Flaky(JobHandler):
    job_type = "flaky"

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("fail"):
            raise PermanentError("no")
        if data.get("stall"):
            await trio.sleep_forever()
        return {}


async def metric(api: Api, name: str, **labels: str) -> float:
    r = await api.get("/metrics")
    assert r.status_code == 200
    return samples(r.text).get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_count_outcomes_depth_and_requests(config: Config) -> None:
    registry = build_registry(config)
    registry.register(Flaky(), source="tests")
    cfg = dataclasses.replace(
        config, daemon=dataclasses.replace(config.daemon, heartbeat_interval=0.1)
    )
    async with running_api(api_config(cfg), roles=("api", "worker"), registry=registry) as api:
        r = await api.get("/metrics")
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        ok = (await api.enqueue({"type": "flaky"}))["job_id"]
        bad = (await api.enqueue({"type": "flaky", "data": {"fail": True}}))["job_id"]
        await api.wait_status(ok, "completed")
        await api.wait_status(bad, "failed")
        with trio.fail_after(5):
            while await metric(api, "fleetd_jobs_failed_total", type="flaky") < 1:
                await trio.sleep(0.05)
        assert await metric(api, "fleetd_jobs_processed_total", type="flaky") == 2
        assert await metric(api, "fleetd_jobs_completed_total", type="flaky") == 1
        assert await metric(api, "fleetd_job_duration_seconds_count", type="flaky") == 1
        assert await metric(api, "fleetd_jobs", status="completed") == 1
        assert await metric(api, "fleetd_jobs", status="failed") == 1
        for name in ("fired", "missed", "errors"):
            assert await metric(api, f"fleetd_scheduler_{name}_total") == 0
        assert await metric(
            api, "fleetd_http_requests_total",
            method="POST", route="/api/v1/admin/jobs/enqueue", status="201",
        ) == 2  # fmt: skip
        # Anonymous scrapes are refused unless [http] metrics_auth = false.
        assert (await api.client.get("/metrics")).status_code == 401


async def test_metrics_count_failed_attempts_by_error_kind(config: Config) -> None:
    registry = build_registry(config)
    registry.register(Flaky(), source="tests")
    registry.register(Sandboxed(), source="tests")
    async with running_api(api_config(config), roles=("api", "worker"), registry=registry) as api:
        crash = {"type": "sandboxed", "data": {"do": "exit"}, "max_retries": 0}
        stall = {"type": "flaky", "data": {"stall": True}, "timeout": "100ms", "max_retries": 0}
        for body in (crash, stall):
            await api.wait_status((await api.enqueue(body))["job_id"], "failed", limit=30)
        with trio.fail_after(5):
            while await metric(api, "fleetd_jobs_failed_total", type="flaky") < 1:
                await trio.sleep(0.05)
        assert await metric(api, "fleetd_job_errors_total", type="sandboxed", kind="crash") == 1
        assert await metric(api, "fleetd_job_errors_total", type="flaky", kind="timeout") == 1


async def test_queue_depth_by_type_and_public_metrics(config: Config) -> None:
    async with running_api(api_config(config, metrics_auth=False)) as api:
        for t in ("noop", "noop", "email_notification"):
            data = {"to": "a@example.com", "subject": "s", "body": "b"} if t != "noop" else {}
            await api.enqueue({"type": t, "data": data})
        r = await api.client.get("/metrics")
        assert r.status_code == 200
        got = samples(r.text)
        assert got[("fleetd_queue_depth", (("status", "pending"), ("type", "noop")))] == 2
        key = ("fleetd_queue_depth", (("status", "pending"), ("type", "email_notification")))
        assert got[key] == 1


async def test_worker_health_thresholds(config: Config) -> None:
    registry = build_registry(config)
    registry.register(Flaky(), source="tests")
    cfg = dataclasses.replace(
        config, daemon=dataclasses.replace(config.daemon, heartbeat_interval=0.1)
    )
    cfg = dataclasses.replace(cfg, alerts=dataclasses.replace(cfg.alerts, backlog=2))
    async with running_api(api_config(cfg)) as api:
        health = (await api.get(f"{PREFIX}/worker/health")).json()
        assert health["status"] == "unhealthy" and health["reasons"] == ["no live worker daemon"]
    async with running_api(
        api_config(
            dataclasses.replace(cfg, alerts=dataclasses.replace(cfg.alerts, failure_rate=40))
        ),
        roles=("api", "worker"),
        registry=registry,
    ) as api:
        ids = [
            (await api.enqueue({"type": "flaky", "data": {"fail": i < 1}}))["job_id"]
            for i in range(2)
        ]
        for job_id in ids:
            with trio.fail_after(10):
                while (await api.get(f"{PREFIX}/{job_id}")).json()["status"] not in (
                    "completed",
                    "failed",
                ):
                    await trio.sleep(0.02)
        with trio.fail_after(5):
            while (health := (await api.get(f"{PREFIX}/worker/health")).json())[
                "jobs_processed"
            ] < 2:
                await trio.sleep(0.05)
        assert health["failure_rate"] == 50.0 and health["success_rate"] == 50.0
        assert health["status"] == "degraded"
        assert health["reasons"] == ["failure rate 50% is over 40%"]


async def test_audit_log_records_mutations_with_outcomes(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        acme = auth("acme", subject="alice")
        job_id = (await api.enqueue({"type": "noop"}, headers=acme))["job_id"]
        await api.delete(f"{PREFIX}/{job_id}", headers=acme)
        await api.delete(f"{PREFIX}/{job_id}", headers=acme)  # 409
        await api.post(f"{PREFIX}/enqueue", json={"type": "nope"})  # 422, platform admin
        await api.client.post(f"{PREFIX}/enqueue", json={"type": "noop"})  # 401
        await api.get(f"{PREFIX}/stats")  # reads are not audited
        with trio.fail_after(5):
            while (await api.get(f"{PREFIX}/audit")).json()["count"] < 5:
                await trio.sleep(0.02)
        entries = (await api.get(f"{PREFIX}/audit")).json()["entries"]
        brief = [
            (e["action"], e["subject"], e["company_id"], e["outcome"], e["status"]) for e in entries
        ]
        assert brief == [
            ("job.enqueue", "anonymous", None, "unauthorized", 401),
            ("job.enqueue", "tester", None, "validation_failed", 422),
            ("job.cancel", "alice", "acme", "conflict", 409),
            ("job.cancel", "alice", "acme", "ok", 200),
            ("job.enqueue", "alice", "acme", "ok", 201),
        ]
        assert entries[-1]["target"] == job_id and entries[-1]["detail"]["type"] == "noop"
        assert entries[0]["remote"] == "127.0.0.1"
        # Filters, pages, and a company admin sees only its company's entries.
        only = (await api.get(f"{PREFIX}/audit", params={"action": "job.cancel"})).json()
        assert [e["outcome"] for e in only["entries"]] == ["conflict", "ok"]
        page = (await api.get(f"{PREFIX}/audit", params={"limit": 2})).json()
        rest = (await api.get(f"{PREFIX}/audit", params={"cursor": page["next_cursor"]})).json()
        assert [e["id"] for e in page["entries"] + rest["entries"]] == [e["id"] for e in entries]
        mine = (await api.get(f"{PREFIX}/audit", headers=acme)).json()["entries"]
        assert {e["company_id"] for e in mine} == {"acme"} and len(mine) == 3
        since = entries[2]["at"]
        recent = (await api.get(f"{PREFIX}/audit", params={"since": since})).json()
        assert len(recent["entries"]) >= 3
        # Cursors at the stream's ends: nothing below 0-0 (Redis refuses it as an
        # exclusive end), everything below the largest id.
        for cursor, count in (("0-0", 0), ("0", 0), ("9999999999999999999-0", len(entries))):
            r = await api.get(f"{PREFIX}/audit", params={"cursor": cursor})
            assert r.status_code == 200, (cursor, r.text)
            assert r.json()["count"] == count, cursor


# Every view that counts every company's jobs: a company-bound token gets the same 403.
AGGREGATES = [
    ("GET", "/metrics"),
    ("GET", f"{PREFIX}/worker/metrics"),
    ("GET", f"{PREFIX}/worker/health"),
    ("GET", f"{PREFIX}/stats"),
    ("GET", f"{PREFIX}/throughput"),
    ("POST", f"{PREFIX}/cleanup?older_than=1d"),
]


async def test_company_tokens_get_403_on_every_aggregate(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        await api.enqueue({"type": "noop", "company_id": "globex"})
        acme = auth("acme")
        for method, path in AGGREGATES:
            r = await api.client.request(method, path, headers=acme)
            assert r.status_code == 403, (path, r.text)
            error = r.json()["error"]
            assert error["code"] == "forbidden", path
            assert "platform admin" in error["message"], path
            assert "globex" not in r.text, path
            r = await api.client.request(method, path, headers=auth())
            assert r.status_code == 200, (path, r.text)
        # What is stored by company stays the company's own: its listing, its audit
        # entries, its schedules' stats.
        for path in (f"{PREFIX}/status/pending", f"{PREFIX}/audit", f"{PREFIX}/scheduled/stats"):
            r = await api.get(path, headers=acme)
            assert r.status_code == 200 and "globex" not in r.text, path
    # [http] metrics_auth = false opens /metrics to anyone the operator lets reach it.
    async with running_api(api_config(config, metrics_auth=False)) as api:
        for headers in ({}, auth("acme")):
            assert (await api.client.get("/metrics", headers=headers)).status_code == 200
