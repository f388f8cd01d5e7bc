"""`ctx.redis`: an async Redis facade for handlers whose commands from concurrent jobs
are pipelined, one round trip (and one thread hand-off) per batch.

Owns its own connection pool to fleetd's Redis (`[redis] url`), apart from the
daemon's link: a handler's slow or failing command never holds up a claim or a
completion. (With `memory://`, the embedded store has no second door: the facade uses
the daemon's client.) Opened on first use, closed by the worker pool at its end.

Batching is fleetd.jobs.blocking's (a batch = the commands queued while the previous
batch ran; MAX_BATCH at most; LANES at once), with one runner: the batch's commands go
out as one non-transactional pipeline. So each command is still on its own — not a
MULTI/EXEC: another client's command may run between two of them — but 50 jobs doing
one INCR each cost one round trip, not 50. Per command: its reply, or its own error
(`RedisCommandError` for an error reply; `RedisUnavailable` for the whole batch when
Redis cannot be reached — a command may then have run or not, as with any client).
Commands of one job run in the order it awaited them. Cancellation as for
`ctx.run_blocking`: a command not yet sent is dropped, a sent one completes.

Replies are decoded to str (the daemon's client settings: decode_responses).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import outcome

from fleetd.backend.redis_link import RedisCommandError, RedisLink
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

    def __init__(self, daemon_link: RedisLink) -> None:
        self._daemon_link = daemon_link
        self._link: RedisLink | None = None
        self._executor = BlockingExecutor(self._run_pipeline)

    @property
    def executor(self) -> BlockingExecutor:
        return self._executor

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

    # -- commands ----------------------------------------------------------------------

    async def execute(self, *args: Any) -> Any:
        """Any Redis command, e.g. `await ctx.redis.execute("PFADD", key, member)`."""
        if self._link is None:
            self._own_link()  # on the trio thread: RedisLink makes trio objects
        return await self._executor.run(_noop, *args)

    async def get(self, key: str) -> str | None:
        reply: str | None = await self.execute("GET", key)
        return reply

    async def set(self, key: str, value: str | int | float, *, ex: float | None = None) -> bool:
        """SET; `ex` is an expiry in seconds (sent as PX, in ms)."""
        extra = () if ex is None else ("PX", int(ex * 1000))
        return bool(await self.execute("SET", key, value, *extra))

    async def incr(self, key: str, amount: int = 1) -> int:
        reply: int = await self.execute("INCRBY", key, amount)
        return reply

    async def delete(self, *keys: str) -> int:
        reply: int = await self.execute("DEL", *keys)
        return reply

    async def expire(self, key: str, seconds: float) -> bool:
        return bool(await self.execute("PEXPIRE", key, int(seconds * 1000)))

    async def hget(self, key: str, field: str) -> str | None:
        reply: str | None = await self.execute("HGET", key, field)
        return reply

    async def hset(self, key: str, mapping: dict[str, str | int | float]) -> int:
        flat = [x for pair in mapping.items() for x in pair]
        reply: int = await self.execute("HSET", key, *flat)
        return reply
