"""The daemon side of isolated jobs (fleetd.jobs.isolation): `thread` and `process`.

`Sandbox` owns the warm child processes of a worker pool: one trio-parallel worker
context per distinct memory limit and kept environment among the job types that run
`process`, all behind one CapacityLimiter of `[isolation] max_children`. Lifecycle:
`run(task_status=...)` in the pool's service nursery opens a private directory (the
jobs' scratch directories and the progress FIFOs: fleetd.runtime.sandbox_progress),
the contexts (children start on first use and stay warm for `idle_timeout`) and a
nursery for the attempts → `started()` → jobs call `run_process` / `run_thread` →
cancelled when the pool's jobs have drained, which shuts the children down.

A process job takes a slot (the limiter and a progress FIFO) and hands the attempt to
a task of the sandbox's nursery: the handler, pickled once per type, goes to a warm
child (clean environment and RLIMIT_AS from its init, RLIMIT_CPU for this job, its
own scratch directory, named with its pid, that it makes and removes:
fleetd.runtime.sandbox_child). The
job's task waits for the attempt. When the job's scope is cancelled (its timeout, an
admin's cancel, a lost lease, a forced stop), the job's task returns at once — its
slot is free again — and the attempt task stops the child: SIGTERM (the handler is
cancelled inside the child and may clean up: fleetd.runtime.sandbox_loop), then,
`[isolation] kill_grace` later, SIGKILL through trio-parallel's `kill_on_cancel`. A
child that dies or is killed is replaced by a fresh warm one at once; one that died is
classified by its exit (fleetd.jobs.isolation.classify_exit).

A thread job runs its handler on a trio loop of its own in a worker thread, with
progress hopping back to the daemon's loop. A thread cannot be killed: on timeout or
cancel it is abandoned (the job's slot is free at once, the thread runs on until the
handler returns).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import pickle
import shutil
import signal
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import trio
import trio_parallel

from fleetd.backend.codec import ClaimedJob
from fleetd.config.isolation_section import IsolationConfig
from fleetd.jobs.context import JobContext
from fleetd.jobs.isolation import CRASH, ERROR, MEMORY, Policy, classify_exit
from fleetd.jobs.local_context import LocalContext
from fleetd.runtime import sandbox_child
from fleetd.runtime.sandbox_progress import ProgressSlots

__all__ = ["ChildResult", "Sandbox"]

log = logging.getLogger("fleetd.sandbox")

# A child that ran out of `[isolation] idle_timeout` or `max_jobs_per_child` exits by
# itself; at shutdown, one still running gets this long before trio-parallel kills it.
SHUTDOWN_GRACE = 5.0


@dataclass(slots=True)
class ChildResult:
    """What an isolated attempt came to: `result` (JSON text) or a failure."""

    result: str | None = None
    error: str = ""
    kind: str = ""
    traceback: str = ""
    retryable: bool | None = None  # None: the type's policy decides by kind
    retry_after: float | None = None
    exc_name: str = ""
    progress_end: bool | None = None  # the child marked its progress's end (a line)

    @classmethod
    def of(cls, raw: dict[str, Any]) -> ChildResult:
        return cls(**{k: raw[k] for k in ChildResult.__slots__ if raw.get(k) is not None})


@dataclass(eq=False)
class _Attempt:
    """One process attempt, shared by the job's task and the task that runs it."""

    prefix: str  # of its scratch directory: the child adds its pid (sandbox_child)
    memory_mb: int
    done: trio.Event = field(default_factory=trio.Event)
    # Cancelled (by a deadline kill_grace after a SIGTERM, or at once): SIGKILL.
    kill: trio.CancelScope = field(default_factory=trio.CancelScope)
    result: ChildResult | None = None


class Sandbox:
    """The warm children and thread runs of one worker pool (module docstring)."""

    def __init__(
        self, settings: IsolationConfig, artifacts_root: Path | None, log_level: int = 20
    ) -> None:
        self.settings = settings
        self._root = str(artifacts_root) if artifacts_root else None
        self._log_level = log_level
        self._limiter = trio.CapacityLimiter(settings.max_children)
        # trio-parallel's own limiter: ours bounds the jobs, this one must never wait
        # (a child in its kill grace holds a run_sync of its own a little longer).
        self._unbounded = trio.CapacityLimiter(math.inf)
        self._contexts: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._scratch = settings.scratch_dir or None
        self._dir = ""
        self._slots: ProgressSlots | None = None
        self._nursery: trio.Nursery | None = None
        self._blobs: dict[str, bytes] = {}  # job type → its handler, pickled once
        self._seq = itertools.count(1)

    async def run(
        self,
        policies: Iterable[Policy],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Open a worker context per distinct limits of `policies` in process mode;
        serve until cancelled, then shut the children down."""
        s = self.settings
        async with contextlib.AsyncExitStack() as stack:
            self._dir = tempfile.mkdtemp(prefix="fleetd-sandbox-", dir=self._scratch)
            stack.callback(shutil.rmtree, self._dir, True)
            slots = ProgressSlots(self._dir, s.max_children)
            stack.push_async_callback(slots.close)
            for limits in sorted({p.limits for p in policies if p.mode == "process"}):
                memory_mb, env = limits
                init = _Init(memory_mb, env, s.max_jobs_per_child, self._log_level,
                             sandbox_child.log_format())  # fmt: skip
                self._contexts[limits] = await stack.enter_async_context(
                    trio_parallel.open_worker_context(
                        idle_timeout=s.idle_timeout, init=init, retire=sandbox_child.retire,
                        grace_period=SHUTDOWN_GRACE,
                    )
                )  # fmt: skip
            # Exits first: attempts still running are killed before the contexts close.
            self._nursery = await stack.enter_async_context(trio.open_nursery())
            slots.open(self._nursery)
            self._slots = slots
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._contexts.clear()
                self._slots = self._nursery = None

    async def run_process(
        self, policy: Policy, handler: Any, job: ClaimedJob, data: dict[str, Any], ctx: JobContext
    ) -> ChildResult:
        context = self._contexts.get(policy.limits)
        nursery, slots = self._nursery, self._slots
        if context is None or nursery is None or slots is None:
            raise RuntimeError(f"no sandbox for job type {job.type!r}: the pool is not running")
        blob = self._blobs.get(job.type)
        if blob is None:
            blob = self._blobs[job.type] = pickle.dumps(handler, pickle.HIGHEST_PROTOCOL)
        # Named, not made: the child makes it (and removes it when it is done).
        tag = f"job-{next(self._seq)}"
        attempt = _Attempt(os.path.join(self._dir, tag), policy.memory_mb)
        slim = replace(job, data={}, token="")
        async with self._limiter:
            slot = slots.take(tag, ctx)
            call = (blob, slim, data, attempt.prefix, self._root, policy.cpu_seconds, slot.path)
            nursery.start_soon(self._attempt, context, attempt, call)
            try:
                await attempt.done.wait()
                if attempt.result is not None and attempt.result.progress_end:
                    await slots.drain(slot)  # its last progress before its outcome
            finally:
                slots.give(slot)
                if attempt.result is None:  # the job's scope was cancelled
                    self._stop(attempt)
        if attempt.result is None:  # the sandbox stopped under a running job
            return ChildResult(error=f"{CRASH}: the sandbox stopped during the job", kind=CRASH)
        return attempt.result

    async def _attempt(self, context: Any, attempt: _Attempt, call: tuple[Any, ...]) -> None:
        """Run one attempt in a child (`call`: sandbox_child.run_job's arguments); after
        a kill or a death, clean up and replace the child (in this task: the job's slot
        is free already)."""
        broken = True
        try:
            with attempt.kill:
                raw = await context.run_sync(sandbox_child.run_job, *call, kill_on_cancel=True,
                                             limiter=self._unbounded)  # fmt: skip
                attempt.result, broken = ChildResult.of(raw), False
        except trio_parallel.BrokenWorkerError as exc:
            proc = exc.args[-1] if exc.args else None
            kind, text = classify_exit(getattr(proc, "exitcode", None), attempt.memory_mb)
            attempt.result = ChildResult(error=text, kind=kind)
        except MemoryError as exc:  # the child could not even take the job in
            attempt.result = ChildResult(error=f"{MEMORY}: {exc}", kind=MEMORY)
        except Exception as exc:  # data that does not pickle, a child that cannot start
            text = f"{type(exc).__name__}: {exc}"[: sandbox_child.MAX_ERROR_CHARS]
            attempt.result = ChildResult(error=text, kind=ERROR, exc_name=type(exc).__name__)
        finally:
            attempt.done.set()
        if broken:
            # The child is gone (killed, crashed): what it left in its scratch directory
            # is removed here, and a fresh child takes its place while nothing waits.
            for path in self._scratch_of(attempt):
                await trio.to_thread.run_sync(shutil.rmtree, path, True)
            try:
                await context.run_sync(sandbox_child.noop, kill_on_cancel=True,
                                       limiter=self._unbounded)  # fmt: skip
            except (trio_parallel.BrokenWorkerError, trio.ClosedResourceError) as exc:
                log.warning("could not start a replacement sandbox child: %s", exc)

    def _stop(self, attempt: _Attempt) -> None:
        """The job is over: SIGTERM its child now, SIGKILL after the grace period (at
        once when no child runs it yet: it has not started, nothing to clean up)."""
        grace = self.settings.kill_grace
        pids = [int(p.rpartition("-")[2]) for p in self._scratch_of(attempt)]
        try:
            if grace > 0 and pids:
                os.kill(pids[0], signal.SIGTERM)
            else:
                grace = 0.0
        except OSError:  # gone already
            grace = 0.0
        attempt.kill.deadline = trio.current_time() + grace

    def _scratch_of(self, attempt: _Attempt) -> list[str]:
        """The attempt's scratch directory, if its child made it (a listing of the
        sandbox's directory: only after a stop or a death, never per job)."""
        name = os.path.basename(attempt.prefix) + "-"
        try:
            found = [e for e in os.listdir(self._dir) if e.startswith(name)]
        except OSError:
            return []
        return [os.path.join(self._dir, e) for e in found if e[len(name) :].isdigit()]

    async def run_thread(
        self, handler: Any, job: ClaimedJob, data: dict[str, Any], ctx: JobContext
    ) -> ChildResult:
        token = trio.lowlevel.current_trio_token()

        def report(percent: float, message: str) -> bool:
            try:
                return bool(trio.from_thread.run(ctx.progress, percent, message, trio_token=token))
            except (trio.RunFinishedError, trio.Cancelled, RuntimeError):
                return False

        local = LocalContext(job, Path(self._root) if self._root else None, report, "thread")
        raw = await trio.to_thread.run_sync(
            sandbox_child.execute, handler, local, data, abandon_on_cancel=True
        )
        return ChildResult.of(raw)


@dataclass(frozen=True, slots=True)
class _Init:
    """A child's init, picklable: trio-parallel sends it to every new child."""

    memory_mb: int
    env: tuple[str, ...]
    max_jobs: int
    log_level: int
    log_format: str

    def __call__(self) -> None:
        sandbox_child.init(self.memory_mb, self.env, self.max_jobs, self.log_level, self.log_format)
