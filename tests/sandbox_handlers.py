"""Handlers for the isolation tests, in a module of their own: a `process` job's handler
is pickled to a child, which imports this module by name (tests/ is on its path).
Blocking the loop is their point: a child's loop runs nothing else."""

# ruff: noqa: ASYNC230, ASYNC251

from __future__ import annotations

import contextvars
import os
import pickle
import socket
import stat
import struct
import time
from pathlib import Path
from typing import Any

import trio

from fleetd.jobs.context import JobContext
from fleetd.jobs.handlers import HandlerDefaults
from fleetd.jobs.isolation import RetryAfter

# Environment variables the secrets test plants in the daemon; none may reach a child.
SECRETS = {
    "FLEETD_AUTH_JWT_SECRET": "jwt-secret-" + "x" * 32,
    "FLEETD_ENCRYPTION_KEYS": "k1:c2VjcmV0LWRhdGEta2V5",
    "FLEETD_REDIS_URL": "redis://:redis-password@127.0.0.1:1/0",
    "REDIS_PASSWORD": "redis-password",
}


# Set by a "ctxvar" job: the next job in the same child must not see it.
SEEN: contextvars.ContextVar[str | None] = contextvars.ContextVar("seen", default=None)


class _Touch:
    """Unpickled, creates `path`: what a forged reply would run in the daemon."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


class Sandboxed:
    """Does what `data["do"]` says, in a child process (isolation "process")."""

    job_type = "sandboxed"
    defaults = HandlerDefaults(isolation="process", memory_mb=512, cpu_seconds=2, max_retries=2)

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        return data

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        do = data.get("do", "ok")
        if do == "hog":  # grows a list of 1 MiB blocks until the address space is full
            blocks = []
            while True:
                blocks.append(bytearray(1024 * 1024))
        if do == "spin":  # a tight loop that never yields: only the CPU limit stops it
            n = 0
            while True:
                n += 1
        if do == "sleep":  # blocks in C, deaf to cancellation
            time.sleep(3600)
        if do == "recv":  # a socket read without a timeout: deaf to cancellation too
            mine, _theirs = socket.socketpair()
            mine.recv(1)
        if do in ("term_cleanup", "term_deaf"):  # notes its pid, then waits
            marker = Path(data["marker"])
            marker.with_suffix(".pid").write_text(str(os.getpid()))
            try:
                # Deaf: shields itself from the cancel a SIGTERM brings.
                with trio.CancelScope(shield=do == "term_deaf"):
                    await trio.sleep(3600)
            finally:
                marker.write_text("cleaned up")  # a deaf one gets here only when woken
        if do == "exit":
            os._exit(3)
        if do == "print":  # stdout is not the daemon's pipe: this must not break a frame
            print("printed by a handler " + "x" * 100_000, flush=True)
            return {"pid": os.getpid()}
        if do == "forge":  # a pickle into every pipe it can find, to run code in the daemon
            evil = pickle.dumps(_Touch(data["marker"]))
            for fd in range(3, 256):
                try:
                    if stat.S_ISFIFO(os.fstat(fd).st_mode):
                        os.write(fd, struct.pack("!I", len(evil)) + evil)
                except OSError:
                    continue
            return {"pid": os.getpid()}
        if do == "ctxvar":  # what an earlier job left, then leaves its own mark
            before = SEEN.get()
            SEEN.set(ctx.job.id)
            return {"before": before, "pid": os.getpid()}
        if do == "retry_after":
            raise RetryAfter(7, "upstream says 421")
        if do == "fail":
            raise ValueError("plain failure")
        if do == "env":
            with open("/proc/self/environ", "rb") as f:
                initial = f.read().decode(errors="replace")
            return {"env": dict(os.environ), "initial": initial, "cwd": os.getcwd(),
                    "pid": os.getpid()}  # fmt: skip
        if do == "big_result":  # a result of about `size` bytes of JSON
            return {"blob": "r" * int(data["size"])}
        if do == "artifact":  # `size` bytes in 64 KiB chunks ([artifacts] limits apply)
            size = int(data["size"])
            await ctx.artifacts.write_chunks(
                "big.bin", (b"x" * min(65536, size - n) for n in range(0, size, 65536))
            )
            return {"pid": os.getpid()}
        if do == "progress":
            ctx.logger.warning("hello from pid %d", os.getpid())
            await ctx.progress(40, "child at 40")
            await ctx.artifacts.write_text("out.txt", "made in a child\n")
            if data.get("scratch"):  # the cwd: the job's scratch directory in a child
                with open("scratch.tmp", "w") as f:
                    f.write("scratch")
            time.sleep(float(data.get("linger", 0.5)))  # lets the relay forward it
            return {"cwd": os.getcwd(), "pid": os.getpid()}
        return {"pid": os.getpid(), "cwd": os.getcwd()}


class Threaded(Sandboxed):
    job_type = "threaded"
    defaults = HandlerDefaults(isolation="thread", max_retries=0)


class FlakyError(Exception):
    pass


class Flaky:
    """Inline: fails with `FlakyError`, an exception class a retry rule may name (or
    hangs until its timeout)."""

    job_type = "flaky"
    defaults = HandlerDefaults(max_retries=3)

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        return data

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("hang"):  # until its timeout
            await trio.sleep(3600)
        raise FlakyError("flaky on purpose")
