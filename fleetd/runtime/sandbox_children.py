"""The warm child processes of process isolation, daemon side: start, lend, take back,
retire and stop them (fleetd.runtime.sandbox runs jobs on them;
fleetd.runtime.sandbox_child is their side).

Why not a process-pool library: a pool such as trio-parallel runs a synchronous
function on the child's main thread, so an async handler has to cross to a trio loop
in another thread of the child and back — two thread wake-ups per job, ~0.3-0.5 ms of
a short job's ~1 ms (bench/isolation.py). Here each child runs one trio loop on its
main thread for good and reads its jobs there: a job crosses two pipes and nothing
else. What such a pool gave is kept: children start on first use and stay warm for
`[isolation] idle_timeout`, retire after `max_jobs_per_child`, a dead or killed one
is replaced at once, and at shutdown idle ones get `SHUTDOWN_GRACE` to exit.

A child is keyed by its limits: (memory_mb, kept environment variables), fixed at its
start (RLIMIT_AS; the environment of its exec). `Children` lends one per attempt
(`take`), which comes back with `give` (or `discard`: killed, dead, retiring).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import trio

from fleetd.config.isolation_section import IsolationConfig
from fleetd.runtime import sandbox_child
from fleetd.runtime.sandbox_wire import (
    BOOT,
    FRAME,
    MAX_REPLY,
    STOPS,
    FrameReader,
    environment,
    log_format,
    reply_of,
    write_now,
)

__all__ = ["Child", "Children", "Limits"]

log = logging.getLogger("fleetd.sandbox")

Limits = tuple[int, tuple[str, ...]]
# At shutdown, an idle child gets this long to exit before it is killed.
SHUTDOWN_GRACE = 5.0


@dataclass(eq=False)
class Child:
    """One warm child: its process and the pipes of its frames."""

    process: trio.Process
    limits: Limits
    idle_since: float = 0.0
    leaving: bool = False  # its last reply said it retires
    stops: int = 0  # SIGTERMs sent to it (`stop`); its next job's frame carries the count
    _frames: FrameReader = field(init=False)

    def __post_init__(self) -> None:
        assert self.process.stdout is not None
        self._frames = FrameReader(self.process.stdout)

    @property
    def pid(self) -> int:
        return self.process.pid

    def send_nowait(self, message: bytes) -> bytes:
        """Write a pickled job's frame (after the count of stops sent so far) as far as
        the pipe takes it now (no checkpoint); what is left, to `send`. BrokenPipeError
        when the child is gone."""
        head = FRAME.pack(STOPS.size + len(message)) + STOPS.pack(self.stops)
        return write_now(self.process.stdin, head + message)

    def stop(self) -> None:
        """SIGTERM: the job it runs (or whose frame it has not read yet) is cancelled
        inside it; a later job is not (the count its frame carries)."""
        self.stops += 1
        self.process.send_signal(signal.SIGTERM)

    async def send(self, rest: bytes) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(rest)

    async def receive(self) -> dict[str, Any]:
        """The child's reply. EOFError when the child is gone; BadReply when what it
        sent is not a reply (fleetd.runtime.sandbox_wire): it is not to be trusted."""
        reply = reply_of(await self._frames.frame(MAX_REPLY))
        self.leaving = bool(reply.get("leaving"))
        return reply

    async def wait(self) -> int:
        """Its exit status (negative: the signal that killed it), once it exited."""
        with trio.CancelScope(shield=True):
            status = await self.process.wait()
        return status


@dataclass(eq=False)
class Children:
    """The sandbox's warm children (module docstring)."""

    settings: IsolationConfig
    directory: str  # the sandbox's: children make their jobs' scratch directories there
    log_level: int
    _idle: dict[Limits, list[Child]] = field(default_factory=dict)
    _alive: set[Child] = field(default_factory=set)
    _nursery: trio.Nursery | None = None
    closing: bool = False  # the sandbox stops: nothing is replaced any more

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Retire idle children past `idle_timeout` until cancelled; then stop them all."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                while True:
                    await trio.sleep(min(max(self.settings.idle_timeout / 4, 0.05), 5.0))
                    self._expire()
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True):
                await self._stop_all()

    async def take(self, limits: Limits) -> Child:
        """A warm child with these limits, or a new one (its start, ~0.5 s, overlaps
        the first job's frame, which waits in the pipe)."""
        idle = self._idle.get(limits, [])
        while idle:
            child = idle.pop()
            if child.process.poll() is None:
                return child
            self._alive.discard(child)  # died while idle (killed from outside)
            if self._nursery is not None:
                self._nursery.start_soon(trio.to_thread.run_sync, self._remove_scratch, child)
        return await self._start(limits)

    def give(self, child: Child) -> None:
        """A child back from a job it answered; one retiring is let go."""
        if child.leaving:  # retired: a fresh one takes its place
            self._let_go(child)
            if self._nursery is not None and not self.closing:
                self._nursery.start_soon(self._replace, child.limits)
            return
        child.idle_since = trio.current_time()
        self._idle.setdefault(child.limits, []).append(child)

    async def reap(self, child: Child, *, kill: bool) -> int:
        """A child that will not be reused (its job was stopped, or it died): killed
        first when `kill`; its exit status once it exited."""
        if not kill:  # it closed its pipe: it is exiting, or stuck on its way out
            with trio.move_on_after(SHUTDOWN_GRACE):
                await child.wait()
        if child.process.poll() is None:
            child.process.kill()
        status = await child.wait()
        self._alive.discard(child)
        return status

    async def replace(self, child: Child) -> None:
        """After `reap`: what it left of its jobs' scratch directories is removed, and
        a fresh child of its limits takes its place (in the background)."""
        await trio.to_thread.run_sync(self._remove_scratch, child)
        if self._nursery is not None and not self.closing:
            self._nursery.start_soon(self._replace, child.limits)

    async def _replace(self, limits: Limits) -> None:
        try:
            self.give(await self._start(limits))
        except OSError as exc:
            log.warning("could not start a replacement sandbox child: %s", exc)

    async def _start(self, limits: Limits) -> Child:
        memory_mb, keep_env = limits
        command = [sys.executable, "-c", BOOT, "fleetd-sandbox-child",
                   json.dumps(sys.path)]  # fmt: skip
        settings = {
            "memory_mb": memory_mb,
            "max_jobs": self.settings.max_jobs_per_child,
            "log_level": self.log_level,
            "log_format": log_format(),
            "directory": self.directory,
        }
        body = pickle.dumps(settings, pickle.HIGHEST_PROTOCOL)
        with trio.CancelScope(shield=True):  # a started process is always tracked
            process = await trio.lowlevel.open_process(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                env=environment(keep_env), cwd="/",
            )  # fmt: skip
            child = Child(process, limits)
            self._alive.add(child)
            assert process.stdin is not None
            await process.stdin.send_all(FRAME.pack(len(body)) + body)
        return child

    def _expire(self) -> None:
        """Let idle children past `idle_timeout` go."""
        limit = trio.current_time() - self.settings.idle_timeout
        for limits, idle in self._idle.items():
            keep = [c for c in idle if c.idle_since > limit]
            for child in idle:
                if child.idle_since <= limit:
                    self._let_go(child)
            self._idle[limits] = keep

    def _let_go(self, child: Child) -> None:
        """Close its pipe: it exits by itself; reaped in the background."""
        if self._nursery is None:
            return  # stopping: _stop_all takes it
        self._nursery.start_soon(self._close, child)

    async def _close(self, child: Child) -> None:
        assert child.process.stdin is not None
        with trio.CancelScope(shield=True):
            await child.process.stdin.aclose()
            await self.reap(child, kill=False)
            await trio.to_thread.run_sync(self._remove_scratch, child)

    async def _stop_all(self) -> None:
        """Shutdown: idle children exit (their pipe closed), others are killed; all
        reaped, their scratch directories gone."""
        self._idle.clear()
        children = list(self._alive)
        for child in children:
            if child.process.stdin is not None:
                await child.process.stdin.aclose()
        with trio.move_on_after(SHUTDOWN_GRACE):
            for child in children:
                await child.process.wait()
        for child in children:
            if child.process.poll() is None:
                child.process.kill()
            await child.process.wait()
            await trio.to_thread.run_sync(self._remove_scratch, child)
        self._alive.clear()

    def _remove_scratch(self, child: Child) -> None:
        """What a child that did not finish left of its jobs' scratch directories."""
        prefix = f"c{child.pid}-"
        try:
            names = [e for e in os.listdir(self.directory) if e.startswith(prefix)]
        except OSError:
            return
        for name in names:
            sandbox_child.remove_tree(os.path.join(self.directory, name))
