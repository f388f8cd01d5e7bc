"""Schedule accuracy against the real test redis-server: the lateness of each firing
(fire time - due time) kept by schedule_fire.lua, as the schedule's answer shows it
(p50, p99, mean) and as /metrics exports it, checked against the raw lateness of the
jobs the firings enqueued (their created_at is the fire time), on time and after an
outage caught up late."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
import trio
from percentiles import nearest_rank
from prometheus_client.core import Metric

from fleetd.analytics import histogram
from fleetd.analytics.prometheus import schedule_families
from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.model import JobStatus, parse_ts
from fleetd.schedules.answer import ScheduledJob as ScheduledJobAnswer
from fleetd.schedules.service import Scheduler, SchedulerSettings
from fleetd.schedules.store import ScheduleOps


@pytest.fixture
def eng(config: Config) -> Iterator[Engine]:
    e = Engine.build(config, daemon=True)
    for script in e.scripts.all():
        script.load(e.link.client)
    yield e
    e.close()


@asynccontextmanager
async def scheduler(eng: Engine, grace: float) -> AsyncIterator[None]:
    s = Scheduler(
        eng.link, ScheduleOps.from_engine(eng), "d0",
        SchedulerSettings(misfire_grace=grace, create_defaults=False, reconnect_max_backoff=0.5),
    )  # fmt: skip
    async with trio.open_nursery() as nursery:
        await nursery.start(s.run)
        yield
        nursery.cancel_scope.cancel()


def raw_lateness(eng: Engine, schedule_id: str) -> list[int]:
    """created_at - occurrence of every job the schedule enqueued."""
    ids = eng.link.client.zrange(eng.keys.status(JobStatus.PENDING), 0, -1)
    out = []
    for job in eng.link.run_sync(eng.ops.get_many, ids):
        if job is not None and f"schedule:{schedule_id}" in job.tags:
            tag = next(t for t in job.tags if t.startswith("occurrence:"))
            out.append(job.created_at_ms - parse_ts(tag.removeprefix("occurrence:")))
    return out


def close(estimate: float, exact: int) -> bool:
    slack = histogram.ABSOLUTE_BOUND_MS if exact < 1 else exact * histogram.ERROR_BOUND
    return abs(estimate - exact) <= slack + 0.01


async def until(eng: Engine, schedule_id: str, count: int, within: float) -> None:
    with trio.fail_after(within):
        while len(raw_lateness(eng, schedule_id)) < count:
            await trio.sleep(0.02)


def family(metrics: list[Metric], name: str) -> Metric:
    return next(m for m in metrics if m.name == name)


async def test_lateness_of_firings_on_time_and_after_an_outage(eng: Engine) -> None:
    ops = ScheduleOps.from_engine(eng)
    body = {"name": "tick", "job_type": "noop", "schedule": "1s", "misfire_policy": "run_once"}
    job = eng.link.run_sync(lambda c: ops.add(c, body))
    async with scheduler(eng, grace=30.0):
        await until(eng, job.id, 3, within=6)
    # An outage of ~2.5 s: run_once fires the missed occurrence once, late, on restart.
    await trio.sleep(2.5)
    async with scheduler(eng, grace=30.0):
        await until(eng, job.id, 5, within=6)
    raw = raw_lateness(eng, job.id)
    record = eng.link.run_sync(ops.require, job.id)
    answer = ScheduledJobAnswer.of(record).jsonable()["lateness"]
    assert answer["count"] == len(raw) == record.runs
    assert max(raw) >= 1000  # the catch-up after the outage
    assert close(answer["p50_ms"], nearest_rank(raw, 50)), (answer, sorted(raw))
    assert close(answer["p99_ms"], nearest_rank(raw, 99)), (answer, sorted(raw))
    assert answer["mean_ms"] == round(sum(raw) / len(raw), 2)

    stats = eng.link.client.hgetall(eng.keys.schedules_stats)
    metrics = eng.link.run_sync(lambda c: schedule_families(c, eng.keys, stats))
    hist = family(metrics, "fleetd_schedule_lateness_seconds")
    samples = {(s.name, s.labels.get("le")): s.value for s in hist.samples}
    assert samples["fleetd_schedule_lateness_seconds_count", None] == len(raw)
    assert samples["fleetd_schedule_lateness_seconds_bucket", "+Inf"] == len(raw)
    # Cumulative buckets: le 0.512 s holds the buckets up to 36 (2^(36/4) ms), so not
    # the late catch-up.
    below = samples["fleetd_schedule_lateness_seconds_bucket", "0.512"]
    assert below == sum(1 for r in raw if histogram.bucket_of(r) <= 36) < len(raw)
    p99 = family(metrics, "fleetd_schedule_lateness_p99_seconds")
    [sample] = p99.samples
    assert sample.labels == {"schedule": "tick"}
    assert close(sample.value * 1000, nearest_rank(raw, 99))
    missed = family(metrics, "fleetd_schedule_missed").samples[0].value
    assert missed == record.missed
