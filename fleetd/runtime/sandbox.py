"""The daemon side of isolated jobs (fleetd.jobs.isolation): `thread` and `process`.

`Sandbox` owns the warm child processes of a worker pool: one trio-parallel worker
context per distinct memory limit and kept environment among the job
types that run `process`, all behind one CapacityLimiter of `[isolation]
max_children`. Lifecycle: `run(task_status=...)` in the pool's service nursery opens
the contexts (children start on first use and stay warm for `idle_timeout`) →
`started()` → jobs call `run_process` / `run_thread` → cancelled when the pool's jobs
have drained, which shuts the children down.

A process job: a scratch directory is made (the child's working directory, removed
afterwards whatever happened), with a FIFO for progress that a relay task forwards to
the job's real `ctx.progress`; the handler is pickled to a warm child (clean
environment, RLIMIT_AS from its init, RLIMIT_CPU for this job: fleetd.runtime
.sandbox_child) and run there with `kill_on_cancel`: the job's timeout, an admin's
cancel, a lost lease or a forced stop cancel the job's scope, and trio-parallel
SIGKILLs the child at once and frees the slot (no SIGTERM grace: the attempt is
over and its scratch directory is deleted anyway). A child that dies is classified
by its exit (fleetd.jobs.isolation.classify_exit).

A thread job runs its handler on a trio loop of its own in a worker thread, with
progress hopping back to the daemon's loop. A thread cannot be killed: on timeout or
cancel it is abandoned (the job's slot is free at once, the thread runs on until the
handler returns).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import trio
import trio_parallel

from fleetd.backend.codec import ClaimedJob
from fleetd.config.isolation_section import IsolationConfig
from fleetd.jobs.context import JobContext
from fleetd.jobs.isolation import MEMORY, Policy, classify_exit
from fleetd.jobs.local_context import LocalContext
from fleetd.runtime import sandbox_child

__all__ = ["ChildResult", "Sandbox"]

log = logging.getLogger("fleetd.sandbox")

PROGRESS_FIFO = ".fleetd-progress"
# A progress line is small JSON; a read takes whatever queued, only the last counts.
READ_CHUNK = 65536


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

    @classmethod
    def of(cls, raw: dict[str, Any]) -> ChildResult:
        return cls(**{k: raw[k] for k in ChildResult.__slots__ if raw.get(k) is not None})


class Sandbox:
    """The warm children and thread runs of one worker pool (module docstring)."""

    def __init__(
        self, settings: IsolationConfig, artifacts_root: Path | None, log_level: int = 20
    ) -> None:
        self.settings = settings
        self._root = str(artifacts_root) if artifacts_root else None
        self._log_level = log_level
        self._limiter = trio.CapacityLimiter(settings.max_children)
        self._contexts: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._scratch = settings.scratch_dir or None

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
            for limits in sorted({p.limits for p in policies if p.mode == "process"}):
                memory_mb, env = limits
                self._contexts[limits] = await stack.enter_async_context(
                    trio_parallel.open_worker_context(
                        idle_timeout=s.idle_timeout,
                        init=_Init(
                            memory_mb,
                            env,
                            s.max_jobs_per_child,
                            self._log_level,
                            sandbox_child.log_format(),
                        ),
                        retire=sandbox_child.retire,
                        grace_period=5.0,
                    )
                )
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._contexts.clear()

    async def run_process(
        self, policy: Policy, handler: Any, job: ClaimedJob, data: dict[str, Any], ctx: JobContext
    ) -> ChildResult:
        context = self._contexts.get(policy.limits)
        if context is None:
            raise RuntimeError(f"no sandbox for job type {job.type!r}: the pool is not running")
        scratch = Path(tempfile.mkdtemp(prefix=f"fleetd-job-{job.id}-", dir=self._scratch))
        fifo = scratch / PROGRESS_FIFO
        os.mkfifo(fifo, 0o600)
        # The daemon holds both ends: its own write end keeps reads from seeing EOF
        # before the child opens the FIFO (or after a child closes it).
        reader = trio.lowlevel.FdStream(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        keep_open = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        slim = replace(job, data={}, token="")
        try:
            async with trio.open_nursery() as relay:
                relay.start_soon(_relay_progress, reader, ctx)
                try:
                    raw = await context.run_sync(
                        sandbox_child.run_job, handler, slim, data, str(scratch), self._root,
                        policy.cpu_seconds, str(fifo), kill_on_cancel=True, limiter=self._limiter,
                    )  # fmt: skip
                    result = ChildResult.of(raw)
                except trio_parallel.BrokenWorkerError as exc:
                    proc = exc.args[-1] if exc.args else None
                    kind, text = classify_exit(getattr(proc, "exitcode", None), policy.memory_mb)
                    result = ChildResult(error=text, kind=kind)
                except MemoryError as exc:  # the child could not even take the job in
                    result = ChildResult(error=f"{MEMORY}: {exc}", kind=MEMORY)
                finally:
                    relay.cancel_scope.cancel()
            return result
        finally:
            with trio.CancelScope(shield=True):
                os.close(keep_open)
                await reader.aclose()
                await _remove(scratch, fifo)

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


async def _remove(scratch: Path, fifo: Path) -> None:
    """The job's scratch directory: emptied by a child that finished (two syscalls
    here), else (killed, crashed) removed in a worker thread, whatever it holds."""
    try:
        os.unlink(fifo)  # a directory entry each: cheaper than a thread hop
        os.rmdir(scratch)
    except OSError:
        await trio.to_thread.run_sync(shutil.rmtree, scratch, True)


async def _relay_progress(reader: trio.lowlevel.FdStream, ctx: JobContext) -> None:
    """Forward the child's progress lines to the job (the newest of each read)."""
    pending = b""
    while chunk := await reader.receive_some(READ_CHUNK):
        *lines, pending = (pending + chunk).split(b"\n")
        if lines:
            try:
                last = json.loads(lines[-1])
                await ctx.progress(float(last["percent"]), str(last.get("message", "")))
            except (ValueError, KeyError, TypeError):
                log.warning("job %s: unreadable progress from its child", ctx.job.id)
