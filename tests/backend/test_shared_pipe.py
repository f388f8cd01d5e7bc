"""fleetd.backend.shared_pipe against real redis-servers: many tasks' commands share
writes, replies read as redis-py's client reads them, per-command errors, what
cancellation withdraws and what it lets finish, a silent, closed or absent server
(RedisUnavailable for every command concerned, then a new connection), AUTH and
SELECT, and which commands it refuses or leaves to another connection."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from redis_server import RedisServer, RedisServerFactory, free_port

from fleetd.backend.redis_link import RedisCommandError, RedisUnavailable
from fleetd.backend.shared_pipe import ELSEWHERE, PIPE, REFUSED, SharedPipe, route
from fleetd.spool.outage import may_have_run

# Keeps Redis busy for ARGV[1] ms (by its own clock), then INCRs KEYS[1]: a command
# whose reply is late, for as long as a test needs.
BUSY = """
local t = redis.call('TIME')
local start = t[1] * 1000 + t[2] / 1000
repeat
  t = redis.call('TIME')
until t[1] * 1000 + t[2] / 1000 - start >= tonumber(ARGV[1])
return redis.call('INCR', KEYS[1])
"""


def key(namespace: str, name: str) -> str:
    return f"fleetd:{{{namespace}}}:test:{name}"  # deleted with the namespace


async def gather(*calls: tuple[Any, ...], pipe: SharedPipe) -> list[Any]:
    """Each command from a task of its own, started together: its reply or its error."""
    got: list[Any] = [None] * len(calls)

    async def one(i: int, args: tuple[Any, ...]) -> None:
        try:
            got[i] = await pipe.execute(*args)
        except Exception as exc:
            got[i] = exc

    async with trio.open_nursery() as nursery:
        for i, args in enumerate(calls):
            nursery.start_soon(one, i, args)
    return got


async def test_concurrent_commands_share_writes(redis_url: str, namespace: str) -> None:
    pipe = SharedPipe(redis_url)
    counter = key(namespace, "n")
    try:
        got = await gather(*[("INCR", counter)] * 50, pipe=pipe)
        assert sorted(got) == list(range(1, 51))
        assert pipe.commands == 50
        assert pipe.writes <= 5  # queued while the connection was busy: written together
        # One task's commands, one after the other, each in its own round trip.
        assert [await pipe.execute("INCR", counter) for _ in range(3)] == [51, 52, 53]
    finally:
        pipe.close()


async def test_replies_read_as_redis_py_reads_them(redis_url: str, namespace: str) -> None:
    pipe = SharedPipe(redis_url)
    h, s, t = key(namespace, "h"), key(namespace, "s"), key(namespace, "t")
    try:
        assert await pipe.execute("HSET", h, "a", "1", "b", "é") == 2
        assert await pipe.execute("SET", s, "v") is True
        # Commands of different tasks, whose order does not matter, written together.
        got = await gather(
            ("HGETALL", h), ("SET", s, "w", "NX"), ("GET", s), ("EXISTS", h, s),
            ("INCRBY", s, 1), ("SET", t, None), ("PING",),
            pipe=pipe,
        )  # fmt: skip
    finally:
        pipe.close()
    assert got[:4] == [{"a": "1", "b": "é"}, None, "v", 2]
    # An error reply, and an argument that cannot be sent, fail their own command only.
    assert isinstance(got[4], RedisCommandError) and "not an integer" in str(got[4])
    assert isinstance(got[5], RedisCommandError) and "SET" in str(got[5])
    assert got[6] is True
    assert pipe.commands == 8  # the SET with None was never sent


async def test_a_command_cancelled_before_it_is_written_is_withdrawn(
    redis_url: str, namespace: str
) -> None:
    pipe = SharedPipe(redis_url)
    busy, counter = key(namespace, "busy"), key(namespace, "c")
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pipe.execute, "EVAL", BUSY, 1, busy, 300)
            await trio.testing.wait_all_tasks_blocked()  # the EVAL is out, its reply due
            with trio.move_on_after(0.02) as scope:
                await pipe.execute("INCR", counter)  # queued behind it, not written
            assert scope.cancelled_caught
        assert await pipe.execute("GET", counter) is None  # never sent
        assert pipe.commands == 2  # the EVAL and the GET
    finally:
        pipe.close()


async def test_a_written_command_completes_when_its_caller_is_cancelled(
    redis_url: str, namespace: str
) -> None:
    pipe = SharedPipe(redis_url)
    busy, counter = key(namespace, "busy"), key(namespace, "c")
    got: dict[str, Any] = {}

    async def send(name: str, *args: Any) -> None:
        with trio.move_on_after(0.02):
            got[name] = await pipe.execute(*args)

    try:
        async with trio.open_nursery() as nursery:
            # Both written in one write: the EVAL's caller drives the connection, the
            # INCR's waits for its reply behind it. Both callers are cancelled meanwhile.
            nursery.start_soon(send, "driver", "EVAL", BUSY, 1, busy, 200)
            nursery.start_soon(send, "waiter", "INCR", counter)
        assert got == {"driver": 1, "waiter": 1}  # both ran and both replies came back
        assert pipe.writes == 1
        assert await pipe.execute("GET", counter) == "1"  # the connection is in step
    finally:
        pipe.close()


async def test_a_silent_server_fails_every_command_on_it_then_a_new_connection_serves(
    own_redis: RedisServerFactory,
) -> None:
    server = own_redis()
    pipe = SharedPipe(server.url, command_timeout=0.2)
    try:
        got = await gather(("EVAL", BUSY, 1, "busy", 600), ("INCR", "n"), pipe=pipe)
        assert all(isinstance(g, RedisUnavailable) for g in got)
        assert may_have_run(got[0])  # written: Redis may have run it
        await trio.sleep(0.6)  # the script is over
        # Its late reply would come on that connection: it was dropped, so the next
        # command's reply cannot be out of step.
        assert await pipe.execute("ECHO", "next") == "next"
        assert await pipe.execute("GET", "busy") == "1"
    finally:
        pipe.close()


async def test_a_connection_closed_under_a_round_trip_fails_its_commands(
    redis_url: str, namespace: str
) -> None:
    pipe = SharedPipe(redis_url)
    got: list[Any] = []

    async def send() -> None:
        busy = ("EVAL", BUSY, 1, key(namespace, "busy"), 200)
        got.extend(await gather(busy, ("INCR", key(namespace, "n")), pipe=pipe))

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            await trio.testing.wait_all_tasks_blocked()  # both written, replies due
            pipe.close()  # as a teardown would
        assert len(got) == 2 and all(isinstance(g, RedisUnavailable) for g in got), got
        await trio.sleep(0.3)  # the script is over
        # The replies due on the closed connection went with it: the next command goes
        # on a new one and gets its own reply.
        assert await pipe.execute("ECHO", "in step") == "in step"
    finally:
        pipe.close()


async def test_an_idle_connection_redis_closed_is_replaced(
    redis_server: RedisServer, namespace: str
) -> None:
    pipe = SharedPipe(redis_server.url)
    try:
        await pipe.execute("CLIENT", "SETNAME", f"pipe-{namespace}")
        redis_server.command("CLIENT", "KILL", "USER", "default")  # every client, ours too
        await trio.sleep(0.05)
        assert await pipe.execute("PING") is True  # no error: seen closed before a write
    finally:
        pipe.close()


async def test_nothing_listening_fails_every_queued_command_as_never_sent() -> None:
    pipe = SharedPipe(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=2)
    got = await gather(("PING",), ("INCR", "n"), pipe=pipe)
    for refused in got:
        assert isinstance(refused, RedisUnavailable)
        assert not may_have_run(refused)  # nothing left this process


async def test_auth_and_database_from_the_url(own_redis: RedisServerFactory) -> None:
    server = own_redis(password="s3cret:pw")
    pipe = SharedPipe(server.url.removesuffix("/0") + "/5")
    try:
        assert await pipe.execute("SET", "in-db-5", "yes") is True
    finally:
        pipe.close()
    with server.connect() as conn:
        conn.command("SELECT", "5")
        assert conn.command("GET", "in-db-5") == b"yes"
    wrong = SharedPipe(server.url.replace("s3cret%3Apw", "wrong"))
    with pytest.raises(RedisUnavailable, match="refused"):
        await wrong.execute("PING")


async def test_an_error_that_means_not_now_is_unavailable(own_redis: RedisServerFactory) -> None:
    primary = own_redis()
    replica = own_redis(extra_args=["--replicaof", "127.0.0.1", str(primary.port)])
    pipe = SharedPipe(replica.url)
    try:
        with pytest.raises(RedisUnavailable, match="READONLY"):
            await pipe.execute("SET", "k", "v")
        assert await pipe.execute("GET", "k") is None  # reads still answer
    finally:
        pipe.close()


@pytest.mark.parametrize(
    ("args", "way"),
    [
        (("GET", "k"), PIPE),
        (("xread", "COUNT", 5, "STREAMS", "s", "0"), PIPE),
        (("XREAD", "block", 100, "STREAMS", "s", "$"), ELSEWHERE),
        (("XREADGROUP", "GROUP", "g", "c", "BLOCK", 0, "STREAMS", "s", ">"), ELSEWHERE),
        (("BLPOP", "k", 1), ELSEWHERE),
        (("bzpopmin", "k", 1), ELSEWHERE),
        (("WAIT", 1, 100), ELSEWHERE),
        (("MULTI",), REFUSED),
        (("select", 2), REFUSED),
        (("SUBSCRIBE", "ch"), REFUSED),
        (("CLIENT", "REPLY", "OFF"), REFUSED),
        (("CLIENT", "SETNAME", "x"), PIPE),
    ],
)
def test_route(args: tuple[Any, ...], way: int) -> None:
    assert route(args) == way
