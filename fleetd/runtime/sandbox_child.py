"""The child side of process isolation (fleetd.runtime.sandbox): what runs inside a warm
worker process of trio-parallel, and the classification of a handler's exceptions
shared with thread isolation.

Lifecycle of a child: `init` (once, as trio-parallel starts it: clean environment,
RLIMIT_AS, logging to the inherited stderr in the daemon's format, the job loop and
its SIGTERM handler: fleetd.runtime.sandbox_loop; the cleanup thread) → `run_job` per
job (the job's scratch directory made, named with the child's pid for the daemon's
SIGTERM, and entered; RLIMIT_CPU's soft limit moved to this job's budget; the handler
run on the child's loop, its result encoded) → `retire` after each job, once its
result is sent (the scratch directory handed to the cleanup thread; True once the
child ran `max_jobs` jobs or saw a MemoryError: it exits and a fresh one replaces it)
— or death by the kernel (SIGXCPU at the CPU limit, SIGKILL by the OOM killer) or by
the daemon (SIGKILL once `kill_grace` passed after a SIGTERM), which the daemon
classifies.

Per job only per-job work is done: what a job needs set up once (environment, memory
limit, logging, the loop) is done by `init`; a handler is unpickled once per child
(`_handler`, keyed by its pickled bytes, which the daemon pickles once per type); the
progress FIFO of a slot is opened once per child and slot (`_ProgressPipe`); the
scratch directory is one mkdir on the round trip, its removal is done off it.

What crosses the pipe: the handler (pickled once by the daemon), the job without its
data and lease token, the data, paths; back, a plain dict (`execute`'s): `result` (the
result's JSON text) or `error`, `kind`, `traceback`, `retryable` (None: the type's
policy decides), `retry_after` and `exc_name`. Progress goes through the slot's FIFO,
one JSON line per call tagged with the attempt's scratch name (under PIPE_BUF, so each
write is atomic).
"""

from __future__ import annotations

import ctypes
import json
import logging
import math
import os
import pickle
import queue
import resource
import shutil
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from fleetd.jobs.errors import PermanentError
from fleetd.jobs.isolation import ERROR, MEMORY, RetryAfter
from fleetd.jobs.local_context import LocalContext
from fleetd.runtime import sandbox_loop
from fleetd.runtime.log import JsonFormatter, configure_logging

__all__ = ["execute", "init", "log_format", "noop", "retire", "run_job", "scratch_of"]

# Variables a child keeps whatever the handler declares: what programs and libraries
# need to find themselves, their locale and time zone. Everything else (FLEETD_*, the
# JWT secret, data keys, the Redis URL with its password) is dropped.
BASE_ENV = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "PYTHONPATH", "PYTHONHOME",
            "VIRTUAL_ENV", "SSL_CERT_FILE", "SSL_CERT_DIR")  # fmt: skip
MAX_ERROR_CHARS = 2000
MAX_TRACEBACK_CHARS = 8000
MIB = 1024 * 1024
# Handlers kept unpickled, by their pickled bytes: a child serves a few job types.
MAX_HANDLERS = 64
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=str).encode

# This child's own bookkeeping (one job at a time per child).
_state: dict[str, int] = {"jobs": 0, "max_jobs": 0, "broken": 0, "cpu_hard": -1}
_handlers: dict[bytes, Any] = {}
# Scratch directories of finished jobs, removed by the child's cleanup thread: on ext4
# an rmdir right after its mkdir costs ~0.7-1.2 ms (a journal commit; 13 us on tmpfs),
# which on the job's round trip was most of a short job's isolation cost.
_trash: queue.SimpleQueue[str | None] = queue.SimpleQueue()
_cleaner: list[threading.Thread] = []  # the cleanup thread, once started
_last = [""]
# Per slot FIFO path, its write end (opened on the first progress of a job in it).
_pipes: dict[str, int] = {}


def init(
    memory_mb: int, keep_env: tuple[str, ...], max_jobs: int, log_level: int, log_format: str
) -> None:
    """Runs once in a new child, before any job."""
    keep = set(BASE_ENV) | set(keep_env)
    drop = {name for name in os.environ if name not in keep and not name.startswith("LC_")}
    _wipe_initial_environment(drop)
    for name in drop:
        del os.environ[name]
    if memory_mb:
        limit = memory_mb * MIB
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    _state["max_jobs"] = max_jobs
    _state["cpu_hard"] = resource.getrlimit(resource.RLIMIT_CPU)[1]
    # The daemon's own format on the inherited stderr: a handler's `ctx.logger` lines
    # (with job_id and job_type in JSON) read as if it ran inline.
    configure_logging(logging.getLevelName(log_level).lower(), log_format)
    sandbox_loop.start()
    cleaner = threading.Thread(target=_empty_trash, name="fleetd-scratch-cleanup", daemon=True)
    cleaner.start()
    _cleaner.append(cleaner)


def noop() -> None:
    """A job that does nothing: the daemon sends one to start a replacement child."""


def _wipe_initial_environment(names: set[str]) -> None:
    """Zero the values of `names` in the environment block the child was started with.
    Deleting from os.environ only unlinks them from libc's list: the strings stay in
    memory, readable as /proc/self/environ, as a spawned child inherits the daemon's
    environment. This overwrites them in place (the names stay, with empty values)."""
    try:
        libc = ctypes.CDLL(None)
        environ = ctypes.POINTER(ctypes.c_void_p).in_dll(libc, "environ")
    except (OSError, ValueError):  # not glibc-like: os.environ is still cleaned
        return
    i = 0
    while (address := environ[i]) is not None:
        entry = ctypes.string_at(address)
        name, sep, value = entry.partition(b"=")
        if sep and os.fsdecode(name) in names:
            ctypes.memset(address + len(name) + 1, 0, len(value))
        i += 1


def log_format() -> str:
    """The daemon's log format ("json" or "text"), for its children's init."""
    handlers = logging.getLogger().handlers
    json_lines = any(isinstance(h.formatter, JsonFormatter) for h in handlers)
    return "json" if json_lines else "text"


def retire() -> bool:
    """After each job, once its result was sent: remove its scratch directory (off the
    job's round trip: an rmdir on ext4 costs ~70 us, more under load), then whether
    this child should exit instead of taking another."""
    scratch, _last[0] = _last[0], ""
    leaving = bool(_state["broken"]) or _state["jobs"] >= _state["max_jobs"] > 0
    if leaving:  # the cleanup thread dies with the child: let it finish its work first
        _trash.put(None)  # after what is queued: it returns there
        for cleaner in _cleaner:
            cleaner.join()
        if scratch:
            _remove(scratch)
    elif scratch:
        _trash.put(scratch)
    return leaving


def _empty_trash() -> None:
    """The cleanup thread: remove finished jobs' scratch directories while the child
    runs the next job; until the child retires (None)."""
    while (old := _trash.get()) is not None:
        _remove(old)


def scratch_of(prefix: str, pid: int) -> str:
    """A job's scratch directory: the daemon's `prefix` (unique per attempt) and the pid
    of the child that runs it, which the daemon reads back to SIGTERM that child."""
    return f"{prefix}-{pid}"


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


def execute(
    handler: Any,
    ctx: LocalContext,
    data: dict[str, Any],
    run: Callable[..., Any] = trio.run,
) -> dict[str, Any]:
    """Run `handler` with `run` (a trio loop of this thread by default; a child's own
    loop: sandbox_loop.run); its result or classified failure."""
    try:
        result = ctx.finish(run(handler.run, ctx, data))
    except PermanentError as exc:
        return _failure(exc, ERROR, False)
    except RetryAfter as exc:
        return _failure(exc, ERROR, True)
    except Exception as exc:
        if _has_memory_error(exc):
            _state["broken"] = 1  # a child that ran out of memory is not reused
            return _failure(exc, MEMORY, None)
        return _failure(exc, ERROR, None)
    if result is None:
        result = {}
    if not isinstance(result, dict):
        error = f"handler returned {type(result).__name__}, not a JSON object"
        return {"error": error, "kind": ERROR, "retryable": False}
    try:
        return {"result": _encode(result)}
    except (TypeError, ValueError) as exc:
        return {"error": f"handler result is not JSON: {exc}", "kind": ERROR, "retryable": False}


class _ProgressPipe:
    """A job's progress into its slot's FIFO (kept open for the child's next jobs in
    that slot), each line tagged with the attempt's `tag`."""

    def __init__(self, path: str, tag: str) -> None:
        self._path = path
        self._tag = tag
        self.sent = False  # a line of this job went out: its end is marked (`end`)

    def __call__(self, percent: float, message: str) -> bool:
        # Under PIPE_BUF (4096 bytes) whatever the text, so a line is written whole:
        # 900 characters of at most 4 bytes each, and the rest of the line.
        line = json.dumps({"tag": self._tag, "percent": round(percent, 2),
                           "message": message[:900]}, ensure_ascii=False) + "\n"  # fmt: skip
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


def _handler(blob: bytes) -> Any:
    """The handler pickled as `blob`, unpickled once per child."""
    handler = _handlers.get(blob)
    if handler is None:
        if len(_handlers) >= MAX_HANDLERS:
            _handlers.clear()
        handler = _handlers[blob] = pickle.loads(blob)
    return handler


def run_job(
    blob: bytes,
    job: Any,
    data: dict[str, Any],
    prefix: str,
    artifacts_root: str | None,
    cpu_seconds: int,
    progress_path: str,
) -> dict[str, Any]:
    """One job in this child (see the module docstring)."""
    _state["jobs"] += 1
    handler = _handler(blob)
    sandbox_loop.begin()
    scratch = scratch_of(prefix, os.getpid())
    os.mkdir(scratch, 0o700)  # from here on the daemon can SIGTERM this child
    hard = _state["cpu_hard"]
    if cpu_seconds:
        # RLIMIT_CPU counts the whole process's CPU time: this job's budget starts
        # from what the child has used so far (earlier jobs, imports).
        usage = resource.getrusage(resource.RUSAGE_SELF)
        budget = math.ceil(usage.ru_utime + usage.ru_stime) + cpu_seconds
        resource.setrlimit(resource.RLIMIT_CPU, (budget, hard))
    os.chdir(scratch)
    try:
        root = Path(artifacts_root) if artifacts_root else None
        pipe = _ProgressPipe(progress_path, os.path.basename(prefix))
        out = execute(handler, LocalContext(job, root, pipe), data, sandbox_loop.run)
        out["progress_end"] = pipe.end() or None
        return out
    finally:
        os.chdir("/")
        if cpu_seconds:
            resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))
        _last[0] = scratch


def _remove(scratch: str) -> None:
    """Remove a job's scratch directory here in the child: the daemon does nothing on
    this path (a thread hop for rmtree costs it ~4 ms a job on a loaded 2-core box;
    bench/isolation.py), only after a child it killed or that died."""
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
