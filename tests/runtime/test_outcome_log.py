"""The finish line of a failed attempt that will be retried (fleetd.runtime.outcomes):
the attempt's duration and the wait before the next attempt, each named (#19: a job
type without a handler logged "retrying after 0.0 ms", its duration read as a delay)."""

from __future__ import annotations

import logging

import pytest
from pool import Recorder, registry_with, running_pool, wait_status

from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.model import JobStatus


async def test_retry_line_names_the_real_delay(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    # Enqueued by a process that knows `record`, run by one that does not: the attempt
    # fails at once, and fail.lua schedules the first retry 1 s out.
    producer = Engine.build(config, daemon=True, registry=registry_with(Recorder()))
    await producer.link.connect(producer.scripts.all())
    r = await producer.queue.enqueue({"type": "record", "data": {"name": "x"}, "max_retries": 2})
    producer.close()
    caplog.set_level(logging.INFO, logger="fleetd.worker")
    async with running_pool(config, registry_with()) as (engine, _pool):
        job = await wait_status(engine, r.job_id, JobStatus.RETRYING)
    [line] = [rec for rec in caplog.records if getattr(rec, "job_id", None) == r.job_id]
    message = line.getMessage()
    assert "retrying after" not in message
    assert f"job {r.job_id} (record) failed after 0.0 ms, attempt 1, next attempt in 1 s: " in (
        message
    )
    assert message.endswith(job.error)
    assert line.retry_in_ms == 1000  # type: ignore[attr-defined]
    assert line.outcome == "failed, retrying"  # type: ignore[attr-defined]
