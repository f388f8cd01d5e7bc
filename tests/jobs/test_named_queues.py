"""Named queues against a real Redis: routing (caller, [queues] routes, handler default,
`default`), the job's `queue` in its answer, a claim serving only its daemon's queues in
strict order or by weight, pausing and resuming, per-queue figures, and the parsing of
queue names, routes and `[worker] queues`."""

from __future__ import annotations

import dataclasses
import random
import time
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from fleetd.analytics.store import WINDOWS, total
from fleetd.analytics.store import read as analytics_read
from fleetd.backend.scripts import ClaimedJob, Scripts
from fleetd.config.queue_section import Served, check_queue_name, parse_routes
from fleetd.engine import Engine
from fleetd.jobs import queues as queues_module
from fleetd.jobs.model import EnqueueRequest, JobStatus, ValidationError
from fleetd.jobs.parts import ready_depth, ready_parts
from fleetd.jobs.queues import (
    known_queues,
    pause_queue,
    paused_queues,
    queue_figures,
    resume_queue,
)

EMAIL = {"to": "a@example.com", "subject": "s", "body": "b"}


def enqueue(engine: Engine, reqs: Sequence[dict[str, Any]]) -> list[str]:
    rows = engine.ops.prepare_many(reqs)
    return [r.job_id for r in engine.link.run_sync(engine.ops.enqueue_rows, rows)]


def claim(scripts: Scripts, engine: Engine, count: int) -> list[ClaimedJob]:
    return scripts.claim(engine.link.client, count, 30_000, uuid.uuid4().hex, "d1").jobs


def serving(engine: Engine, *queues: str) -> Scripts:
    return engine.scripts.for_claims(None, "", Served.parse(queues))


def queue_of(engine: Engine, job_id: str) -> str:
    job = engine.link.run_sync(engine.ops.get, job_id)
    assert job is not None
    return job.queue


def routed(engine: Engine, routes: dict[str, str]) -> None:
    engine.ops.defaults = dataclasses.replace(engine.ops.defaults, routes=routes)


def test_a_job_goes_to_the_callers_queue_else_its_route_else_default(engine: Engine) -> None:
    routed(engine, {"email_notification": "mail"})
    mail, plain, asked = enqueue(engine, [
        {"type": "email_notification", "data": EMAIL},
        {"type": "noop"},
        {"type": "noop", "queue": "bulk"},
    ])  # fmt: skip
    (override,) = enqueue(engine, [{"type": "email_notification", "data": EMAIL, "queue": "x"}])
    assert [queue_of(engine, i) for i in (mail, plain, asked, override)] == [
        "mail",
        "default",
        "bulk",
        "x",
    ]
    job = engine.link.run_sync(engine.ops.get, mail)
    assert job is not None and job.to_dict()["queue"] == "mail"
    # The default queue's jobs are stored as before: no `queue` field.
    assert engine.link.client.hget(engine.keys.job(plain), "queue") is None
    assert {p.queue for p in ready_parts(engine.link.client, engine.keys)} == {
        "default",
        "mail",
        "bulk",
        "x",
    }
    assert ready_depth(engine.link.client, engine.keys) == 4


def test_a_handler_default_queue_applies_when_no_route_says(engine: Engine) -> None:
    handler = engine.registry.get("noop")
    assert handler is not None
    original = handler.defaults
    handler.defaults = dataclasses.replace(original, queue="slow")
    try:
        (a,) = enqueue(engine, [{"type": "noop"}])
        routed(engine, {"noop": "fast"})
        (b,) = enqueue(engine, [{"type": "noop"}])
    finally:
        handler.defaults = original
    assert (queue_of(engine, a), queue_of(engine, b)) == ("slow", "fast")


@pytest.mark.parametrize("bad", ["Mail", "a b", "-x", "q:1", "x" * 33, 7, "a/b"])
def test_a_bad_queue_name_is_refused_with_its_field(bad: object) -> None:
    with pytest.raises(ValidationError) as err:
        EnqueueRequest.from_dict({"type": "noop", "queue": bad})
    assert [e.field for e in err.value.errors] == ["queue"]


def test_a_daemon_claims_only_from_the_queues_it_serves(engine: Engine) -> None:
    routed(engine, {"email_notification": "mail"})
    mail = enqueue(engine, [{"type": "email_notification", "data": EMAIL}] * 3)
    plain = enqueue(engine, [{"type": "noop"}] * 3)
    got = claim(serving(engine, "mail"), engine, 10)
    assert [j.id for j in got] == mail
    assert claim(serving(engine, "mail"), engine, 10) == []
    for job_id in plain:
        job = engine.link.run_sync(engine.ops.get, job_id)
        assert job is not None and (job.status, job.attempts) == (JobStatus.PENDING, 0)
    # The daemon of before (no [worker] queues) serves `default` only.
    assert [j.id for j in claim(engine.scripts, engine, 10)] == plain


def test_strict_order_drains_the_first_queue_before_the_next(engine: Engine) -> None:
    first = enqueue(engine, [{"type": "noop", "queue": "mail"}] * 4)
    second = enqueue(engine, [{"type": "noop"}] * 4)
    scripts = serving(engine, "mail", "default")
    assert [j.id for j in claim(scripts, engine, 3)] == first[:3]
    assert [j.id for j in claim(scripts, engine, 3)] == [first[3], *second[:2]]


def test_priorities_and_fifo_hold_within_a_named_queue(engine: Engine) -> None:
    low = enqueue(engine, [{"type": "noop", "queue": "bulk", "priority": 2}] * 2)
    high = enqueue(engine, [{"type": "noop", "queue": "bulk", "priority": 15}] * 2)
    assert [j.id for j in claim(serving(engine, "bulk"), engine, 4)] == high + low


def test_weights_share_each_claim_between_queues(engine: Engine) -> None:
    enqueue(engine, [{"type": "noop", "queue": "bulk"}] * 200)
    enqueue(engine, [{"type": "noop"}] * 200)
    scripts = serving(engine, "bulk:1", "default:3")
    got = claim(scripts, engine, 40)
    queues = [queue_of(engine, j.id) for j in got]
    assert (queues.count("bulk"), queues.count("default")) == (10, 30)


def test_weights_pick_the_first_queue_in_proportion_for_one_job_claims() -> None:
    served = Served.parse(["bulk:1", "default:3"])
    rng = random.Random(7)
    firsts = [served.order(rng)[0][0] for _ in range(4000)]
    assert 0.2 < firsts.count("bulk") / 4000 < 0.3


def test_a_paused_queue_is_not_claimed_until_resumed(engine: Engine) -> None:
    ids = enqueue(engine, [{"type": "noop", "queue": "bulk"}] * 3)
    plain = enqueue(engine, [{"type": "noop"}])
    client, keys = engine.link.client, engine.keys
    assert pause_queue(client, keys, "bulk") is True
    assert pause_queue(client, keys, "bulk") is False
    scripts = serving(engine, "bulk", "default")
    assert [j.id for j in claim(scripts, engine, 10)] == plain
    for job_id in ids:
        job = engine.link.run_sync(engine.ops.get, job_id)
        assert job is not None and (job.status, job.attempts) == (JobStatus.PENDING, 0)
    figures = {f.name: f for f in queue_figures(client, keys, known_queues(client, keys))}
    assert figures["bulk"].paused and figures["bulk"].ready == 3
    assert figures["default"].processing == 1 and not figures["default"].paused
    assert resume_queue(client, keys, "bulk") is True
    assert paused_queues(client, keys) == set()
    assert [j.id for j in claim(scripts, engine, 10)] == ids


def test_a_job_failed_by_the_reaper_counts_in_its_queues_figures(engine: Engine) -> None:
    """A job whose lease expired max_stalls times fails in reap.lua, with no worker to
    report it: its queue's `failed` counts it, and its type's analytics, with no run
    time (completions and failures counted by complete.lua and fail.lua:
    tests/runtime/test_queue_service.py)."""
    client, keys = engine.link.client, engine.keys
    (job_id,) = enqueue(engine, [{"type": "noop", "queue": "bulk"}])
    (got,) = serving(engine, "bulk").claim(client, 1, 1, uuid.uuid4().hex, "d1").jobs
    assert got.id == job_id
    for _ in range(100):  # the 1 ms lease expires by Redis's clock
        if engine.scripts.reap(client, 1, 100) == (0, 1, 0, 0):
            break
        time.sleep(0.005)
    else:
        raise AssertionError("the job was never reaped")
    figures = {f.name: f for f in queue_figures(client, keys, known_queues(client, keys))}
    assert (figures["bulk"].failed, figures["bulk"].completed) == (1, 0)
    assert figures["default"].failed == 0 and figures["bulk"].throughput > 0
    data = analytics_read(client, keys, WINDOWS["hour"])
    noop = total(f for bucket in data.buckets for g, f in bucket.items() if g[0] == "noop")
    assert (noop.failed, noop.completed, sum(noop.run.values())) == (1, 0, 0)


def test_a_delayed_or_released_job_returns_to_its_own_queue(engine: Engine) -> None:
    (job_id,) = enqueue(engine, [{"type": "noop", "queue": "bulk"}])
    (got,) = claim(serving(engine, "bulk"), engine, 1)
    client = engine.link.client
    assert engine.scripts.release(client, [(got.id, got.token)]) == [1]
    assert claim(engine.scripts, engine, 5) == []  # not in `default`
    assert [j.id for j in claim(serving(engine, "bulk"), engine, 5)] == [job_id]


def test_cancel_takes_a_job_out_of_its_named_queue(engine: Engine) -> None:
    ids = enqueue(engine, [{"type": "noop", "queue": "bulk"}] * 2)
    engine.link.run_sync(engine.ops.cancel, ids[0])
    assert [j.id for j in claim(serving(engine, "bulk"), engine, 5)] == ids[1:]
    assert ready_parts(engine.link.client, engine.keys, "bulk") == []


def test_parsing_of_names_routes_and_served_queues() -> None:
    assert check_queue_name("bulk-2_x") == "bulk-2_x"
    assert parse_routes(["data_export = bulk", "email_notification=mail"]) == {
        "data_export": "bulk",
        "email_notification": "mail",
    }
    for bad in (["x"], ["=q"], ["a=Q"], ["a=q", "a=r"]):
        with pytest.raises(ValueError):
            parse_routes(bad)
    assert Served.parse(["mail", "default"]).queues == (("mail", 0), ("default", 0))
    assert Served.parse(["bulk:1", "default:3"]).weighted
    assert Served.parse([]).claim_arg() == "" == Served.parse(["default"]).claim_arg()
    for bad in (["a:1", "b"], ["a:0"], ["a:x"], ["a", "a"], ["A"]):
        with pytest.raises(ValueError):
            Served.parse(bad)


def test_queue_figures_count_waiting_and_processing_by_sample_past_a_bound(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past SAMPLE delayed (or running) jobs, their queues are read from a random sample
    scaled to the whole, and the figures say so: a dashboard reading every 10 s does not
    read a million jobs each time."""
    client, keys = engine.link.client, engine.keys
    later = {"type": "noop", "run_at": "2099-01-01T00:00:00Z"}
    enqueue(engine, [later | {"queue": "bulk"}] * 300 + [later] * 100)
    exact = {f.name: f for f in queue_figures(client, keys, known_queues(client, keys))}
    assert (exact["bulk"].waiting, exact["default"].waiting) == (300, 100)
    assert not exact["bulk"].estimated
    monkeypatch.setattr(queues_module, "SAMPLE", 100)
    sampled = {f.name: f for f in queue_figures(client, keys, known_queues(client, keys))}
    assert sampled["bulk"].estimated and sampled["default"].estimated
    # 100 of 400 drawn: each share is 300 or 100 give or take; 5 standard deviations.
    assert abs(sampled["bulk"].waiting - 300) <= 90 and abs(sampled["default"].waiting - 100) <= 90
    assert abs(sampled["bulk"].waiting + sampled["default"].waiting - 400) <= 2
    # The default queue alone: the sizes of the zsets, nothing sampled or read.
    [alone] = queue_figures(client, keys, ["default"])
    assert (alone.waiting, alone.estimated) == (400, False)
