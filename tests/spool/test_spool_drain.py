"""When the API stops spooling, against real redis-server processes of the test's own:
with Redis back, a new enqueue waits for the replay instead of joining the spool
(held replay: answered only after it, and landing after every spooled job); under
steady load after an outage the spool empties and enqueues reach Redis again, every
spooled job landing before the jobs acknowledged after it; a daemon whose link is
still making its first connection at start-up does not spool an enqueue that Redis
answers within `[http] redis_timeout`; and a wait for the spool to empty ends as soon
as the link knows Redis is away.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import signal
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
import trio
from api_client import PREFIX, api_config, auth, running_api
from conftest import make_config
from redis_server import RedisServerFactory

from fleetd.backend.redis_link import RedisUnavailable
from fleetd.config import Config
from fleetd.engine import Engine, build_registry
from fleetd.jobs.context import JobContext
from fleetd.jobs.handlers import HandlerDefaults, JobHandler
from fleetd.jobs.parts import part_name
from fleetd.runtime.daemon import Daemon

LOAD_CLIENTS = 16
LOAD_SECONDS = 7.0
# The replayer retries every RETRY_CAP (2 s) at most while Redis is away: it knows
# Redis is back within that, then drains the spool in a few passes.
SETTLED = 4.0


class Answer(NamedTuple):
    sent: float
    answered: float
    status: int
    job_id: str


def sequences(cfg: Config, ids: list[str]) -> dict[str, float]:
    """Each pending noop job's ready score: the same priority, so its enqueue order."""
    engine = Engine.build(cfg, daemon=False)
    ready = engine.keys.ready(part_name("noop", None))
    try:
        scores = engine.link.run_sync(lambda c: c.zmscore(ready, ids))
    finally:
        engine.link.close()
    assert None not in scores, "a job is not pending"
    return dict(zip(ids, scores, strict=True))


async def test_under_steady_load_the_spool_empties_and_enqueues_reach_redis_again(
    own_redis: RedisServerFactory, tmp_path: Path
) -> None:
    server = own_redis(aof=True)
    cfg = api_config(make_config(server.url, "drain", tmp_path / "state"))
    answers: list[Answer] = []
    async with running_api(cfg) as api:  # no worker: the jobs stay pending, in order
        server.kill()
        for _ in range(30):
            r = await api.post(f"{PREFIX}/enqueue", json={"type": "noop"})
            assert r.status_code == 202, r.text
            answers.append(Answer(0.0, trio.current_time(), 202, r.json()["job_id"]))
        await trio.to_thread.run_sync(server.start)
        back = trio.current_time()

        async def client() -> None:
            while (sent := trio.current_time()) < back + LOAD_SECONDS:
                r = await api.post(f"{PREFIX}/enqueue", json={"type": "noop"})
                assert r.status_code in (201, 202), r.text
                answers.append(Answer(sent, trio.current_time(), r.status_code, r.json()["job_id"]))

        async with trio.open_nursery() as nursery:
            for _ in range(LOAD_CLIENTS):
                nursery.start_soon(client)
        health = (await api.get(f"{PREFIX}/worker/health")).json()
    late = [a for a in answers if a.sent > back + SETTLED]
    assert len(late) > 20, len(late)
    spooled_late = sum(a.status == 202 for a in late)
    assert spooled_late == 0, f"{spooled_late} of {len(late)} enqueues still spooled"
    assert health["spool"]["jobs"] == 0
    seq = await trio.to_thread.run_sync(sequences, cfg, [a.job_id for a in answers])
    last_spooled = max(a.answered for a in answers if a.status == 202)
    after = [seq[a.job_id] for a in answers if a.sent > last_spooled]
    spooled = [seq[a.job_id] for a in answers if a.status == 202]
    assert after and max(spooled) < min(after)  # acknowledged order kept across the replay


async def test_with_redis_back_an_enqueue_waits_for_the_replay_instead_of_joining_the_spool(
    own_redis: RedisServerFactory, tmp_path: Path
) -> None:
    """The replay is held (its lock taken, as by another process of the host) while
    Redis is back: a new enqueue is not answered until the replay ran, then lands after
    every spooled job."""
    server = own_redis(aof=True)
    # A wait long enough for a loaded machine: the point is that the enqueue waits.
    cfg = api_config(
        make_config(server.url, "held", tmp_path / "state", spool={"replay_interval": 0.05}),
        redis_timeout=10.0,
    )
    async with running_api(cfg) as api:
        spooler = api.daemon.engine.spooler
        assert spooler is not None
        server.kill()
        spooled = []
        for _ in range(30):
            r = await api.post(f"{PREFIX}/enqueue", json={"type": "noop"})
            assert r.status_code == 202, r.text
            spooled.append(r.json()["job_id"])
        lock = os.open(f"{spooler.spool.path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            await trio.to_thread.run_sync(server.start)
            with trio.fail_after(10):  # the replayer's pass reached Redis, and ran nothing
                while not spooler.link.ready:
                    await trio.sleep(0.02)
            assert spooler.jobs == 30
            answers: list[httpx.Response] = []

            async def post() -> None:
                answers.append(await api.post(f"{PREFIX}/enqueue", json={"type": "noop"}))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(post)
                await trio.sleep(0.4)
                assert not answers, answers[0].text  # waits: not spooled behind the 30
                fcntl.flock(lock, fcntl.LOCK_UN)
        finally:
            os.close(lock)
    [r] = answers
    assert r.status_code == 201, r.text
    seq = await trio.to_thread.run_sync(sequences, cfg, [*spooled, r.json()["job_id"]])
    assert max(seq[i] for i in spooled) < seq[r.json()["job_id"]]


class Quick(JobHandler):
    """A type that may run inline (sync_fallback)."""

    job_type = "quick"
    defaults = HandlerDefaults(sync_fallback=True)

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        return {}


async def test_an_enqueue_during_the_first_connection_waits_for_it_instead_of_spooling(
    own_redis: RedisServerFactory, tmp_path: Path
) -> None:
    """The API serves before the daemon reaches Redis; a link that has not answered yet
    is not a Redis known to be away: neither a plain enqueue nor a sync-fallback one
    (which would run inline) is taken for one made during an outage."""
    server = own_redis()
    cfg = api_config(make_config(server.url, "first", tmp_path / "state"), redis_timeout=10.0)
    cfg = dataclasses.replace(cfg, daemon=dataclasses.replace(cfg.daemon, roles=("api",)))
    registry = build_registry(cfg)
    registry.register(Quick(), source="tests")
    info = server.command("INFO", "server")
    pid = int(
        (info.decode() if isinstance(info, bytes) else str(info)).split("process_id:")[1].split()[0]
    )
    daemon = Daemon(cfg, registry=registry)
    answers: dict[str, httpx.Response] = {}
    os.kill(pid, signal.SIGSTOP)  # the first PING waits: accepted by the kernel, unanswered
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(daemon.run)
            with trio.fail_after(10):
                while daemon.http is None or not daemon.http.urls:
                    await trio.sleep(0.01)
            async with httpx.AsyncClient(base_url=daemon.http.urls[0], timeout=10) as client:

                async def post(body: dict[str, Any]) -> None:
                    r = await client.post(f"{PREFIX}/enqueue", json=body, headers=auth())
                    answers[body["type"]] = r

                async with trio.open_nursery() as requests:
                    requests.start_soon(post, {"type": "noop"})
                    requests.start_soon(post, {"type": "quick", "fallback": "sync"})
                    await trio.sleep(0.3)
                    assert not daemon.engine.link.ready and not answers
                    os.kill(pid, signal.SIGCONT)
            daemon.request_stop()
    finally:
        os.kill(pid, signal.SIGCONT)
    for job_type in ("noop", "quick"):
        r = answers[job_type]
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "pending", r.text


async def test_a_wait_for_the_spool_ends_as_soon_as_the_link_knows_redis_is_away(
    own_redis: RedisServerFactory, tmp_path: Path
) -> None:
    """Not at the caller's bound: an enqueue that waits for the replay is spooled at
    once when Redis turns out to be away (here the caller sets no bound at all)."""
    server = own_redis()
    engine = Engine.build(make_config(server.url, "away", tmp_path / "state"), daemon=True)
    spooler = engine.spooler
    assert spooler is not None
    try:
        await engine.link.connect(engine.scripts.all())
        await spooler.add([engine.ops.prepare({"type": "noop"})], door="http", subject="t")
        assert not spooler.clear_now()  # Redis answers, the spool holds a job
        answers: list[bool] = []
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:

                async def wait() -> None:
                    answers.append(await spooler.wait_clear())

                nursery.start_soon(wait)
                await trio.sleep(0.3)
                assert not answers  # no replayer runs: the spool stays as it is
                server.kill()
                with pytest.raises(RedisUnavailable):
                    await engine.link.call(lambda c: c.ping())
        assert answers == [False]
    finally:
        engine.close()


async def test_a_wait_for_a_spool_another_process_replays_ends_once_redis_is_away(
    own_redis: RedisServerFactory, tmp_path: Path
) -> None:
    """The replay lock is held elsewhere (another process of the host) and Redis goes
    away, with nothing else of this daemon calling Redis: the waiting enqueue wakes the
    replayer, whose pass asks Redis, so the wait ends long before the replay interval
    (30 s here) or any bound of the caller's (none)."""
    server = own_redis()
    cfg = make_config(server.url, "elsewhere", tmp_path / "state", spool={"replay_interval": 30.0})
    engine = Engine.build(cfg, daemon=True)
    spooler = engine.spooler
    assert spooler is not None
    lock = -1
    try:
        await engine.link.connect(engine.scripts.all())
        await spooler.add([engine.ops.prepare({"type": "noop"})], door="http", subject="t")
        lock = os.open(f"{spooler.spool.path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
        fcntl.flock(lock, fcntl.LOCK_EX)
        answers: list[bool] = []
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                await nursery.start(spooler.run)
                await trio.sleep(0.2)  # its first pass ran nothing: the lock is held
                assert not engine.link.down
                server.kill()
                answers.append(await spooler.wait_clear())
                nursery.cancel_scope.cancel()
        assert answers == [False]
        assert engine.link.down
    finally:
        if lock >= 0:
            os.close(lock)
        engine.close()
