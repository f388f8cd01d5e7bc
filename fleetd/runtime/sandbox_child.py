"""The child side of process isolation (fleetd.runtime.sandbox): what runs inside a warm
worker process of trio-parallel, and the classification of a handler's exceptions
shared with thread isolation.

Lifecycle of a child: `init` (once, as trio-parallel starts it: clean environment,
RLIMIT_AS, logging to the inherited stderr in the daemon's format) → `run_job` per
job (chdir into the job's scratch directory, RLIMIT_CPU's soft limit moved to this
job's budget, the handler run on a trio loop of its own, its result encoded, the
scratch directory emptied) → `retire` after each job (True
once the child ran `max_jobs` jobs or saw a MemoryError: it exits and a fresh one
replaces it) — or death by the kernel (SIGXCPU at the CPU limit, SIGKILL by the OOM
killer) or by the daemon (SIGKILL on timeout or cancel), which the daemon classifies.

What crosses the pipe: the handler (pickled), the job without its data and lease token,
the data, paths; back, a plain dict (`execute`'s): `result` (the result's JSON text) or
`error`, `kind`, `traceback`, `retryable` (None: the type's policy decides),
`retry_after` and `exc_name`. Progress goes through a FIFO in the scratch directory,
one JSON line per call (under PIPE_BUF, so each write is atomic).
"""

from __future__ import annotations

import ctypes
import json
import logging
import math
import os
import resource
import shutil
import traceback
from pathlib import Path
from typing import Any

import trio

from fleetd.jobs.errors import PermanentError
from fleetd.jobs.isolation import ERROR, MEMORY, RetryAfter
from fleetd.jobs.local_context import LocalContext
from fleetd.runtime.log import JsonFormatter, configure_logging

__all__ = ["execute", "init", "log_format", "retire", "run_job"]

# Variables a child keeps whatever the handler declares: what programs and libraries
# need to find themselves, their locale and time zone. Everything else (FLEETD_*, the
# JWT secret, data keys, the Redis URL with its password) is dropped.
BASE_ENV = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "PYTHONPATH", "PYTHONHOME",
            "VIRTUAL_ENV", "SSL_CERT_FILE", "SSL_CERT_DIR")  # fmt: skip
MAX_ERROR_CHARS = 2000
MAX_TRACEBACK_CHARS = 8000
MIB = 1024 * 1024
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=str).encode

# This child's own bookkeeping (one job at a time per child).
_state: dict[str, int] = {"jobs": 0, "max_jobs": 0, "broken": 0}


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
    # The daemon's own format on the inherited stderr: a handler's `ctx.logger` lines
    # (with job_id and job_type in JSON) read as if it ran inline.
    configure_logging(logging.getLevelName(log_level).lower(), log_format)


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
    """After each job: whether this child should exit instead of taking another."""
    return bool(_state["broken"]) or _state["jobs"] >= _state["max_jobs"] > 0


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


def execute(handler: Any, ctx: LocalContext, data: dict[str, Any]) -> dict[str, Any]:
    """Run `handler` on a trio loop of this thread; its result or classified failure."""
    try:
        result = ctx.finish(trio.run(handler.run, ctx, data))
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
    """The child's end of the progress FIFO, opened on first use."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._fd: int | None = None

    def __call__(self, percent: float, message: str) -> bool:
        line = json.dumps({"percent": round(percent, 2), "message": message[:1000]}) + "\n"
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_WRONLY)
            os.write(self._fd, line.encode())
        except OSError:
            return True  # the daemon stopped listening; the job goes on
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)


def run_job(
    handler: Any,
    job: Any,
    data: dict[str, Any],
    scratch: str,
    artifacts_root: str | None,
    cpu_seconds: int,
    progress_path: str,
) -> dict[str, Any]:
    """One job in this child (see the module docstring)."""
    _state["jobs"] += 1
    soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if cpu_seconds:
        # RLIMIT_CPU counts the whole process's CPU time: this job's budget starts
        # from what the child has used so far (earlier jobs, imports).
        usage = resource.getrusage(resource.RUSAGE_SELF)
        budget = math.ceil(usage.ru_utime + usage.ru_stime) + cpu_seconds
        resource.setrlimit(resource.RLIMIT_CPU, (budget, hard))
    pipe = _ProgressPipe(progress_path)
    os.chdir(scratch)
    try:
        root = Path(artifacts_root) if artifacts_root else None
        return execute(handler, LocalContext(job, root, pipe, "process"), data)
    finally:
        pipe.close()
        os.chdir("/")
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
        _empty(Path(scratch), keep=progress_path)


def _empty(scratch: Path, keep: str) -> None:
    """Remove what the job left in its scratch directory, here in the child: the daemon
    then only removes the empty directory (a thread hop for rmtree costs it ~4 ms a
    job on a loaded 2-core box; bench/isolation.py)."""
    for entry in scratch.iterdir():
        if str(entry) == keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
