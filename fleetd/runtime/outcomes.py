"""The completion batcher: every job outcome of a worker pool, written to Redis in
batches.

Job tasks never call Redis: they `emit` an `Outcome` (complete, fail, abort, release)
into a buffer, and what gathered goes out in one hop per batch, one script call per
kind — under load one hop carries many outcomes (docs/ARCHITECTURE.md#redis-access:
unbatched, a prototype ran at half the speed). Two carriers take batches from the buffer:

- the fetcher's next claim (fleetd.runtime.worker): while jobs are claimed back to
  back, the outcomes ride in the claim's hop (`take` → `write` in the thread, before
  the claim → `account`), which saves one thread hand-off per batch (~1/3 of a busy
  pool's hand-offs);
- `run()`, the flusher, in the pool's service nursery, for everything else. While the
  fetcher claims back to back (`riding`), it leaves new outcomes to the next claim for
  up to RIDE_PATIENCE and writes what is left then; else it writes at once, so at
  light load a completion is written as soon as it happens.

A completion's result gets the spec's two facts of the run (`with_run_facts`):
`processing_time` (the handler's time, as format_duration writes it: "5s", "250ms")
and `worker_id` (the daemon that ran it, as the job's `worker` field names it). A key
the handler's own result sets wins: its result is never overwritten.

Then each outcome Redis accepted is accounted: metrics, the job's finish line in the
log (the lines of a batch in one write), the plugins' lifecycle hooks, and a wake-up
for a retry when it falls due. On Redis errors a batch is kept, in order, and retried
with backoff; `final_flush()` gives a stopping daemon FINAL_FLUSH_PATIENCE to write
the rest.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import trio

from fleetd.backend.redis_link import Backoff, RedisLink, RedisUnavailable, SyncClient
from fleetd.backend.scripts import ClaimedJob, Scripts
from fleetd.config.durations import format_duration
from fleetd.config.isolation_section import IsolationConfig
from fleetd.jobs.quarantine import Strikes, count_failures
from fleetd.jobs.retry import DEFAULT_RETRY_POLICY as RETRY
from fleetd.plugins.lifecycle import JobHooks
from fleetd.runtime.heartbeat import WorkerMetrics
from fleetd.runtime.log import held_lines, log_record

__all__ = ["Outcome", "OutcomeWriter"]

log = logging.getLogger("fleetd.worker")

# How long a stopping daemon keeps trying to write its last outcomes while Redis is
# unreachable before it gives up (the leases then expire and the reaper recovers them).
FINAL_FLUSH_PATIENCE = 10.0
# How long the flusher leaves outcomes to the fetcher's next claim while it claims back
# to back. A busy pool's claim hop comes back in ~1-3 ms here (a 100-job claim is ~1 ms
# of Lua) and a slot frees every ~0.1 ms at 10,000 jobs/s, so the next claim leaves
# within a few ms; the bound caps what a job's outcome waits when it does not.
RIDE_PATIENCE = 0.005


# The keys with_run_facts adds to a completion's result (spec: GET /jobs/{id}).
RUN_FACTS = ('"processing_time"', '"worker_id"')


def with_run_facts(result: str, elapsed: float, worker_id: str) -> str:
    """`result` (a JSON object's text, as fleetd.runtime.running encodes a handler's
    result) with `processing_time` and `worker_id` added. Spliced as text: parsing
    and re-encoding every result would cost ~5 µs a job at 10,000 jobs/s. Only when
    the text names either key (the handler set it, or a value holds the name) is it
    parsed, to keep the handler's own value."""
    took = format_duration(max(elapsed, 0.0))  # digits, '.', h m s: nothing to escape
    body = result.strip()
    if not body.startswith("{") or not body.endswith("}"):
        return result  # not an object: left as the handler made it
    if not any(key in body for key in RUN_FACTS):
        tail = '"processing_time":"' + took + '",' + _worker_field(worker_id)
        return "{" + tail if body[1:-1].strip() == "" else body[:-1] + "," + tail
    parsed = json.loads(body)
    parsed.setdefault("processing_time", took)
    parsed.setdefault("worker_id", worker_id)
    return json.dumps(parsed, separators=(",", ":"))


@functools.lru_cache(maxsize=16)
def _worker_field(worker_id: str) -> str:
    """`"worker_id":"…"}`, encoded once per worker (a daemon has one)."""
    return '"worker_id":' + json.dumps(worker_id) + "}"


@dataclass(slots=True)
class Outcome:
    kind: str  # complete | fail | abort | release
    job: ClaimedJob
    elapsed: float
    result: str = ""
    error: str = ""
    traceback: str = ""
    retryable: bool = True
    # A handler's RetryAfter (fleetd.jobs.isolation) in ms; None: the retry policy's.
    delay_ms: int | None = None

    def retry_delay_ms(self) -> int:
        """The wait before this failed attempt's retry, as fail.lua is told."""
        if self.delay_ms is not None:
            return self.delay_ms
        return RETRY.next_delay_ms(self.job.retry_count, self.job.id)


class OutcomeWriter:
    """The outcome buffer of one pool and the task that writes it."""

    def __init__(
        self,
        link: RedisLink,
        scripts: Scripts,
        metrics: WorkerMetrics,
        hooks: JobHooks | None,
        *,
        log_jobs: bool,
        max_backoff: float,
        wake_at_retry: Callable[[float], None],
        worker_id: str = "",
        strikes: IsolationConfig | None = None,
    ) -> None:
        """`worker_id`: the daemon's id, the `worker_id` of the results it writes;
        `strikes`: the `[isolation]` that says when classified failures quarantine their
        part (fleetd.jobs.quarantine; None: the defaults)."""
        self.link = link
        self.strikes = Strikes.of(strikes)
        self.worker_id = worker_id
        self.scripts = scripts
        self.metrics = metrics
        self._hooks = hooks
        self._log_jobs = log_jobs
        self._max_backoff = max_backoff
        # Called with the delay until a retry the fail script scheduled falls due.
        self._wake_at_retry = wake_at_retry
        self._outcomes: list[Outcome] = []
        self._outcome_ready = trio.Event()
        # Whether the fetcher claims back to back, taking outcomes with each claim
        # (set_riding; see RIDE_PATIENCE); _taken is set when it takes them.
        self.riding = False
        self._taken = trio.Event()

    def __len__(self) -> int:
        return len(self._outcomes)

    def emit(self, outcome: Outcome) -> None:
        self._outcomes.append(outcome)
        self._outcome_ready.set()

    def take(self) -> list[Outcome]:
        """Every outcome buffered now, for a carrier that will `write` and `account`
        them (or `put_back` on RedisUnavailable)."""
        batch, self._outcomes = self._outcomes, []
        self._taken.set()
        return batch

    def set_riding(self, riding: bool) -> None:
        """The fetcher's word: its next claims will (True) or may not (False) come soon
        and take the outcomes."""
        self.riding = riding
        if not riding:
            self._taken.set()  # the flusher waits no more

    def put_back(self, batch: list[Outcome]) -> None:
        """A batch that could not be written: ahead of newer ones, to be tried again."""
        if batch:
            self._outcomes[:0] = batch
            self._outcome_ready.set()

    async def run(self) -> None:
        """The flusher: runs until cancelled (its nursery closes after final_flush)."""
        backoff = Backoff(self._max_backoff)
        while True:
            await self._outcome_ready.wait()
            self._outcome_ready = trio.Event()
            with trio.move_on_after(RIDE_PATIENCE):
                while self.riding and self._outcomes:
                    self._taken = trio.Event()
                    await self._taken.wait()
            while self._outcomes:
                try:
                    await self._flush_once()
                    backoff.reset()
                except RedisUnavailable:
                    await backoff.sleep()

    async def _flush_once(self) -> None:
        batch = self.take()
        try:
            # Shielded: once the writes left, their results must come back to us.
            with trio.CancelScope(shield=True):
                results = await self.link.call(self.write, batch)
        except RedisUnavailable:
            self.put_back(batch)  # keep order; try again
            raise
        self.account(batch, results)

    def write(self, client: SyncClient, batch: Sequence[Outcome]) -> dict[str, list[int]]:
        """In the worker thread: the batch's script calls, one per kind."""
        by_kind: dict[str, list[Outcome]] = {}
        for o in batch:
            by_kind.setdefault(o.kind, []).append(o)
        out: dict[str, list[int]] = {}
        s = self.scripts
        if done := by_kind.get("complete"):
            worker = self.worker_id
            out["complete"] = s.complete(client, [
                (o.job.id, o.job.token, with_run_facts(o.result, o.elapsed, worker),
                 f'{{"duration_ms":{int(o.elapsed * 1000)},"attempt":{o.job.attempts}}}')
                for o in done])  # fmt: skip
        if failed := by_kind.get("fail"):
            out["fail"] = s.fail(
                client,
                [(o.job.id, o.job.token, o.error, o.traceback, o.retryable,
                  o.retry_delay_ms()) for o in failed],
            )  # fmt: skip
            if self.strikes is not None:
                self._count(client, failed, out["fail"])
        if aborted := by_kind.get("abort"):
            out["abort"] = s.abort(client, [(o.job.id, o.job.token) for o in aborted])
        if released := by_kind.get("release"):
            out["release"] = s.release(client, [(o.job.id, o.job.token) for o in released])
        return out

    def _count(self, client: SyncClient, failed: Sequence[Outcome], results: list[int]) -> None:
        """The written failures that count towards a quarantine, counted in the same hop."""
        assert self.strikes is not None
        counted = [
            (o.job.id, o.job.attempts, o.job.type, o.job.company_id, kind)
            for o, r in zip(failed, results, strict=True)
            if r >= 0 and (kind := self.strikes.counted(o.error))
        ]
        for q in count_failures(client, self.scripts, self.strikes, counted):
            log.warning(
                "job type %s of company %s quarantined after %d failures within %gs: its "
                "jobs are held until an admin releases them",
                q.job_type, q.company_id or "(none)", q.failures, q.window_ms / 1000,
            )  # fmt: skip

    def account(self, batch: Sequence[Outcome], results: dict[str, list[int]]) -> None:
        """What follows a written batch (`write`'s results), on the trio thread. The
        batch's log lines go out in one write (fleetd.runtime.log)."""
        with held_lines():
            self._account_each(batch, results)

    def _account_each(self, batch: Sequence[Outcome], results: dict[str, list[int]]) -> None:
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
                    # poll_interval late): fail.lua scheduled it this far out.
                    self._wake_at_retry(o.retry_delay_ms() / 1000)

    def _log_outcome(self, o: Outcome, r: int) -> None:
        """The job's finish line, for an outcome Redis accepted (r as in account): INFO
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
        if o.kind == "fail" and r > 0:
            # The attempt's duration and the wait before the next one, each named: a
            # bare "retrying after 0.0 ms" (a job type without a handler here fails in
            # no time) read as a retry with no delay.
            delay = o.retry_delay_ms() / 1000
            extra["retry_in_ms"] = round(delay * 1000)
            log_record(log, level,
                       "job %s (%s) failed after %.1f ms, attempt %d, next attempt in %g s: %s",
                       (job.id, job.type, ms, job.attempts, delay, o.error), extra)  # fmt: skip
        elif o.error:
            log_record(log, level, "job %s (%s) %s after %.1f ms, attempt %d: %s",
                       (job.id, job.type, what, ms, job.attempts, o.error), extra)  # fmt: skip
        else:
            log_record(log, level, "job %s (%s) %s in %.1f ms, attempt %d",
                       (job.id, job.type, what, ms, job.attempts), extra)  # fmt: skip

    def _call_hooks(self, o: Outcome, r: int) -> None:
        """Lifecycle hooks for an outcome Redis accepted (r as in account)."""
        hooks = self._hooks
        assert hooks is not None
        if o.kind == "complete" and r == 1 and hooks.wants_finished:
            hooks.finished(o.job, json.loads(o.result))
        elif o.kind == "fail" and r >= 0 and hooks.wants_failed:
            hooks.failed(o.job, o.error, r > 0)

    async def final_flush(self) -> None:
        with trio.move_on_after(FINAL_FLUSH_PATIENCE):
            backoff = Backoff(self._max_backoff)
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
