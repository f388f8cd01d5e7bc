"""Jobs run by the process that received them, not claimed from the queue: synchronous
fallback and queue bypass (docs/OPERATIONS.md, "What happens during a Redis outage").

Owns `InlineJobs`, one per API process:
- `run_here(row)`: run a job inline now, within its time limit, and spool it finished
  (fleetd.spool.finished): it reaches Redis completed or failed when Redis is back,
  through land.lua, and never runs again. Used while the queue is unavailable for a
  sync-fallback job (`"fallback": "sync"`, its type declaring `sync_fallback`) and for
  a bypassed critical job (`"bypass": true`). Answered only once the job is spooled.
- `bypass(row)` with Redis up: land.lua stores the job already claimed by this daemon
  (status `processing`, a lease, `job.enqueued` then `job.started`), and the worker
  pool runs it at once through its `adopt` hook — as any claimed job: its lease is
  renewed, a cancel stops it, a failure is retried per policy, its outcome is written
  by the pool's batcher. At most `[worker] critical_slots` bypassed jobs run at once,
  beside the pool's own slots; past that a bypass is enqueued as usual (critical, so
  claimed next) — and so is one land.lua holds (its part quarantined, its queue
  paused: checked in the script that would store it, and the slot given back). Only
  on a daemon with the worker role (`attach`). On a direct Redis URL land.lua is sent
  from the trio thread (fleetd.backend.native_lane: no thread hop, ~0.7 ms of the
  start latency on the 2-core box); Sentinel, Cluster, TLS and a script Redis forgot
  (NOSCRIPT) go through the link's worker thread.
`run_blocking` is the sync fallback of the CLI and fleetd.client: the job runs in the
calling process and is spooled finished in the state directory's spool.
Both start the handler without waiting for a claim; inline runs share one JobRunner
(fleetd.runtime.running), so a handler sees the same JobContext as in the pool.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from fleetd.backend.codec import ClaimedJob, JobRow, encode_row
from fleetd.backend.native_lane import NativeLane, raise_unless_forgotten
from fleetd.backend.redis_link import RedisLink, RedisUnavailable, SyncClient
from fleetd.backend.scripts import Scripts
from fleetd.jobs.context import JobServices
from fleetd.jobs.contract import allows_sync_fallback
from fleetd.jobs.handlers import HandlerRegistry
from fleetd.jobs.model import ValidationError
from fleetd.jobs.queue import EnqueueResult
from fleetd.jobs.sealing import Sealer
from fleetd.runtime.outcomes import with_run_facts
from fleetd.runtime.running import JobRunner, Running
from fleetd.runtime.worker import WorkerPool
from fleetd.spool.file import SpoolError, SpoolFull
from fleetd.spool.finished import Finished, Landing, finished_encoder, land, land_keys, landed
from fleetd.spool.outage import may_have_run, spool_rows, spooled_results
from fleetd.spool.service import DaemonSpool

if TYPE_CHECKING:
    from fleetd.engine import Engine

__all__ = ["InlineJobs", "InlineResult", "attach", "enqueue_or_run", "run_blocking", "run_row"]

log = logging.getLogger("fleetd.worker")

# Failures of an inline run that are no job outcome (cancelled, stopped): recorded failed.
_STOPPED = {"abort": "cancelled", "release": "stopped before it finished"}


class InlineJobs:
    def __init__(
        self,
        link: RedisLink,
        scripts: Scripts,
        registry: HandlerRegistry,
        sealer: Sealer | None,
        services: JobServices,
        spool: DaemonSpool | None,
        *,
        job_timeout: float,
        lease: float,
        critical_slots: int,
        redis_timeouts: tuple[float, float] = (5.0, 10.0),
    ) -> None:
        """`redis_timeouts`: connect and command timeouts of a bypass's land.lua sent from
        the trio thread (the API link's, so a bypass answers as fast as any call)."""
        self.link = link
        self.scripts = scripts
        self.spool = spool
        self.critical_slots = critical_slots
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.pool: WorkerPool | None = None  # set by `attach` on a worker daemon
        self._lease_ms = int(lease * 1000)
        self._redis_timeouts = redis_timeouts
        self._tokens = itertools.count(1)
        self._bypassing: set[str] = set()  # job ids of bypassed jobs running now
        # land.lua of a bypass from the trio thread (made on first use; None: the URL
        # is not a direct server's).
        self._lane: NativeLane | None = None
        self._runner = JobRunner(
            registry, sealer, services, job_timeout=job_timeout, daemon_id=self.worker
        )

    def free_slot(self) -> bool:
        return len(self._bypassing) < self.critical_slots

    async def run_here(
        self, row: JobRow, *, door: str, subject: str, slot: bool = False
    ) -> tuple[EnqueueResult, Finished]:
        """Run `row` inline now (in a critical slot when `slot`) and spool it finished.
        Raises SpoolError when the spool cannot take it."""
        assert self.spool is not None
        job_id = row.id
        if slot:
            self._bypassing.add(job_id)
        try:
            done = await run_row(self._runner, row, self.worker)
        finally:
            self._bypassing.discard(job_id)
        [result] = await self.spool.add([row], door=door, subject=subject,
                                        encode=finished_encoder(done))  # fmt: skip
        return result, done

    async def bypass(self, row: JobRow) -> EnqueueResult | None:
        """Store `row` claimed by this daemon and start it now; None when every critical
        slot is busy or land.lua held it (its part quarantined or its queue paused:
        nothing stored): enqueue it as usual. Raises RedisUnavailable."""
        pool = self.pool
        assert pool is not None
        if not self.free_slot():
            return None
        token = f"{pool.daemon_id}:bypass:{next(self._tokens)}"
        self._bypassing.add(row.id)  # the slot is taken from here on
        try:
            got = await self._land_now(row, token, pool.daemon_id)
        except BaseException:
            self._bypassing.discard(row.id)
            raise
        job_id, status, created = got.job_id, got.status, got.created_ms
        if not got.stored:
            self._bypassing.discard(row.id)
            if got.held:  # a claim would not start it now: nothing was stored
                return None
            # Its idempotency key's job, or the id is there already.
            return EnqueueResult(job_id, status, created, duplicate=True)
        entry = Running(
            _claimed(row, created_ms=created, token=token), claimed_at=trio.current_time()
        )
        entry.started_at = entry.claimed_at
        entered = trio.Event()
        try:
            pool.adopt(entry, functools.partial(self._then_free, row.id, entered))
        except RuntimeError:  # the pool has stopped (the daemon is stopping)
            self._bypassing.discard(row.id)
            log.warning("job %s: the pool has stopped; its lease expires and it is run "
                        "again by another daemon (reap)", row.id)  # fmt: skip
            return EnqueueResult(job_id, status, created)
        # The handler first, the answer after: without this wait the job's task ran
        # only at the request's next checkpoint, once its answer was built and sent
        # (~0.2-0.5 ms of the start latency, bench/bypass.py).
        await entered.wait()
        return EnqueueResult(job_id, status, created)

    async def _then_free(
        self,
        job_id: str,
        entered: trio.Event,
        run: Callable[[Running], Awaitable[None]],
        entry: Running,
    ) -> None:
        entered.set()  # the request resumes once the handler reaches its first await
        try:
            await run(entry)
        finally:
            self._bypassing.discard(job_id)

    async def _land_now(self, row: JobRow, token: str, worker: str) -> Landing:
        """land.lua storing `row` claimed by `worker`: from the trio thread on a direct
        server, else (or when Redis forgot the script) through the link's thread."""
        if self._lane is None and NativeLane.supports(self.link.url):
            connect_s, command_s = self._redis_timeouts
            self._lane = NativeLane(
                self.link.url,
                max_idle=self.critical_slots,
                connect_timeout=connect_s,
                command_timeout=command_s,
            )
        if self._lane is not None:
            args = [encode_row(row), "processing", self._lease_ms, token, worker]
            command = self.scripts.command("land", land_keys(self.scripts), args)
            [reply] = await self._lane.pipeline([command])
            if not isinstance(reply, Exception):
                return landed(reply)
            raise_unless_forgotten("land.lua", reply)
        call = functools.partial(self._land_claimed, row=row, token=token, worker=worker)
        return await self.link.call(call)

    def close(self) -> None:
        """Close the bypass's own connections (the daemon's teardown)."""
        if self._lane is not None:
            self._lane.close()

    def _land_claimed(self, client: SyncClient, *, row: JobRow, token: str, worker: str) -> Landing:
        return land(
            client, self.scripts, encode_row(row), "processing", [self._lease_ms, token, worker]
        )


async def run_row(runner: JobRunner, row: JobRow, worker: str) -> Finished:
    """Run `row` now as its first attempt, within its time limit: how it ended."""
    entry = Running(_claimed(row, created_ms=int(time.time() * 1000), token=""))
    started = int(time.time() * 1000)
    start = trio.current_time()
    outcome = await runner.run(entry, start)
    finished = int(time.time() * 1000)
    elapsed = int((trio.current_time() - start) * 1000)
    if outcome is not None and outcome.kind == "complete":
        text = with_run_facts(outcome.result, outcome.elapsed, worker)
        return Finished("completed", worker, started, finished, result=text, elapsed_ms=elapsed)
    error = "ended without an outcome" if outcome is None else outcome.error
    if outcome is not None and outcome.kind in _STOPPED:
        error = _STOPPED[outcome.kind]
    return Finished("failed", worker, started, finished, error=error, elapsed_ms=elapsed)


def run_blocking(
    engine: Engine, row: JobRow, *, door: str, subject: str
) -> tuple[EnqueueResult, Finished]:
    """The CLI's and fleetd.client's sync fallback: run `row` in this process (its own
    trio run; not from inside one) and spool it finished in the state directory's
    spool, which a daemon replays. Raises SpoolError (nothing spooled: no spool, or
    full before the run)."""
    spool = engine.spool
    if spool is None:
        raise SpoolError("no spool ([spool] enabled = false) to record a job run inline")
    if spool.depth()[0] >= spool.max_jobs:
        raise SpoolFull(f"the spool is full ({spool.max_jobs} jobs): the job did not run")
    worker = f"{socket.gethostname()}:{os.getpid()}"
    services = JobServices(engine.link, engine.keys, engine.scripts, engine.queue,
                           engine.registry.artifacts_dir,
                           artifact_limits=engine.registry.artifact_limits)  # fmt: skip
    runner = JobRunner(engine.registry, engine.ops.sealer, services,
                       job_timeout=engine.config.worker.job_timeout, daemon_id=worker)  # fmt: skip
    done = trio.run(run_row, runner, row, worker)
    at, dups = spool.add([row], door=door, subject=subject, encode=finished_encoder(done))
    return spooled_results([row], at, dups)[0], done


@dataclass(frozen=True, slots=True)
class InlineResult(EnqueueResult):
    """An enqueue answered by running the job here (sync fallback): `status` is
    `completed` (with `result`) or `failed` (with `error`); the job reaches Redis
    finished when the spool is replayed."""

    result: dict[str, Any] | None = None
    error: str = ""


def enqueue_or_run(
    engine: Engine, row: JobRow, fallback: str | None, *, door: str, subject: str
) -> EnqueueResult:
    """The CLI's and fleetd.client's enqueue with `fallback`: to Redis when it answers,
    else (`sync`) run here and spool it finished (run_blocking) — or, when the attempt
    may have reached Redis (fleetd.spool.outage.may_have_run), spool it as a plain
    enqueue. Raises
    ValidationError naming `fallback`, or RedisUnavailable when it cannot run here."""
    if fallback != "sync":
        raise ValidationError("fallback", f"unknown fallback {fallback!r} (use sync)")
    handler = engine.registry.require(row.type)
    if not allows_sync_fallback(handler):
        raise ValidationError(
            "fallback",
            f"job type {row.type!r} does not declare sync_fallback: it cannot run inline",
        )
    try:
        [result] = engine.link.run_sync(engine.ops.enqueue_rows, [row])
        return result
    except RedisUnavailable as exc:
        if may_have_run(exc) and engine.spool is not None:
            # The connection broke: Redis may hold the job already. Spooled, not run
            # here: its replay finds it there, or enqueues it — it runs once.
            [spooled] = spool_rows(engine.spool, [row], exc, door=door, subject=subject)
            return spooled
        try:
            queued, done = run_blocking(engine, row, door=door, subject=subject)
        except SpoolError as refused:
            raise RedisUnavailable(f"{exc}; not run inline: {refused}") from None
    result_obj = json.loads(done.result) if done.result else None
    return InlineResult(queued.job_id, done.status, queued.enqueued_at_ms, queued.duplicate,
                        result=result_obj, error=done.error)  # fmt: skip


def _claimed(row: JobRow, *, created_ms: int, token: str) -> ClaimedJob:
    """The job a worker would have claimed from `row`: first attempt, data as stored
    (sealed parts sealed: the runner opens them)."""
    return ClaimedJob(
        id=row.id, type=row.type, data=json.loads(row.data), priority=row.priority,
        attempts=1, retry_count=0, max_retries=row.max_retries, timeout=row.timeout,
        company_id=row.company_id, user_id=row.user_id, tags=row.tags,
        created_at_ms=created_ms, token=token, sealed=row.sealed,
    )  # fmt: skip


def attach(inline: InlineJobs | None, pool: WorkerPool) -> None:
    """A worker daemon's API runs bypassed jobs in its pool."""
    if inline is not None:
        inline.pool = pool
        inline.worker = pool.daemon_id
