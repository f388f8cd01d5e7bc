"""Shared fixtures: a real redis-server per session, per-test key namespaces.

Tests talk to a real ``redis-server`` started here on a free 127.0.0.1 port, never to
the machine's shared Redis on 6379. Tests share one server and are isolated by key
namespace rather than FLUSHALL, so they can run in parallel; tests that restart,
crash or reconfigure Redis ask ``own_redis`` for a server of their own.

Fixtures:
- ``redis_server`` (session): the shared ``RedisServer``, no AOF;
- ``redis_url``: its URL, ``redis://127.0.0.1:<port>/0``;
- ``namespace``: a fresh namespace per test; its keys are deleted afterwards;
- ``own_redis``: ``own_redis(aof=..., password=..., extra_args=...)`` returns a started
  private ``RedisServer``; all are stopped after the test.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import pytest
from redis_server import RedisServer, RedisServerFactory

# Mirrors fleetd's key layout, ``fleetd:{<namespace>}:<name>``: the braces make the
# namespace a Redis Cluster hash tag and stop ``{t1}`` from matching ``{t12}``.
# Spelled out here rather than imported so fixtures do not depend on the code under test.
NAMESPACE_KEY_PATTERN = "fleetd:{{{namespace}}}:*"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis-session")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def namespace(redis_server: RedisServer) -> Iterator[str]:
    # "t" + 32 hex digits: unique across workers and runs, within [A-Za-z0-9_.-]{1,64}.
    name = f"t{uuid.uuid4().hex}"
    yield name
    redis_server.delete_matching(NAMESPACE_KEY_PATTERN.format(namespace=name))


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServerFactory]:
    numbers = itertools.count()
    with ExitStack() as servers:  # stops every server even if one stop() raises

        def start(
            *,
            aof: bool = False,
            password: str | None = None,
            extra_args: Sequence[str] = (),
        ) -> RedisServer:
            workdir = tmp_path / f"redis-{next(numbers)}"
            server = RedisServer(workdir, aof=aof, password=password, extra_args=extra_args)
            servers.callback(server.stop)
            server.start()
            return server

        yield start
