"""The worker pool: claims jobs and hands them to job tasks, within its concurrency.

Owns the fetcher and the slots; the rest lives beside it: running one job
(fleetd.runtime.running), the outcome batcher (fleetd.runtime.outcomes), leases and
cancel requests (fleetd.runtime.leases), bypassed jobs it adopts (fleetd.runtime.inline).

Tasks (all in the pool's nurseries):
- fetcher: claims up to `free slots` jobs per script call (at most claim_batch); when
  nothing is ready it blocks on the wake list with a short server-side timeout *in the
  same round trip* as the claim (fleetd.runtime.claims; from the trio thread when no
  outcomes ride), so an idle daemon costs one round trip per poll interval and a busy
  one never waits. While a claim is in flight the running jobs keep freeing slots, so
  claims batch themselves under load. When jobs are short (a moving
  average under PREFETCH_MAX_JOB_TIME) it also claims ahead, as many as the slots get
  through in a quarter second (at most claim_batch), so the next claim is in flight
  while the current jobs run; claimed-ahead jobs wait in a local buffer with their
  leases renewed, and go back to pending at once when the daemon stops.
- job tasks: one per claimed job, in its own cancel scope (timeout, cancel request, lost
  lease, shutdown); outcomes go to an in-memory buffer, never straight to Redis.
- outcomes: buffered (OutcomeWriter), written in one hop per batch by the next claim
  while claims come back full, else by the flusher; kept and retried on Redis errors.
- renewer and control (LeaseKeeper): renew held leases in one call every lease/3; a lost
  lease or a cancel request cancels the handler; a retry falling due pokes our fetcher.

Lifecycle: run() → started (fetching) → quiet() stops fetching → running jobs get
shutdown_timeout to finish → the rest are cancelled and released to `pending` at once
(not counted as attempts) → outcomes flushed → run() returns."""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from fleetd.audit.backlog import AuditSink
from fleetd.backend.native_lane import CONNECT_TIMEOUT
from fleetd.backend.redis_link import Backoff, RedisLink, RedisUnavailable, SyncClient
from fleetd.backend.scripts import ClaimedJob, Scripts
from fleetd.config.durations import format_duration
from fleetd.config.isolation_section import IsolationConfig
from fleetd.jobs.context import JobServices
from fleetd.jobs.handler_redis import HandlerRedis
from fleetd.jobs.handlers import HandlerRegistry
from fleetd.jobs.queue import Queue
from fleetd.runtime.claims import MIN_WAIT, Claims
from fleetd.runtime.heartbeat import WorkerMetrics
from fleetd.runtime.leases import LeaseKeeper
from fleetd.runtime.outcomes import Outcome, OutcomeWriter
from fleetd.runtime.pools import SharedSlots
from fleetd.runtime.running import JobRunner, Running

__all__ = ["PoolSettings", "WorkerPool"]

log = logging.getLogger("fleetd.worker")

# Retries falling due within this many seconds share one wake-up poke (at the slot's end).
RETRY_WAKE_SLOT = 0.02
# Claim ahead only while jobs average less than this: a short job waits at most a
# moment in the local buffer, while a long one would sit leased here as other
# daemons idle (the prefetch trap of Celery).
PREFETCH_MAX_JOB_TIME = 0.05
# A claimed-ahead job that waited this long for a slot goes back to the queue, where an
# idle daemon can take it: the average misjudged it (a slow job among fast ones).
PREFETCH_MAX_WAIT = 0.5
# Weight of the newest job in the moving average of job durations.
EWMA_WEIGHT = 0.05


@dataclass(frozen=True, slots=True)
class PoolSettings:
    concurrency: int
    poll_interval: float
    job_timeout: float
    shutdown_timeout: float
    claim_batch: int
    lease: float
    reconnect_max_backoff: float
    command_timeout: float
    # [redis] connect_timeout: the trio-thread connections (claims, ctx.redis).
    connect_timeout: float = CONNECT_TIMEOUT
    # One INFO line per finished job ([daemon] log_jobs); start lines are DEBUG.
    log_jobs: bool = True
    isolation: IsolationConfig | None = None  # None: every job type runs inline


class WorkerPool:
    def __init__(
        self,
        link: RedisLink,
        scripts: Scripts,
        queue: Queue,
        registry: HandlerRegistry,
        settings: PoolSettings,
        daemon_id: str,
        metrics: WorkerMetrics,
        *,
        audit: AuditSink | None = None,
        slots: SharedSlots | None = None,
    ) -> None:
        """`audit`: where the entries of handlers' `ctx.enqueue` go; `slots`: the daemon's
        other pools, sharing `concurrency` (fleetd.runtime.pools)."""
        self.link = link
        self.scripts = scripts
        self.queue = queue
        self.registry = registry
        self.settings = settings
        self.concurrency = settings.concurrency
        self.daemon_id = daemon_id
        self.metrics = metrics
        self._slots = slots
        self._handler_redis = HandlerRedis(link, connect_timeout=settings.connect_timeout,
                                           command_timeout=settings.command_timeout)  # fmt: skip
        services = JobServices(
            link, scripts.keys, scripts, queue, registry.artifacts_dir,
            redis=self._handler_redis, audit=audit, artifact_limits=registry.artifact_limits,
        )  # fmt: skip
        self._runner = JobRunner(
            registry, queue.ops.sealer, services, job_timeout=settings.job_timeout,
            daemon_id=daemon_id, isolation=settings.isolation,
        )  # fmt: skip
        self._writer = OutcomeWriter(
            link,
            scripts,
            metrics,
            registry.hooks,
            log_jobs=settings.log_jobs,
            max_backoff=settings.reconnect_max_backoff,
            wake_at_retry=self._wake_at_retry,
            worker_id=daemon_id,
            strikes=settings.isolation,
        )
        # Bound once: every outcome of every job goes through it.
        self._emit = self._writer.emit
        self._running: dict[str, Running] = {}
        # Claimed ahead, waiting for a slot (see PREFETCH_MAX_JOB_TIME).
        self._buffer: deque[Running] = deque()
        self._avg_job_time: float | None = None
        self._jobs: trio.Nursery | None = None
        self._slot_freed = trio.Event()
        self._idle = trio.Event()
        self._stopping = False
        keys = scripts.keys
        self._wake_keys = [keys.wake, keys.poke(daemon_id, "fetch")]
        self._quiet = trio.Event()
        self._services: trio.Nursery | None = None
        self._retry_wakes: set[int] = set()  # pending retry pokes, by RETRY_WAKE_SLOT
        # The BLPOP wait must end well before the socket timeout.
        self._max_wait = max(MIN_WAIT, min(settings.poll_interval, settings.command_timeout / 2))
        self._claims = Claims(link, scripts, self._writer, daemon_id,
            lease_ms=int(settings.lease * 1000), wake_keys=self._wake_keys,
            max_wait=self._max_wait, command_timeout=settings.command_timeout,
            connect_timeout=settings.connect_timeout)  # fmt: skip
        self._leases = LeaseKeeper(
            link,
            scripts,
            daemon_id,
            running=self._running,
            buffer=self._buffer,
            emit=self._emit,
            lease=settings.lease,
            max_wait=self._max_wait,
            max_backoff=settings.reconnect_max_backoff,
        )

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def wake(self) -> None:
        """Look again for room to claim (a slot came free here or in a sharing pool)."""
        self._slot_freed.set()

    def _freed(self) -> None:
        if self._slots is None:
            self._slot_freed.set()
        else:
            self._slots.freed()

    def _elsewhere(self) -> tuple[int, int]:
        return (0, 0) if self._slots is None else self._slots.elsewhere(self)

    def running_jobs(self) -> list[ClaimedJob]:
        return [r.job for r in self._running.values()]

    def set_concurrency(self, n: int) -> None:
        """Live change (SIGHUP): more slots start claiming at once; fewer let running
        jobs finish and claim less."""
        self.concurrency = n
        self._slot_freed.set()

    def adopt(self, entry: Running, runs: Callable[..., Awaitable[None]]) -> None:
        """Start a job claimed elsewhere now (a bypass): `runs(run_job, entry)`."""
        assert self._jobs is not None
        self._running[entry.job.id] = entry
        self._jobs.start_soon(runs, self._run_job, entry)

    def quiet(self) -> None:
        """Stop claiming; running jobs go on (the first half of a graceful stop)."""
        self._stopping = True
        self._claims.stop_flag.set()
        self._writer.set_riding(False)  # no more claims to carry outcomes
        self._slot_freed.set()
        self._quiet.set()
        # Claimed ahead but never started: straight back to pending.
        while self._buffer:
            self._emit(Outcome("release", self._buffer.popleft().job, 0.0))

    def stop_now(self) -> None:
        """Quiet, and cancel every running handler now: its job goes back to pending."""
        self.quiet()
        for entry in list(self._running.values()):
            entry.stop("shutdown")

    # -- lifecycle -------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self._run(task_status)
        finally:
            self._handler_redis.close()  # the handlers' own connections (ctx.redis)
            self._claims.close()

    async def _run(self, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as services:
            self._services = services
            services.start_soon(self._writer.run)
            services.start_soon(self._leases.renew_loop)
            services.start_soon(self._leases.control_loop)
            services.start_soon(self._buffer_janitor)
            await services.start(self._runner.serve)  # warm children of process jobs
            async with trio.open_nursery() as jobs:
                self._jobs = jobs
                task_status.started()
                jobs.start_soon(self._poke_when_quiet)
                await self._fetch_loop(jobs)
                await self._drain()
            await self._writer.final_flush()
            await self._poke(self._leases.control_keys[1])
            services.cancel_scope.cancel()

    def _wake_at_retry(self, delay: float) -> None:
        """Poke our fetcher when a retry falls due. Retries due within RETRY_WAKE_SLOT of
        each other share one poke: a failure storm costs one round trip per slot, not
        one per job."""
        if self._services is None or self._stopping:
            return
        slot = int((trio.current_time() + delay) / RETRY_WAKE_SLOT) + 1
        if slot in self._retry_wakes:
            return
        self._retry_wakes.add(slot)
        self._services.start_soon(self._wake_after, slot)

    async def _wake_after(self, slot: int) -> None:
        try:
            await trio.sleep_until(slot * RETRY_WAKE_SLOT)
            await self._poke(self._wake_keys[1])
        finally:
            self._retry_wakes.discard(slot)

    async def _poke_when_quiet(self) -> None:
        await self._quiet.wait()
        await self._poke(self._wake_keys[1])

    async def _poke(self, key: str) -> None:
        """End our own blocking wait on `key` now rather than at its timeout."""

        def push(client: SyncClient) -> None:
            client.pipeline(transaction=False).rpush(key, "1").expire(key, 60).execute()

        with trio.move_on_after(1):
            with contextlib.suppress(RedisUnavailable):
                await self.link.call(push)

    async def _drain(self) -> None:
        if self._running:
            log.info(
                "stopping: waiting up to %s for %d running job(s)",
                format_duration(self.settings.shutdown_timeout),
                len(self._running),
            )
            with trio.move_on_after(self.settings.shutdown_timeout):
                while self._running:
                    self._idle = trio.Event()
                    await self._idle.wait()
        if self._running:
            log.warning(
                "shutdown timeout: returning %d running job(s) to pending", len(self._running)
            )
            for entry in list(self._running.values()):
                entry.stop("shutdown")

    # -- fetching --------------------------------------------------------------------

    def _prefetch(self) -> int:
        """How many jobs to claim beyond the free slots: as many as the slots get through
        in half of PREFETCH_MAX_WAIT at the average job time, at most claim_batch."""
        avg = self._avg_job_time
        if avg is None or avg >= PREFETCH_MAX_JOB_TIME:
            return 0
        # A job running long now says more than the average of the jobs before it.
        if self._running:
            started = trio.current_time() - PREFETCH_MAX_JOB_TIME
            if any(e.started_at < started for e in self._running.values()):
                return 0
        through = int(self.concurrency * (PREFETCH_MAX_WAIT / 2) / max(avg, 1e-6))
        return max(0, min(through, self.settings.claim_batch))

    async def _fetch_loop(self, jobs: trio.Nursery) -> None:
        backoff = Backoff(self.settings.reconnect_max_backoff)
        writer = self._writer
        full = False  # the last claim got all it asked for: the next one will not wait
        while not self._stopping:
            self._dispatch()  # a slot freed in a sharing pool may start a job buffered here
            running, buffered = self._elsewhere()
            room = self.concurrency + self._prefetch() - len(self._running) - len(self._buffer)
            room -= running + buffered
            if room <= 0:
                self._slot_freed = trio.Event()
                await self._slot_freed.wait()
                continue
            count = min(room, self.settings.claim_batch)
            # While claims come back full the outcomes buffered now ride in this hop
            # (fleetd.runtime.outcomes); else the flusher writes them at once.
            outcomes = writer.take() if full else []
            try:
                written, result = await self._claims.claim(count, outcomes)
            except RedisUnavailable:
                writer.put_back(outcomes)
                writer.set_riding(full := False)
                await backoff.sleep()
                continue
            if outcomes:
                writer.account(outcomes, written)
            if isinstance(result, RedisUnavailable):  # written, but the claim failed
                writer.set_riding(full := False)
                await backoff.sleep()
                continue
            backoff.reset()
            full = len(result.jobs) >= count and not self._stopping
            writer.set_riding(full)
            if self._stopping:  # claimed while quieting: give them back untouched
                for job in result.jobs:
                    self._emit(Outcome("release", job, 0.0))
                break
            now = trio.current_time()
            self._buffer.extend(Running(job, claimed_at=now) for job in result.jobs)
            self._dispatch()

    async def _buffer_janitor(self) -> None:
        """Release claimed-ahead jobs that waited PREFETCH_MAX_WAIT for a slot."""
        while True:
            await trio.sleep(PREFETCH_MAX_WAIT / 2)
            limit = trio.current_time() - PREFETCH_MAX_WAIT
            released = False
            while self._buffer and self._buffer[0].claimed_at < limit:
                self._emit(Outcome("release", self._buffer.popleft().job, 0.0))
                released = True
            if released:  # their room is free again, here or in a sharing pool
                self._freed()

    def _dispatch(self) -> None:
        """Start buffered jobs while slots are free."""
        assert self._jobs is not None
        now = trio.current_time()
        elsewhere = self._elsewhere()[0]
        while self._buffer and len(self._running) + elsewhere < self.concurrency:
            entry = self._buffer.popleft()
            entry.started_at = now
            self._running[entry.job.id] = entry
            self._jobs.start_soon(self._run_job, entry)

    # -- running one job -------------------------------------------------------------

    async def _run_job(self, entry: Running) -> None:
        job = entry.job
        start = trio.current_time()
        outcome: Outcome | None = None
        try:
            outcome = await self._runner.run(entry, start)
        finally:
            del self._running[job.id]
            elapsed = trio.current_time() - start
            avg = self._avg_job_time
            self._avg_job_time = elapsed if avg is None else avg + EWMA_WEIGHT * (elapsed - avg)
            if not self._stopping:
                self._dispatch()
            self._freed()
            if not self._running:
                self._idle.set()
            if outcome is not None:
                self._emit(outcome)
