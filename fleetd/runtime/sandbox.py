"""The daemon side of isolated jobs (fleetd.jobs.isolation): `thread` and `process`.

`Sandbox` runs a worker pool's isolated jobs: process jobs on warm children
(fleetd.runtime.sandbox_children: one kind per distinct memory limit and kept
environment among the job types that run `process`), all behind one CapacityLimiter
of `[isolation] max_children`. Lifecycle: `run(task_status=...)` in the pool's service
nursery opens a private directory (the jobs' scratch directories and the progress
FIFOs: fleetd.runtime.sandbox_progress), the children (started on first use, warm for
`idle_timeout`) and a nursery for stopping children → `started()` → jobs call
`run_process` / `run_thread` → cancelled when the pool's jobs have drained, which
shuts the children down.

A process job takes a slot (the limiter and a progress FIFO) and a warm child: the
handler, pickled once per type, goes to the child (clean environment and RLIMIT_AS
from its start, RLIMIT_CPU for this job, a scratch directory of its own that the child
made beforehand and removes after it: fleetd.runtime.sandbox_child), and the job's
task waits for its answer. When the job's scope is cancelled (its timeout, an admin's
cancel, a lost lease, a forced stop), the job's task returns at once — its slot is
free again — and hands the child to a task of the sandbox's nursery: SIGTERM (the
handler is cancelled inside the child and may clean up), then, `[isolation]
kill_grace` later, SIGKILL. A child that answers within the grace is reused; one that
dies or is killed is replaced by a fresh warm one at once; one that died under its job
is classified by its exit (fleetd.jobs.isolation.classify_exit).

A thread job runs its handler on a trio loop of its own in a worker thread, with
progress hopping back to the daemon's loop. A thread cannot be killed: on timeout or
cancel it is abandoned (the job's slot is free at once, the thread runs on until the
handler returns).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import pickle
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import trio

from fleetd.backend.codec import ClaimedJob
from fleetd.config.isolation_section import IsolationConfig
from fleetd.jobs.artifact_limits import ArtifactLimits
from fleetd.jobs.context import JobContext
from fleetd.jobs.isolation import CRASH, ERROR, MEMORY, Policy, classify_exit
from fleetd.jobs.local_context import LocalContext
from fleetd.runtime import sandbox_child
from fleetd.runtime.sandbox_children import Child, Children, Limits
from fleetd.runtime.sandbox_progress import ProgressSlots
from fleetd.runtime.sandbox_wire import BadReply

__all__ = ["ChildResult", "Sandbox"]

log = logging.getLogger("fleetd.sandbox")


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


class Sandbox:
    """The warm children and thread runs of one worker pool (module docstring)."""

    def __init__(
        self,
        settings: IsolationConfig,
        artifacts_root: Path | None,
        log_level: int = 20,
        artifact_limits: ArtifactLimits | None = None,
    ) -> None:
        self.settings = settings
        self._root = str(artifacts_root) if artifacts_root else None
        self._artifact_limits = artifact_limits or ArtifactLimits()
        self._log_level = log_level
        self._limiter = trio.CapacityLimiter(settings.max_children)
        self._limits: set[Limits] = set()  # of the types that run `process`
        self._children: Children | None = None
        self._scratch = settings.scratch_dir or None
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
        """Serve the process jobs of `policies` until cancelled, then stop the
        children."""
        s = self.settings
        async with contextlib.AsyncExitStack() as stack:
            directory = tempfile.mkdtemp(prefix="fleetd-sandbox-", dir=self._scratch)
            stack.callback(shutil.rmtree, directory, True)
            slots = ProgressSlots(directory, s.max_children)
            stack.push_async_callback(slots.close)
            self._limits = {p.limits for p in policies if p.mode == "process"}
            children = Children(s, directory, self._log_level)
            service = await stack.enter_async_context(trio.open_nursery())
            await service.start(children.run)
            # Exits first: children being stopped are killed before the rest stop.
            self._nursery = await stack.enter_async_context(trio.open_nursery())
            slots.open(self._nursery)
            self._slots, self._children = slots, children
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                children.closing = True  # children killed from now are not replaced
                self._children = self._slots = self._nursery = None

    async def run_process(
        self, policy: Policy, handler: Any, job: ClaimedJob, data: dict[str, Any], ctx: JobContext
    ) -> ChildResult:
        nursery, slots, children = self._nursery, self._slots, self._children
        if (
            nursery is None
            or slots is None
            or children is None
            or policy.limits not in self._limits
        ):
            raise RuntimeError(f"no sandbox for job type {job.type!r}: the pool is not running")
        blob = self._blobs.get(job.type)
        if blob is None:
            blob = self._blobs[job.type] = pickle.dumps(handler, pickle.HIGHEST_PROTOCOL)
        tag = f"job-{next(self._seq)}"  # its progress lines' tag
        slim = replace(job, data={}, token="")
        try:  # a free slot is taken without a checkpoint (a scheduler pass less a job)
            self._limiter.acquire_nowait()
        except trio.WouldBlock:
            await self._limiter.acquire()
        slot = slots.take(tag, ctx)
        child: Child | None = None
        try:
            try:
                call = (blob, slim, data, self._root, self._artifact_limits,
                        policy.cpu_seconds, slot.path, tag)  # fmt: skip
                message = pickle.dumps(call, pickle.HIGHEST_PROTOCOL)
                # Written without a checkpoint when the pipe takes it whole.
                child = await children.take(policy.limits)
                rest = child.send_nowait(message)
            except Exception as exc:
                if child is not None:  # gone since `take` saw it alive
                    nursery.start_soon(self._reap, children, child, True)
                return _not_sent(exc)
            try:
                if rest:
                    await child.send(rest)
                raw = await child.receive()
            except BadReply as exc:  # its handler wrote into the reply pipe, say
                nursery.start_soon(self._reap, children, child, True)
                text = f"{CRASH}: the job's process sent a reply fleetd does not read ({exc})"
                return ChildResult(error=text[: sandbox_child.MAX_ERROR_CHARS], kind=CRASH)
            except (EOFError, trio.BrokenResourceError):  # it died under the job
                with trio.CancelScope(shield=True):
                    status = await children.reap(child, kill=False)
                nursery.start_soon(children.replace, child)
                if children.closing:  # killed by the sandbox's stop, not by the job
                    return ChildResult(error=f"{CRASH}: the sandbox stopped during the job",
                                       kind=CRASH)  # fmt: skip
                kind, text = classify_exit(status, policy.memory_mb)
                return ChildResult(error=text, kind=kind)
            except BaseException:  # the job's scope was cancelled: its slot is free now
                self._stop(nursery, children, child)
                raise
            children.give(child)
            result = ChildResult.of(raw)
            if result.progress_end:
                await slots.drain(slot)  # its last progress before its outcome
            return result
        finally:
            slots.give(slot)
            self._limiter.release()

    def _stop(self, nursery: trio.Nursery, children: Children, child: Child) -> None:
        """SIGTERM the child of a stopped job now; a task waits `kill_grace` for its
        answer (then it is reused) and SIGKILLs it after (at once without a grace)."""
        grace = self.settings.kill_grace
        if grace > 0 and child.process.poll() is None:
            child.stop()
        else:
            grace = 0.0
        try:
            nursery.start_soon(self._await_stopped, children, child, grace)
        except RuntimeError:  # the sandbox has stopped: its children are being reaped
            child.process.kill()

    async def _await_stopped(self, children: Children, child: Child, grace: float) -> None:
        answered = False
        with trio.move_on_after(grace):
            try:
                await child.receive()  # the stopped job's answer, now moot
                answered = True
            except (EOFError, trio.BrokenResourceError, BadReply):
                pass
        if answered:
            children.give(child)
        else:
            await self._reap(children, child, True)

    async def _reap(self, children: Children, child: Child, kill: bool) -> None:
        with trio.CancelScope(shield=True):
            await children.reap(child, kill=kill)
            await children.replace(child)

    async def run_thread(
        self, handler: Any, job: ClaimedJob, data: dict[str, Any], ctx: JobContext
    ) -> ChildResult:
        token = trio.lowlevel.current_trio_token()

        def report(percent: float, message: str) -> bool:
            try:
                return bool(trio.from_thread.run(ctx.progress, percent, message, trio_token=token))
            except (trio.RunFinishedError, trio.Cancelled, RuntimeError):
                return False

        root = Path(self._root) if self._root else None
        local = LocalContext(job, root, report, "thread", self._artifact_limits)
        raw = await trio.to_thread.run_sync(
            sandbox_child.execute, handler, local, data, abandon_on_cancel=True
        )
        return ChildResult.of(raw)


def _not_sent(exc: Exception) -> ChildResult:
    """An attempt that never reached a child: data that does not pickle, memory for
    its pickle, a child that could not be started or had died."""
    if isinstance(exc, MemoryError):
        return ChildResult(error=f"{MEMORY}: {exc}", kind=MEMORY)
    if isinstance(exc, OSError):
        return ChildResult(error=f"{CRASH}: no sandbox child could take the job: {exc}", kind=CRASH)
    text = f"{type(exc).__name__}: {exc}"[: sandbox_child.MAX_ERROR_CHARS]
    return ChildResult(error=text, kind=ERROR, exc_name=type(exc).__name__)
