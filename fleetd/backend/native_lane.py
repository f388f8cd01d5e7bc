"""Redis commands sent from the trio thread itself, for the latency-critical few: no
thread hop.

Owns: for a direct server (`redis://`, `unix://`), a few trio streams speaking RESP2,
with hiredis — the parser redis-py itself uses here — packing the commands
(`hiredis.pack_command`) and parsing the replies (`hiredis.Reader`, UTF-8 with
surrogateescape, as the daemon's client decodes), and redis-py's own RESP2 reply
callbacks applied per command, so a reply reads as through fleetd.backend.redis_link.

Why: every other Redis call takes a worker thread (redis_link), which costs little CPU
but latency: on the 2-core box a PING took 236 µs p50 through a thread hop and 63 µs
from the trio thread, and a bypassed job's `land.lua` round trip ~830 µs in all
(hops, and the worker thread waiting for the GIL to read its reply). Used where a
request waits on one script: the start of a bypassed critical job
(fleetd.runtime.inline), and a worker pool's claims and wake-up waits when no
outcomes ride with them (fleetd.runtime.claims). `ctx.redis` has a connection of
its own that many tasks share (fleetd.backend.shared_pipe), opened and read the way
this module does it (`connect`, `parsed`, `means_unavailable`).

What it is not: a general client. No transactions, no pub/sub, no script loading (an
EVALSHA whose script Redis forgot answers NOSCRIPT: the caller retries through
redis_link, which loads it), no Sentinel, Cluster, TLS or embedded store — those keep
redis_link's threaded client (`NativeLane.supports(url)` says which). Commands of one
`pipeline()` call go out in one write on one connection and their replies come back
in order; a connection is used by one pipeline at a time.

Errors: an error reply is returned in its command's place (a `hiredis.ReplyError`);
an argument hiredis cannot send (None, a bool, a dict) is a TypeError in its own
command's place, never sent; a connection that cannot be opened, breaks, or does not
answer within the command timeout raises RedisUnavailable for the whole pipeline
(whose commands may have run or not, as with any client) and is dropped — the next
pipeline opens a new one. So does an error reply that redis-py's client reads as
Redis being unreachable for now (LOADING after a restart, READONLY after a failover,
MASTERDOWN, TRYAGAIN, OOM…: fleetd.backend.redis_errors), as
the threaded client does.

Lifecycle: made on the trio thread (nothing connects until the first pipeline);
`close()` closes the idle connections (sync: the worker pool's teardown calls it).
"""

from __future__ import annotations

import select
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
import redis
import trio
from redis._parsers import _RESP2Parser
from redis.connection import parse_url

from fleetd.backend.redis_errors import (
    UNAVAILABLE_ERRORS,
    RedisCommandError,
    RedisUnavailable,
    refuses_writes,
)

__all__ = [
    "Connection",
    "NativeLane",
    "connect",
    "direct_options",
    "means_unavailable",
    "parsed",
    "raise_unless_forgotten",
]

# As fleetd.backend.redis_link.RedisLink's defaults.
CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 10.0
READ_SIZE = 65536

# redis-py's reading of an error reply (LOADING -> BusyLoadingError, ...): an error that
# means "Redis is not reachable right now" to the threaded client means it here too.
_ERRORS: Any = _RESP2Parser(READ_SIZE)  # type: ignore[no-untyped-call]

# redis-py's RESP2 reply callbacks (e.g. SET's "OK" -> True, HGETALL -> dict), keyed by
# upper-case command name: what a reply becomes through redis-py's own client.
_CALLBACKS: dict[str, Callable[..., Any]] = {
    str(name).upper(): fn
    for name, fn in redis.Redis(protocol=2, decode_responses=True).response_callbacks.items()
}


class Connection:
    __slots__ = ("reader", "stream")

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.reader = hiredis.Reader(encoding="utf-8", errors="surrogateescape")

    async def exchange(self, payload: bytes, replies: int) -> list[Any]:
        await self.stream.send_all(payload)
        got: list[Any] = []
        reader = self.reader
        while len(got) < replies:
            data = await self.stream.receive_some(READ_SIZE)
            if not data:
                raise ConnectionResetError("Redis closed the connection")
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                got.append(reply)
        return got

    def stale(self) -> bool:
        """An idle connection with something to read is unusable: Redis closed it (a
        restart, its `timeout`) or it holds a reply nobody waits for."""
        readable, _, _ = select.select([self.stream.socket.fileno()], [], [], 0)
        return bool(readable)

    def close(self) -> None:
        self.stream.socket.close()


def raise_unless_forgotten(script: str, reply: Exception) -> None:
    """An EVALSHA's error reply: return when Redis forgot the script (NOSCRIPT: nothing
    ran; the caller goes through the threaded client, which loads it), else raise it as
    the threaded client would, RedisCommandError."""
    if not isinstance(_ERRORS.parse_error(str(reply)), redis.exceptions.NoScriptError):
        raise RedisCommandError(f"{script}: {reply}")


class NativeLane:
    """A few trio connections to one Redis server for pipelines of plain commands."""

    def __init__(
        self,
        url: str,
        *,
        max_idle: int = 4,
        connect_timeout: float = CONNECT_TIMEOUT,
        command_timeout: float = COMMAND_TIMEOUT,
    ) -> None:
        self._options = direct_options(url)
        self._max_idle = max_idle
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._idle: list[Connection] = []

    @staticmethod
    def supports(url: str) -> bool:
        return url.startswith(("redis://", "unix://"))

    async def pipeline(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Each command's reply (callbacks applied) or error, in order; RedisUnavailable
        when Redis cannot be reached or the connection breaks."""
        packed: list[bytes] = []
        results: list[Any] = [None] * len(commands)
        sent: list[int] = []  # indexes of the commands that go out
        for i, command in enumerate(commands):
            try:
                packed.append(hiredis.pack_command(tuple(command)))
            except TypeError as exc:
                results[i] = TypeError(f"{command[0]}: {exc}")
                continue
            sent.append(i)
        if not packed:
            return results
        conn = self._reuse() or await connect(self._options, self._connect_timeout)
        try:
            with trio.fail_after(self._command_timeout):
                replies = await conn.exchange(b"".join(packed), len(packed))
        except BaseException as exc:
            conn.close()  # its replies are out of step now, or it is broken
            if isinstance(exc, (OSError, trio.BrokenResourceError, trio.TooSlowError)):
                raise RedisUnavailable(f"Redis connection lost: {exc!r}") from exc
            if isinstance(exc, hiredis.ProtocolError):
                raise RedisUnavailable(f"Redis protocol error: {exc}") from exc
            raise
        if len(self._idle) < self._max_idle:
            self._idle.append(conn)
        else:
            conn.close()
        for i, reply in zip(sent, replies, strict=True):
            if isinstance(reply, Exception):
                if means_unavailable(reply):
                    raise RedisUnavailable(f"Redis answered {reply}")
                results[i] = reply
            else:
                results[i] = parsed(commands[i], reply)
        return results

    def _reuse(self) -> Connection | None:
        """An idle connection still open (checked before anything is sent on it)."""
        while self._idle:
            conn = self._idle.pop()
            if not conn.stale():
                return conn
            conn.close()
        return None

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def direct_options(url: str) -> dict[str, Any]:
    """redis-py's reading of a direct server's URL (host, port or path, user, password,
    db), for `connect`; ValueError for any other kind (NativeLane.supports)."""
    if not NativeLane.supports(url):
        raise ValueError(f"not a direct redis:// or unix:// URL: {url!r}")
    options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
    return options


async def connect(options: dict[str, Any], connect_timeout: float) -> Connection:
    """A new connection to the server of `options` (redis-py's parse_url of the URL),
    AUTH and SELECT sent as redis-py sends them; RedisUnavailable when it cannot be
    opened or Redis refuses it within `connect_timeout`."""
    try:
        with trio.fail_after(connect_timeout):
            if "path" in options:
                stream = await trio.open_unix_socket(options["path"])
            else:
                stream = await trio.open_tcp_stream(
                    options.get("host", "localhost"), int(options.get("port", 6379))
                )
            conn = Connection(stream)
            hello = _handshake(options)
            if hello:
                try:
                    replies = await conn.exchange(
                        b"".join(hiredis.pack_command(c) for c in hello), len(hello)
                    )
                except BaseException:
                    conn.close()
                    raise
                refused = [r for r in replies if isinstance(r, Exception)]
                if refused:
                    conn.close()
                    # "connecting to": nothing was sent (fleetd.spool.outage.may_have_run).
                    raise RedisUnavailable(
                        f"Redis refused the connection while connecting to it: {refused[0]}"
                    )
            return conn
    except (OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
        # "connecting to", as redis-py says it: the command never left this process
        # (fleetd.spool.outage.may_have_run).
        raise RedisUnavailable(f"error connecting to Redis: {exc!r}") from None


def _handshake(options: dict[str, Any]) -> list[tuple[Any, ...]]:
    """AUTH and SELECT, as redis-py sends them on a new connection."""
    hello: list[tuple[Any, ...]] = []
    if options.get("password") is not None:
        user = options.get("username")
        auth = (user, options["password"]) if user else (options["password"],)
        hello.append(("AUTH", *auth))
    if int(options.get("db") or 0):
        hello.append(("SELECT", int(options["db"])))
    return hello


def means_unavailable(reply: Exception) -> bool:
    """An error reply redis-py's client reads as Redis unreachable for now (LOADING,
    READONLY, MASTERDOWN, TRYAGAIN, OOM…), not as a fault of the command."""
    error = _ERRORS.parse_error(str(reply))
    return isinstance(error, UNAVAILABLE_ERRORS) or refuses_writes(error)


def parsed(command: Sequence[Any], reply: Any) -> Any:
    """A command's reply as redis-py's client returns it (its RESP2 callback applied)."""
    callback = _CALLBACKS.get(str(command[0]).upper())
    return reply if callback is None else callback(reply)
