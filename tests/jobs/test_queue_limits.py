"""`[limits] queues`: a global concurrency and start rate per named queue, whatever the
jobs' types and companies, held by the claim like the limits per type and per company
(against a real Redis): slots given back by every way out of processing, a job held
back stays `pending` with no attempt burnt, and the answer says why it waits."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from fleetd.backend.scripts import ClaimedJob, Scripts
from fleetd.config.limit_sections import LimitsConfig
from fleetd.config.queue_section import Served
from fleetd.engine import Engine
from fleetd.jobs.limits import Limit, Limits, parse_types, read_waiting, waiting_reason
from fleetd.jobs.model import JobStatus

EMAIL = {"to": "a@example.com", "subject": "s", "body": "b"}
# A live worker daemon's heartbeat, as read_waiting reads the daemons.
WORKER = {"roles": ["worker"], "queues": ["bulk", "default"],
          "job_types": ["noop", "email_notification"]}  # fmt: skip


def enqueue(engine: Engine, reqs: Sequence[dict[str, Any]]) -> list[str]:
    rows = engine.ops.prepare_many(reqs)
    return [r.job_id for r in engine.ops.enqueue_rows(engine.link.client, rows)]


def claim(scripts: Scripts, engine: Engine, count: int, lease_ms: int = 30_000) -> list[ClaimedJob]:
    return scripts.claim(engine.link.client, count, lease_ms, uuid.uuid4().hex, "d1").jobs


def running(engine: Engine) -> dict[str, int]:
    raw = engine.link.client.hgetall(engine.keys.limits_running)
    return {k: int(v) for k, v in raw.items() if int(v)}


def served(engine: Engine, limits: Limits, *queues: str) -> Scripts:
    return engine.scripts.for_claims(None, limits.encode(), Served.parse(list(queues)))


def test_a_queue_concurrency_counts_all_its_jobs_and_only_them(engine: Engine) -> None:
    scripts = served(engine, Limits(queues={"bulk": Limit(concurrency=2)}), "bulk", "default")
    bulk = enqueue(engine, [{"type": "noop", "company_id": "A", "queue": "bulk"}] * 3
                   + [{"type": "email_notification", "data": EMAIL, "company_id": "B",
                       "queue": "bulk"}] * 2)  # fmt: skip
    other = enqueue(engine, [{"type": "noop", "company_id": "A"}] * 3)
    got = claim(scripts, engine, 10)
    assert len([j for j in got if j.id in bulk]) == 2  # of 5, whatever their type
    assert {j.id for j in got if j.id not in bulk} == set(other)  # default: not limited
    assert running(engine) == {"q:bulk": 2}
    assert claim(scripts, engine, 10) == []
    held = [i for i in bulk if i not in {j.id for j in got}]
    for job_id in held:
        job = engine.link.run_sync(engine.ops.get, job_id)
        assert job is not None and (job.status, job.attempts) == (JobStatus.PENDING, 0)
        limits = Limits(queues={"bulk": Limit(concurrency=2)})
        reason = read_waiting(engine.link.client, engine.keys, limits, [WORKER], job)
        assert reason == "concurrency limit of queue 'bulk': 2 of 2 running"
    # Completing one gives its slot back; failing for good and a release do too.
    first = [j for j in got if j.id in bulk]
    items = [(first[0].id, first[0].token, "{}", "{}")]
    assert engine.scripts.complete(engine.link.client, items) == [1]
    [nxt] = claim(scripts, engine, 10)
    assert nxt.id in held and running(engine) == {"q:bulk": 2}
    assert engine.scripts.release(engine.link.client, [(nxt.id, nxt.token)]) == [1]
    assert engine.scripts.fail(engine.link.client, [(first[1].id, first[1].token, "x", "",
                                                     False, 0)]) == [0]  # fmt: skip
    assert running(engine) == {}
    assert len(claim(scripts, engine, 10)) == 2


def test_a_full_queue_limit_does_not_hold_the_same_part_in_another_queue(engine: Engine) -> None:
    # One part (noop of company A) in two queues: bulk's full limit skips it there only.
    scripts = served(engine, Limits(queues={"bulk": Limit(concurrency=1)}), "bulk", "default")
    enqueue(engine, [{"type": "noop", "company_id": "A", "queue": "bulk"}] * 3)
    plain = enqueue(engine, [{"type": "noop", "company_id": "A"}] * 3)
    got = [j.id for j in claim(scripts, engine, 10)]
    assert len(got) == 4 and set(plain) <= set(got)


def test_a_dead_daemons_queue_slot_comes_back_at_the_reap(engine: Engine) -> None:
    scripts = served(engine, Limits(queues={"bulk": Limit(concurrency=1)}), "bulk")
    ids = enqueue(engine, [{"type": "noop", "queue": "bulk"}] * 2)
    (held,) = claim(scripts, engine, 5, lease_ms=1)
    assert claim(scripts, engine, 5) == []
    time.sleep(0.01)
    assert engine.scripts.reap(engine.link.client, 3, 100) == (1, 0, 0, 0)
    assert running(engine) == {}
    (nxt,) = claim(scripts, engine, 5)
    assert nxt.id == ids[1] and held.id == ids[0]


def test_a_queue_rate_counts_starts_in_a_sliding_window(engine: Engine) -> None:
    scripts = served(engine, Limits(queues={"mail": Limit(starts=3, per=0.3)}), "mail")
    enqueue(engine, [{"type": "noop", "company_id": c, "queue": "mail"} for c in "ABCDE"])
    first = claim(scripts, engine, 10)
    assert len(first) == 3
    assert claim(scripts, engine, 10) == []
    time.sleep(0.35)
    assert len(claim(scripts, engine, 10)) == 2


def test_queue_limits_parse_encode_and_say_why() -> None:
    limits = LimitsConfig(queues=("bulk=2", "mail=3,50/1s")).build()
    assert limits.queues == {"bulk": Limit(2), "mail": Limit(3, 50, 1.0)}
    assert '"q":{"bulk":[2,0,0],"mail":[3,50,1000]}' in limits.encode()
    assert limits.for_job("noop", None, "bulk") == [("q:bulk", Limit(2))]
    assert limits.for_job("noop", None, None) == []  # default: not listed
    for bad in (["Bulk=2"], ["a:b=2"], ["bulk=2", "bulk=3"], ["bulk=0"], ["=2"]):
        with pytest.raises(ValueError):
            parse_types(bad, "queue")
    assert "queue 'mail'" in (
        waiting_reason(limits, "noop", None, {}, {"q:mail": 50}, True, queue="mail") or ""
    )
