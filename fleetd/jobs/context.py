"""What a running handler gets: `ctx` — its job, company, logger, progress, follow-ups,
an artifact store, durable per-job notes for idempotency, and the fast ways to do
blocking work: `run_blocking` (fleetd.jobs.blocking) and `redis`
(fleetd.jobs.handler_redis), both batched across the jobs of the process.

One JobContext per attempt. Everything here goes through the daemon's RedisLink (never
a Redis call on the trio thread) and is company-scoped: a follow-up job inherits the
company and user of the job that enqueued it.

What the contexts of one process share is a `JobServices`, built once by the worker
(or fleetd.testing): the link, keys, scripts, artifact directory, the blocking-call
executor, the handlers' Redis, and where follow-up jobs go — any `FollowUps`, i.e. an
object with `async enqueue(request)`, which is fleetd.jobs.queue.Queue in practice.
The context depends on that small Protocol, not on the queue: the queue depends on the
handler registry, and handlers take a JobContext, so a concrete dependency would close
a cycle (tests/test_architecture.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from fleetd.audit.entry import Action, AuditEntry, Door, handler_subject, outcome_of
from fleetd.jobs.artifact_limits import ArtifactLimits
from fleetd.jobs.artifacts import ArtifactStore
from fleetd.jobs.blocking import BlockingExecutor
from fleetd.jobs.errors import PermanentError
from fleetd.jobs.fields import MAX_PROGRESS_MESSAGE
from fleetd.jobs.handler_redis import HandlerRedis
from fleetd.jobs.model import EnqueueRequest

if TYPE_CHECKING:
    from fleetd.audit.backlog import AuditSink
    from fleetd.backend.keys import Keys
    from fleetd.backend.redis_link import RedisLink, SyncClient
    from fleetd.backend.scripts import ClaimedJob, Scripts
    from fleetd.jobs.receipts import EnqueueResult

__all__ = ["FollowUps", "JobContext", "JobServices"]

T = TypeVar("T")

_log = logging.getLogger("fleetd.job")
# Job-hash fields holding handlers' notes (`remember`) start with this; no field the
# Lua scripts write does, and reset.lua leaves them alone, so notes outlive resets.
NOTE_PREFIX = "note:"
# A note is for small facts ("delivered at …"), not data: the job hash stays small.
MAX_NOTE_BYTES = 16_384
# Notes a job may keep, and the longest key: they live in the job's hash, which every
# read of the job loads.
MAX_NOTES = 100
MAX_NOTE_KEY = 128


class FollowUps(Protocol):
    """Where `ctx.enqueue` sends follow-up jobs (fleetd.jobs.queue.Queue is one)."""

    async def enqueue(self, req: EnqueueRequest) -> EnqueueResult: ...


@dataclass(frozen=True, slots=True)
class JobServices:
    """What every JobContext of one process shares (built once, not per job)."""

    link: RedisLink
    keys: Keys
    scripts: Scripts
    follow_ups: FollowUps
    # `[artifacts] dir`; None when the registry was not built by build_registry.
    artifacts_dir: Path | None
    # Where `ctx.run_blocking` batches the blocking calls of all jobs of the process.
    blocking: BlockingExecutor = field(default_factory=BlockingExecutor)
    # `ctx.redis`; None where nothing built one (then `ctx.redis` raises).
    redis: HandlerRedis | None = None
    # Where `ctx.enqueue` records its follow-up jobs (fleetd.audit); None: nowhere.
    audit: AuditSink | None = None
    # `[artifacts] job_max_bytes` and `min_free_bytes` (the registry's). No default:
    # every process that runs handlers must pass them (one did not, and ran unlimited).
    artifact_limits: ArtifactLimits = field(kw_only=True)


class JobContext:
    def __init__(self, job: ClaimedJob, services: JobServices) -> None:
        self.job = job
        self._services = services
        self._logger: logging.LoggerAdapter[logging.Logger] | None = None
        self._artifacts: ArtifactStore | None = None
        # A workflow node's parents' results by node name (fleetd.workflows.start);
        # filled for nodes with a condition, `$from` data or `with_parents`.
        self.parents: dict[str, Any] = {}
        # A job run inline while the queue is unavailable (fleetd.runtime.inline: no
        # lease token) has no job hash yet: its notes live here for the run, and its
        # progress goes nowhere.
        self._notes: dict[str, Any] | None = {} if not job.token else None

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger that stamps every line with the job's id and type (made on first use:
        most handlers of short jobs never log)."""
        if self._logger is None:
            self._logger = logging.LoggerAdapter(
                _log, {"job_id": self.job.id, "job_type": self.job.type}
            )
        return self._logger

    @property
    def company_id(self) -> str | None:
        return self.job.company_id

    @property
    def user_id(self) -> str | None:
        return self.job.user_id

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a worker thread, batched with the blocking calls of the other
        jobs of this process: one thread hand-off per batch instead of one per call
        (fleetd.jobs.blocking). For short calls (a Redis or SQL command, a small file);
        a call that may take seconds (an SMTP session, a big report query) belongs in
        `trio.to_thread.run_sync`, where it holds up nobody. On cancel it behaves like
        `trio.to_thread.run_sync`: a call not yet started is dropped, a started one
        finishes."""
        return await self._services.blocking.run(fn, *args)

    @property
    def redis(self) -> HandlerRedis:
        """Redis commands for the handler, on their own connections to fleetd's Redis,
        pipelined with the commands of the other jobs of this process: one round trip
        per batch (fleetd.jobs.handler_redis)."""
        if self._services.redis is None:
            raise RuntimeError("no handler Redis: this JobServices was built without one")
        return self._services.redis

    async def progress(self, percent: float, message: str = "") -> bool:
        """Record progress (0–100) on the job and publish a `job.progress` event.

        Returns False when this daemon no longer holds the job (it was recovered
        elsewhere); a handler may stop early then.
        """
        if self._notes is not None:  # run inline: nothing to record it on
            return True
        pct = max(0.0, min(100.0, float(percent)))
        text = str(message)[:MAX_PROGRESS_MESSAGE]
        payload = json.dumps({"percent": round(pct, 2), "message": text})
        s = self._services
        return await s.link.call(s.scripts.progress, self.job.id, self.job.token, payload)

    async def enqueue(
        self, job_type: str, data: Mapping[str, Any] | None = None, **fields: Any
    ) -> EnqueueResult:
        """Enqueue a follow-up job in this job's company (validated like any enqueue)."""
        raw: dict[str, Any] = {"type": job_type, "data": dict(data or {}), **fields}
        raw.setdefault("company_id", self.job.company_id)
        raw.setdefault("user_id", self.job.user_id)
        try:
            result = await self._services.follow_ups.enqueue(EnqueueRequest.from_dict(raw))
        except Exception as exc:
            self._audit(raw, None, exc)
            raise
        self._audit(raw, result, None)
        return result

    def _audit(self, raw: Mapping[str, Any], result: EnqueueResult | None, exc: Any) -> None:
        """The audit entry of a follow-up job: door handler, subject job:<this job>."""
        if self._services.audit is not None:
            detail = {"type": raw["type"], "duplicate": result is not None and result.duplicate}
            self._services.audit.submit(AuditEntry(
                Action.JOB_ENQUEUE, handler_subject(self.job.id), Door.HANDLER, outcome_of(exc),
                company_id=raw.get("company_id"), target=result.job_id if result else None,
                detail=detail,
            ))  # fmt: skip

    @property
    def artifacts(self) -> ArtifactStore:
        """Files this job produces, under `[artifacts] dir`/<job id>/, listed in the
        job's result as {"artifacts": [{name, path, size, sha256}]}."""
        if self._artifacts is None:
            root = self._services.artifacts_dir
            if root is None:
                raise RuntimeError("no artifact directory: build the registry with build_registry")
            self._artifacts = ArtifactStore(root, self.job.id, self._services.artifact_limits)
        return self._artifacts

    def finish(self, result: Any) -> Any:
        """The result to store: the handler's, with the artifacts it wrote merged in.
        (Called by the worker; raises PermanentError when the two cannot be merged.)"""
        if self._artifacts is None:
            return result
        try:
            return self._artifacts.merge_into(result)
        except ValueError as exc:
            raise PermanentError(str(exc)) from None

    async def remember(self, key: str, value: Any) -> None:
        """Store a small JSON value with this job, kept across retries and resets and
        deleted with the job: record a side effect right after it happened ("sent",
        "charged"), check it with `recall` before doing it again."""
        if not isinstance(key, str) or not 0 < len(key) <= MAX_NOTE_KEY:
            raise ValueError(f"a note's key must be a string of 1 to {MAX_NOTE_KEY} characters")
        field = NOTE_PREFIX + key
        payload = json.dumps(value, separators=(",", ":"))
        if len(payload.encode()) > MAX_NOTE_BYTES:
            raise ValueError(f"note {key!r} is larger than {MAX_NOTE_BYTES} bytes")
        too_many = f"note {key!r}: a job keeps at most {MAX_NOTES} notes"
        if self._notes is not None:
            if key not in self._notes and len(self._notes) >= MAX_NOTES:
                raise ValueError(too_many)
            self._notes[key] = json.loads(payload)
            return
        job_key = self._services.keys.job(self.job.id)

        def write(client: SyncClient) -> None:
            # Only while the job exists: a note must never resurrect a deleted job
            # as a hash without fields. (A job being run is never pruned.)
            if not client.exists(job_key):
                return
            if not client.hexists(job_key, field):
                held = sum(1 for f in client.hkeys(job_key) if str(f).startswith(NOTE_PREFIX))
                if held >= MAX_NOTES:
                    raise ValueError(too_many)
            client.hset(job_key, field, payload)

        await self._services.link.call(write)

    async def recall(self, key: str, default: Any = None) -> Any:
        """The value `remember` stored under `key` for this job, or `default`."""
        if self._notes is not None:
            return self._notes.get(key, default)
        job_key = self._services.keys.job(self.job.id)
        raw = await self._services.link.call(lambda c: c.hget(job_key, NOTE_PREFIX + key))
        return default if raw is None else json.loads(raw)
