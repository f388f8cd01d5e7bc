"""fleetd.backend.native_lane against real redis-servers: replies read as redis-py's
client reads them, per-command errors, AUTH and SELECT, unix sockets, a broken or
silent connection raising RedisUnavailable (whose text tells whether the command may
have run: fleetd.spool.outage.may_have_run; a refused AUTH or no Sentinel primary has
not, through either client) and the next pipeline reconnecting."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from redis_server import RedisServer, RedisServerFactory, free_port

from fleetd.backend.native_lane import NativeLane
from fleetd.backend.redis_link import RedisLink, RedisUnavailable
from fleetd.spool.outage import may_have_run


def key(namespace: str, name: str) -> str:
    return f"fleetd:{{{namespace}}}:test:{name}"  # deleted with the namespace


async def test_replies_read_as_redis_py_reads_them(redis_url: str, namespace: str) -> None:
    lane = NativeLane(redis_url)
    h, s = key(namespace, "h"), key(namespace, "s")
    try:
        replies = await lane.pipeline(
            [
                ("HSET", h, "a", "1", "b", "é"),
                ("HGETALL", h),
                ("SET", s, "v"),
                ("SET", s, "w", "NX"),
                ("GET", s),
                ("EXISTS", h, s),
                ("INCRBY", s, 1),
            ]
        )
    finally:
        lane.close()
    assert replies[:6] == [2, {"a": "1", "b": "é"}, True, None, "v", 2]
    assert "not an integer" in str(replies[6])  # an error reply in its own place


async def test_an_argument_it_cannot_send_fails_its_own_command(
    redis_url: str, namespace: str
) -> None:
    lane = NativeLane(redis_url)
    try:
        replies = await lane.pipeline(
            [("SET", key(namespace, "x"), None), ("INCR", key(namespace, "n"))]
        )
    finally:
        lane.close()
    assert isinstance(replies[0], TypeError)
    assert replies[1] == 1


async def test_auth_and_database_from_the_url(own_redis: RedisServerFactory) -> None:
    server = own_redis(password="s3cret:pw")
    url = server.url.removesuffix("/0") + "/5"
    lane = NativeLane(url)
    try:
        assert await lane.pipeline([("SET", "in-db-5", "yes")]) == [True]
    finally:
        lane.close()
    with server.connect() as conn:
        conn.command("SELECT", "5")
        assert conn.command("GET", "in-db-5") == b"yes"
    wrong = NativeLane(server.url.replace("s3cret%3Apw", "wrong"))
    with pytest.raises(RedisUnavailable, match="refused") as refused:
        await wrong.pipeline([("PING",)])
    wrong.close()
    assert not may_have_run(refused.value)  # refused before the command was sent
    # The same through redis-py's client: its AuthenticationError.
    link = RedisLink(server.url.replace("s3cret%3Apw", "wrong"))
    try:
        with pytest.raises(RedisUnavailable) as refused:
            link.run_sync(lambda c: c.ping())
    finally:
        link.close()
    assert not may_have_run(refused.value)
    # Sentinel naming no primary: redis-py raises it before it sends anything.
    from redis.sentinel import MasterNotFoundError

    def no_primary(client: object) -> None:
        raise MasterNotFoundError("No master found for 'fleetd'")

    link = RedisLink(server.url)
    try:
        with pytest.raises(RedisUnavailable) as refused:
            link.run_sync(no_primary)
    finally:
        link.close()
    assert not may_have_run(refused.value)


async def test_a_unix_socket(tmp_path: Path) -> None:
    sock = tmp_path / "r.sock"
    server = RedisServer(
        tmp_path / "redis", extra_args=("--unixsocket", str(sock), "--unixsocketperm", "700")
    )
    server.start()
    try:
        lane = NativeLane(f"unix://{sock}?db=0")
        try:
            assert await lane.pipeline([("PING",), ("ECHO", "hi")]) == [True, "hi"]
        finally:
            lane.close()
    finally:
        server.stop()


async def test_nothing_listening_is_unavailable() -> None:
    lane = NativeLane(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=2)
    with pytest.raises(RedisUnavailable, match="connecting to") as refused:
        await lane.pipeline([("PING",)])
    assert not may_have_run(refused.value)  # nothing left this process


async def test_an_idle_connection_redis_closed_is_replaced(
    redis_server: RedisServer, namespace: str
) -> None:
    lane = NativeLane(redis_server.url)
    name = f"lane-{namespace}"
    try:
        await lane.pipeline([("CLIENT", "SETNAME", name)])
        redis_server.command("CLIENT", "KILL", "USER", "default")  # every client, ours too
        # The idle connection Redis closed is seen as closed before anything is sent on
        # it: a new one carries the command (no error, nothing that may have run twice).
        await trio.sleep(0.05)
        assert await lane.pipeline([("PING",)]) == [True]
    finally:
        lane.close()


async def test_a_silent_server_times_out_and_the_connection_is_dropped(
    redis_url: str, namespace: str
) -> None:
    lane = NativeLane(redis_url, command_timeout=0.2)
    try:
        with pytest.raises(RedisUnavailable, match="TooSlow") as silent:
            await lane.pipeline([("BLPOP", key(namespace, "empty"), 5)])
        assert may_have_run(silent.value)  # sent: Redis may have run it
        # The BLPOP's reply would arrive on that connection later: it was closed, so the
        # next pipeline's replies cannot be out of step.
        assert await lane.pipeline([("ECHO", "next")]) == ["next"]
    finally:
        lane.close()


async def test_an_error_that_means_not_now_is_unavailable_as_for_the_threaded_client(
    own_redis: RedisServerFactory,
) -> None:
    """A replica answers a write READONLY (as LOADING after a restart, MASTERDOWN…):
    redis-py's client raises a connection-class error for it, which fleetd reads as
    Redis away (RedisUnavailable), not as a bug in the command. The lane does too."""
    primary = own_redis()
    replica = own_redis(extra_args=["--replicaof", "127.0.0.1", str(primary.port)])
    link = RedisLink(replica.url)
    lane = NativeLane(replica.url)
    try:
        with pytest.raises(RedisUnavailable, match="READONLY"):
            await lane.pipeline([("SET", "k", "v")])
        with pytest.raises(RedisUnavailable):  # the threaded client, the same way
            await link.call(lambda c: c.set("k", "v"))
        assert await lane.pipeline([("GET", "k")]) == [None]  # reads still answer
    finally:
        lane.close()
        link.close()
