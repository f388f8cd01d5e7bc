"""The trio loop a warm sandbox child keeps for its whole life (fleetd.runtime
.sandbox_child), and how SIGTERM reaches the job running on it.

A fresh `trio.run` per job costs a child ~0.8 ms of wall time and ~0.3 ms of CPU (a
new runner, its epoll instance, its wake-up socket); handing a coroutine to a loop that
is already running costs ~0.2 ms and ~0.05 ms (bench/isolation.py). So `start()` runs
one loop in a daemon thread of the child, once, from its init; `run(fn, *args)` runs
one job's `fn` on it, inside a cancel scope of its own, from trio-parallel's thread
(the child's main thread), and blocks until it returns.

SIGTERM: `start()` installs a handler (signals reach the main thread) that cancels the
running job's scope on the loop: the handler sees `trio.Cancelled` at its next
checkpoint, its `finally` blocks and `async with` exits run, and `run` raises
`Terminated`. A SIGTERM with no job running does nothing: the daemon only sends one to
a child running its job, and a child that finished just before keeps serving. A
handler deaf to cancellation (blocked in C, or shielding itself) is SIGKILLed by the
daemon once `[isolation] kill_grace` has passed.

Lifecycle: start() (once, in the child's init) → run() per job → the thread dies with
the child (a daemon thread: the child exits when trio-parallel's loop ends).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import trio

__all__ = ["Terminated", "begin", "run", "start"]


class Terminated(Exception):
    """The job was cancelled by a SIGTERM from the daemon (its timeout or a cancel)."""


class _Loop:
    """The child's one loop: its token, and the scope of the job running on it."""

    def __init__(self) -> None:
        self.token: trio.lowlevel.TrioToken | None = None
        self.scope: trio.CancelScope | None = None
        self.terminated = False  # a SIGTERM came for the current job
        self.ready = threading.Event()

    async def serve(self) -> None:
        self.token = trio.lowlevel.current_trio_token()
        self.ready.set()
        await trio.sleep_forever()

    async def guarded(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        with trio.CancelScope() as scope:
            self.scope = scope
            if self.terminated:  # the SIGTERM came before the scope existed
                scope.cancel()
            try:
                return await fn(*args)
            finally:
                self.scope = None
        raise Terminated("stopped by SIGTERM: the job timed out or was cancelled")

    def on_sigterm(self, signum: int, frame: Any) -> None:
        self.terminated = True
        scope, token = self.scope, self.token
        if scope is not None and token is not None:
            token.run_sync_soon(scope.cancel)


_loop = _Loop()


def start() -> None:
    """Start the loop thread and take SIGTERM (from the child's main thread)."""
    threading.Thread(target=trio.run, args=(_loop.serve,), name="fleetd-job-loop",
                     daemon=True).start()  # fmt: skip
    _loop.ready.wait()
    signal.signal(signal.SIGTERM, _loop.on_sigterm)


def begin() -> None:
    """A new job: forget a SIGTERM that came for an earlier one. Called before the
    child tells the daemon its pid (the daemon signals no child it cannot name)."""
    _loop.terminated = False


def run(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """`await fn(*args)` on the loop; Terminated if a SIGTERM cancelled it."""
    return trio.from_thread.run(_loop.guarded, fn, *args, trio_token=_loop.token)
