"""The batched executor behind `ctx.run_blocking`: the short blocking calls of many
concurrent jobs share one thread hand-off per batch.

Why: `trio.to_thread.run_sync` costs ~180 µs of CPU per call on the 2-core bench box
(the thread hand-off, its wake-ups and the GIL passing back and forth), more than a
whole short job costs otherwise (issue #15). A batch pays that once for every call
that queued while the previous batch ran: 50 concurrent jobs doing one Redis INCR each
become one hop running 50 INCRs back to back.

Semantics (what docs/PLUGINS.md promises):
- `await executor.run(fn, *args)` returns `fn(*args)` or raises its exception; an
  exception reaches its own caller only, never the other calls of the batch.
- Calls run in a worker thread, one after another within a batch, in the order they
  were made (so one job's calls, made one after the other, keep their order); each in
  its caller's contextvars context, as `trio.to_thread.run_sync` does.
- A batch is whatever queued while the previous batch ran, at most MAX_BATCH calls.
  One batch runs at a time (LANES); when it has run for SLOW_BATCH, new calls open
  extra lanes (up to MAX_LANES), so one slow call holds up only the calls batched
  with it, not every job of the process.
- Cancellation is `trio.to_thread.run_sync(abandon_on_cancel=False)`'s: a call still
  queued is withdrawn and raises `trio.Cancelled`; a call already running in its
  batch runs to the end and its result is returned (the cancel arrives at the
  caller's next checkpoint). Cancelling one job never touches the other calls of
  its batch.

There is no background task: the caller that finds a lane free drives it (runs batches
until its own call is done), then hands the lane to the oldest waiting call or frees
it. So the executor needs no nursery and works anywhere in trio — in the worker pool
and in fleetd.testing alike — and costs nothing while idle.
"""

from __future__ import annotations

import contextvars
from collections import deque
from collections.abc import Callable
from typing import Any, TypeAlias, TypeVar

import outcome
import trio

__all__ = [
    "LANES",
    "MAX_BATCH",
    "MAX_LANES",
    "SLOW_BATCH",
    "BatchRunner",
    "BlockingExecutor",
    "Call",
    "run_each",
]

T = TypeVar("T")

# Most calls one hop runs. A batch of short calls (~60-100 µs each for a loopback
# Redis command) then holds its lane for at most ~10 ms; at the default concurrency of
# a busy worker (50) a batch rarely reaches it.
MAX_BATCH = 100
# Batches in flight at once, normally. One coalesces best: measured on the 2-core box
# (bench/drain_blocking.py's INCR handler, one process, concurrency 50), 1 lane made
# batches of ~25 calls and cost 127 µs of CPU per job; 2 lanes made batches of ~5
# and cost 210 µs, 8 lanes 263 µs — more than one to_thread hop per call (202 µs).
LANES = 1
# ... but a batch running longer than this is taken to be stuck on a slow call (a
# batch of 50 loopback Redis commands takes ~3-4 ms): a call arriving meanwhile opens
# an extra lane, up to MAX_LANES, so one slow call cannot stall every job's blocking
# work. An extra lane closes when its batch is done.
SLOW_BATCH = 0.010
MAX_LANES = 4

# States of a call.
_QUEUED, _RUNNING, _DONE = 0, 1, 2


class Call:
    """One queued call: a batch runner reads `fn`/`args` and sets `result`."""

    __slots__ = ("args", "context", "fn", "leads", "result", "state", "task")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.context = contextvars.copy_context()
        self.state = _QUEUED
        self.result: outcome.Outcome[Any] | None = None
        # Set when this call's task was handed a lane and must drive it.
        self.leads = False
        # The caller's task while it sleeps waiting for its result or a lane.
        self.task: trio.lowlevel.Task | None = None

    def notify(self) -> None:
        if self.task is not None:
            trio.lowlevel.reschedule(self.task)
            self.task = None


BatchRunner: TypeAlias = Callable[[list[Call]], None]


def run_each(batch: list[Call]) -> None:
    """The default batch runner, in the worker thread: every call of the batch, in
    order, each in its caller's context, each result kept apart."""
    for call in batch:
        call.result = outcome.capture(call.context.run, call.fn, *call.args)


class BlockingExecutor:
    """Coalesces blocking calls of concurrent tasks into batched thread hops."""

    def __init__(
        self,
        runner: BatchRunner = run_each,
        *,
        max_batch: int = MAX_BATCH,
        lanes: int = LANES,
        max_lanes: int = MAX_LANES,
        slow_batch: float = SLOW_BATCH,
    ) -> None:
        """`runner(batch)` runs a batch in the worker thread and sets each call's
        `result` (an outcome.Outcome); the default runs each call's `fn(*args)`."""
        if max_batch < 1 or lanes < 1:
            raise ValueError("max_batch and lanes must be at least 1")
        self._runner = runner
        self._max_batch = max_batch
        self._free_lanes = lanes
        self._max_extra = max(0, max_lanes - lanes)
        self._extra_lanes = 0  # open beyond `lanes` (see SLOW_BATCH)
        self._slow = slow_batch
        self._batch_starts: list[float] = []  # trio clock, of the batches running now
        self._queue: deque[Call] = deque()
        # Hops made and calls run, for benchmarks and tests (calls / hops = batch size).
        self.hops = 0
        self.calls = 0

    def _run_batch(self, batch: list[Call]) -> None:
        """In the worker thread. A runner that fails as a whole fails the calls it left
        without a result, never the hop: every caller must get an answer."""
        try:
            self._runner(batch)
        except BaseException as exc:
            for call in batch:
                if call.result is None:
                    call.result = outcome.Error(exc)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a worker thread, batched with the calls of other tasks."""
        await trio.lowlevel.checkpoint_if_cancelled()
        call = Call(fn, args)
        self._queue.append(call)
        if self._free_lanes:
            self._free_lanes -= 1
            call.leads = True
        elif self._extra_lanes < self._max_extra and self._stuck():
            self._extra_lanes += 1
            call.leads = True
        while True:
            if call.leads:
                call.leads = False
                await self._drive(call)
            if call.state == _DONE:
                assert call.result is not None
                result: T = call.result.unwrap()
                return result
            await self._sleep(call)

    def _stuck(self) -> bool:
        starts = self._batch_starts
        return bool(starts) and trio.current_time() - min(starts) > self._slow

    async def _sleep(self, call: Call) -> None:
        """Wait until `call` is done or its task is handed a lane. A cancel withdraws a
        queued call (Cancelled is raised); a running one is waited for, uncancellably,
        as to_thread.run_sync(abandon_on_cancel=False) waits for its thread."""
        call.task = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            if call.state != _QUEUED:
                return trio.lowlevel.Abort.FAILED
            call.task = None
            self._queue.remove(call)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    async def _drive(self, call: Call) -> None:
        """Hold a lane: run batches until `call` left the queue, then pass the lane on."""
        try:
            while call.state == _QUEUED:
                queue = self._queue
                batch = [queue.popleft() for _ in range(min(len(queue), self._max_batch))]
                for c in batch:
                    c.state = _RUNNING
                # Shielded: once the calls left for the thread they finish, and their
                # callers must get their results.
                started = trio.current_time()
                self._batch_starts.append(started)
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self._run_batch, batch)
                self._batch_starts.remove(started)
                self.hops += 1
                self.calls += len(batch)
                for c in batch:
                    c.state = _DONE
                    c.notify()
        finally:
            self._release_lane()

    def _release_lane(self) -> None:
        """Close an extra lane no longer needed (no batch is stuck: the lanes still in
        use serve the queue); else hand the lane to the oldest queued call whose task
        sleeps (not one that drives a lane already or was just handed one); else free
        it."""
        if self._extra_lanes and not self._stuck():
            self._extra_lanes -= 1
            return
        for waiting in self._queue:
            if waiting.task is not None:
                waiting.leads = True
                waiting.notify()
                return
        if self._extra_lanes:
            self._extra_lanes -= 1
        else:
            self._free_lanes += 1
