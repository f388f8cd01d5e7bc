"""In-process worker-pool helpers shared by the tests: a pool running against the test
redis-server, a registry with extra handlers, and waiting for a job's status."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.context import JobContext
from fleetd.jobs.handlers import HandlerDefaults, HandlerRegistry, PermanentError
from fleetd.jobs.model import JobStatus
from fleetd.plugins.noop import NoopHandler
from fleetd.runtime.heartbeat import WorkerMetrics
from fleetd.runtime.maintenance import Maintenance, MaintenanceSettings
from fleetd.runtime.worker import PoolSettings, WorkerPool

DAEMON = "test-daemon:1:abc"


class Recorder:
    """A handler that records the order it ran jobs in, and can block until released."""

    job_type = "record"
    defaults = HandlerDefaults()

    def __init__(self) -> None:
        self.order: list[str] = []
        self.started = trio.Event()
        self.cancelled: list[str] = []

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        return data

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        self.order.append(data["name"])
        self.started.set()
        if data.get("block"):
            try:
                await trio.sleep_forever()
            except trio.Cancelled:
                self.cancelled.append(ctx.job.id)
                raise
        if data.get("permanent"):
            raise PermanentError("this can never work")
        if data.get("bad_result"):
            return [1, 2]  # type: ignore[return-value]
        if data.get("progress"):
            await ctx.progress(50, "half way")
        if data.get("follow_up"):
            await ctx.enqueue("noop", {"from": ctx.job.id})
        return {"name": data["name"]}


def registry_with(*extra: Any) -> HandlerRegistry:
    registry = HandlerRegistry()
    registry.register(NoopHandler())
    for handler in extra:
        registry.register(handler, source="tests")
    return registry


def _settings(cfg: Config, **changes: Any) -> PoolSettings:
    w = cfg.worker
    base = PoolSettings(
        concurrency=w.concurrency, poll_interval=0.2, job_timeout=w.job_timeout,
        shutdown_timeout=5.0, claim_batch=w.claim_batch, lease=w.lease,
        reconnect_max_backoff=1.0, command_timeout=cfg.redis.command_timeout,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


@asynccontextmanager
async def running_pool(
    config: Config, registry: HandlerRegistry, **changes: Any
) -> AsyncIterator[tuple[Engine, WorkerPool]]:
    """A daemon's worker pool and maintenance (promote, reap) on `config`."""
    engine = Engine.build(config, daemon=True, registry=registry)
    await engine.link.connect(engine.scripts.all())
    pool = WorkerPool(
        engine.link,
        engine.scripts,
        engine.queue,
        registry,
        _settings(config, **changes),
        DAEMON,
        WorkerMetrics(),
    )
    maintenance = Maintenance(engine.link, engine.scripts, engine.ops, MaintenanceSettings(
        interval=0.1, max_stalls=config.worker.max_stalls, completed_ttl=0, failed_ttl=0,
        cancelled_ttl=0, reconnect_max_backoff=1.0,
        isolation=changes.get("isolation")))  # fmt: skip
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(maintenance.run)
            # The pool ends by itself once quiet: it drains, then flushes its outcomes.
            with trio.fail_after(15):
                async with trio.open_nursery() as work:
                    await work.start(pool.run)
                    yield engine, pool
                    pool.quiet()
            nursery.cancel_scope.cancel()
    finally:
        engine.close()


async def wait_status(engine: Engine, job_id: str, *statuses: JobStatus, limit: float = 10) -> Any:
    with trio.fail_after(limit):
        while True:
            job = await engine.queue.get(job_id)
            assert job is not None
            if job.status in statuses:
                return job
            await trio.sleep(0.01)


def events_of(engine: Engine, job_id: str) -> list[dict[str, Any]]:
    entries = engine.link.client.xrange(engine.keys.events)
    out = []
    for stream_id, fields in entries:
        if fields["job_id"] == job_id:
            out.append({**fields, "id": stream_id, "data": json.loads(fields["data"])})
    return out
