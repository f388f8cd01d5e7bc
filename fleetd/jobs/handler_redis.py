"""`ctx.redis`: an async Redis facade for handlers whose commands from concurrent jobs
are pipelined together.

Owns its own connections to fleetd's Redis (`[redis] url`), apart from the daemon's
link: a handler's slow or failing command never holds up a claim or a completion.
Opened on first use, closed by the worker pool at its end.

Two paths, one behaviour:
- On a direct server (`redis://`, `unix://`), commands go from the trio thread over one
  shared connection (fleetd.backend.shared_pipe): each command is written as soon as
  the connection is free, and those queued while a round trip is out go together in
  the next write. No thread hop: one job's command alone costs ~76 µs of CPU and
  waits ~80 µs (p50) against ~178 µs and ~184 µs through the worker thread; with 50
  jobs sending at once, ~7 µs against ~17 µs each (bench/handler_redis.py, issue #15).
- Everywhere else (Sentinel, Cluster, TLS; with `memory://` the facade uses the
  daemon's client, the embedded store having no second door), and for blocking
  commands (BLPOP, XREAD … BLOCK, WAIT…: shared_pipe.route), behind which every other
  job's command would wait on the shared connection — fleetd.jobs.blocking's batched
  thread hop: a batch = the commands queued while the previous batch ran, sent as one
  non-transactional redis-py pipeline on a pooled connection; a batch running long (a
  BLPOP) opens another lane.

Either way each command is on its own — not a MULTI/EXEC: another client's command may
run between two of them — but 50 jobs doing one INCR each cost a round trip or two,
not 50. Per command: its reply, or its own error (`RedisCommandError` for an error
reply or an argument that cannot be sent; `RedisUnavailable` when Redis cannot be
reached — a command may then have run or not, as with any client). Commands of one job
run in the order it awaited them. Cancellation as for `ctx.run_blocking`: a command
not yet sent is dropped, a sent one completes.

Commands that change their connection (MULTI/EXEC, WATCH, SELECT, SUBSCRIBE…:
shared_pipe.route) are refused with RedisCommandError on both paths: the
connection is shared with other jobs' commands, which would run inside the transaction,
in the other database. Several commands at once: one EVAL.

Replies are decoded to str (the daemon's client settings: decode_responses).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import outcome

from fleetd.backend.native_lane import COMMAND_TIMEOUT, CONNECT_TIMEOUT
from fleetd.backend.redis_link import RedisCommandError, RedisLink
from fleetd.backend.shared_pipe import PIPE, REFUSED, SharedPipe, route
from fleetd.jobs.blocking import BlockingExecutor, Call

if TYPE_CHECKING:
    from fleetd.backend.redis_link import SyncClient

__all__ = ["HandlerRedis"]

log = logging.getLogger("fleetd.job")

# Connections of the facade's own pool: one per lane is all batching ever uses; one
# more for a command retried while a lane's connection is being re-opened.
POOL_CONNECTIONS = 4


def _noop() -> None:  # the `fn` of a queued command: the runner sends `args`
    return None


class HandlerRedis:
    """Pipelined Redis commands for handlers: `await ctx.redis.incr("visits")`."""

    def __init__(
        self,
        daemon_link: RedisLink,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        command_timeout: float = COMMAND_TIMEOUT,
    ) -> None:
        """The timeouts are the shared connection's (the worker pool passes `[redis]
        connect_timeout` and `command_timeout`)."""
        self._daemon_link = daemon_link
        self._link: RedisLink | None = None
        self._executor = BlockingExecutor(self._run_pipeline)
        self._pipe: SharedPipe | None = None
        if not daemon_link.embedded and SharedPipe.supports(daemon_link.url):
            self._pipe = SharedPipe(
                daemon_link.url, connect_timeout=connect_timeout, command_timeout=command_timeout
            )

    @property
    def executor(self) -> BlockingExecutor:
        """The threaded path (see the module docstring)."""
        return self._executor

    @property
    def pipe(self) -> SharedPipe | None:
        """The shared connection of a direct server, else None."""
        return self._pipe

    def _own_link(self) -> RedisLink:
        if self._link is None:
            base = self._daemon_link
            if base.embedded:
                self._link = base
            else:
                self._link = RedisLink(base.url, max_connections=POOL_CONNECTIONS)
        return self._link

    def _run_pipeline(self, batch: list[Call]) -> None:
        """In the worker thread: the batch's commands in one pipeline."""
        link = self._own_link()

        def send(client: SyncClient) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for call in batch:
                pipe.execute_command(*call.args)
            replies: list[Any] = pipe.execute(raise_on_error=False)
            return replies

        replies = link.run_sync(send)
        for call, reply in zip(batch, replies, strict=True):
            if isinstance(reply, Exception):
                call.result = outcome.Error(RedisCommandError(str(reply)))
            else:
                call.result = outcome.Value(reply)

    def close(self) -> None:
        if self._link is not None and self._link is not self._daemon_link:
            self._link.close()
        self._link = None
        if self._pipe is not None:
            self._pipe.close()

    # -- commands ----------------------------------------------------------------------

    async def execute(self, *args: Any) -> Any:
        """Any Redis command, e.g. `await ctx.redis.execute("PFADD", key, member)`."""
        way = route(args)
        if way == REFUSED:
            raise RedisCommandError(
                f"{args[0]}: ctx.redis sends each command on its own, on connections shared"
                " with other jobs: no transactions, database switches or subscriptions"
                " (use a Lua script, EVAL, for several commands at once)"
            )
        if way == PIPE:
            return await self._send(*args)
        return await self._threaded(*args)

    async def _send(self, *args: Any) -> Any:
        """A command route() sends down the pipe (the typed methods' own, known so)."""
        if self._pipe is not None:
            return await self._pipe.execute(*args)
        return await self._threaded(*args)

    async def _threaded(self, *args: Any) -> Any:
        if self._link is None:
            self._own_link()  # on the trio thread: RedisLink makes trio objects
        return await self._executor.run(_noop, *args)

    async def get(self, key: str) -> str | None:
        reply: str | None = await self._send("GET", key)
        return reply

    async def set(self, key: str, value: str | int | float, *, ex: float | None = None) -> bool:
        """SET; `ex` is an expiry in seconds (sent as PX, in ms)."""
        extra = () if ex is None else ("PX", int(ex * 1000))
        return bool(await self._send("SET", key, value, *extra))

    async def incr(self, key: str, amount: int = 1) -> int:
        reply: int = await self._send("INCRBY", key, amount)
        return reply

    async def delete(self, *keys: str) -> int:
        reply: int = await self._send("DEL", *keys)
        return reply

    async def expire(self, key: str, seconds: float) -> bool:
        return bool(await self._send("PEXPIRE", key, int(seconds * 1000)))

    async def hget(self, key: str, field: str) -> str | None:
        reply: str | None = await self._send("HGET", key, field)
        return reply

    async def hset(self, key: str, mapping: dict[str, str | int | float]) -> int:
        flat = [x for pair in mapping.items() for x in pair]
        reply: int = await self._send("HSET", key, *flat)
        return reply
