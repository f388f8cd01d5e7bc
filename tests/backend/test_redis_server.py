"""The test Redis helper and fixtures, exercised against real redis-server processes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_server import (
    SHARED_REDIS_PORT,
    RedisServer,
    RedisServerFactory,
    RedisStartError,
    RespError,
)


def test_start_answers_ping(own_redis: RedisServerFactory) -> None:
    server = own_redis()
    assert server.running
    assert server.ping()
    assert server.port != SHARED_REDIS_PORT
    assert server.url == f"redis://127.0.0.1:{server.port}/0"


def test_session_fixtures(redis_server: RedisServer, redis_url: str, namespace: str) -> None:
    assert redis_url == redis_server.url
    assert redis_server.port != SHARED_REDIS_PORT
    assert re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", namespace)


def test_resp_client_replies(redis_server: RedisServer, namespace: str) -> None:
    key = f"fleetd:{{{namespace}}}:k"
    assert redis_server.command("SET", key, "héllo") == "OK"
    assert redis_server.command("GET", key) == "héllo".encode()
    assert redis_server.command("GET", f"{key}:missing") is None
    assert redis_server.command("INCR", f"{key}:n") == 1
    assert redis_server.command("RPUSH", f"{key}:list", b"\r\n", 3) == 2
    assert redis_server.command("LRANGE", f"{key}:list", 0, -1) == [b"\r\n", b"3"]
    with pytest.raises(RespError, match="WRONGTYPE"):
        redis_server.command("INCR", f"{key}:list")
    with redis_server.connect() as conn:  # the connection survives an error reply
        with pytest.raises(RespError, match="unknown command"):
            conn.command("NO-SUCH-COMMAND")
        assert conn.command("PING") == "PONG"


def test_restart_with_aof_keeps_key(own_redis: RedisServerFactory) -> None:
    server = own_redis(aof=True)
    port = server.port
    server.command("SET", "k", "v")
    server.restart()
    assert server.port == port
    assert server.command("GET", "k") == b"v"


def test_restart_without_aof_loses_key(own_redis: RedisServerFactory) -> None:
    server = own_redis()
    server.command("SET", "k", "v")
    server.restart()
    assert server.command("GET", "k") is None


def test_kill_then_start_again(own_redis: RedisServerFactory) -> None:
    server = own_redis(aof=True)
    port = server.port
    server.command("SET", "k", "v")
    server.kill()
    assert not server.running
    assert not server.ping()
    server.start()
    assert server.port == port
    # appendfsync always: a write acknowledged before the crash is on disk.
    assert server.command("GET", "k") == b"v"


def test_two_servers_get_different_ports(own_redis: RedisServerFactory) -> None:
    assert own_redis().port != own_redis().port


def test_password(own_redis: RedisServerFactory) -> None:
    server = own_redis(password="p@ss word")
    assert server.ping()
    assert server.url == f"redis://:p%40ss%20word@127.0.0.1:{server.port}/0"
    anonymous = RedisServer(server.workdir, port=server.port)
    with pytest.raises(RespError, match="NOAUTH"):
        anonymous.command("GET", "k")


def test_context_manager_stops(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as server:
        assert server.ping()
    assert not server.running
    assert not server.ping()


def test_bad_config_raises_with_log_tail(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, extra_args=["--no-such-directive", "x"])
    with pytest.raises(RedisStartError, match="Bad directive"):
        server.start()
    assert not server.running


def test_taken_port_is_not_mistaken_for_ours(own_redis: RedisServerFactory, tmp_path: Path) -> None:
    # The other server answers PONG on that port; start() must still notice its
    # own process failed to bind rather than adopt a stranger.
    other = own_redis()
    server = RedisServer(tmp_path / "late", port=other.port)
    with pytest.raises(RedisStartError, match="Address already in use"):
        server.start()
    assert not server.running
    assert other.ping()


def test_shared_redis_port_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shared Redis"):
        RedisServer(tmp_path, port=SHARED_REDIS_PORT)


def test_delete_matching_pages_through_scan(own_redis: RedisServerFactory) -> None:
    server = own_redis()
    # 2,500 keys: more than one SCAN page of 1,000.
    server.command("MSET", *(x for i in range(2500) for x in (f"a:{i}", "v")))
    server.command("SET", "b:0", "v")
    assert server.delete_matching("a:*") == 2500
    assert server.command("DBSIZE") == 1


def _keys(namespace: str) -> tuple[list[str], list[str]]:
    """Keys inside ``namespace``, and neighbours that merely look alike."""
    own = [f"fleetd:{{{namespace}}}:{name}" for name in ("a", "b:c", "*")]
    neighbours = [
        f"fleetd:{{{namespace}x}}:a",  # a namespace that extends ours
        f"fleetd:{{{namespace}}}",  # no trailing colon
        f"fleetd:{namespace}:a",  # no hash-tag braces
        f"other:{{{namespace}}}:a",
    ]
    return own, neighbours


@pytest.fixture
def after_namespace_teardown(redis_server: RedisServer) -> Iterator[list[str]]:
    """Requested before ``namespace``, so torn down after it: checks what it deleted."""
    namespaces: list[str] = []
    yield namespaces
    for name in namespaces:
        own, neighbours = _keys(name)
        try:
            assert redis_server.command("EXISTS", *own) == 0
            assert redis_server.command("EXISTS", *neighbours) == len(neighbours)
        finally:
            redis_server.command("DEL", *neighbours)


def test_namespace_teardown_deletes_only_its_keys(
    after_namespace_teardown: list[str], namespace: str, redis_server: RedisServer
) -> None:
    own, neighbours = _keys(namespace)
    redis_server.command("MSET", *(x for key in own + neighbours for x in (key, "v")))
    after_namespace_teardown.append(namespace)
