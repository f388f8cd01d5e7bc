"""One Redis connection shared by many trio tasks, their commands pipelined as they come:
`ctx.redis` on a direct server (fleetd.jobs.handler_redis).

Why: a handler's Redis command through a worker thread (fleetd.jobs.blocking's batched
hop and a redis-py pipeline) cost ~178 µs of CPU and 184 µs of wall time (p50) when one
task sent them one after the other, and ~17 µs of CPU each when 50 tasks sent them back
to back; written and read here, from the trio thread, with hiredis: ~76 µs, 80 µs and
~7 µs (bench/handler_redis.py, issue #15). A busy worker pool's drain is the same
either way: its jobs start together, so their commands already went in large batches.

How: no background task. The task that finds the connection free drives it: it writes
every command queued so far in one write, reads the replies and hands each to its task,
in order, until its own has come; then it hands the drive to the oldest task still
waiting (whose command is in flight or not yet written), or leaves the connection free.
Commands queued while a round trip is out go out together in the next write: a batch,
as large as the load makes it, and no wait to gather one.

Per command: its reply, as redis-py's client returns it (fleetd.backend.native_lane's
reading: hiredis, UTF-8, redis-py's RESP2 callbacks), or its own error —
RedisCommandError for an error reply, RedisUnavailable for one that means "not now"
(LOADING, READONLY…) — and RedisCommandError too for an argument that cannot be
sent (None, a dict…), which is never sent.
A connection that cannot be opened, breaks, or gives no reply within the command
timeout fails every command written on it and every one queued with RedisUnavailable
(a written one may have run or not, as with any client) and is dropped; the next
command opens a new one. An idle connection Redis closed meanwhile (a restart, its
`timeout`) is seen before anything is written on it and replaced.

Cancellation: a command not yet written is withdrawn and its caller gets
trio.Cancelled; a written one is waited for (at most the command timeout: its reply
must be read off the connection anyway) and returned, the cancel landing at the
caller's next checkpoint. The drive itself is shielded: a cancelled driver still
finishes its round trip, so nobody's reply is left unread.

Not for blocking commands (BLPOP, XREAD … BLOCK, WAIT…), behind which every other
command would wait, nor for commands that change the connection (MULTI, SELECT,
SUBSCRIBE…), which would change it for every other command too: `route(args)` says
which, and the caller sends the first elsewhere and refuses the second.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import hiredis
import trio

from fleetd.backend.native_lane import (
    COMMAND_TIMEOUT,
    CONNECT_TIMEOUT,
    READ_SIZE,
    Connection,
    NativeLane,
    connect,
    direct_options,
    means_unavailable,
    parsed,
)
from fleetd.backend.redis_link import RedisCommandError, RedisUnavailable

__all__ = ["ELSEWHERE", "PIPE", "REFUSED", "SharedPipe", "route"]

# Commands that wait server-side for data or replicas: behind one of them every other
# command of the connection would wait too.
_BLOCKING = frozenset(
    {
        "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX",
        "BZMPOP", "WAIT", "WAITAOF",
    }
)  # fmt: skip
# XREAD and XREADGROUP block only when given BLOCK.
_STREAM_READS = frozenset({"XREAD", "XREADGROUP"})
# Commands that change or take over the connection they are sent on.
_STATEFUL = frozenset(
    {
        "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH", "SELECT", "AUTH", "HELLO", "RESET",
        "QUIT", "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE",
        "SUNSUBSCRIBE", "MONITOR", "SYNC", "PSYNC", "REPLCONF", "READONLY", "READWRITE",
        "ASKING",
    }
)  # fmt: skip
_STATEFUL_CLIENT = frozenset({"REPLY", "TRACKING", "NO-EVICT", "NO-TOUCH", "CACHING"})


# How a connection goes away under a round trip (a refused connection is RedisUnavailable).
_LOST = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError)

# Where route() sends a command.
PIPE, ELSEWHERE, REFUSED = 0, 1, 2


def route(args: Sequence[Any]) -> int:
    """REFUSED for a command that changes or takes over its connection (a transaction,
    another database, pub/sub…: on a connection shared with other jobs' commands it
    would change theirs too); ELSEWHERE for one that may wait server-side (for data, for
    replicas), holding up every command behind it on its connection; else PIPE."""
    name = str(args[0]).upper() if args else ""
    if name in _STATEFUL:
        return REFUSED
    if name == "CLIENT" and len(args) > 1 and str(args[1]).upper() in _STATEFUL_CLIENT:
        return REFUSED
    if name in _BLOCKING:
        return ELSEWHERE
    if name in _STREAM_READS and any(str(a).upper() == "BLOCK" for a in args[1:]):
        return ELSEWHERE
    return PIPE


class _Slot:
    """One command: its bytes, its caller while it waits, and what it came to."""

    __slots__ = ("args", "done", "error", "lead", "packed", "task", "value", "written")

    def __init__(self, args: tuple[Any, ...], packed: bytes, task: trio.lowlevel.Task) -> None:
        self.args = args
        self.packed = packed
        self.task = task
        self.done = False
        self.value: Any = None
        self.error: Exception | None = None
        self.written = False
        self.lead = False  # handed the drive while it waited


class SharedPipe:
    """`await pipe.execute("INCRBY", key, 1)` from any number of tasks of one trio run."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        command_timeout: float = COMMAND_TIMEOUT,
    ) -> None:
        self._options = direct_options(url)
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._conn: Connection | None = None
        self._queued: list[_Slot] = []  # not yet written, in call order
        self._in_flight: deque[_Slot] = deque()  # written, replies due in this order
        self._driving = False
        self.commands = 0  # commands sent, and
        self.writes = 0  # the writes that carried them (their ratio: the batch size)

    supports = staticmethod(NativeLane.supports)

    async def execute(self, *args: Any) -> Any:
        try:
            packed = hiredis.pack_command(args)
        except TypeError as exc:
            raise RedisCommandError(f"{args[0] if args else 'no command'}: {exc}") from None
        slot = _Slot(args, packed, trio.lowlevel.current_task())
        self._queued.append(slot)
        if self._driving:
            await self._wait(slot)
        else:
            self._driving = True
            slot.lead = True
        if slot.lead:
            await self._drive(slot)
        if slot.error is not None:
            raise slot.error
        return slot.value

    async def _wait(self, slot: _Slot) -> None:
        def abort(_: Any) -> trio.lowlevel.Abort:
            if slot.written:
                return trio.lowlevel.Abort.FAILED  # its reply comes; returned as usual
            self._queued.remove(slot)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    async def _drive(self, own: _Slot) -> None:
        """Write what is queued, read replies until `own`'s has come, hand the drive on."""
        try:
            with trio.CancelScope(shield=True):
                while not own.done:
                    await self._round_trip()
        except RedisUnavailable as exc:  # could not connect: nothing was written
            self._fail_all(exc)
        except hiredis.ProtocolError as exc:
            self._fail_all(RedisUnavailable(f"Redis protocol error: {exc}"))
        except BaseException as exc:
            # Whatever broke the round trip, the replies due on this connection will
            # not come in step: its commands fail, and it is dropped.
            self._fail_all(RedisUnavailable(f"Redis connection lost: {exc!r}"))
            if not isinstance(exc, _LOST):
                raise
        finally:
            own.lead = False
            self._hand_on(own)

    async def _round_trip(self) -> None:
        conn = self._conn
        if conn is not None and not self._in_flight and conn.stale():
            conn.close()  # idle, and Redis closed it (or it holds a reply nobody awaits)
            conn = self._conn = None
        if conn is None:
            conn = self._conn = await connect(self._options, self._connect_timeout)
        if self._queued:
            if not self._in_flight:
                # Let the tasks that are ready to run queue their commands first: they
                # go out in this write, not each in a round trip of its own.
                await trio.lowlevel.cancel_shielded_checkpoint()
            batch, self._queued = self._queued, []
            for slot in batch:
                slot.written = True
            self._in_flight.extend(batch)
            self.commands += len(batch)
            self.writes += 1
            with trio.fail_after(self._command_timeout):
                await conn.stream.send_all(b"".join(s.packed for s in batch))
        with trio.fail_after(self._command_timeout):
            data = await conn.stream.receive_some(READ_SIZE)
        if not data:
            raise ConnectionResetError("Redis closed the connection")
        reader, in_flight = conn.reader, self._in_flight
        reader.feed(data)
        while (reply := reader.gets()) is not False:
            if not in_flight:
                raise hiredis.ProtocolError("a reply no command waits for")
            self._settle(in_flight.popleft(), reply)

    def _settle(self, slot: _Slot, reply: Any) -> None:
        if isinstance(reply, hiredis.ReplyError):
            if means_unavailable(reply):
                slot.error = RedisUnavailable(f"Redis answered {reply}")
            else:
                slot.error = RedisCommandError(str(reply))
        else:
            try:
                slot.value = parsed(slot.args, reply)
            except Exception as exc:  # a callback that cannot read the reply
                slot.error = exc
        slot.done = True
        if not slot.lead:
            trio.lowlevel.reschedule(slot.task)

    def _fail_all(self, exc: RedisUnavailable) -> None:
        """The connection is gone: every written and queued command fails with `exc`."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        slots = [*self._in_flight, *self._queued]
        self._in_flight.clear()
        self._queued = []
        for slot in slots:
            slot.error, slot.done = exc, True
            if not slot.lead:
                trio.lowlevel.reschedule(slot.task)

    def _hand_on(self, own: _Slot) -> None:
        """The drive passes to the oldest command still waiting, else the pipe is free."""
        waiting = self._in_flight[0] if self._in_flight else None
        if waiting is None and self._queued:
            waiting = self._queued[0]
        if waiting is None:
            self._driving = False
            return
        waiting.lead = True
        trio.lowlevel.reschedule(waiting.task)

    def close(self) -> None:
        """Close the connection (sync: the worker pool's teardown calls it, its tasks
        done)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
