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

import dataclasses
import itertools
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from daemons import Fleet
from redis_server import RedisServer, RedisServerFactory

from fleetd.config import Config
from fleetd.engine import Engine

# Mirrors fleetd's key layout, ``fleetd:{<namespace>}:<name>``: the braces make the
# namespace a Redis Cluster hash tag and stop ``{t1}`` from matching ``{t12}``.
# Spelled out here rather than imported so fixtures do not depend on the code under test.
NAMESPACE_KEY_PATTERN = "fleetd:{{{namespace}}}:*"
# ...and a queue's own slot, ``fleetd:{<namespace>/<queue>}:<name>``.
QUEUE_SPACE_KEY_PATTERN = "fleetd:{{{namespace}/*}}:*"


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
    redis_server.delete_matching(QUEUE_SPACE_KEY_PATTERN.format(namespace=name))


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


# --- fleetd fixtures ----------------------------------------------------------------


def make_config(
    redis_url: str, namespace: str, state_dir: Path, **sections: dict[str, Any]
) -> Config:
    """A Config for `redis_url` and `namespace`, with per-section overrides, e.g.
    ``make_config(url, ns, tmp, worker={"lease": 2.0})`` (durations in seconds)."""
    cfg = Config.default()
    cfg = dataclasses.replace(
        cfg,
        redis=dataclasses.replace(cfg.redis, url=redis_url, namespace=namespace),
        daemon=dataclasses.replace(cfg.daemon, state_dir=str(state_dir)),
        # A free port: tests (and other people's daemons) run side by side on one host.
        http=dataclasses.replace(cfg.http, listen=("127.0.0.1:0",)),
    )
    for name, changes in sections.items():
        cfg = dataclasses.replace(cfg, **{name: dataclasses.replace(getattr(cfg, name), **changes)})
    return cfg


@pytest.fixture
def config(redis_url: str, namespace: str, tmp_path: Path) -> Config:
    """Defaults, pointed at the shared test redis-server under this test's namespace."""
    return make_config(redis_url, namespace, tmp_path / "state")


@pytest.fixture
def engine(config: Config) -> Iterator[Engine]:
    """The core objects (link, scripts loaded, queue ops) for `config`, client side."""
    eng = Engine.build(config, daemon=True)
    for script in eng.scripts.all():
        script.load(eng.link.client)
    yield eng
    eng.close()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """`fleetd run` subprocesses started on demand, all stopped at teardown."""
    daemons = Fleet(tmp_path / "daemons")
    try:
        yield daemons
    finally:
        daemons.close()


def fleetd_env(cfg: Config) -> dict[str, str]:
    """Environment for a `fleetd` subprocess that uses `cfg`'s Redis, namespace and state."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETD_")}
    env.update(
        FLEETD_REDIS_URL=cfg.redis.url,
        FLEETD_REDIS_NAMESPACE=cfg.redis.namespace,
        FLEETD_DAEMON_STATE_DIR=str(cfg.state_dir),
        FLEETD_HTTP_LISTEN=",".join(cfg.http.listen),
        FLEETD_CONFIG=str(Path(__file__).parent / "empty.toml"),
    )
    return env
