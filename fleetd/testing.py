"""Helpers for testing handlers inline, in a plugin's own test suite (no Redis needed).

    from fleetd.testing import run_handler

    def test_greets(tmp_path):
        result = run_handler(GreetingHandler(), {"name": "Ada"}, tmp_path=tmp_path)
        assert result == {"greeting": "Hello, Ada!"}

`run_handler` checks the handler against the contract (as plugin loading does),
validates the data against its schema and `validate` (raising `ValidationError` with
every field error, as an enqueue would), then runs it with a real `JobContext` on an
in-memory store (fleetd's own Lua scripts on fakeredis): `ctx.progress`, `ctx.enqueue`,
`ctx.remember`/`ctx.recall` and `ctx.artifacts` all work, and the result has the
artifacts merged in, exactly as the worker stores it; `ctx.run_blocking` and `ctx.redis`
(on the in-memory store) work as in the worker. Exceptions the handler raises
propagate (`pytest.raises(PermanentError)`). The config's limits hold as in the worker:
`[artifacts] job_max_bytes` and `min_free_bytes` on `ctx.artifacts`, and a result over
`[worker] max_result_bytes` raises PermanentError (the worker fails such a job).

`Harness` does the same with more control: several handlers (for follow-up jobs), runs
from inside trio (`await harness.run(...)`), re-running one job as a retry would
(`rerun`), and looking at the jobs the handler enqueued.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import trio

from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import RedisLink, SyncClient
from fleetd.backend.scripts import ClaimedJob, Scripts
from fleetd.config import Config
from fleetd.jobs.blocking import BlockingExecutor
from fleetd.jobs.context import JobContext, JobServices
from fleetd.jobs.errors import PermanentError
from fleetd.jobs.handler_redis import HandlerRedis
from fleetd.jobs.handlers import Handler, HandlerRegistry
from fleetd.jobs.model import EnqueueRequest, Job, JobStatus
from fleetd.jobs.payload import oversized_result
from fleetd.jobs.queue import JobDefaults, Queue, QueueOps
from fleetd.jobs.sealing import Sealer, SealError, open_claimed
from fleetd.plugins.discovery import attach_output
from fleetd.plugins.noop import NoopHandler

__all__ = ["Harness", "run_handler"]

# The harness's lease: long enough that no test outlives it.
LEASE_MS = 3_600_000
# Jobs one claim takes: the job under test plus the follow-ups still pending.
MAX_CLAIM = 1000


class Harness:
    """An in-memory fleetd for running handlers inline. Close it (or use `with`)."""

    def __init__(
        self,
        handlers: Sequence[Handler],
        *,
        tmp_path: str | Path,
        config: Config | None = None,
    ) -> None:
        base = Path(tmp_path)
        cfg = config or Config.default()
        if not cfg.daemon.state_dir:
            cfg = dataclasses.replace(
                cfg, daemon=dataclasses.replace(cfg.daemon, state_dir=str(base / "state"))
            )
        self.config = cfg
        self.registry = HandlerRegistry()
        self.registry.register(NoopHandler(), source="fleetd")
        for handler in handlers:
            self.registry.register(handler, source="test")
        attach_output(self.registry, cfg)  # the worker's [artifacts] and result limits
        keys = Keys("testing")
        self.scripts = Scripts(keys, 10_000, company_maxlen=cfg.events.company_maxlen)
        self.link = RedisLink("memory://", memory_listen="", state_dir=None)
        for script in self.scripts.all():
            self.link.run_sync(script.load)
        w = cfg.worker
        self.ops = QueueOps(
            keys,
            self.scripts,
            self.registry,
            JobDefaults(max_retries=w.max_retries),
            Sealer.from_config(cfg),
        )
        self.queue = Queue(self.link, self.ops)
        self._claimed: dict[str, ClaimedJob] = {}
        # What `ctx.run_blocking` and `ctx.redis` use, as in the worker (ctx.redis on
        # the in-memory store).
        self._blocking = BlockingExecutor()
        self._redis = HandlerRedis(self.link)
        self.last_job_id = ""  # the job `run` ran last

    # -- running ---------------------------------------------------------------------

    async def run(
        self,
        job_type: str,
        data: dict[str, Any] | None = None,
        *,
        company_id: str | None = None,
        user_id: str | None = None,
    ) -> dict[str, Any]:
        """Validate, enqueue, claim and run one job; return its result (as stored)."""
        req = EnqueueRequest(
            type=job_type, data=dict(data or {}), company_id=company_id, user_id=user_id
        )
        enqueued = await self.queue.enqueue(req)
        job = await self.link.call(self._claim, enqueued.job_id)
        self._claimed[job.id] = job
        self.last_job_id = job.id
        return await self._run(job)

    def _claim(self, client: SyncClient, job_id: str) -> ClaimedJob:
        """Claim `job_id` with the real claim script (a lease, status processing); jobs
        claimed along with it (follow-ups of earlier runs) go straight back."""
        claim = self.scripts.claim(client, MAX_CLAIM, LEASE_MS, "harness", "harness")
        others = [(j.id, j.token) for j in claim.jobs if j.id != job_id]
        if others:
            self.scripts.release(client, others)
        return next(j for j in claim.jobs if j.id == job_id)

    async def rerun(self, job_id: str) -> dict[str, Any]:
        """Run the same job again as its next attempt (what a retry after a crash or a
        time-out does): same id, same notes (`ctx.recall`), attempts + 1."""
        job = self._claimed[job_id]
        job = dataclasses.replace(job, attempts=job.attempts + 1, retry_count=job.attempts)
        self._claimed[job_id] = job
        return await self._run(job)

    async def _run(self, job: ClaimedJob) -> dict[str, Any]:
        handler = self.registry.require(job.type)
        data = job.data
        if job.sealed:  # sealed data: opened as the worker does (a copy: reruns reopen)
            job = dataclasses.replace(job)
            data, error = open_claimed(self.ops.sealer, job)
            if error:
                raise SealError(error)
        services = JobServices(
            self.link,
            self.ops.keys,
            self.ops.scripts,
            self.queue,
            self.registry.artifacts_dir,
            blocking=self._blocking,
            redis=self._redis,
            artifact_limits=self.registry.artifact_limits,
        )
        ctx = JobContext(job, services)
        result = ctx.finish(await handler.run(ctx, data))
        if not isinstance(result, dict):
            raise TypeError(f"handler returned {type(result).__name__}, not a JSON object")
        encoded = json.dumps(result, separators=(",", ":"), allow_nan=False, default=str)
        if (why := oversized_result(encoded, self.registry.max_result_bytes)) is not None:
            raise PermanentError(why)  # the worker fails such a job for good
        return result

    def run_sync(self, job_type: str, data: dict[str, Any] | None = None, **kw: Any) -> Any:
        """`run` for tests outside trio."""
        return trio.run(lambda: self.run(job_type, data, **kw))

    # -- looking -----------------------------------------------------------------------

    def job(self, job_id: str) -> Job:
        """A job as stored (its `progress`, for instance)."""
        job = self.link.run_sync(self.ops.get, job_id)
        assert job is not None, f"no job {job_id}"
        return job

    def enqueued(self, job_type: str | None = None) -> list[Job]:
        """Pending jobs (follow-ups the handler enqueued), oldest first."""
        page = self.link.run_sync(
            lambda c: self.ops.list_jobs(c, JobStatus.PENDING, limit=500, job_type=job_type)
        )
        return list(reversed(page.jobs))

    def close(self) -> None:
        self._redis.close()
        self.link.close()

    def __enter__(self) -> Harness:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def run_handler(
    handler: Handler,
    data: dict[str, Any] | None = None,
    *,
    tmp_path: str | Path,
    company_id: str | None = None,
    user_id: str | None = None,
    config: Config | None = None,
) -> dict[str, Any]:
    """Run `handler` once on `data` (validated first) and return the job's result.
    Synchronous: call it from a plain test (inside trio, use `Harness.run`)."""
    with Harness([handler], tmp_path=tmp_path, config=config) as harness:
        result: dict[str, Any] = harness.run_sync(
            handler.job_type, data, company_id=company_id, user_id=user_id
        )
        return result
