"""The child side of process isolation (fleetd.runtime.sandbox): what runs inside a warm
child process, and the classification of a handler's exceptions shared with thread
isolation.

A child is `python -c BOOT fleetd-sandbox-child <the daemon's sys.path as JSON>`
(fleetd.runtime.sandbox_children starts it with a clean environment: nothing of the
daemon's beyond fleetd.runtime.sandbox_wire's `BASE_ENV`, the `LC_*` variables and what
the job types declare). Its life: `main` reads its settings (the first frame on its
stdin), takes the protocol's two pipes for itself (the handler's stdin is /dev/null,
its stdout is the daemon's stderr), sets RLIMIT_AS and logging in the daemon's format,
then runs one trio loop on its main thread for good (`_Child.serve`): a frame in (a
job), the handler run in a task of the loop, a frame out (its result) — until the
daemon closes the pipe (idle, shutdown) or the child retires (after `max_jobs` jobs,
or a MemoryError: `leaving` in its last reply). Or death by the kernel (SIGXCPU at the
CPU limit, SIGKILL by the OOM killer) or by the daemon (SIGKILL once `kill_grace`
passed after a SIGTERM), which the daemon classifies.

Per job only per-job work is done, and the job's start path does no more than read
its frame: a handler is unpickled once per child (`_handler`, keyed by its pickled
bytes, which the daemon pickles once per type); the progress FIFO of a slot is opened
once per child and slot (`_ProgressPipe`); the job's scratch directory is made before
the job comes (the next one right after each reply: a mkdir on ext4 costs 40-300 us)
and removed by the cleanup thread after it.

SIGTERM (the daemon's stop of a job that timed out or was cancelled) cancels the
running job's scope: the handler sees `trio.Cancelled` at its next checkpoint, its
`finally` blocks run, and the job ends as `Terminated`. The child counts the SIGTERMs
it gets, and each job frame carries how many the daemon had sent when it wrote it
(sandbox_wire.STOPS): a count beyond the frame's is this job's stop, even when it
came before the child read the frame (the job then starts cancelled); one within it
is an earlier job's stop that arrived late, after that job's reply, and is ignored.

What crosses the pipes (frames: a 4-byte length, then a pickle): the handler (pickled
once by the daemon), the job without its data and lease token, the data, paths; back,
a plain dict (`execute`'s): `result` (the result's JSON text) or `error`, `kind`,
`traceback`, `retryable` (None: the type's policy decides), `retry_after`,
`exc_name`; and `scratch`, `progress_end`, `leaving`. Progress goes through the slot's
FIFO, one JSON line per call tagged with the attempt's tag (under PIPE_BUF, so each
write is atomic).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import pickle
import queue
import resource
import shutil
import signal
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from fleetd.jobs.errors import PermanentError
from fleetd.jobs.fields import MAX_PROGRESS_MESSAGE
from fleetd.jobs.isolation import ERROR, MEMORY, RetryAfter
from fleetd.jobs.local_context import LocalContext
from fleetd.runtime.log import configure_logging
from fleetd.runtime.sandbox_wire import FRAME, STOPS, FrameReader, read_frame, write_now

__all__ = ["MAX_ERROR_CHARS", "Terminated", "execute", "main", "remove_tree"]

MAX_ERROR_CHARS = 2000
MAX_TRACEBACK_CHARS = 8000
MIB = 1024 * 1024
# Handlers kept unpickled, by their pickled bytes: a child serves a few job types.
MAX_HANDLERS = 64
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=str).encode


class Terminated(Exception):
    """The job was cancelled by a SIGTERM from the daemon (its timeout or a cancel)."""


def _has_memory_error(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_has_memory_error(e) for e in exc.exceptions)
    return exc.__cause__ is not None and _has_memory_error(exc.__cause__)


def _failure(exc: BaseException, kind: str, retryable: bool | None) -> dict[str, Any]:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if kind != ERROR:
        text = f"{kind}: {text}"
    return {
        "error": text[:MAX_ERROR_CHARS],
        "kind": kind,
        "traceback": "".join(traceback.format_exception(exc))[-MAX_TRACEBACK_CHARS:],
        "retryable": retryable,
        "retry_after": exc.seconds if isinstance(exc, RetryAfter) else None,
        "exc_name": type(exc).__name__,
    }


def _classified(exc: Exception) -> dict[str, Any]:
    """A handler's exception as a reply (a MemoryError marks this process broken)."""
    if isinstance(exc, PermanentError):
        return _failure(exc, ERROR, False)
    if isinstance(exc, RetryAfter):
        return _failure(exc, ERROR, True)
    if _has_memory_error(exc):
        _state["broken"] = 1  # a child that ran out of memory is not reused
        return _failure(exc, MEMORY, None)
    return _failure(exc, ERROR, None)


def _encoded(result: Any) -> dict[str, Any]:
    """A handler's return value as a reply."""
    if result is None:
        result = {}
    if not isinstance(result, dict):
        error = f"handler returned {type(result).__name__}, not a JSON object"
        return {"error": error, "kind": ERROR, "retryable": False}
    try:
        return {"result": _encode(result)}
    except (TypeError, ValueError) as exc:
        return {"error": f"handler result is not JSON: {exc}", "kind": ERROR, "retryable": False}


def execute(
    handler: Any,
    ctx: LocalContext,
    data: dict[str, Any],
    run: Callable[..., Any] = trio.run,
) -> dict[str, Any]:
    """Run `handler` with `run` (a trio loop of this thread: thread isolation); its
    result or classified failure."""
    try:
        result = ctx.finish(run(handler.run, ctx, data))
    except Exception as exc:
        return _classified(exc)
    return _encoded(result)


async def _execute_here(
    handler: Any, ctx: LocalContext, data: dict[str, Any], guard: Callable[..., Awaitable[Any]]
) -> dict[str, Any]:
    """`execute` on this loop, the handler under `guard` (its SIGTERM scope)."""
    try:
        result = ctx.finish(await guard(handler.run, ctx, data))
    except Exception as exc:
        return _classified(exc)
    return _encoded(result)


# This child's own bookkeeping (one job at a time per child).
_state: dict[str, int] = {"jobs": 0, "broken": 0}
_handlers: dict[bytes, Any] = {}
# Per slot FIFO path, its write end (opened on the first progress of a job in it).
_pipes: dict[str, int] = {}


def _handler(blob: bytes) -> Any:
    """The handler pickled as `blob`, unpickled once per child."""
    handler = _handlers.get(blob)
    if handler is None:
        if len(_handlers) >= MAX_HANDLERS:
            _handlers.clear()
        handler = _handlers[blob] = pickle.loads(blob)
    return handler


class _ProgressPipe:
    """A job's progress into its slot's FIFO (kept open for the child's next jobs in
    that slot), each line tagged with the attempt's `tag`."""

    def __init__(self, path: str, tag: str) -> None:
        self._path = path
        self._tag = tag
        self.sent = False  # a line of this job went out: its end is marked (`end`)

    def __call__(self, percent: float, message: str) -> bool:
        # Under PIPE_BUF (4096 bytes) whatever the text, so a line is written whole:
        # MAX_PROGRESS_MESSAGE characters of at most 4 bytes each, and the rest.
        line = json.dumps({"tag": self._tag, "percent": round(percent, 2),
                           "message": message[:MAX_PROGRESS_MESSAGE]},
                          ensure_ascii=False) + "\n"  # fmt: skip
        self._write(line)
        return True

    def end(self) -> bool:
        """After the job's last progress, before its reply: the daemon waits for this
        line before it writes the outcome, so the last progress is never dropped nor
        written after it (fleetd.runtime.sandbox_progress). True when it went out."""
        return self.sent and self._write(json.dumps({"tag": self._tag, "end": True}) + "\n")

    def _write(self, line: str) -> bool:
        try:
            fd = _pipes.get(self._path)
            if fd is None:
                # Non-blocking: a daemon that stopped reading (a full pipe) loses a
                # progress line, never the job.
                fd = _pipes[self._path] = os.open(self._path, os.O_WRONLY | os.O_NONBLOCK)
            data = line.encode()
            if os.write(fd, data) != len(data):
                return False  # a full pipe took part of it (the daemon reads the rest)
            self.sent = True
            return True
        except OSError:
            return False  # the daemon stopped listening; the job goes on


class _Child:
    """This child's loop: its jobs, their scratch directories and their SIGTERM."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.directory: str = settings["directory"]
        self.max_jobs: int = settings["max_jobs"]
        self.cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
        self.scope: trio.CancelScope | None = None
        self.busy = False  # from a job's frame in to its reply out
        self.stops_seen = 0  # SIGTERMs received
        self.stops_before = 0  # SIGTERMs the daemon had sent when it wrote the job's frame
        self._names = itertools.count(1)
        # Scratch directories of finished jobs, removed by the cleanup thread: on ext4
        # an rmdir right after its mkdir costs ~0.7-1.2 ms (a journal commit).
        self._trash: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._cleaner = threading.Thread(target=self._empty_trash, name="fleetd-scratch-cleanup",
                                         daemon=True)  # fmt: skip

    async def serve(self, fd_in: int, fd_out: int) -> None:
        frames = FrameReader(trio.lowlevel.FdStream(fd_in))
        send = trio.lowlevel.FdStream(fd_out)
        self._cleaner.start()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._on_sigterm)
            while True:
                # Each job in a task of its own (what a handler sets in contextvars ends
                # with it) that reads its frame itself: woken by the frame, it runs the
                # job at once, without a scheduler pass to hand the job over.
                scratch, ended = self._next_scratch(), trio.Event()
                go_on = list[bool]()
                nursery.start_soon(self._job, frames, send, scratch, go_on, ended)
                await ended.wait()
                if not go_on or not go_on[0]:
                    break
            nursery.cancel_scope.cancel()
        self._trash.put(None)  # after what is queued: the thread returns there
        self._cleaner.join()

    async def _job(
        self,
        frames: FrameReader,
        send: trio.lowlevel.FdStream,
        scratch: str | None,
        go_on: list[bool],
        ended: trio.Event,
    ) -> None:
        """One job: its frame in, the handler run, the reply out. `go_on` says whether
        the child takes another (not after EOF: the daemon closed our pipe, for idling
        too long or its stop; nor once the child retires)."""
        try:
            try:
                body = await frames.frame()
            except EOFError:
                if scratch is not None:
                    self._trash.put(scratch)  # made for a job that did not come
                go_on.append(False)
                return
            self.stops_before = STOPS.unpack_from(body)[0]
            self.busy = True
            try:
                if scratch is None:  # it could not be made ahead: once more, now
                    scratch = self._make_scratch()
                reply = await self._run(pickle.loads(memoryview(body)[STOPS.size :]), scratch)
            except Exception as exc:  # a job that does not unpickle, a handler that does
                reply = _classified(exc)  # not import here: the job's failure
            leaving = bool(_state["broken"]) or _state["jobs"] >= self.max_jobs > 0
            reply["scratch"], reply["leaving"] = scratch, leaving
            out = json.dumps(reply).encode()  # JSON, never a pickle (sandbox_wire)
            rest = write_now(send, FRAME.pack(len(out)) + out)
            if rest:
                await send.send_all(rest)
            self.busy = False
            if scratch is not None:
                self._trash.put(scratch)
            go_on.append(not leaving)
        finally:
            ended.set()

    def _next_scratch(self) -> str | None:
        """The next job's scratch directory, made now, before the job comes; None when
        it cannot be made (the job tries once more, and fails with the reason)."""
        try:
            return self._make_scratch()
        except OSError as exc:
            logging.getLogger("fleetd.sandbox").warning("scratch directory: %s", exc)
            return None

    def _make_scratch(self) -> str:
        path = os.path.join(self.directory, f"c{os.getpid()}-{next(self._names)}")
        os.mkdir(path, 0o700)
        return path

    async def _run(self, call: tuple[Any, ...], scratch: str) -> dict[str, Any]:
        blob, job, data, artifacts_root, artifact_limits, cpu_seconds, progress_path, tag = call
        _state["jobs"] += 1
        handler = _handler(blob)
        if cpu_seconds:
            # RLIMIT_CPU counts the whole process's CPU time: this job's budget starts
            # from what the child has used so far (earlier jobs, imports).
            usage = resource.getrusage(resource.RUSAGE_SELF)
            budget = math.ceil(usage.ru_utime + usage.ru_stime) + cpu_seconds
            resource.setrlimit(resource.RLIMIT_CPU, (budget, self.cpu_hard))
        os.chdir(scratch)
        try:
            root = Path(artifacts_root) if artifacts_root else None
            pipe = _ProgressPipe(progress_path, tag)
            local = LocalContext(job, root, pipe, limits=artifact_limits)
            out = await _execute_here(handler, local, data, self._guarded)
            out["progress_end"] = pipe.end() or None
            return out
        finally:
            os.chdir("/")
            if cpu_seconds:
                resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_hard, self.cpu_hard))

    async def _guarded(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        with trio.CancelScope() as scope:
            self.scope = scope
            if self.stopped:  # its SIGTERM came before the scope existed
                scope.cancel()
            try:
                return await fn(*args)
            finally:
                self.scope = None
        raise Terminated("stopped by SIGTERM: the job timed out or was cancelled")

    @property
    def stopped(self) -> bool:
        """The daemon stopped the current job (the module docstring)."""
        return self.busy and self.stops_seen > self.stops_before

    async def _on_sigterm(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                self.stops_seen += 1
                if self.stopped and self.scope is not None:
                    self.scope.cancel()

    def _empty_trash(self) -> None:
        """The cleanup thread: remove finished jobs' scratch directories while the
        child runs the next job; until the child leaves (None)."""
        while (old := self._trash.get()) is not None:
            remove_tree(old)


def remove_tree(scratch: str) -> None:
    """Remove a job's scratch directory: here in the child, after each job; by the
    daemon only what a child it killed or that died left."""
    try:
        os.rmdir(scratch)  # most jobs leave nothing behind
        return
    except OSError:
        pass
    try:
        with os.scandir(scratch) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
        os.rmdir(scratch)
    except OSError:  # something the handler made read-only, say: rmtree what it can
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    """A child's life (the module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C is the daemon's to act on
    # The protocol keeps fds 0 and 1 as its own; a handler's stdin reads nothing and
    # what it prints goes to the daemon's stderr, never into a frame.
    fd_in, fd_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    settings = read_frame(fd_in)
    if settings["memory_mb"]:
        limit = settings["memory_mb"] * MIB
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # The daemon's own format on the inherited stderr: a handler's `ctx.logger` lines
    # (with job_id and job_type in JSON) read as if it ran inline.
    level = logging.getLevelName(settings["log_level"]).lower()
    configure_logging(level, settings["log_format"])
    os.chdir("/")
    trio.run(_Child(settings).serve, fd_in, fd_out)
    sys.exit(0)
