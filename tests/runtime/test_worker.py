"""The worker pool in-process, against the real test redis-server: execution order,
retries on the spec's 1 s / 4 s / 9 s schedule, timeouts, cancel of a running job,
lost leases, graceful stop, and handler contract violations."""

from __future__ import annotations

import pytest
import trio
from pool import DAEMON, Recorder, events_of, registry_with, running_pool, wait_status

from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.model import JobStatus


async def test_runs_in_priority_order_fifo_within_a_priority(config: Config) -> None:
    rec = Recorder()
    engine = Engine.build(config, daemon=True, registry=registry_with(rec))
    await engine.link.connect(engine.scripts.all())
    plan = [("low-1", "low"), ("normal", 5), ("crit-1", "critical"), ("high", "high"),
            ("crit-2", 20), ("low-2", 1)]  # fmt: skip
    await engine.queue.enqueue_many(
        [{"type": "record", "data": {"name": n}, "priority": p} for n, p in plan]
    )
    engine.close()
    async with running_pool(config, registry_with(rec), concurrency=1) as (_eng, _pool):
        with trio.fail_after(10):
            while len(rec.order) < len(plan):
                await trio.sleep(0.01)
    assert rec.order == ["crit-1", "crit-2", "high", "normal", "low-1", "low-2"]


@pytest.mark.slow
async def test_retries_after_1_4_9_seconds_then_fails(config: Config) -> None:
    async with running_pool(config, registry_with()) as (engine, _pool):
        r = await engine.queue.enqueue({"type": "noop", "data": {"fail_attempts": 10}})
        job = await wait_status(engine, r.job_id, JobStatus.FAILED, limit=30)
    assert job.retry_count == 3
    assert job.attempts == 4
    assert "failing attempt 4" in (job.error or "")
    events = events_of(engine, r.job_id)
    retrying = [e for e in events if e["type"] == "job.retrying"]
    assert [e["data"]["run_at"] - int(e["ts"]) for e in retrying] == [1000, 4000, 9000]
    starts = [int(e["ts"]) for e in events if e["type"] == "job.started"]
    assert len(starts) == 4
    for retry, start in zip(retrying, starts[1:], strict=True):
        # Never early; late by at most the poll and promote intervals.
        assert 0 <= start - retry["data"]["run_at"] < 500
    assert events[-1]["type"] == "job.failed"


async def test_timeout_is_a_failed_attempt_and_retried(config: Config) -> None:
    async with running_pool(config, registry_with()) as (engine, _pool):
        r = await engine.queue.enqueue(
            {"type": "noop", "data": {"sleep_ms": 5000}, "timeout": "200ms", "max_retries": 1}
        )
        job = await wait_status(engine, r.job_id, JobStatus.FAILED, limit=10)
    assert job.error == "timeout: timed out after 200ms"
    assert job.attempts == 2
    assert [e["type"] for e in events_of(engine, r.job_id)] == [
        "job.enqueued", "job.started", "job.retrying", "job.started", "job.failed",
    ]  # fmt: skip


async def test_cancel_of_a_running_job_cancels_its_handler(config: Config) -> None:
    rec = Recorder()
    async with running_pool(config, registry_with(rec)) as (engine, _pool):
        r = await engine.queue.enqueue({"type": "record", "data": {"name": "x", "block": True}})
        await wait_status(engine, r.job_id, JobStatus.PROCESSING)
        result = await engine.queue.cancel(r.job_id)
        assert result.outcome == "cancelling"
        job = await wait_status(engine, r.job_id, JobStatus.CANCELLED, limit=5)
    assert rec.cancelled == [r.job_id]
    assert job.completed_at_ms is not None
    assert events_of(engine, r.job_id)[-1]["type"] == "job.cancelled"


async def test_lost_lease_stops_the_handler_and_writes_nothing(config: Config) -> None:
    rec = Recorder()
    async with running_pool(config, registry_with(rec), lease=1.2) as (engine, _pool):
        r = await engine.queue.enqueue({"type": "record", "data": {"name": "x", "block": True}})
        await wait_status(engine, r.job_id, JobStatus.PROCESSING)
        # Another daemon took the job over: its lease token changed.
        engine.link.client.hset(engine.keys.job(r.job_id), "lease", "someone-else")
        with trio.fail_after(5):
            while not rec.cancelled:
                await trio.sleep(0.01)
        await trio.sleep(0.2)
        job = await engine.queue.get(r.job_id)
    assert job is not None
    assert job.status is JobStatus.PROCESSING  # untouched: it belongs to the other daemon


async def test_stop_releases_running_jobs_to_pending_without_counting(config: Config) -> None:
    rec = Recorder()
    async with running_pool(config, registry_with(rec), shutdown_timeout=0.1) as (engine, pool):
        r = await engine.queue.enqueue({"type": "record", "data": {"name": "x", "block": True}})
        await wait_status(engine, r.job_id, JobStatus.PROCESSING)
    job = engine.ops.get(engine.link.client, r.job_id)
    assert job is not None
    assert job.status is JobStatus.PENDING
    assert job.attempts == 0
    assert pool.running == 0
    assert events_of(engine, r.job_id)[-1]["type"] == "job.requeued"


async def test_handler_contract_violations(config: Config) -> None:
    rec = Recorder()
    async with running_pool(config, registry_with(rec)) as (engine, _pool):
        perm = await engine.queue.enqueue({"type": "record", "data": {"name": "p", "permanent": 1}})
        bad = await engine.queue.enqueue({"type": "record", "data": {"name": "b", "bad_result": 1}})
        job_p = await wait_status(engine, perm.job_id, JobStatus.FAILED)
        job_b = await wait_status(engine, bad.job_id, JobStatus.FAILED)
    assert job_p.attempts == 1
    assert job_p.error == "PermanentError: this can never work"
    assert job_p.traceback and "PermanentError" in job_p.traceback
    assert job_b.attempts == 1
    assert job_b.error == "handler returned list, not a JSON object"


async def test_unknown_type_in_queue_fails_with_a_clear_error(config: Config) -> None:
    rec = Recorder()
    # Enqueued by a process that knows `record`, run by one that does not.
    producer = Engine.build(config, daemon=True, registry=registry_with(rec))
    await producer.link.connect(producer.scripts.all())
    r = await producer.queue.enqueue({"type": "record", "data": {"name": "x"}, "max_retries": 0})
    producer.close()
    async with running_pool(config, registry_with()) as (engine, _pool):
        job = await wait_status(engine, r.job_id, JobStatus.FAILED)
    assert job.error == f"no handler for job type 'record' on {DAEMON}"


async def test_progress_and_follow_up_jobs(config: Config) -> None:
    rec = Recorder()
    async with running_pool(config, registry_with(rec)) as (engine, _pool):
        r = await engine.queue.enqueue(
            {"type": "record", "data": {"name": "x", "progress": 1, "follow_up": 1},
             "company_id": "acme"}
        )  # fmt: skip
        job = await wait_status(engine, r.job_id, JobStatus.COMPLETED)
        page = await engine.queue.list_jobs(JobStatus.COMPLETED, limit=10, job_type="noop")
        with trio.fail_after(5):
            while not page.jobs:
                await trio.sleep(0.02)
                page = await engine.queue.list_jobs(JobStatus.COMPLETED, limit=10, job_type="noop")
    assert job.progress == {"percent": 50.0, "message": "half way"}
    progress = [e for e in events_of(engine, r.job_id) if e["type"] == "job.progress"]
    assert progress[0]["data"] == {"percent": 50.0, "message": "half way"}
    [follow] = page.jobs
    assert follow.company_id == "acme"
    assert follow.data == {"from": r.job_id}


async def test_metrics_count_outcomes(config: Config) -> None:
    async with running_pool(config, registry_with()) as (engine, pool):
        ok = await engine.queue.enqueue({"type": "noop", "data": {}})
        bad = await engine.queue.enqueue(
            {"type": "noop", "data": {"fail_attempts": 5}, "max_retries": 0}
        )
        await wait_status(engine, ok.job_id, JobStatus.COMPLETED)
        await wait_status(engine, bad.job_id, JobStatus.FAILED)
        with trio.fail_after(5):
            while pool.metrics.jobs_processed < 2:
                await trio.sleep(0.01)
        m = pool.metrics.to_dict()
    assert (m["jobs_processed"], m["jobs_succeeded"], m["jobs_failed"], m["jobs_retried"]) == (
        2, 1, 1, 0,
    )  # fmt: skip


async def test_a_failure_storm_shares_its_retry_wake_ups(config: Config) -> None:
    async with running_pool(config, registry_with(), concurrency=30) as (engine, pool):
        results = await engine.queue.enqueue_many(
            [{"type": "noop", "data": {"fail_attempts": 1}, "max_retries": 1}] * 30
        )
        with trio.fail_after(5):
            while pool.metrics.jobs_retried < 30:
                await trio.sleep(0.005)
        # Thirty retries due within a few milliseconds: a handful of pokes, not thirty.
        assert 1 <= len(pool._retry_wakes) <= 5
        for r in results:
            await wait_status(engine, r.job_id, JobStatus.COMPLETED, limit=5)
    assert pool._retry_wakes == set()
