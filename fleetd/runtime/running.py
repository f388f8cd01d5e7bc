"""Running one claimed job: `JobRunner.run(entry)` finds its handler, opens sealed data,
builds its JobContext, runs the handler inside the entry's cancel scope — inline, or
through the sandbox (fleetd.runtime.sandbox) in a thread or a child process, as the
type's isolation policy says (fleetd.jobs.isolation, resolved once per type) — and
turns what happened into an `Outcome` for the completion batcher
(fleetd.runtime.outcomes): the error's kind opens its text (`timeout: …`), the
policy decides whether it is retried, and a RetryAfter sets the retry's delay.

`Running` is a job a pool holds: its cancel scope carries both the time limit and stop
requests, and `reason` tells them apart (cancel, lost lease, shutdown; None with a
cancel = the deadline passed). The scope is made when the handler starts, with its
deadline given to the constructor: setting `deadline` on a made scope costs one more
pass through trio's deadline bookkeeping (a context manager; ~5% of a short job's
CPU in a profile). A stop that comes before then is kept in `reason` and cancels the
scope as it is made. The pool does the bookkeeping around a run (slots, the moving
average of job times); nothing here touches Redis.
"""

from __future__ import annotations

import json
import logging
import traceback
from dataclasses import dataclass, replace
from typing import Any

import trio

from fleetd.backend.scripts import ClaimedJob
from fleetd.config.durations import format_duration
from fleetd.config.isolation_section import IsolationConfig
from fleetd.jobs.context import JobContext, JobServices
from fleetd.jobs.errors import PermanentError
from fleetd.jobs.handlers import Handler, HandlerRegistry
from fleetd.jobs.isolation import ERROR, TIMEOUT, Overrides, Policy, RetryAfter, resolve
from fleetd.jobs.payload import oversized_result
from fleetd.jobs.sealing import Sealer, open_claimed
from fleetd.runtime.outcomes import Outcome
from fleetd.runtime.sandbox import ChildResult, Sandbox
from fleetd.workflows.start import start_node

__all__ = ["JobRunner", "Running"]

log = logging.getLogger("fleetd.worker")

# Error texts and tracebacks are cut to these lengths: a job hash must stay small, and
# the tail of a traceback is the part that names the failing line.
MAX_ERROR_CHARS = 2000
MAX_TRACEBACK_CHARS = 8000
# Built once: json.dumps with options constructs an encoder on every call.
_encode_result = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=str).encode
# The policy of a job type this daemon has no handler for (it fails before it runs).
_INLINE = Policy()


@dataclass(slots=True, eq=False)
class Running:
    job: ClaimedJob
    # Made by JobRunner.run as the handler starts (with the job's deadline).
    scope: trio.CancelScope | None = None
    reason: str | None = None  # cancel | lost | shutdown; None with a cancel = timeout
    claimed_at: float = 0.0  # trio clock, for the claim-ahead buffer
    started_at: float = 0.0  # trio clock, set when its handler starts

    def stop(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        if self.scope is not None:
            self.scope.cancel()


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:MAX_ERROR_CHARS]


class JobRunner:
    """What running a job needs, gathered once per pool."""

    def __init__(
        self,
        registry: HandlerRegistry,
        sealer: Sealer | None,
        services: JobServices,
        *,
        job_timeout: float,
        daemon_id: str,
        isolation: IsolationConfig | None = None,
    ) -> None:
        """`isolation`: the config's [isolation]; None runs every type inline."""
        self.registry = registry
        sandbox = None
        if isolation is not None:
            level = logging.getLogger("fleetd").getEffectiveLevel()
            sandbox = Sandbox(isolation, registry.artifacts_dir, level, registry.artifact_limits)
        overrides = Overrides.of(isolation) if isolation is not None else None
        self.sandbox = sandbox
        # Each type's isolation, resolved once (fleetd.jobs.isolation).
        self.policies: dict[str, Policy] = {}
        for job_type in registry.types():
            handler = registry.require(job_type)
            declared = handler.defaults.policy()
            policy = resolve(job_type, declared, overrides) if overrides else declared
            self.policies[job_type] = policy if sandbox else replace(policy, mode="inline")
        self._sealer = sealer
        # What every job's JobContext shares: built once, not per job.
        self._services = services
        self._job_timeout = job_timeout
        self.daemon_id = daemon_id
        # Plugins' lifecycle hooks, resolved once: None when no plugin implements any,
        # so a job then costs no hook call at all.
        self._hooks = registry.hooks

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The sandbox's service (warm children), for the pool's service nursery."""
        if self.sandbox is None:
            task_status.started()
            return
        await self.sandbox.run(self.policies.values(), task_status=task_status)

    async def run(self, entry: Running, start: float) -> Outcome | None:
        """The job's outcome; None when there is nothing to write (its lease was lost:
        another daemon owns the job now)."""
        job = entry.job
        outcome: Outcome | None = None
        handler = self.registry.get(job.type)
        if handler is None:
            error = f"no handler for job type {job.type!r} on {self.daemon_id}"
            return Outcome("fail", job, 0.0, error=error)
        data = job.data
        if job.sealed:  # the one check a plain job pays; no crypto for it
            data, error = open_claimed(self._sealer, job)
            if error:
                return Outcome("fail", job, 0.0, error=error, retryable=False)
        timeout = job.timeout or handler.defaults.timeout or self._job_timeout
        ctx = JobContext(job, self._services)
        if job.wf_in:  # a workflow node reading its parents (fleetd.workflows.start)
            node = await start_node(self._services, self.registry, handler, job, data)
            if node.error is not None:
                return Outcome("fail", job, 0.0, error=node.error, retryable=False)
            if node.skipped:
                return None  # written by wf_skip.lua already
            data, ctx.parents = node.data, node.parents
        result: Any = None
        finished = False
        # One scope for the time limit and for stop requests (cancel, lost lease,
        # shutdown): `reason` tells them apart; a deadline leaves it None.
        scope = entry.scope = trio.CancelScope(deadline=start + timeout)
        if entry.reason is not None:  # stopped before it started
            scope.cancel()
        if self._hooks is not None:
            self._hooks.started(job)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "job %s (%s) started, attempt %d", job.id, job.type, job.attempts,
                extra={"job_id": job.id, "job_type": job.type, "attempt": job.attempts},
            )  # fmt: skip
        policy = self.policies.get(job.type) or _INLINE
        with scope:
            try:
                if policy.mode == "inline":
                    result = ctx.finish(await handler.run(ctx, data))
                    finished = True
                else:
                    outcome = self._isolated(
                        job, start, policy, await self._run_isolated(policy, handler, data, ctx)
                    )
            except PermanentError as exc:
                outcome = self._failure(job, start, exc, retryable=False)
            except RetryAfter as exc:
                outcome = self._failure(job, start, exc, retryable=True)
                outcome.delay_ms = int(exc.seconds * 1000)
            except Exception as exc:
                retryable, delay = policy.decide(ERROR, type(exc).__name__, job.retry_count)
                outcome = self._failure(job, start, exc, retryable=retryable)
                outcome.delay_ms = delay
        elapsed = trio.current_time() - start
        if finished:
            outcome = self._success(job, elapsed, result)
        elif outcome is None and entry.reason is None:
            error = f"{TIMEOUT}: timed out after {format_duration(timeout)}"
            retry, delay = policy.decide(TIMEOUT, "", job.retry_count)
            outcome = Outcome("fail", job, elapsed, error=error, retryable=retry, delay_ms=delay)
        elif outcome is None and entry.reason == "cancel":
            outcome = Outcome("abort", job, elapsed)
        elif outcome is None and entry.reason == "shutdown":
            outcome = Outcome("release", job, elapsed)
        # reason "lost": another daemon owns the job now; write nothing.
        return outcome

    async def _run_isolated(
        self, policy: Policy, handler: Handler, data: dict[str, Any], ctx: JobContext
    ) -> ChildResult:
        assert self.sandbox is not None  # policies are all inline without one
        if policy.mode == "process":
            return await self.sandbox.run_process(policy, handler, ctx.job, data, ctx)
        return await self.sandbox.run_thread(handler, ctx.job, data, ctx)

    def _isolated(self, job: ClaimedJob, start: float, policy: Policy, r: ChildResult) -> Outcome:
        """The outcome of a thread or process attempt."""
        elapsed = trio.current_time() - start
        if r.result is not None:
            return self._completed(job, elapsed, r.result)
        retryable, delay = r.retryable, None  # a PermanentError's or a RetryAfter's
        if retryable is None:
            retryable, delay = policy.decide(r.kind or ERROR, r.exc_name, job.retry_count)
        if r.retry_after is not None:
            delay = int(r.retry_after * 1000)
        log.debug("job %s (%s) attempt %d failed: %s", job.id, job.type, job.attempts, r.error)
        return Outcome("fail", job, elapsed, error=r.error, traceback=r.traceback,
                       retryable=retryable, delay_ms=delay)  # fmt: skip

    def _success(self, job: ClaimedJob, elapsed: float, result: Any) -> Outcome:
        if result is None:
            result = {}
        if not isinstance(result, dict):
            return Outcome(
                "fail",
                job,
                elapsed,
                retryable=False,
                error=f"handler returned {type(result).__name__}, not a JSON object",
            )
        try:
            encoded = _encode_result(result)
        except (TypeError, ValueError) as exc:
            return Outcome(
                "fail", job, elapsed, retryable=False, error=f"handler result is not JSON: {exc}"
            )
        return self._completed(job, elapsed, encoded)

    def _completed(self, job: ClaimedJob, elapsed: float, encoded: str) -> Outcome:
        """A result within [worker] max_result_bytes, or the job failed for good
        (fleetd.jobs.payload.oversized_result)."""
        if (why := oversized_result(encoded, self.registry.max_result_bytes)) is not None:
            return Outcome("fail", job, elapsed, retryable=False, error=why)
        return Outcome("complete", job, elapsed, result=encoded)

    @staticmethod
    def _failure(job: ClaimedJob, start: float, exc: BaseException, retryable: bool) -> Outcome:
        tb = "".join(traceback.format_exception(exc))[-MAX_TRACEBACK_CHARS:]
        log.debug("job %s (%s) attempt %d failed: %s", job.id, job.type, job.attempts, exc)
        return Outcome(
            "fail",
            job,
            trio.current_time() - start,
            error=_error_text(exc),
            traceback=tb,
            retryable=retryable,
        )
