"""`ctx.redis` (fleetd.jobs.handler_redis) against the real test redis-server, on both
its paths (the shared connection of a direct server, and the batched thread hop that
Sentinel, Cluster and TLS take): the commands of concurrent jobs pipelined into few
round trips, per-command errors, order within a job, cancellation, blocking commands
kept off the shared connection, commands that change a connection refused; and
ctx.run_blocking / ctx.redis in fleetd.testing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from conftest import make_config
from pool import registry_with, running_pool
from redis_server import RedisServerFactory

from fleetd import HandlerDefaults, JobContext, JobHandler
from fleetd.backend.redis_link import RedisCommandError, RedisLink
from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.handler_redis import HandlerRedis
from fleetd.jobs.model import JobStatus
from fleetd.testing import Harness


@pytest.fixture(params=["pipe", "threaded"])
async def facade(redis_url: str, request: pytest.FixtureRequest) -> AsyncIterator[HandlerRedis]:
    link = RedisLink(redis_url)
    handler_redis = HandlerRedis(link)
    assert handler_redis.pipe is not None  # a direct server
    if request.param == "threaded":
        handler_redis._pipe = None  # as on Sentinel, Cluster or TLS
    yield handler_redis
    handler_redis.close()
    link.close()


@pytest.fixture
async def piped(redis_url: str) -> AsyncIterator[HandlerRedis]:
    link = RedisLink(redis_url)
    handler_redis = HandlerRedis(link)
    yield handler_redis
    handler_redis.close()
    link.close()


def key(namespace: str, name: str) -> str:
    return f"fleetd:{{{namespace}}}:test:{name}"  # deleted with the namespace


async def test_concurrent_commands_are_pipelined(facade: HandlerRedis, namespace: str) -> None:
    counter = key(namespace, "counter")
    got: list[int] = []

    async def job() -> None:
        got.append(await facade.incr(counter))

    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(job)
    assert sorted(got) == list(range(1, 51))
    assert await facade.get(counter) == "50"
    if facade.pipe is not None:
        assert facade.executor.calls == 0  # no thread hop at all
        assert facade.pipe.commands == 51
        assert facade.pipe.writes <= 6  # 50 jobs, a handful of writes
    else:
        assert facade.executor.calls == 51
        assert facade.executor.hops <= 6  # 50 jobs, a handful of round trips


async def test_an_error_reply_fails_its_own_command_only(
    facade: HandlerRedis, namespace: str
) -> None:
    a_hash, counter = key(namespace, "hash"), key(namespace, "n")
    await facade.hset(a_hash, {"f": "v"})
    got: dict[str, Any] = {}

    async def incr(name: str, k: str) -> None:
        try:
            got[name] = await facade.incr(k)
        except RedisCommandError as exc:
            got[name] = exc

    async with trio.open_nursery() as nursery:
        nursery.start_soon(incr, "ok1", counter)
        nursery.start_soon(incr, "bad", a_hash)
        nursery.start_soon(incr, "ok2", counter)
    assert isinstance(got["bad"], RedisCommandError)
    assert "WRONGTYPE" in str(got["bad"])
    assert sorted([got["ok1"], got["ok2"]]) == [1, 2]
    assert await facade.hget(a_hash, "f") == "v"


async def test_commands_of_one_job_keep_their_order(facade: HandlerRedis, namespace: str) -> None:
    async def job(i: int) -> None:
        for k in range(5):
            await facade.execute("RPUSH", key(namespace, f"list{i}"), k)

    async with trio.open_nursery() as nursery:
        for i in range(10):
            nursery.start_soon(job, i)
    for i in range(10):
        assert await facade.execute("LRANGE", key(namespace, f"list{i}"), 0, -1) == list("01234")


async def test_cancel_drops_a_queued_command(
    facade: HandlerRedis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The threaded path (the shared connection's: tests/backend/test_shared_pipe.py)."""
    facade._pipe = None
    counter, empty = key(namespace, "c"), key(namespace, "empty")
    # No extra lane for a slow batch here: on a loaded machine the BLPOP below can
    # outlast SLOW_BATCH before the INCR is queued, and the INCR would then run at once.
    monkeypatch.setattr(facade.executor, "_slow", 3600.0)
    async with trio.open_nursery() as nursery:
        # BLPOP on an empty list holds its batch (and its connection) for 0.5 s.
        nursery.start_soon(facade.execute, "BLPOP", empty, 0.5)
        await trio.testing.wait_all_tasks_blocked()  # the BLPOP's batch is running
        with trio.move_on_after(0.005) as scope:
            await facade.incr(counter)
        assert scope.cancelled_caught
    assert await facade.get(counter) is None  # never sent
    with trio.CancelScope() as cancelled:
        cancelled.cancel()
        await facade.incr(counter)
    assert await facade.get(counter) is None


async def test_set_with_expiry_delete_and_expire(facade: HandlerRedis, namespace: str) -> None:
    k = key(namespace, "s")
    assert await facade.set(k, "v", ex=30)
    assert 0 < await facade.execute("PTTL", k) <= 30_000
    assert await facade.expire(k, 60)
    assert await facade.delete(k) == 1
    assert await facade.get(k) is None


async def test_a_blocking_command_does_not_hold_up_other_jobs(
    piped: HandlerRedis, namespace: str
) -> None:
    waiting, counter = key(namespace, "waiting"), key(namespace, "n")
    popped: list[Any] = []

    async def pop() -> None:
        popped.append(await piped.execute("BLPOP", waiting, 30))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pop)
        await trio.testing.wait_all_tasks_blocked()  # the BLPOP waits server-side
        # Another job's commands are served meanwhile: the BLPOP is on a connection of
        # its own (the threaded path), not the shared one.
        assert await piped.incr(counter) == 1
        assert popped == []
        assert await piped.execute("RPUSH", waiting, "x") == 1
    assert popped == [(waiting, "x")]
    assert piped.executor.calls == 1  # the BLPOP
    assert piped.pipe is not None and piped.pipe.commands == 2


@pytest.mark.parametrize(
    "args",
    [("MULTI",), ("WATCH", "k"), ("SELECT", 3), ("SUBSCRIBE", "ch"), ("client", "reply", "off")],
)
async def test_commands_that_change_the_connection_are_refused(
    facade: HandlerRedis, args: tuple[Any, ...]
) -> None:
    with pytest.raises(RedisCommandError, match="no transactions"):
        await facade.execute(*args)
    assert facade.executor.calls == 0
    assert facade.pipe is None or facade.pipe.commands == 0  # nothing was sent
    assert await facade.execute("PING") is True  # and the connections are as they were


class _Counts(JobHandler):
    job_type = "counts"
    defaults = HandlerDefaults()

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        n = await ctx.redis.incr(data["key"])
        if data.get("pause"):
            await trio.sleep(data["pause"])
            await ctx.redis.incr(data["key"])
        return {"n": n}


async def _drain(engine: Engine, n: int, limit: float) -> dict[str, int]:
    with trio.fail_after(limit):
        while (st := await engine.queue.stats())["completed"] + st["failed"] < n:
            await trio.sleep(0.05)
    return st


async def test_the_jobs_of_a_worker_pool_share_the_connection(
    config: Config, namespace: str
) -> None:
    counter = key(namespace, "pool")
    async with running_pool(config, registry_with(_Counts()), concurrency=20) as (engine, pool):
        acked = await engine.queue.enqueue_many(
            [{"type": "counts", "data": {"key": counter}}] * 100
        )
        st = await _drain(engine, 100, 20)
        jobs = [await engine.queue.get(r.job_id) for r in acked]
        handler_redis = pool._handler_redis
        assert handler_redis.pipe is not None
        assert handler_redis.pipe.commands == 100
        assert handler_redis.executor.calls == 0  # no thread hop
    assert st["completed"] == 100
    assert sorted(j.result["n"] for j in jobs if j is not None and j.result) == list(range(1, 101))


@pytest.mark.slow
async def test_jobs_survive_a_redis_restart_under_the_shared_connection(
    own_redis: RedisServerFactory, namespace: str, tmp_path: Path
) -> None:
    """Jobs whose command meets Redis gone fail that attempt (RedisUnavailable) and are
    retried; their retries' commands go on a new connection."""
    server = own_redis(aof=True)
    cfg = make_config(server.url, namespace, tmp_path / "state")
    counter = key(namespace, "restart")
    jobs = [{"type": "counts", "data": {"key": counter, "pause": 0.5}}] * 20

    def counted() -> int:
        reply = server.command("GET", counter)
        return int(reply) if isinstance(reply, bytes) else 0

    async with running_pool(cfg, registry_with(_Counts()), concurrency=20) as (engine, _pool):
        acked = await engine.queue.enqueue_many(jobs)
        with trio.fail_after(10):
            while counted() < 20:  # every job sent its first INCR and sleeps
                await trio.sleep(0.01)
        await trio.to_thread.run_sync(server.stop)
        await trio.sleep(0.8)  # their second INCR meets Redis gone
        await trio.to_thread.run_sync(server.start)
        st = await _drain(engine, 20, 30)
        done = [await engine.queue.get(r.job_id) for r in acked]
    assert st["completed"] == 20, st
    for job in done:
        assert job is not None and job.status is JobStatus.COMPLETED
        assert job.attempts >= 2  # the attempt that met the outage failed
    assert counted() >= 60  # 2 INCRs an attempt; one that failed may have run


class _UsesBoth(JobHandler):
    job_type = "uses_both"
    defaults = HandlerDefaults()

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        doubled = await ctx.run_blocking(lambda x: x * 2, data["n"])
        visits = await ctx.redis.incr("visits")
        return {"doubled": doubled, "visits": visits}


async def test_the_harness_supports_run_blocking_and_redis(tmp_path: Path) -> None:
    with Harness([_UsesBoth()], tmp_path=tmp_path) as harness:
        assert await harness.run("uses_both", {"n": 21}) == {"doubled": 42, "visits": 1}
        assert await harness.run("uses_both", {"n": 1}) == {"doubled": 2, "visits": 2}
