"""Quotas at the doors that put jobs back to pending: resetting a failed or cancelled job
(one job of its type enqueued for its company) and resuming a failed or cancelled
workflow (every node put back counted, waiting ones too). Over a quota: 429
`quota_exceeded` with Retry-After and nothing written; the CLI exits 2 in one line; the
Python client raises QuotaExceeded. A job without a company is not limited."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest
from api_client import PREFIX, api_config, running_api
from conftest import fleetd_env
from daemons import run_cli, settings
from engine_jobs import enqueue

from fleetd.audit.entry import Door
from fleetd.client import Client
from fleetd.config import Config
from fleetd.config.limit_sections import LimitsConfig
from fleetd.engine import Engine
from fleetd.jobs.errors import QuotaExceeded
from fleetd.jobs.model import JobStatus
from fleetd.workflows.store import WorkflowOps

WORKFLOWS = "/api/v1/admin/workflows"


def fail_the_ready_job(engine: Engine, job_id: str) -> None:
    """Claim `job_id` (the one ready job) and fail it for good, through the scripts."""
    client, token = engine.link.client, uuid.uuid4().hex
    [job] = engine.scripts.claim(client, 1, 30_000, token, "tests").jobs
    assert job.id == job_id
    assert engine.scripts.fail(client, [(job_id, token, "boom", "", False, 0)]) == [0]


def failed_job(engine: Engine, company: str | None = "A") -> str:
    """A failed job of `company` (no other job may be ready when this runs)."""
    [job_id] = enqueue(engine, [{"type": "noop", **({"company_id": company} if company else {})}])
    fail_the_ready_job(engine, job_id)
    return job_id


def failed_workflow(engine: Engine, company: str = "A") -> str:
    """A failed chain of 3 nodes of `company`: step-1 failed, the others skipped."""
    ops = WorkflowOps(engine.ops)
    plan = ops.plan({"company_id": company, "chain": [{"type": "noop"}] * 3})
    engine.link.run_sync(ops.submit, plan)
    fail_the_ready_job(engine, plan.nodes[0].row.id)
    assert engine.link.client.hget(engine.keys.workflow(plan.workflow_id), "status") == "failed"
    return plan.workflow_id


def fill(engine: Engine, company: str | None, n: int) -> list[str]:
    body = {"type": "noop", **({"company_id": company} if company else {})}
    return enqueue(engine, [body] * n)


def status_of(engine: Engine, job_id: str) -> str:
    return str(engine.link.client.hget(engine.keys.job(job_id), "status"))


def events_of(engine: Engine, ids: set[str]) -> list[dict[str, str]]:
    return [f for _, f in engine.link.client.xrange(engine.keys.events) if f["job_id"] in ids]


def snapshot(engine: Engine, workflow_id: str) -> dict[str, Any]:
    """Everything a resume writes: the workflow, its nodes' jobs, the status indexes,
    the ready parts' index, the workflow indexes, and its nodes' and its own events."""
    c, k = engine.link.client, engine.keys
    nodes = list(c.hgetall(k.workflow_nodes(workflow_id)).values())
    return {
        "workflow": c.hgetall(k.workflow(workflow_id)),
        "nodes": {j: c.hgetall(k.job(j)) for j in nodes},
        "indexes": {s.value: c.zrange(k.status(s), 0, -1, withscores=True) for s in JobStatus},
        "queue": c.zrange(k.queue, 0, -1, withscores=True),
        "done": {s: c.zrange(k.workflows_done(s), 0, -1) for s in ("failed", "cancelled")},
        "events": events_of(engine, {workflow_id, *nodes}),
    }


async def test_reset_over_the_pending_cap_answers_429_and_the_job_stays_failed(
    config: Config, engine: Engine
) -> None:
    job_id = failed_job(engine, "A")
    platform = failed_job(engine, None)
    waiting = fill(engine, "A", 2)
    fill(engine, None, 3)
    cfg = dataclasses.replace(api_config(config), limits=LimitsConfig(company_max_pending=2))
    async with running_api(cfg, roles=("api",)) as api:  # no worker: jobs stay ready
        r = await api.post(f"{PREFIX}/{job_id}/reset")
        assert r.status_code == 429, r.text
        assert r.headers["Retry-After"] == "1"
        err = r.json()["error"]
        assert err["code"] == "quota_exceeded" and "company 'A' is over its quota" in err["message"]
        assert err["details"] == {"company_id": "A", "quota": "pending", "limit": 2,
                                  "retry_after": 1}  # fmt: skip
        job = (await api.get(f"{PREFIX}/{job_id}")).json()["job"]
        assert job["status"] == "failed" and job["error"] == "boom"
        assert "job.reset" not in [e["type"] for e in events_of(engine, {job_id})]
        assert engine.link.client.hget(engine.keys.quota_refused, "A") == "1"  # the alert's
        # A job without a company is not limited, whatever the platform's backlog.
        r = await api.post(f"{PREFIX}/{platform}/reset")
        assert r.status_code == 200, r.text
        # Under the cap the reset goes through: one of A's waiting jobs cancelled first.
        assert (await api.delete(f"{PREFIX}/{waiting[0]}")).status_code == 200
        r = await api.post(f"{PREFIX}/{job_id}/reset")
        assert r.status_code == 200, r.text
        assert r.json() == {"job_id": job_id, "status": "pending", "reset": True}
        # A job that is not failed or cancelled still answers 409, quota or not.
        assert (await api.post(f"{PREFIX}/{waiting[1]}/reset")).status_code == 409
        stats = (await api.get(f"{PREFIX}/stats")).json()["stats"]
        assert stats["pending"] == 6 and stats["failed"] == 0  # A: 2, the platform: 4


def test_a_reset_counts_towards_the_enqueue_rate(engine: Engine) -> None:
    job_id = failed_job(engine, "A")
    engine.ops.quota = LimitsConfig(company_enqueue_rate="1/1h").build().encode_quota(["noop"])
    assert engine.link.run_sync(engine.ops.reset, job_id).outcome == "reset"
    with pytest.raises(QuotaExceeded) as info:  # the reset used A's one enqueue of the hour
        fill(engine, "A", 1)
    assert info.value.quota == "rate"
    assert engine.link.run_sync(engine.ops.cancel, job_id).outcome == "cancelled"
    with pytest.raises(QuotaExceeded) as info:
        engine.link.run_sync(engine.ops.reset, job_id)
    assert info.value.quota == "rate" and info.value.limit == 1
    assert 0 < info.value.retry_after <= 3600  # until the window ends
    assert status_of(engine, job_id) == "cancelled"


async def test_resume_over_the_quota_answers_429_and_changes_nothing(
    config: Config, engine: Engine
) -> None:
    workflow_id = failed_workflow(engine, "A")
    waiting = fill(engine, "A", 2)
    before = snapshot(engine, workflow_id)
    # 2 waiting + the 3 nodes put back > 4 (waiting nodes count, as at submit).
    cfg = dataclasses.replace(api_config(config), limits=LimitsConfig(company_max_pending=4))
    async with running_api(cfg, roles=("api",)) as api:
        r = await api.post(f"{WORKFLOWS}/{workflow_id}/resume")
        assert r.status_code == 429, r.text
        assert int(r.headers["Retry-After"]) >= 1
        err = r.json()["error"]
        assert err["code"] == "quota_exceeded"
        details = err["details"]
        assert (details["company_id"], details["quota"], details["limit"]) == ("A", "pending", 4)
        assert snapshot(engine, workflow_id) == before
        shown = (await api.get(f"{WORKFLOWS}/{workflow_id}")).json()["workflow"]
        assert shown["status"] == "failed"
        assert [n["state"] for n in shown["nodes"]] == ["failed", "skipped", "skipped"]
        # One of A's waiting jobs cancelled: 1 + 3 fits, every node runs again.
        assert (await api.delete(f"{PREFIX}/{waiting[0]}")).status_code == 200
        r = await api.post(f"{WORKFLOWS}/{workflow_id}/resume")
        assert r.status_code == 200, r.text
        assert r.json() == {"workflow_id": workflow_id, "status": "running", "resumed": 3}


def test_cli_reset_and_resume_over_the_quota_exit_2_in_one_line(
    config: Config, engine: Engine
) -> None:
    job_id = failed_job(engine, "A")
    workflow_id = failed_workflow(engine, "A")
    fill(engine, "A", 1)
    env = fleetd_env(config) | settings(limits_company_max_pending=1)
    for args in (("jobs", "reset", job_id), ("workflow", "resume", workflow_id)):
        done = run_cli(env, *args)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.startswith(
            "fleetd: refused: company 'A' is over its quota (at most 1 jobs waiting)"
        )
        assert len(done.stderr.splitlines()) == 1 and done.stdout == ""
    assert status_of(engine, job_id) == "failed"
    assert engine.link.client.hget(engine.keys.workflow(workflow_id), "status") == "failed"


def test_client_reset_and_resume_raise_quota_exceeded(config: Config, engine: Engine) -> None:
    job_id = failed_job(engine, "A")
    workflow_id = failed_workflow(engine, "A")
    fill(engine, "A", 1)
    capped = dataclasses.replace(config, limits=LimitsConfig(company_max_pending=1))
    with Client(capped, name="tests") as client:
        with pytest.raises(QuotaExceeded) as info:
            client.reset(job_id)
        assert (info.value.company_id, info.value.quota) == ("A", "pending")
        with pytest.raises(QuotaExceeded):
            client.resume_workflow(workflow_id)
    assert status_of(engine, job_id) == "failed"
    assert engine.link.client.hget(engine.keys.workflow(workflow_id), "status") == "failed"
    # Both refusals are in the audit log (written by the client's close).
    entries = [f for _, f in engine.link.client.xrange(engine.keys.audit)]
    refused = {(e["action"], e["target"], e["outcome"]) for e in entries
               if e["door"] == Door.CLIENT.value and e["outcome"] != "ok"}  # fmt: skip
    # The outcome the admin API records for them too (its error code).
    assert refused == {("job.reset", job_id, "quota_exceeded"),
                       ("workflow.resume", workflow_id, "quota_exceeded")}  # fmt: skip
