"""Quotas at every door that adds jobs (and the cap on a company's schedules), not only
enqueue: a workflow (its every node
counted), a template run, a schedule's occurrence (recorded as the schedule's error, the
schedule advancing) and a schedule run now; and never at the spool's replay, whose jobs
were accepted already (a company over its quota held every company's spooled jobs)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from api_client import PREFIX, api_config, auth, running_api
from conftest import fleetd_env
from daemons import run_cli, settings

from fleetd.audit.store import AuditCaps, AuditStore
from fleetd.config import Config
from fleetd.config.limit_sections import LimitsConfig
from fleetd.engine import Engine
from fleetd.jobs.errors import QuotaExceeded
from fleetd.jobs.model import JobStatus
from fleetd.schedules.firing import FiringOps
from fleetd.schedules.store import ScheduleOps
from fleetd.spool import SPOOL_FILE, JobSpool, replay_pass

WORKFLOWS = "/api/v1/admin/workflows"
TEMPLATES = "/api/v1/admin/templates"
SCHEDULED = f"{PREFIX}/scheduled"


def pending(engine: Engine) -> int:
    return int(engine.link.client.zcard(engine.keys.status(JobStatus.PENDING)))


def fill(engine: Engine, company: str, n: int) -> None:
    rows = engine.ops.prepare_many([{"type": "noop", "company_id": company}] * n)
    engine.link.run_sync(engine.ops.enqueue_rows, rows)


def with_cap(engine: Engine, cap: int) -> None:
    engine.ops.quota = LimitsConfig(company_max_pending=cap).build().encode_quota(["noop"])


async def test_workflows_and_template_runs_answer_429_over_the_quota(config: Config) -> None:
    cfg = dataclasses.replace(api_config(config), limits=LimitsConfig(company_max_pending=3))
    async with running_api(cfg, roles=("api",)) as api:  # no worker: jobs stay pending
        two = {"company_id": "A", "nodes": [{"name": "a", "type": "noop"},
                                            {"name": "b", "type": "noop"}]}  # fmt: skip
        r = await api.post(WORKFLOWS, json=two)
        assert r.status_code == 201, r.text
        # 2 waiting + 2 more > 3 (every node of a workflow counts, waiting ones too).
        r = await api.post(WORKFLOWS, json=two)
        assert r.status_code == 429, r.text
        assert int(r.headers["Retry-After"]) >= 1
        err = r.json()["error"]
        assert err["code"] == "quota_exceeded" and err["details"]["company_id"] == "A"
        # Another company is not refused.
        r = await api.post(WORKFLOWS, json={**two, "company_id": "B"})
        assert r.status_code == 201, r.text
        a_admin = auth("A")  # A's templates are A's: created and run by A's admin
        r = await api.post(TEMPLATES, json={"name": "t", "job": {"type": "noop"}}, headers=a_admin)
        assert r.status_code == 201, r.text
        fill_up = await api.post(f"{PREFIX}/enqueue", json={"type": "noop", "company_id": "A"})
        assert fill_up.status_code == 201  # A: 3 waiting now
        r = await api.post(f"{TEMPLATES}/t/run", json={"params": {}}, headers=a_admin)
        assert r.status_code == 429, r.text
        stats = (await api.get(f"{PREFIX}/stats")).json()["stats"]
        assert stats["pending"] == 5  # A's workflow (2) and job (1), B's workflow (2)


def test_a_schedule_occurrence_over_the_quota_is_not_run_and_says_why(engine: Engine) -> None:
    with_cap(engine, 2)
    ops = ScheduleOps.from_engine(engine)
    client = engine.link.client
    job = engine.link.run_sync(
        lambda c: ops.add(c, {"name": "tick", "job_type": "noop", "schedule": "10s",
                              "company_id": "A"})
    )  # fmt: skip
    fill(engine, "A", 2)
    now = ops.now_ms(client)
    client.zadd(engine.keys.schedules_due, {job.id: now - 100})
    fired = FiringOps(ops).fire_due(client, job.id, now - 100, now, 60_000)
    assert fired is not None and fired.action == "error" and fired.job_id == ""
    assert "company A is over its pending quota" in fired.error
    assert pending(engine) == 2  # nothing of the occurrence stored
    h = client.hgetall(engine.keys.schedule(job.id))
    assert h["last_error"] == fired.error and int(h["next_run"]) == fired.next_ms  # advanced
    assert client.hget(engine.keys.quota_refused, "A") == "1"  # the alert counts it
    [event] = [f for _, f in client.xrange(engine.keys.events) if f["type"] == "schedule.error"]
    assert fired.error in event["data"]
    # Run now is refused the same way, nothing stored.
    with pytest.raises(QuotaExceeded) as info:
        engine.link.run_sync(ops.run_now, job.id)
    assert info.value.companies == ["A"] and pending(engine) == 2
    # Below the quota, the next occurrence runs.
    with_cap(engine, 10)
    now = ops.now_ms(client)
    client.hset(engine.keys.schedule(job.id), "next_run", now - 50)
    client.zadd(engine.keys.schedules_due, {job.id: now - 50})
    fired = FiringOps(ops).fire_due(client, job.id, now - 50, now, 60_000)
    assert fired is not None and fired.action == "fire" and fired.job_id
    assert "last_error" not in client.hgetall(engine.keys.schedule(job.id))
    assert pending(engine) == 3


def test_cli_schedule_run_now_over_the_quota_exits_2(config: Config) -> None:
    env = fleetd_env(config) | settings(limits_company_max_pending=1)
    made = run_cli(env, "schedules", "add", "tick", "--type", "noop", "--schedule", "1h",
                   "--company", "A", "--json")  # fmt: skip
    assert made.returncode == 0, made.stderr
    schedule_id = json.loads(made.stdout)["scheduled_job"]["id"]
    assert run_cli(env, "schedules", "run-now", schedule_id).returncode == 0
    done = run_cli(env, "schedules", "run-now", schedule_id)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("fleetd: refused: company 'A' is over its quota")
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_replay_lands_spooled_jobs_of_a_company_over_its_quota(
    engine: Engine, tmp_path: Path
) -> None:
    with_cap(engine, 1)
    fill(engine, "A", 1)
    spool = JobSpool(tmp_path / SPOOL_FILE, max_jobs=100, max_bytes=1 << 20)
    made = engine.ops.prepare_many(
        [{"type": "noop", "company_id": "A"}, {"type": "noop", "company_id": "B"}]
    )
    spool.add(made, door="http", subject="alice")
    audit = AuditStore(engine.keys, engine.scripts, AuditCaps(1000, 1000, 1000))
    done = engine.link.run_sync(lambda c: replay_pass(c, spool, engine.ops, audit, 10))
    assert done.landed == 2 and spool.depth() == (0, 0)
    assert pending(engine) == 3
    # The door still refuses A.
    with pytest.raises(QuotaExceeded):
        fill(engine, "A", 1)


async def test_a_company_at_its_schedule_cap_gets_429(config: Config) -> None:
    cfg = dataclasses.replace(api_config(config), limits=LimitsConfig(company_max_schedules=2))
    base = {"job_type": "noop", "schedule": "@daily"}
    async with running_api(cfg, roles=("api",)) as api:
        a_admin = auth("A")
        for name in ("one", "two"):
            r = await api.post(SCHEDULED, json={**base, "name": name}, headers=a_admin)
            assert r.status_code == 201, r.text
        second = r.json()["scheduled_job"]["id"]
        r = await api.post(SCHEDULED, json={**base, "name": "three"}, headers=a_admin)
        assert r.status_code == 429, r.text
        err = r.json()["error"]
        assert err["details"] == {"company_id": "A", "quota": "schedules", "limit": 2,
                                  "retry_after": 60}  # fmt: skip
        assert "at most 2 schedules" in err["message"] and r.headers["Retry-After"] == "60"
        # The platform's admin is held to the company's cap too; B is not refused.
        r = await api.post(SCHEDULED, json={**base, "name": "three", "company_id": "A"})
        assert r.status_code == 429
        r = await api.post(SCHEDULED, json={**base, "name": "b", "company_id": "B"})
        assert r.status_code == 201
        b_id = r.json()["scheduled_job"]["id"]
        # Moving B's schedule into A is a creation for A; edits within A are not.
        r = await api.put(f"{SCHEDULED}/{b_id}", json={"company_id": "A"})
        assert r.status_code == 429, r.text
        r = await api.put(f"{SCHEDULED}/{second}", json={"priority": 9}, headers=a_admin)
        assert r.status_code == 200, r.text
        # One deleted: room for one more.
        assert (await api.delete(f"{SCHEDULED}/{second}", headers=a_admin)).status_code == 200
        r = await api.post(SCHEDULED, json={**base, "name": "three"}, headers=a_admin)
        assert r.status_code == 201, r.text
        listed = (await api.get(SCHEDULED, headers=a_admin)).json()["scheduled_jobs"]
        assert sorted(s["name"] for s in listed) == ["one", "three"]


def test_a_call_stored_in_parts_is_refused_whole_or_counted_once(engine: Engine) -> None:
    """More than 1,000 jobs go to Redis in parts (ENQUEUE_CHUNK): the quotas are checked
    for the whole call before any part is stored, and its jobs are counted once."""
    engine.ops.quota = (
        LimitsConfig(company_max_pending=2500, company_enqueue_rate="4000/1h")
        .build()
        .encode_quota(["noop"])
    )
    fill(engine, "A", 1000)
    too_many = [{"type": "noop", "company_id": "A"}] * 1600 + [{"type": "noop"}] * 10
    with pytest.raises(QuotaExceeded) as info:
        engine.link.run_sync(engine.ops.enqueue_rows, engine.ops.prepare_many(too_many))
    assert info.value.quota == "pending" and pending(engine) == 1000  # no part stored
    done = engine.link.run_sync(engine.ops.enqueue_rows, engine.ops.prepare_many(too_many[:1500]))
    assert len(done) == 1500 and pending(engine) == 2500
    # The rate counted 1000 + 1500 (never twice): 1500 more exceed 4000, 1400 would not.
    client = engine.link.client
    for part in client.zrange(engine.keys.queue, 0, -1):
        client.delete(engine.keys.ready(part))  # as if drained: only the rate holds now
    with pytest.raises(QuotaExceeded) as info:
        engine.link.run_sync(engine.ops.enqueue_rows, engine.ops.prepare_many(too_many[:1501]))
    assert info.value.quota == "rate"
    engine.link.run_sync(engine.ops.enqueue_rows, engine.ops.prepare_many(too_many[:1500]))


def test_cli_jsonl_over_the_quota_stores_nothing(
    config: Config, engine: Engine, tmp_path: Path
) -> None:
    env = fleetd_env(config) | settings(limits_company_max_pending=1500)
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"type": "noop", "company_id": "A"}\n' * 2000)
    done = run_cli(env, "enqueue", "--jsonl", str(jobs))
    assert done.returncode == 2 and "over its quota" in done.stderr, done.stderr
    assert pending(engine) == 0
