"""The worker pool's claims (fleetd.runtime.claims) against the test redis-server: an
idle pool claims the job enqueued while it waits from the trio thread, with no thread
hop; the wait ends with a wake-up and its claim comes back in the same call; a stop
poke ends the wait with nothing claimed; a script Redis forgot is loaded by the
threaded client once and the claim goes on; any other error of claim.lua is the same
RedisCommandError on both paths; a pool on the embedded store claims through the
threaded client.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from conftest import make_config
from pool import DAEMON, registry_with, running_pool, wait_status

from fleetd.backend.codec import ClaimResult
from fleetd.backend.redis_link import RedisCommandError, RedisLink
from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.model import JobStatus
from fleetd.runtime.claims import Claims


class Hops:
    """Counts the threaded Redis calls of one link, by the function they run."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, link: RedisLink) -> None:
        self.names: list[str] = []
        call = link.call

        async def counted(fn: Any, *args: Any) -> Any:
            self.names.append(getattr(fn, "__name__", repr(fn)))
            return await call(fn, *args)

        monkeypatch.setattr(link, "call", counted)


def make_claims(engine: Engine, max_wait: float = 0.2) -> Claims:
    keys = engine.keys
    return Claims(
        engine.link, engine.scripts, _no_writer(), DAEMON, lease_ms=30_000,
        wake_keys=[keys.wake, keys.poke(DAEMON, "fetch")], max_wait=max_wait,
        command_timeout=5.0,
    )  # fmt: skip


def _no_writer() -> Any:
    class NoWriter:
        def write(self, client: Any, outcomes: Any) -> dict[str, list[int]]:
            raise AssertionError("no outcomes in these tests")

    return NoWriter()


async def test_an_idle_pool_claims_a_new_job_from_the_trio_thread(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_pool(config, registry_with()) as (engine, pool):
        hops = Hops(monkeypatch, pool.link)
        await trio.sleep(0.5)  # idle: claims that found nothing, then waits
        job = await engine.queue.enqueue({"type": "noop", "data": {}})
        await wait_status(engine, job.job_id, JobStatus.COMPLETED)
        await trio.sleep(0.3)
    claims = [n for n in hops.names if "claim" in n]
    assert claims == [], claims  # the completion went through the flusher's own hop


async def claim_while(claims: Claims, then: Callable[[], Awaitable[object]]) -> Any:
    """A claim with nothing ready, left waiting 0.3 s, then `then()`: the claim's answer."""
    got: list[Any] = []

    async def claim() -> None:
        got.append(await claims.claim(10, []))

    with trio.fail_after(4):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(claim)
            await trio.sleep(0.3)
            assert not got  # waiting for a wake-up token
            await then()
    return got[0]


async def test_the_wait_ends_with_a_wake_up_and_the_claim_comes_in_the_same_call(
    engine: Engine,
) -> None:
    claims = make_claims(engine, max_wait=5.0)
    enqueued = []

    async def enqueue() -> None:
        enqueued.append(await engine.queue.enqueue({"type": "noop", "data": {}}))

    try:
        written, result = await claim_while(claims, enqueue)
    finally:
        claims.close()
    assert written == {} and [j.id for j in result.jobs] == [enqueued[0].job_id]


async def test_a_stop_poke_ends_the_wait_and_nothing_is_claimed(engine: Engine) -> None:
    claims = make_claims(engine, max_wait=5.0)

    async def stop() -> None:
        claims.stop_flag.set()
        engine.link.client.lpush(engine.keys.poke(DAEMON, "fetch"), "stop")

    try:
        _, result = await claim_while(claims, stop)
    finally:
        claims.close()
    assert result.jobs == []


async def test_a_script_redis_forgot_is_loaded_through_the_thread_once(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    claims = make_claims(engine)
    hops = Hops(monkeypatch, engine.link)
    try:
        job = await engine.queue.enqueue({"type": "noop", "data": {}})
        engine.link.client.script_flush()
        _, result = await claims.claim(10, [])
        assert isinstance(result, ClaimResult) and [j.id for j in result.jobs] == [job.job_id]
        assert hops.names.count("_claim_or_wait") == 1
        job = await engine.queue.enqueue({"type": "noop", "data": {}})
        _, result = await claims.claim(10, [])  # loaded again: the trio thread's once more
        assert isinstance(result, ClaimResult) and [j.id for j in result.jobs] == [job.job_id]
        assert hops.names.count("_claim_or_wait") == 1
    finally:
        claims.close()


async def test_another_error_of_the_script_is_the_threaded_clients_error(
    engine: Engine,
) -> None:
    broken = engine.scripts.for_claims(None, "{not json")  # claim.lua decodes the limits
    errors = []
    for lane in (True, False):
        claims = Claims(
            engine.link, broken, _no_writer(), DAEMON, lease_ms=30_000,
            wake_keys=[engine.keys.wake], max_wait=0.1, command_timeout=5.0,
        )  # fmt: skip
        if not lane:  # as on a server the lane does not speak to
            claims.close()
            claims._lane = None
        try:
            with pytest.raises(RedisCommandError) as caught:
                await claims.claim(1, [])
            errors.append(str(caught.value))
        finally:
            claims.close()
    assert all("Expected" in e for e in errors), errors


async def test_an_embedded_store_claims_through_the_thread(
    namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = make_config("memory://", namespace, tmp_path / "s", redis={"memory_listen": ""})
    async with running_pool(cfg, registry_with()) as (engine, pool):
        hops = Hops(monkeypatch, pool.link)
        job = await engine.queue.enqueue({"type": "noop", "data": {}})
        await wait_status(engine, job.job_id, JobStatus.COMPLETED)
    assert "_write_then_claim" in hops.names
