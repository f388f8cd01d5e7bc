"""The worker pool: claims jobs, runs their handlers, records outcomes, renews leases.

Tasks (all in the pool's nursery):
- fetcher: claims up to `free slots` jobs per script call (at most claim_batch); when
  nothing is ready it blocks on the wake list with a short server-side timeout *in the
  same thread hop* as the claim, so an idle daemon costs one round trip per poll
  interval and a busy one never waits. While a claim is in flight the running jobs keep
  freeing slots, so claims batch themselves under load. When jobs are short (a moving
  average under PREFETCH_MAX_JOB_TIME) it also claims ahead, as many as the slots get
  through in a quarter second (at most claim_batch), so the next claim is in flight
  while the current jobs run;
  claimed-ahead jobs wait in a local buffer with their leases renewed, and go back to
  pending at once when the daemon stops. Long jobs never wait behind each other here.
- job tasks: one per claimed job, inside its own cancel scope (timeout, cancel request,
  lost lease, shutdown). Outcomes go to an in-memory buffer, never straight to Redis.
- flusher: writes buffered outcomes in one hop per batch (complete / fail / abort /
  release scripts); on Redis errors it keeps them and retries with backoff.
- renewer: renews the leases of all running jobs in one call every lease/3; a lost
  lease or a pending cancel request cancels the handler.
- control: blocks on this daemon's control list for cancel requests.

Lifecycle: run() → started (fetching) → quiet() stops fetching → running jobs get
shutdown_timeout to finish → the rest are cancelled and released to `pending` at once
(not counted as attempts) → outcomes flushed → run() returns.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import threading
import traceback
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from fleetd.backend.redis_link import Backoff, RedisLink, RedisUnavailable, SyncClient
from fleetd.backend.scripts import RETRY_UNIT_MS, ClaimedJob, ClaimResult, Scripts
from fleetd.config.durations import format_duration
from fleetd.jobs.context import JobContext, JobServices
from fleetd.jobs.handlers import HandlerRegistry, PermanentError
from fleetd.jobs.queue import Queue
from fleetd.jobs.sealing import open_claimed
from fleetd.runtime.heartbeat import WorkerMetrics

__all__ = ["PoolSettings", "WorkerPool"]

log = logging.getLogger("fleetd.worker")

# Error texts and tracebacks are cut to these lengths: a job hash must stay small, and
# the tail of a traceback is the part that names the failing line.
MAX_ERROR_CHARS = 2000
MAX_TRACEBACK_CHARS = 8000
# How long a stopping daemon keeps trying to write its last outcomes while Redis is
# unreachable before it gives up (the leases then expire and the reaper recovers them).
FINAL_FLUSH_PATIENCE = 10.0
RETRY_UNIT_S = RETRY_UNIT_MS / 1000
# Retries falling due within this many seconds of each other share one wake-up poke;
# the poke comes at the slot's end, so a retry starts at most this late.
RETRY_WAKE_SLOT = 0.02
# Built once: json.dumps with options constructs an encoder on every call.
_encode_result = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=str).encode
# Claim ahead only while jobs average less than this: a short job waits at most a
# moment in the local buffer, while a long one would sit leased here as other
# daemons idle (the prefetch trap of Celery).
PREFETCH_MAX_JOB_TIME = 0.05
# A claimed-ahead job that waited this long for a slot goes back to the queue, where an
# idle daemon can take it: the average misjudged it (a slow job among fast ones).
PREFETCH_MAX_WAIT = 0.5
# Weight of the newest job in the moving average of job durations.
EWMA_WEIGHT = 0.05
# Shortest idle wait: a delayed job due "now" still costs a round trip.
MIN_WAIT = 0.005


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
    # One INFO line per finished job ([daemon] log_jobs); start lines are DEBUG.
    log_jobs: bool = True


@dataclass(slots=True, eq=False)
class _Running:
    job: ClaimedJob
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    reason: str | None = None  # cancel | lost | shutdown; None with a cancel = timeout
    claimed_at: float = 0.0  # trio clock, for the claim-ahead buffer
    started_at: float = 0.0  # trio clock, set when its handler starts

    def stop(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.scope.cancel()


@dataclass(slots=True)
class _Outcome:
    kind: str  # complete | fail | abort | release
    job: ClaimedJob
    elapsed: float
    result: str = ""
    error: str = ""
    traceback: str = ""
    retryable: bool = True


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:MAX_ERROR_CHARS]


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
    ) -> None:
        self.link = link
        self.scripts = scripts
        self.queue = queue
        self.registry = registry
        self.settings = settings
        self._log_jobs = settings.log_jobs
        self.concurrency = settings.concurrency
        self.daemon_id = daemon_id
        self.metrics = metrics
        # Plugins' lifecycle hooks, resolved once: None when no plugin implements any,
        # so a job then costs no hook call at all.
        self._hooks = registry.hooks
        # What every job's JobContext shares: built once, not per job.
        self._job_services = JobServices(
            link, queue.ops.keys, scripts, queue, registry.artifacts_dir
        )
        self._lease_ms = int(settings.lease * 1000)
        self._tokens = itertools.count(1)
        self._running: dict[str, _Running] = {}
        # Claimed ahead, waiting for a slot (see PREFETCH_MAX_JOB_TIME).
        self._buffer: deque[_Running] = deque()
        self._avg_job_time: float | None = None
        self._jobs: trio.Nursery | None = None
        self._outcomes: list[_Outcome] = []
        self._outcome_ready = trio.Event()
        self._slot_freed = trio.Event()
        self._idle = trio.Event()
        self._stopping = False
        # Read by the claim thread: once set, a wake-up no longer claims.
        self._stop_flag = threading.Event()
        keys = scripts.keys
        self._wake_keys = [keys.wake, keys.poke(daemon_id, "fetch")]
        self._control_keys = [keys.control(daemon_id), keys.poke(daemon_id, "control")]
        self._quiet = trio.Event()
        self._services: trio.Nursery | None = None
        self._retry_wakes: set[int] = set()  # pending retry pokes, by RETRY_WAKE_SLOT
        # The BLPOP wait must end well before the socket timeout.
        self._max_wait = max(MIN_WAIT, min(settings.poll_interval, settings.command_timeout / 2))

    @property
    def running(self) -> int:
        return len(self._running)

    def running_jobs(self) -> list[ClaimedJob]:
        return [r.job for r in self._running.values()]

    def _holds(self, entry: _Running) -> bool:
        return self._running.get(entry.job.id) is entry or any(e is entry for e in self._buffer)

    def _held(self) -> list[_Running]:
        """Every job this daemon holds a lease on: running and claimed ahead."""
        return [*self._running.values(), *self._buffer]

    def set_concurrency(self, n: int) -> None:
        """Live change (SIGHUP): more slots start claiming at once; fewer let running
        jobs finish and claim less."""
        self.concurrency = n
        self._slot_freed.set()

    def quiet(self) -> None:
        """Stop claiming; running jobs go on (the first half of a graceful stop)."""
        self._stopping = True
        self._stop_flag.set()
        self._slot_freed.set()
        self._quiet.set()
        # Claimed ahead but never started: straight back to pending.
        while self._buffer:
            self._emit(_Outcome("release", self._buffer.popleft().job, 0.0))

    def stop_now(self) -> None:
        """Quiet, and cancel every running handler now: its job goes back to pending."""
        self.quiet()
        for entry in list(self._running.values()):
            entry.stop("shutdown")

    # -- lifecycle -------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as services:
            self._services = services
            services.start_soon(self._flusher)
            services.start_soon(self._renewer)
            services.start_soon(self._control)
            services.start_soon(self._buffer_janitor)
            async with trio.open_nursery() as jobs:
                self._jobs = jobs
                task_status.started()
                jobs.start_soon(self._poke_when_quiet)
                await self._fetch_loop(jobs)
                await self._drain()
            await self._final_flush()
            await self._poke(self._control_keys[1])
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
        while not self._stopping:
            room = self.concurrency + self._prefetch() - len(self._running) - len(self._buffer)
            if room <= 0:
                self._slot_freed = trio.Event()
                await self._slot_freed.wait()
                continue
            try:
                result = await self.link.call(
                    self._claim_or_wait, min(room, self.settings.claim_batch)
                )
            except RedisUnavailable:
                await backoff.sleep()
                continue
            backoff.reset()
            if self._stopping:  # claimed while quieting: give them back untouched
                for job in result.jobs:
                    self._emit(_Outcome("release", job, 0.0))
                break
            now = trio.current_time()
            self._buffer.extend(_Running(job, claimed_at=now) for job in result.jobs)
            self._dispatch()

    async def _buffer_janitor(self) -> None:
        """Release claimed-ahead jobs that waited PREFETCH_MAX_WAIT for a slot."""
        while True:
            await trio.sleep(PREFETCH_MAX_WAIT / 2)
            limit = trio.current_time() - PREFETCH_MAX_WAIT
            while self._buffer and self._buffer[0].claimed_at < limit:
                self._emit(_Outcome("release", self._buffer.popleft().job, 0.0))

    def _dispatch(self) -> None:
        """Start buffered jobs while slots are free."""
        assert self._jobs is not None
        now = trio.current_time()
        while self._buffer and len(self._running) < self.concurrency:
            entry = self._buffer.popleft()
            entry.started_at = now
            self._running[entry.job.id] = entry
            self._jobs.start_soon(self._run_job, entry)

    def _claim_or_wait(self, client: SyncClient, count: int) -> ClaimResult:
        """In the worker thread: claim; if nothing was ready, wait for a wake-up token
        (or the next delayed job's due time) and claim once more, in the same round
        trip as the wait."""
        token = f"{self.daemon_id}:{next(self._tokens)}"
        result = self.scripts.claim(client, count, self._lease_ms, token, self.daemon_id)
        if result.jobs or self._stop_flag.is_set():
            return result
        wait = self._max_wait
        if result.next_due_ms is not None:
            wait = max(MIN_WAIT, min(wait, (result.next_due_ms - result.now_ms) / 1000))
        # A claim made after a stop poke is given back by the fetch loop.
        return self.scripts.wait_then_claim(
            client, self._wake_keys, wait, count, self._lease_ms, token, self.daemon_id
        )

    # -- running one job -------------------------------------------------------------

    async def _run_job(self, entry: _Running) -> None:
        job = entry.job
        start = trio.current_time()
        outcome: _Outcome | None = None
        try:
            handler = self.registry.get(job.type)
            if handler is None:
                outcome = _Outcome(
                    "fail",
                    job,
                    0.0,
                    error=f"no handler for job type {job.type!r} on {self.daemon_id}",
                )
                return
            data = job.data
            if job.sealed:  # the one check a plain job pays; no crypto for it
                data, error = open_claimed(self.queue.ops.sealer, job)
                if error:
                    outcome = _Outcome("fail", job, 0.0, error=error, retryable=False)
                    return
            timeout = job.timeout or handler.defaults.timeout or self.settings.job_timeout
            ctx = JobContext(job, self._job_services)
            result: Any = None
            finished = False
            # One scope for the time limit and for stop requests (cancel, lost lease,
            # shutdown): `reason` tells them apart; a deadline leaves it None.
            entry.scope.deadline = start + timeout
            if self._hooks is not None:
                self._hooks.started(job)
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "job %s (%s) started, attempt %d", job.id, job.type, job.attempts,
                    extra={"job_id": job.id, "job_type": job.type, "attempt": job.attempts},
                )  # fmt: skip
            with entry.scope:
                try:
                    result = ctx.finish(await handler.run(ctx, data))
                    finished = True
                except PermanentError as exc:
                    outcome = self._failure(job, start, exc, retryable=False)
                except Exception as exc:
                    outcome = self._failure(job, start, exc, retryable=True)
            elapsed = trio.current_time() - start
            if finished:
                outcome = self._success(job, elapsed, result)
            elif outcome is None and entry.reason is None:
                outcome = _Outcome(
                    "fail", job, elapsed, error=f"timed out after {format_duration(timeout)}"
                )
            elif outcome is None and entry.reason == "cancel":
                outcome = _Outcome("abort", job, elapsed)
            elif outcome is None and entry.reason == "shutdown":
                outcome = _Outcome("release", job, elapsed)
            # reason "lost": another daemon owns the job now; write nothing.
        finally:
            del self._running[job.id]
            elapsed = trio.current_time() - start
            avg = self._avg_job_time
            self._avg_job_time = elapsed if avg is None else avg + EWMA_WEIGHT * (elapsed - avg)
            if not self._stopping:
                self._dispatch()
            self._slot_freed.set()
            if not self._running:
                self._idle.set()
            if outcome is not None:
                self._emit(outcome)

    def _emit(self, outcome: _Outcome) -> None:
        self._outcomes.append(outcome)
        self._outcome_ready.set()

    def _success(self, job: ClaimedJob, elapsed: float, result: Any) -> _Outcome:
        if result is None:
            result = {}
        if not isinstance(result, dict):
            return _Outcome(
                "fail",
                job,
                elapsed,
                retryable=False,
                error=f"handler returned {type(result).__name__}, not a JSON object",
            )
        try:
            encoded = _encode_result(result)
        except (TypeError, ValueError) as exc:
            return _Outcome(
                "fail", job, elapsed, retryable=False, error=f"handler result is not JSON: {exc}"
            )
        return _Outcome("complete", job, elapsed, result=encoded)

    @staticmethod
    def _failure(job: ClaimedJob, start: float, exc: BaseException, retryable: bool) -> _Outcome:
        tb = "".join(traceback.format_exception(exc))[-MAX_TRACEBACK_CHARS:]
        log.debug("job %s (%s) attempt %d failed: %s", job.id, job.type, job.attempts, exc)
        return _Outcome(
            "fail",
            job,
            trio.current_time() - start,
            error=_error_text(exc),
            traceback=tb,
            retryable=retryable,
        )

    # -- writing outcomes ------------------------------------------------------------

    async def _flusher(self) -> None:
        backoff = Backoff(self.settings.reconnect_max_backoff)
        while True:
            await self._outcome_ready.wait()
            self._outcome_ready = trio.Event()
            while self._outcomes:
                try:
                    await self._flush_once()
                    backoff.reset()
                except RedisUnavailable:
                    await backoff.sleep()

    async def _flush_once(self) -> None:
        batch, self._outcomes = self._outcomes, []
        try:
            # Shielded: once the writes left, their results must come back to us.
            with trio.CancelScope(shield=True):
                results = await self.link.call(self._write, batch)
        except RedisUnavailable:
            self._outcomes[:0] = batch  # keep order; try again
            raise
        self._account(batch, results)

    def _write(self, client: SyncClient, batch: Sequence[_Outcome]) -> dict[str, list[int]]:
        by_kind: dict[str, list[_Outcome]] = {}
        for o in batch:
            by_kind.setdefault(o.kind, []).append(o)
        out: dict[str, list[int]] = {}
        s = self.scripts
        if done := by_kind.get("complete"):
            out["complete"] = s.complete(client, [
                (o.job.id, o.job.token, o.result,
                 f'{{"duration_ms":{int(o.elapsed * 1000)},"attempt":{o.job.attempts}}}')
                for o in done])  # fmt: skip
        if failed := by_kind.get("fail"):
            out["fail"] = s.fail(
                client, [(o.job.id, o.job.token, o.error, o.traceback, o.retryable) for o in failed]
            )
        if aborted := by_kind.get("abort"):
            out["abort"] = s.abort(client, [(o.job.id, o.job.token) for o in aborted])
        if released := by_kind.get("release"):
            out["release"] = s.release(client, [(o.job.id, o.job.token) for o in released])
        return out

    def _account(self, batch: Sequence[_Outcome], results: dict[str, list[int]]) -> None:
        counters = {kind: iter(values) for kind, values in results.items()}
        m = self.metrics
        for o in batch:
            r = next(counters[o.kind])
            if self._hooks is not None:
                self._call_hooks(o, r)
            if r >= 0:
                self._log_outcome(o, r)
            if o.kind == "complete" and r == 1:
                m.record(o.elapsed, succeeded=True)
            elif o.kind == "fail" and r >= 0:
                m.record(o.elapsed, succeeded=False, retried=r > 0)
                if r > 0:
                    # Claim the retry when it is due, not at the next poll (up to
                    # poll_interval late): fail.lua scheduled it (retry_count+1)² s out.
                    self._wake_at_retry(RETRY_UNIT_S * (o.job.retry_count + 1) ** 2)

    def _log_outcome(self, o: _Outcome, r: int) -> None:
        """The job's finish line, for an outcome Redis accepted (r as in _account): INFO
        when log_jobs is on, WARNING for a final failure always. Never the job's data or
        result (they may hold personal data); the error text is the handler's own."""
        level, what = logging.INFO, "completed"
        if o.kind == "complete" and r != 1:
            return
        if o.kind == "fail":
            level, what = (logging.INFO, "failed, retrying") if r else (logging.WARNING, "failed")
        elif o.kind != "complete":
            level, what = logging.INFO, "cancelled" if o.kind == "abort" else "released (stopping)"
        if (level == logging.INFO and not self._log_jobs) or not log.isEnabledFor(level):
            return
        job, ms = o.job, round(o.elapsed * 1000, 1)
        extra = {"job_id": job.id, "job_type": job.type, "attempt": job.attempts,
                 "duration_ms": ms, "outcome": what}  # fmt: skip
        if o.error:
            log.log(level, "job %s (%s) %s after %.1f ms, attempt %d: %s",
                    job.id, job.type, what, ms, job.attempts, o.error, extra=extra)  # fmt: skip
        else:
            log.log(level, "job %s (%s) %s in %.1f ms, attempt %d",
                    job.id, job.type, what, ms, job.attempts, extra=extra)  # fmt: skip

    def _call_hooks(self, o: _Outcome, r: int) -> None:
        """Lifecycle hooks for an outcome Redis accepted (r as in _account)."""
        hooks = self._hooks
        assert hooks is not None
        if o.kind == "complete" and r == 1 and hooks.wants_finished:
            hooks.finished(o.job, json.loads(o.result))
        elif o.kind == "fail" and r >= 0 and hooks.wants_failed:
            hooks.failed(o.job, o.error, r > 0)

    async def _final_flush(self) -> None:
        with trio.move_on_after(FINAL_FLUSH_PATIENCE):
            backoff = Backoff(self.settings.reconnect_max_backoff)
            while self._outcomes:
                try:
                    await self._flush_once()
                except RedisUnavailable:
                    await backoff.sleep()
        if self._outcomes:
            log.error(
                "Redis unreachable: %d job outcome(s) not written; their leases will "
                "expire and the jobs run again",
                len(self._outcomes),
            )

    # -- leases and cancel requests --------------------------------------------------

    async def _renewer(self) -> None:
        interval = self.settings.lease / 3
        while True:
            await trio.sleep(interval)
            held = {r.job.id: r for r in self._held()}
            items = [(job_id, r.job.token) for job_id, r in held.items()]
            if not items:
                continue
            try:
                results = await self.link.call(self.scripts.renew, self._lease_ms, items)
            except RedisUnavailable:
                continue
            for (job_id, _token), res in zip(items, results, strict=True):
                entry = held[job_id]
                if res == 1 or not self._holds(entry):
                    continue  # renewed, or finished while the renewal was in flight
                if entry.job.id not in self._running:  # never started: nothing to interrupt
                    self._buffer.remove(entry)
                    if res == 2:
                        self._emit(_Outcome("abort", entry.job, 0.0))
                    continue
                if res == 0:
                    log.warning("job %s: lease lost (recovered elsewhere); cancelling here", job_id)
                    entry.stop("lost")
                else:
                    entry.stop("cancel")

    async def _control(self) -> None:
        key = self.scripts.keys.control(self.daemon_id)
        backoff = Backoff(self.settings.reconnect_max_backoff)
        while True:
            try:
                job_ids = await self.link.call(self._wait_control, key)
            except RedisUnavailable:
                await backoff.sleep()
                continue
            backoff.reset()
            for job_id in job_ids:
                waiting = next((e for e in self._buffer if e.job.id == job_id), None)
                if waiting is not None:
                    self._buffer.remove(waiting)
                    self._emit(_Outcome("abort", waiting.job, 0.0))
                    continue
                entry = self._running.get(job_id)
                if entry is not None:
                    log.info("job %s: cancel requested; cancelling its handler", job_id)
                    entry.stop("cancel")

    def _wait_control(self, client: SyncClient, key: str) -> list[str]:
        first = client.blpop(self._control_keys, timeout=self._max_wait)
        if first is None or first[0] != key:
            return []
        rest = client.lpop(key, 100) or []
        return [first[1], *rest]
