"""Queues with a slot of their own (`[queues] own_slot`, fleetd.backend.spaces) against a
real Redis: a job of such a queue is stored under `{<namespace>/<queue>}`, found by id,
counted, listed (one newest-first order over every space, its cursor exact), cancelled,
reset and cleaned up like any other; a process whose config does not list the queue
still routes to and reads that space; quotas over a batch spanning spaces refuse all of
it; and a worker daemon serves the namespace's space and the queue's own, within one
concurrency, including a queue given a slot after it started."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
import trio
from api_client import PREFIX, Sleeper, api_config, running_api

from fleetd.backend.scripts import ClaimedJob
from fleetd.backend.spaces import Spaces
from fleetd.config import Config
from fleetd.config.limit_sections import LimitsConfig
from fleetd.config.queue_section import Served, _check_own_slot
from fleetd.engine import Engine, build_registry
from fleetd.jobs.errors import QuotaExceeded
from fleetd.jobs.model import JobStatus
from fleetd.jobs.pages import read_indexes
from fleetd.runtime import stacks

SLOTTED = ("bulk",)


def spread(config: Config, *queues: str) -> Config:
    return dataclasses.replace(config, queues=dataclasses.replace(config.queues, own_slot=queues))


@pytest.fixture
def eng(config: Config) -> Any:
    e = Engine.build(spread(config, *SLOTTED), daemon=True)
    for script in e.scripts.all():
        script.load(e.link.client)
    yield e
    e.close()


def enqueue(engine: Engine, reqs: Sequence[dict[str, Any]]) -> list[str]:
    rows = engine.ops.prepare_many(reqs)
    return [r.job_id for r in engine.ops.enqueue_rows(engine.link.client, rows)]


def status(engine: Engine, job_id: str) -> str:
    job = engine.link.run_sync(engine.ops.get, job_id)
    assert job is not None
    return job.status.value


def claim(engine: Engine, queue: str | None, count: int = 10) -> list[ClaimedJob]:
    """A claim in `queue`'s own space (None: the namespace's, serving default and bulk)."""
    c = engine.link.client
    space = engine.spaces.home if queue is None else engine.spaces.for_queue(c, queue)
    scripts = engine.worker_scripts(space)
    if queue is None:
        scripts = space.scripts.for_claims(None, "", Served.parse(["default", "bulk"]))
    return scripts.claim(c, count, 30_000, uuid.uuid4().hex, "d1").jobs


def test_a_slotted_queues_jobs_live_under_its_own_hash_tag(eng: Engine) -> None:
    c = eng.link.client
    bulk, plain = enqueue(eng, [{"type": "noop", "queue": "bulk"}, {"type": "noop"}])
    space = eng.spaces.for_queue(c, "bulk")
    assert space.keys.prefix == f"fleetd:{{{eng.keys.namespace}/bulk}}:"
    assert c.exists(space.keys.job(bulk)) and not c.exists(eng.keys.job(bulk))
    assert c.exists(eng.keys.job(plain)) and not c.exists(space.keys.job(plain))
    assert c.smembers(eng.keys.queues_slotted) == {"bulk"}
    # Found, counted and claimed where it lives; the namespace's claim never sees it.
    assert status(eng, bulk) == "pending"
    stats = eng.link.run_sync(eng.ops.stats)
    assert stats["pending"] == 2 and stats["total"] == 2
    assert [j.id for j in claim(eng, None)] == [plain]
    assert [j.id for j in claim(eng, "bulk")] == [bulk]
    assert status(eng, bulk) == "processing"
    assert eng.link.run_sync(eng.ops.stats)["processing"] == 2
    assert eng.link.run_sync(eng.ops.exist, [bulk, plain, "job_gone"]) == [True, True, False]


def test_cancel_reset_and_cleanup_reach_the_queues_space(eng: Engine) -> None:
    (bulk,) = enqueue(eng, [{"type": "noop", "queue": "bulk"}])
    assert eng.link.run_sync(eng.ops.cancel, bulk).outcome == "cancelled"
    assert status(eng, bulk) == "cancelled"
    assert eng.link.run_sync(eng.ops.reset, bulk).outcome == "reset"
    assert status(eng, bulk) == "pending"
    assert eng.link.run_sync(eng.ops.cancel, bulk).outcome == "cancelled"
    time.sleep(0.01)
    done = eng.link.run_sync(lambda c: eng.ops.cleanup(c, 0.0))
    assert done["cancelled"] == 1
    assert eng.link.run_sync(eng.ops.get, bulk) is None
    assert eng.link.run_sync(eng.ops.cancel, "job_nothing").outcome == "missing"


def test_listing_merges_the_spaces_newest_first_and_pages_exactly(eng: Engine) -> None:
    ids: list[str] = []
    for i in range(12):  # alternating spaces, a millisecond apart at least
        ids += enqueue(eng, [{"type": "noop", "queue": "bulk" if i % 2 else "default"}])
        time.sleep(0.002)
    newest_first = list(reversed(ids))
    page = eng.link.run_sync(lambda c: eng.ops.list_jobs(c, JobStatus.PENDING, limit=50))
    assert [j.id for j in page.jobs] == newest_first and page.next_cursor is None
    for limit in (1, 2, 5):
        seen: list[str] = []
        cursor: str | None = None
        while True:
            page = eng.link.run_sync(
                lambda c, cur=cursor, n=limit: eng.ops.list_jobs(
                    c, JobStatus.PENDING, limit=n, cursor=cur
                )
            )
            seen += [j.id for j in page.jobs]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == newest_first, limit
    # Filters read each job where it lives.
    page = eng.link.run_sync(
        lambda c: eng.ops.list_jobs(c, JobStatus.PENDING, limit=50, queue="bulk")
    )
    assert [j.id for j in page.jobs] == newest_first[::2]


def test_equal_scores_across_spaces_page_without_a_gap_or_a_repeat(eng: Engine) -> None:
    """Entries of one score in several spaces: the cursor's count at that score spans
    them all (ordered by id, as ZREVRANGEBYSCORE orders one index)."""
    c = eng.link.client
    spaces = [s.keys for s in eng.spaces.known(c)]
    members = {f"job_{i:02d}": spaces[i % 2] for i in range(9)}
    for member, keys in members.items():
        c.zadd(keys.status(JobStatus.PENDING), {member: 1000})
    seen: list[str] = []
    top: int | None = None
    skip = 0
    while True:
        [entries] = read_indexes(c, spaces, [(JobStatus.PENDING, top, skip, 2)])
        if not entries:
            break
        seen += [e[0] for e in entries]
        assert all(members[e[0]] == e[2] for e in entries)
        top, skip = 1000, skip + len(entries)
    assert seen == sorted(members, reverse=True)


def test_a_process_without_the_setting_follows_the_namespaces_set(
    eng: Engine, config: Config
) -> None:
    (bulk,) = enqueue(eng, [{"type": "noop", "queue": "bulk"}])
    other = Engine.build(config, daemon=True)  # no [queues] own_slot
    try:
        assert other.link.run_sync(other.ops.get, bulk) is not None
        (again,) = enqueue(other, [{"type": "noop", "queue": "bulk"}])
        space = other.spaces.for_queue(other.link.client, "bulk")
        assert not space.home and other.link.client.exists(space.keys.job(again))
        assert other.link.run_sync(other.ops.stats)["pending"] == 2
    finally:
        other.close()


def test_a_quota_refusal_over_a_batch_of_several_spaces_stores_none(eng: Engine) -> None:
    eng.ops.quota = LimitsConfig(company_max_pending=2).build().encode_quota(["noop"])
    enqueue(eng, [{"type": "noop", "company_id": "A", "queue": "bulk"}] * 2)
    before = eng.link.run_sync(eng.ops.stats)["total"]
    with pytest.raises(QuotaExceeded):
        enqueue(eng, [
            {"type": "noop", "company_id": "A"},
            {"type": "noop", "company_id": "A", "queue": "bulk"},
        ])  # fmt: skip
    assert eng.link.run_sync(eng.ops.stats)["total"] == before
    # Quotas hold within each space: the namespace's has room for A's two.
    assert len(enqueue(eng, [{"type": "noop", "company_id": "A"}] * 2)) == 2


def test_spaces_read_the_set_again_after_refresh(eng: Engine, config: Config) -> None:
    mine = Spaces(eng.scripts)
    c = eng.link.client
    assert [s.queue for s in mine.known(c)] == [""]
    eng.spaces.known(c)  # a process's first use adds its configured queues
    mine.refresh(c)
    assert [s.queue for s in mine.known(c)] == ["", "bulk"]
    c.sadd(eng.keys.queues_slotted, "later")
    assert [s.queue for s in mine.known(c)] == ["", "bulk"]  # within REFRESH_S
    mine.refresh(c)
    assert [s.queue for s in mine.known(c)] == ["", "bulk", "later"]


async def test_a_worker_daemon_serves_each_space_within_one_concurrency(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stacks, "SPACES_EVERY", 0.2)
    cfg = spread(config, "bulk")
    cfg = dataclasses.replace(
        cfg,
        worker=dataclasses.replace(cfg.worker, concurrency=2, queues=("default", "bulk", "late")),
    )
    cfg = api_config(cfg)
    registry = build_registry(cfg)
    registry.register(Sleeper(), source="tests")
    old = Engine.build(config, daemon=True)
    try:  # a bulk job stored in the namespace's slot before bulk had its own
        for script in old.scripts.all():
            script.load(old.link.client)
        [legacy] = old.scripts.enqueue(
            old.link.client, old.ops.prepare_many([{"type": "noop", "queue": "bulk"}]), ""
        )
        legacy_id = legacy[0]
    finally:
        old.close()
    async with running_api(cfg, roles=("api", "worker"), registry=registry) as api:
        pools = api.daemon.pool
        assert pools is not None and pools.queues == {"bulk"}
        await api.wait_status(legacy_id, "completed")
        done = [
            (await api.enqueue({"type": "noop", "queue": q}))["job_id"]
            for q in ("default", "bulk", "bulk")
        ]
        for job_id in done:
            await api.wait_status(job_id, "completed")
        # Three sleepers in two spaces: never more than two run at once.
        sleepers = [
            (await api.enqueue({"type": "sleeper", "queue": q}))["job_id"]
            for q in ("bulk", "default", "bulk")
        ]
        with trio.fail_after(10):
            while pools.running < 2:
                await trio.sleep(0.02)
        for _ in range(20):
            assert pools.running <= 2
            await trio.sleep(0.02)
        # Cancelling a running job reaches the daemon through its space's control list.
        bulk_running = [j.id for p in pools for j in p.running_jobs()]
        for job_id in bulk_running:
            r = await api.delete(f"{PREFIX}/{job_id}")
            assert r.status_code == 202 and r.json()["cancel_requested"], r.text
        for job_id in bulk_running:
            await api.wait_status(job_id, "cancelled")
        # The third starts once a slot is free.
        (third,) = set(sleepers) - set(bulk_running)
        await api.wait_status(third, "processing")
        # A queue given its own slot by another process is served without a restart.
        other = Engine.build(spread(config, "late"), daemon=True)
        try:
            late = other.link.run_sync(
                other.ops.enqueue_rows, other.ops.prepare_many([{"type": "noop", "queue": "late"}])
            )[0].job_id
            space = other.spaces.for_queue(other.link.client, "late")
            assert other.link.client.exists(space.keys.job(late))
        finally:
            other.close()
        await api.wait_status(late, "completed")
        assert pools.queues == {"bulk", "late"}
        await api.delete(f"{PREFIX}/{third}")


async def test_pools_sharing_slots_drain_every_space_with_jobs_claimed_ahead(
    config: Config,
) -> None:
    """Short jobs make each pool claim ahead of its free slots; a pool whose claimed-ahead
    jobs wait for slots another pool holds must start them as those free up (they once
    waited for ever, the daemon idle with jobs pending)."""
    queues = ("q1", "q2", "q3")
    cfg = spread(api_config(config), *queues)
    cfg = dataclasses.replace(
        cfg, worker=dataclasses.replace(cfg.worker, concurrency=4, queues=queues)
    )
    client = Engine.build(cfg, daemon=True)
    try:
        for script in client.scripts.all():
            script.load(client.link.client)
        for queue in queues:
            enqueue(client, [{"type": "noop", "queue": queue}] * 1500)
        async with running_api(cfg, roles=("api", "worker")):
            with trio.fail_after(60):
                while client.link.run_sync(client.ops.stats)["completed"] < 4500:
                    await trio.sleep(0.2)
    finally:
        client.close()


def test_every_named_queue_gets_its_slot_with_a_star(config: Config) -> None:
    e = Engine.build(spread(config, "*"), daemon=True)
    try:
        for script in e.scripts.all():
            script.load(e.link.client)
        c = e.link.client
        mail, plain = enqueue(e, [{"type": "noop", "queue": "mail"}, {"type": "noop"}])
        space = e.spaces.for_queue(c, "mail")
        assert not space.home and c.exists(space.keys.job(mail))
        assert c.exists(e.keys.job(plain))  # `default` stays in the namespace's slot
        assert c.smembers(e.keys.queues_slotted) == {"mail"}
        assert [s.queue for s in e.spaces.serving(c, ["default", "bulk"])] == ["", "bulk", "mail"]
    finally:
        e.close()


@pytest.mark.parametrize(
    ("value", "ok"),
    [(("*",), True), (("bulk", "mail"), True), (("*", "bulk"), False), (("default",), False),
     (("bulk", "bulk"), False), (("Not OK",), False)],
)  # fmt: skip
def test_own_slot_takes_queue_names_or_a_lone_star(value: tuple[str, ...], ok: bool) -> None:
    assert (_check_own_slot(value) is None) is ok


async def test_a_daemon_with_a_star_gives_the_queues_it_serves_their_slots(
    config: Config,
) -> None:
    cfg = spread(api_config(config), "*")
    cfg = dataclasses.replace(
        cfg, worker=dataclasses.replace(cfg.worker, queues=("default", "mail"))
    )
    async with running_api(cfg, roles=("api", "worker")) as api:
        pools = api.daemon.pool
        assert pools is not None and pools.queues == {"mail"}
        job_id = (await api.enqueue({"type": "noop", "queue": "mail"}))["job_id"]
        await api.wait_status(job_id, "completed")
        e = api.daemon.engine
        assert e.link.client.exists(e.spaces.for_queue(e.link.client, "mail").keys.job(job_id))
