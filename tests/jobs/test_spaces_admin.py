"""Admin reads and writes over every key space (fleetd.backend.spaces), against a real
Redis: a slotted queue's jobs sit in two spaces (the namespace's, stored before its
slot, and its own), and pausing, resuming, the queue figures, the ready depth,
quarantines and why a job waits see both."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from fleetd.backend.scripts import ClaimedJob, Scripts
from fleetd.config import Config
from fleetd.config.limit_sections import Limit, Limits
from fleetd.config.queue_section import Served
from fleetd.engine import Engine
from fleetd.jobs.limits import read_waiting
from fleetd.jobs.parts import Part, ready_depth, ready_parts
from fleetd.jobs.quarantine import Strikes, count_failures, list_quarantines, release
from fleetd.jobs.queues import (
    known_queues,
    pause_queue,
    paused_queues,
    queue_figures,
    resume_queue,
)

# A live worker daemon's heartbeat, as read_waiting reads the daemons.
WORKER = {"roles": ["worker"], "queues": ["bulk", "default"], "job_types": ["noop"]}
LATER = "2099-01-01T00:00:00Z"


def spread(config: Config, *queues: str) -> Config:
    return dataclasses.replace(config, queues=dataclasses.replace(config.queues, own_slot=queues))


@pytest.fixture
def eng(config: Config) -> Iterator[Engine]:
    """An engine whose config gives `bulk` and `idle` a slot of their own (the `engine`
    fixture, on the same namespace, has none: what it enqueues before `eng`'s first
    use stays in the namespace's space)."""
    e = Engine.build(spread(config, "bulk", "idle"), daemon=True)
    yield e
    e.close()


def enqueue(engine: Engine, reqs: Sequence[dict[str, Any]]) -> list[str]:
    rows = engine.ops.prepare_many(reqs)
    return [r.job_id for r in engine.ops.enqueue_rows(engine.link.client, rows)]


def scripts_of(engine: Engine, queue: str | None, limits: str = "") -> Scripts:
    """Claims in `queue`'s own space, or (None) in the namespace's serving both queues."""
    c = engine.link.client
    if queue is None:
        return engine.spaces.home.scripts.for_claims(
            None, limits, Served.parse(["default", "bulk"])
        )
    space = engine.spaces.for_queue(c, queue)
    return space.scripts.for_claims(None, limits, Served.parse([queue]))


def claim(engine: Engine, queue: str | None, count: int = 10, limits: str = "") -> list[ClaimedJob]:
    scripts = scripts_of(engine, queue, limits)
    return scripts.claim(engine.link.client, count, 30_000, uuid.uuid4().hex, "d1").jobs


def ids(jobs: Sequence[ClaimedJob]) -> list[str]:
    return [j.id for j in jobs]


def test_pausing_a_slotted_queue_holds_its_jobs_in_both_spaces(engine: Engine, eng: Engine) -> None:
    (old,) = enqueue(engine, [{"type": "noop", "queue": "bulk"}])  # before the slot
    (new,) = enqueue(eng, [{"type": "noop", "queue": "bulk"}])
    c = eng.link.client
    home, bulk = eng.keys, eng.spaces.for_queue(c, "bulk").keys
    assert c.exists(home.job(old)) and c.exists(bulk.job(new))

    assert pause_queue(c, eng.spaces, "bulk") is True
    assert pause_queue(c, eng.spaces, "bulk") is False
    assert c.sismember(home.queues_paused, "bulk") and c.sismember(bulk.queues_paused, "bulk")
    assert paused_queues(c, eng.spaces) == {"bulk"}
    assert claim(eng, None) == [] and claim(eng, "bulk") == []

    c.delete(home.wake, bulk.wake)
    assert resume_queue(c, eng.spaces, "bulk") is True
    assert c.llen(home.wake) > 0 and c.llen(bulk.wake) > 0  # idle fetchers of each woken
    assert resume_queue(c, eng.spaces, "bulk") is False
    assert paused_queues(c, eng.spaces) == set()
    assert ids(claim(eng, None)) == [old] and ids(claim(eng, "bulk")) == [new]

    # Paused in the queue's own space alone (a resume raced a new slot): shown as
    # paused, and a resume clears it.
    c.sadd(bulk.queues_paused, "bulk")
    assert paused_queues(c, eng.spaces) == {"bulk"}
    assert resume_queue(c, eng.spaces, "bulk") is True
    assert paused_queues(c, eng.spaces) == set()


def test_a_pause_reaches_a_slot_given_before_or_after_it(engine: Engine, eng: Engine) -> None:
    c = engine.link.client
    # Paused before the queue has a slot: the process giving it one carries the pause.
    assert pause_queue(c, engine.spaces, "bulk") is True
    (held,) = enqueue(eng, [{"type": "noop", "queue": "bulk"}])
    bulk = eng.spaces.for_queue(c, "bulk").keys
    assert c.sismember(bulk.queues_paused, "bulk")
    assert claim(eng, "bulk") == []
    assert resume_queue(c, engine.spaces, "bulk") is True
    assert not c.sismember(bulk.queues_paused, "bulk")
    assert ids(claim(eng, "bulk")) == [held]
    # A process that read the slots before `mail` got one pauses it in its space too.
    fresh = Engine.build(engine.config, daemon=True)
    try:
        assert [s.queue for s in fresh.spaces.known(c)] == ["", "bulk", "idle"]
        c.sadd(eng.keys.queues_slotted, "mail")  # another process gives mail a slot
        assert pause_queue(c, fresh.spaces, "mail") is True
        mail = fresh.spaces.for_queue(c, "mail").keys
        assert mail.namespace.endswith("/mail") and c.sismember(mail.queues_paused, "mail")
    finally:
        fresh.close()


def test_queue_figures_listing_and_ready_depth_add_up_every_space(
    engine: Engine, eng: Engine
) -> None:
    (old,) = enqueue(engine, [{"type": "noop", "queue": "bulk"}])
    enqueue(engine, [{"type": "noop"}])
    enqueue(eng, [{"type": "noop", "queue": "bulk"}] * 5)
    enqueue(eng, [{"type": "noop", "queue": "bulk", "run_at": LATER}])
    c = eng.link.client
    running = claim(eng, "bulk", 2)
    items = [(running[0].id, running[0].token, "{}", "{}")]
    assert eng.spaces.for_queue(c, "bulk").scripts.complete(c, items) == [1]

    names = known_queues(c, eng.spaces)
    assert names == ["default", "bulk", "idle"]  # idle: slotted, never used
    figures = {f.name: f for f in queue_figures(c, eng.spaces, names)}
    bulk, default, idle = figures["bulk"], figures["default"], figures["idle"]
    assert (bulk.ready, bulk.waiting, bulk.processing, bulk.completed) == (4, 1, 1, 1)
    assert bulk.throughput > 0 and not bulk.estimated
    assert (default.ready, default.waiting, default.processing) == (1, 0, 0)
    assert (idle.ready, idle.waiting, idle.processing, idle.completed) == (0, 0, 0, 0)
    # The namespace's space alone: what it held before spaces were read together.
    alone = {f.name: f for f in queue_figures(c, eng.keys, names)}
    assert (alone["bulk"].ready, alone["bulk"].processing, alone["bulk"].completed) == (1, 0, 0)

    spaces = [s.keys for s in eng.spaces.known(c)]
    assert ready_depth(c, spaces) == 5 and ready_depth(c, eng.keys) == 2
    # One part per queue, type and company: bulk's in both spaces is one, summed.
    assert ready_parts(c, spaces) == [
        Part("noop", None, 1, "default"),
        Part("noop", None, 4, "bulk"),
    ]
    assert ready_parts(c, spaces, "bulk") == [Part("noop", None, 4, "bulk")]
    assert old in ids(claim(eng, None))


def quarantine(scripts: Scripts, engine: Engine, kind: str) -> None:
    """Two counted failures of acme's noop in the space of `scripts` (as a pool counts)."""
    failures = [(f"j{uuid.uuid4().hex}", 1, "noop", "acme", kind) for _ in range(2)]
    got = engine.link.run_sync(lambda c: count_failures(c, scripts, Strikes(2, 600_000), failures))
    assert [q.company_id for q in got] == ["acme"]


def test_quarantines_of_every_space_are_listed_merged_and_released(eng: Engine) -> None:
    c = eng.link.client
    bulk = eng.spaces.for_queue(c, "bulk")
    (held,) = enqueue(eng, [{"type": "noop", "company_id": "acme", "queue": "bulk"}])
    (runs,) = enqueue(eng, [{"type": "noop", "company_id": "acme"}])
    quarantine(bulk.scripts, eng, "crash")
    # Held in bulk's space only: acme's default job runs, its bulk job waits, and says why.
    assert claim(eng, "bulk") == [] and ids(claim(eng, None)) == [runs]
    job = eng.link.run_sync(eng.ops.get, held)
    assert job is not None
    where = eng.spaces.locate(c, held).keys
    assert where == bulk.keys
    why = read_waiting(c, where, Limits(), [WORKER], job)
    assert why is not None and why.startswith("quarantined: job type 'noop' of company 'acme'")
    assert read_waiting(c, eng.keys, Limits(), [WORKER], job) is None  # not the namespace's
    [listed] = list_quarantines(c, eng.spaces)
    assert (listed.job_type, listed.company_id, listed.kinds) == ("noop", "acme", {"crash": 2})
    assert list_quarantines(c, eng.keys) == []

    # The same part held in the namespace's space too: one record, both counted.
    quarantine(eng.scripts, eng, "timeout")
    [merged] = list_quarantines(c, eng.spaces)
    assert (merged.failures, merged.kinds) == (4, {"crash": 2, "timeout": 2})
    assert merged.since_ms == listed.since_ms
    assert list_quarantines(c, eng.spaces, "globex", every=False) == []

    c.delete(bulk.keys.wake)
    got = release(c, eng.spaces, "noop", "acme")
    assert got is not None and (got.failures, got.kinds) == (4, {"crash": 2, "timeout": 2})
    assert c.llen(bulk.keys.wake) > 0
    assert list_quarantines(c, eng.spaces) == []
    assert release(c, eng.spaces, "noop", "acme") is None
    assert ids(claim(eng, "bulk")) == [held]


def test_why_a_job_waits_reads_the_limit_counts_of_its_space(eng: Engine) -> None:
    limits = Limits(queues={"bulk": Limit(concurrency=1)})
    c = eng.link.client
    first, second = enqueue(eng, [{"type": "noop", "queue": "bulk"}] * 2)
    assert ids(claim(eng, "bulk", limits=limits.encode())) == [first]
    job = eng.link.run_sync(eng.ops.get, second)
    assert job is not None
    where = eng.spaces.locate(c, second).keys
    assert read_waiting(c, where, limits, [WORKER], job) == (
        "concurrency limit of queue 'bulk': 1 of 1 running"
    )
    assert read_waiting(c, eng.keys, limits, [WORKER], job) is None
    assert pause_queue(c, eng.spaces, "bulk")
    assert read_waiting(c, where, limits, [WORKER], job) == (
        "queue 'bulk' is paused (fleetd queues resume bulk)"
    )
