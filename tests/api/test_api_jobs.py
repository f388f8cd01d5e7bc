"""The job endpoints against a real daemon: the spec's example bodies, field by field.

Each test runs `fleetd run` in-process (role api, with worker where jobs must run) on a
free loopback port against the shared test redis-server, and talks HTTP to it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import trio
from api_client import PREFIX, Sleeper, api_config, running_api

from fleetd.config import Config
from fleetd.engine import build_registry
from fleetd.jobs.context import JobContext
from fleetd.jobs.handlers import HandlerRegistry, JobHandler
from fleetd.jobs.model import parse_ts
from fleetd.plugins.noop import NoopHandler

# The spec's example request of POST /api/v1/admin/jobs/enqueue.
SPEC_ENQUEUE = {
    "type": "email_notification",
    "data": {"to": "user@example.com", "subject": "Test Email", "body": "This is a test email"},
    "priority": 5,
    "max_retries": 3,
    "tags": ["test", "notification"],
}
# The spec's Job struct: every field and whether it is omitempty.
JOB_FIELDS = {
    "id": False, "type": False, "data": False, "priority": False, "status": False,
    "created_at": False, "started_at": True, "completed_at": True, "retry_count": False,
    "max_retries": False, "error": True, "result": True, "company_id": True, "user_id": True,
    "tags": True,
}  # fmt: skip
WORKER_METRICS_FIELDS = {
    "jobs_processed", "jobs_succeeded", "jobs_failed", "jobs_retried", "average_job_time",
    "total_job_time", "last_job_time", "start_time", "uptime",
}  # fmt: skip
HEALTH_FIELDS = {
    "status", "uptime", "jobs_processed", "jobs_succeeded", "jobs_failed", "jobs_retried",
    "average_job_time", "last_job_time", "concurrency", "success_rate",
}  # fmt: skip


def is_ts(value: Any) -> bool:
    return isinstance(value, str) and parse_ts(value) > 0


async def test_enqueue_with_the_spec_example_then_get_it_completed(config: Config) -> None:
    async with running_api(api_config(config), roles=("api", "worker")) as api:
        r = await api.post(f"{PREFIX}/enqueue", json=SPEC_ENQUEUE)
        assert r.status_code == 201
        body = r.json()
        assert set(body) == {"job_id", "status", "enqueued"}
        assert body["job_id"].startswith("job_") and body["status"] == "pending"
        assert is_ts(body["enqueued"])
        assert r.headers["Location"] == f"{PREFIX}/{body['job_id']}"

        got = await api.wait_status(body["job_id"], "completed")
        assert set(got) == {"job", "status"} and got["status"] == "completed"
        job = got["job"]
        for name, optional in JOB_FIELDS.items():
            assert optional or name in job, name
        assert job["id"] == body["job_id"] and job["type"] == "email_notification"
        assert job["data"] == SPEC_ENQUEUE["data"] and job["priority"] == 5
        assert job["max_retries"] == 3 and job["retry_count"] == 0
        assert job["tags"] == ["test", "notification"]
        assert job["user_id"] == "tester"  # the token's subject
        assert all(is_ts(job[k]) for k in ("created_at", "started_at", "completed_at"))
        assert isinstance(job["result"], dict)
        # The spec's example result: the run's time and the worker (the daemon's id).
        assert job["result"]["worker_id"] == job["worker"]
        assert job["result"]["processing_time"].endswith("s")
        assert "company_id" not in job  # omitempty


async def test_jobs_by_status_filter_by_user_and_by_text(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        ids = [(await api.enqueue({"type": "noop", "data": {"n": i}}))["job_id"] for i in range(2)]
        pending = f"{PREFIX}/status/pending"
        mine = (await api.get(pending, params={"user_id": "tester"})).json()
        assert [j["id"] for j in mine["jobs"]] == ids[::-1]  # the token's subject
        assert (await api.get(pending, params={"user_id": "nobody"})).json()["jobs"] == []
        found = (await api.get(pending, params={"q": "NOO"})).json()
        assert [j["id"] for j in found["jobs"]] == ids[::-1]
        assert (await api.get(pending, params={"q": "zzz"})).json()["jobs"] == []
        by_id = (await api.get(pending, params={"q": ids[0][-6:], "limit": 1})).json()
        assert [j["id"] for j in by_id["jobs"]] == [ids[0]]


async def test_jobs_by_status_pages_with_a_cursor(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        ids = [(await api.enqueue({"type": "noop", "data": {"n": i}}))["job_id"] for i in range(5)]
        r = await api.get(f"{PREFIX}/status/pending", params={"limit": 2})
        assert r.status_code == 200
        page = r.json()
        assert set(page) == {"jobs", "status", "count", "limit", "next_cursor"}
        assert page["status"] == "pending" and page["count"] == 2 and page["limit"] == 2
        seen = [j["id"] for j in page["jobs"]]
        while page["next_cursor"]:
            r = await api.get(
                f"{PREFIX}/status/pending", params={"limit": 2, "cursor": page["next_cursor"]}
            )
            page = r.json()
            seen += [j["id"] for j in page["jobs"]]
        assert seen == ids[::-1]  # newest first, each once
        # The spec's default limit is 50, at most 500.
        assert (await api.get(f"{PREFIX}/status/pending")).json()["limit"] == 50
        too_many = await api.get(f"{PREFIX}/status/pending", params={"limit": 501})
        assert too_many.status_code == 422
        assert too_many.json()["error"]["details"]["fields"][0]["field"] == "limit"
        bad = await api.get(f"{PREFIX}/status/sleeping")
        assert bad.status_code == 422 and "unknown status" in bad.json()["error"]["message"]
        typed = await api.get(f"{PREFIX}/status/pending", params={"type": "other"})
        assert typed.json()["jobs"] == []


async def test_cancel_and_reset(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        job_id = (await api.enqueue({"type": "noop"}))["job_id"]
        # Reset refuses a pending job.
        r = await api.post(f"{PREFIX}/{job_id}/reset")
        assert r.status_code == 409 and r.json()["error"]["details"]["status"] == "pending"
        r = await api.delete(f"{PREFIX}/{job_id}")
        assert r.status_code == 200
        assert r.json() == {"job_id": job_id, "status": "cancelled", "cancelled": True}
        again = await api.delete(f"{PREFIX}/{job_id}")
        assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
        r = await api.post(f"{PREFIX}/{job_id}/reset")
        assert r.status_code == 200
        assert r.json() == {"job_id": job_id, "status": "pending", "reset": True}
        for method in ("get", "delete"):
            missing = await getattr(api, method)(f"{PREFIX}/job_NOPE")
            assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        assert (await api.post(f"{PREFIX}/job_NOPE/reset")).status_code == 404


async def test_cancelling_a_running_job_answers_202_then_it_is_cancelled(config: Config) -> None:
    registry = build_registry(config)
    registry.register(Sleeper(), source="tests")
    async with running_api(api_config(config), roles=("api", "worker"), registry=registry) as api:
        job_id = (await api.enqueue({"type": "sleeper"}))["job_id"]
        await api.wait_status(job_id, "processing")
        r = await api.delete(f"{PREFIX}/{job_id}")
        assert r.status_code == 202
        assert r.json() == {
            "job_id": job_id,
            "status": "processing",
            "cancelled": False,
            "cancel_requested": True,
        }
        await api.wait_status(job_id, "cancelled")


async def test_stats_and_cleanup(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        for _ in range(3):
            await api.enqueue({"type": "noop"})
        job_id = (await api.enqueue({"type": "noop"}))["job_id"]
        await api.delete(f"{PREFIX}/{job_id}")
        r = await api.get(f"{PREFIX}/stats")
        assert r.status_code == 200
        stats = r.json()["stats"]
        assert set(r.json()) == {"stats"}
        # The spec's five fields, plus retrying and cancelled; total is their sum.
        assert {"pending", "processing", "completed", "failed", "total"} <= set(stats)
        assert stats["pending"] == 3 and stats["cancelled"] == 1 and stats["total"] == 4

        r = await api.post(f"{PREFIX}/cleanup", params={"older_than": "24h"})
        assert r.status_code == 200
        assert r.json() == {
            "deleted": 0,
            "older_than": "24h",
            "by_status": {"cancelled": 0, "completed": 0, "failed": 0},
            "workflows": 0,
        }
        await trio.sleep(0.01)
        r = await api.post(f"{PREFIX}/cleanup", params={"older_than": "1ms"})
        assert r.json()["deleted"] == 1 and r.json()["by_status"]["cancelled"] == 1
        assert (await api.get(f"{PREFIX}/{job_id}")).status_code == 404
        for bad in ({}, {"older_than": "soon"}, {"older_than": "-1h"}, {"older_than": "600w"}):
            r = await api.post(f"{PREFIX}/cleanup", params=bad)
            assert r.status_code == 422
            assert r.json()["error"]["details"]["fields"][0]["field"] == "older_than"
        # 0s: every finished job, whatever its age (as the Go client's Cleanup(ctx, 0))
        r = await api.post(f"{PREFIX}/cleanup", params={"older_than": "0s"})
        assert r.status_code == 200 and r.json()["older_than"] == "0s"


async def test_bulk_enqueue_all_or_nothing(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        jobs = [{"type": "noop", "data": {"i": i}} for i in range(3)]
        r = await api.post(f"{PREFIX}/enqueue/bulk", json={"jobs": jobs})
        assert r.status_code == 201
        body = r.json()
        assert body["count"] == 3 and len(body["jobs"]) == 3
        assert all(set(j) == {"job_id", "status", "enqueued"} for j in body["jobs"])
        bad = await api.post(
            f"{PREFIX}/enqueue/bulk", json={"jobs": [*jobs, {"type": "nope"}, {"tipe": 1}]}
        )
        assert bad.status_code == 422
        fields = [f["field"] for f in bad.json()["error"]["details"]["fields"]]
        # Every problem at once: jobs[4] lacks its type and has an unknown field.
        assert fields == ["jobs[3].type", "jobs[4].type", "jobs[4].tipe"]
        assert (await api.get(f"{PREFIX}/stats")).json()["stats"]["pending"] == 3
        over = [{"type": "noop"}] * (config.http.max_bulk_jobs + 1)
        r = await api.post(f"{PREFIX}/enqueue/bulk", json={"jobs": over})
        assert r.status_code == 422
        assert (await api.post(f"{PREFIX}/enqueue/bulk", json={"jobs": []})).status_code == 422


async def test_idempotency_key_header_gives_one_job(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        headers = {**api.headers, "Idempotency-Key": "order-42"}
        first = await api.post(f"{PREFIX}/enqueue", json={"type": "noop"}, headers=headers)
        second = await api.post(f"{PREFIX}/enqueue", json={"type": "noop"}, headers=headers)
        assert first.status_code == 201 and second.status_code == 200
        assert second.json()["job_id"] == first.json()["job_id"]
        assert second.json()["duplicate"] is True
        job = (await api.get(f"{PREFIX}/{first.json()['job_id']}")).json()["job"]
        assert job["idempotency_key"] == "order-42"
        clash = await api.post(
            f"{PREFIX}/enqueue",
            json={"type": "noop", "idempotency_key": "other"},
            headers=headers,
        )
        assert clash.status_code == 422
        bulk_headers = {**api.headers, "Idempotency-Key": "batch-1"}
        jobs = {"jobs": [{"type": "noop"}, {"type": "noop"}]}
        b1 = await api.post(f"{PREFIX}/enqueue/bulk", json=jobs, headers=bulk_headers)
        b2 = await api.post(f"{PREFIX}/enqueue/bulk", json=jobs, headers=bulk_headers)
        assert b1.status_code == 201 and b2.status_code == 200
        assert [j["job_id"] for j in b1.json()["jobs"]] == [j["job_id"] for j in b2.json()["jobs"]]


async def test_worker_metrics_and_health_have_the_spec_fields(config: Config) -> None:
    cfg = dataclasses.replace(
        config, daemon=dataclasses.replace(config.daemon, heartbeat_interval=0.1)
    )
    async with running_api(api_config(cfg), roles=("api", "worker")) as api:
        job_id = (await api.enqueue({"type": "noop"}))["job_id"]
        await api.wait_status(job_id, "completed")
        with trio.fail_after(10):
            while True:
                r = await api.get(f"{PREFIX}/worker/metrics")
                if r.json()["metrics"]["jobs_processed"] >= 1:
                    break
                await trio.sleep(0.1)
        metrics = r.json()
        assert set(metrics) == {"metrics", "daemons"}
        assert set(metrics["metrics"]) == WORKER_METRICS_FIELDS
        assert metrics["daemons"][0]["daemon_id"] == api.daemon.daemon_id
        health = (await api.get(f"{PREFIX}/worker/health")).json()
        assert set(health) >= HEALTH_FIELDS
        assert health["status"] == "healthy" and health["success_rate"] == 100.0
        assert health["concurrency"] == config.worker.concurrency


async def test_job_types_list_schemas(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        r = await api.get(f"{PREFIX}/types")
        assert r.status_code == 200
        types = {t["type"]: t for t in r.json()["job_types"]}
        assert r.json()["count"] == len(types)
        email = types["email_notification"]
        assert set(email) == {"type", "description", "defaults", "schema", "plugin"}
        assert "to" in email["schema"]["properties"]
        assert types["noop"]["defaults"]["max_retries"] == config.worker.max_retries


async def test_job_types_of_a_registry_built_without_plugins(config: Config) -> None:
    registry = HandlerRegistry()
    registry.register(NoopHandler(), source="fleetd")
    async with running_api(api_config(config), registry=registry) as api:
        body = (await api.get(f"{PREFIX}/types")).json()
    assert [t["type"] for t in body["job_types"]] == ["noop"]
    noop = body["job_types"][0]
    assert noop["plugin"] == "fleetd"
    assert noop["defaults"] == {"priority": 5, "max_retries": config.worker.max_retries,
                                "timeout": config.worker.job_timeout}  # fmt: skip


class Exporter(JobHandler):
    job_type = "export"

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        await ctx.artifacts.write_bytes("fleet.csv", b"id,name\n" + b"1,truck\n" * 50_000)
        if data.get("two"):
            await ctx.artifacts.write_bytes("notes.txt", "héllo".encode())
        return {"rows": 50_000}


async def test_artifact_download_streams_the_file(config: Config, tmp_path: Path) -> None:
    registry = build_registry(config)
    registry.register(Exporter(), source="tests")
    async with running_api(api_config(config), roles=("api", "worker"), registry=registry) as api:
        job_id = (await api.enqueue({"type": "export"}))["job_id"]
        job = (await api.wait_status(job_id, "completed"))["job"]
        [record] = job["result"]["artifacts"]
        r = await api.get(f"{PREFIX}/{job_id}/artifact")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/csv")
        assert r.headers["content-disposition"].startswith('attachment; filename="fleet.csv"')
        assert r.headers["etag"] == f'"{record["sha256"]}"'
        assert int(r.headers["content-length"]) == record["size"] == len(r.content)
        assert hashlib.sha256(r.content).hexdigest() == record["sha256"]

        two = (await api.enqueue({"type": "export", "data": {"two": True}}))["job_id"]
        await api.wait_status(two, "completed")
        pick = await api.get(f"{PREFIX}/{two}/artifact")
        assert pick.status_code == 422 and "notes.txt" in pick.json()["error"]["message"]
        notes = await api.get(f"{PREFIX}/{two}/artifact", params={"name": "notes.txt"})
        assert notes.content.decode() == "héllo"
        missing = await api.get(f"{PREFIX}/{two}/artifact", params={"name": "../secret"})
        assert missing.status_code == 404
        Path(record["path"]).unlink()
        gone = await api.get(f"{PREFIX}/{job_id}/artifact")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "artifact_missing"
        plain = (await api.enqueue({"type": "noop"}))["job_id"]
        none = await api.get(f"{PREFIX}/{plain}/artifact")
        assert none.status_code == 404
