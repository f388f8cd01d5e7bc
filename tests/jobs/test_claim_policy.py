"""What a claim takes, against a real Redis: only the types the daemon has handlers for,
within the global [limits] (concurrency and starts per type and per company, slots
given back by every way out of processing, the reaper's included), and round robin
between companies within a priority (fair share), FIFO within one company's type.

Held-back jobs stay `pending` with their attempts untouched."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from fleetd.backend.scripts import ClaimedJob, Scripts
from fleetd.engine import Engine
from fleetd.jobs.limits import Limit, Limits, parse_limit, parse_types, waiting_reason
from fleetd.jobs.model import JobStatus
from fleetd.jobs.parts import part_name, ready_depth, ready_parts, split_part

EMAIL = {"to": "a@example.com", "subject": "s", "body": "b"}


def enqueue(engine: Engine, reqs: Sequence[dict[str, Any]]) -> list[str]:
    rows = engine.ops.prepare_many(reqs)
    return [r.job_id for r in engine.link.run_sync(engine.ops.enqueue_rows, rows)]


def claim(scripts: Scripts, engine: Engine, count: int, lease_ms: int = 30_000) -> list[ClaimedJob]:
    token = uuid.uuid4().hex
    return scripts.claim(engine.link.client, count, lease_ms, token, "d1").jobs


def complete(engine: Engine, jobs: Sequence[ClaimedJob]) -> None:
    items = [(j.id, j.token, "{}", "{}") for j in jobs]
    assert engine.scripts.complete(engine.link.client, items) == [1] * len(jobs)


def status(engine: Engine, job_id: str) -> tuple[JobStatus, int]:
    job = engine.link.run_sync(engine.ops.get, job_id)
    assert job is not None
    return job.status, job.attempts


def running(engine: Engine) -> dict[str, int]:
    raw = engine.link.client.hgetall(engine.keys.limits_running)
    return {k: int(v) for k, v in raw.items() if int(v)}


# -- claim only what you can run ----------------------------------------------------------


def test_a_daemon_claims_only_the_types_it_has_handlers_for(engine: Engine) -> None:
    mail = enqueue(engine, [{"type": "email_notification", "data": EMAIL}] * 3)
    noop = enqueue(engine, [{"type": "noop"}] * 3)
    old = engine.scripts.for_claims(["noop"], "")  # a daemon without the email plugin
    got = claim(old, engine, 10)
    assert [j.id for j in got] == noop
    assert claim(old, engine, 10) == []
    for job_id in mail:  # left alone: pending, no attempt burnt
        assert status(engine, job_id) == (JobStatus.PENDING, 0)
    new = engine.scripts.for_claims(["noop", "email_notification"], "")
    assert [j.id for j in claim(new, engine, 10)] == mail


def test_unhandled_parts_at_the_head_do_not_starve_the_handled_ones(engine: Engine) -> None:
    # More parts than one scan looks at, all of a type this daemon lacks, ahead of its job.
    reqs = [{"type": "email_notification", "data": EMAIL, "company_id": f"c{i}"}
            for i in range(600)]  # fmt: skip
    enqueue(engine, reqs)
    (noop,) = enqueue(engine, [{"type": "noop"}])
    old = engine.scripts.for_claims(["noop"], "")
    assert [j.id for j in claim(old, engine, 5)] == [noop]


# -- fair share ---------------------------------------------------------------------------


def test_one_company_backlog_does_not_delay_another_companys_job(engine: Engine) -> None:
    backlog = enqueue(engine, [{"type": "noop", "company_id": "A"}] * 2000)
    (b_job,) = enqueue(engine, [{"type": "noop", "company_id": "B"}])
    got = [j.id for j in claim(engine.scripts, engine, 2)]
    assert got == [backlog[0], b_job]  # one each, not 2,000 of A first
    # FIFO within company A's part, and A goes on once B has nothing.
    assert [j.id for j in claim(engine.scripts, engine, 3)] == backlog[1:4]


def test_a_company_with_more_job_types_gets_no_more_turns(engine: Engine) -> None:
    mail = {"type": "email_notification", "data": EMAIL, "company_id": "A"}
    a_mail = enqueue(engine, [mail] * 10)
    a_noop = enqueue(engine, [{"type": "noop", "company_id": "A"}] * 10)
    b = enqueue(engine, [{"type": "noop", "company_id": "B"}] * 10)
    # One job per claim: the companies alternate, and A's two types take turns within A.
    got = [claim(engine.scripts, engine, 1)[0].id for _ in range(8)]
    companies = ["B" if j in b else "A" for j in got]
    assert all(x != y for x, y in itertools.pairwise(companies)), companies
    assert [j for j in got if j in b] == b[:4]
    a_got = [j for j in got if j not in b]
    assert sorted(a_got) == sorted(a_mail[:2] + a_noop[:2])
    assert {a_got[0], a_got[1]} & set(a_mail) and {a_got[0], a_got[1]} & set(a_noop)
    # Three per claim: the company that got the odd one goes behind, so two claims give
    # each company three.
    six = [j.id for _ in range(2) for j in claim(engine.scripts, engine, 3)]
    assert len([j for j in six if j in b]) == 3


def test_a_part_served_until_its_limit_filled_goes_behind_too(engine: Engine) -> None:
    limited = engine.scripts.for_claims(None, Limits({"noop": Limit(concurrency=2)}).encode())
    a = enqueue(engine, [{"type": "noop", "company_id": "A"}] * 5)
    b = enqueue(engine, [{"type": "email_notification", "data": EMAIL, "company_id": "B"}] * 5)
    got = claim(limited, engine, 5)  # A's noop stops at its limit (2), B takes the rest
    assert sorted(j.id for j in got) == sorted(a[:2] + b[:3])
    complete(engine, [j for j in got if j.id in a])  # the limit has room again
    # A was served in that claim: its part went behind B's, though its limit was full.
    assert [j.id for j in claim(limited, engine, 1)] == [b[3]]


def test_round_robin_within_a_priority_strict_priority_across(engine: Engine) -> None:
    a = enqueue(engine, [{"type": "noop", "company_id": "A"}] * 3)
    b = enqueue(engine, [{"type": "noop", "company_id": "B"}] * 3)
    (urgent,) = enqueue(engine, [{"type": "noop", "company_id": "A", "priority": "critical"}])
    got = [j.id for j in claim(engine.scripts, engine, 7)]
    assert got[0] == urgent
    assert sorted(got[1:4]) in (sorted(a), sorted(b))  # 3 each of 6 left to take
    assert got[1:] in (b + a, a + b)  # each company's own FIFO kept
    # Two at a time: one of each company per claim.
    a2 = enqueue(engine, [{"type": "noop", "company_id": "A"}] * 2)
    b2 = enqueue(engine, [{"type": "noop", "company_id": "B"}] * 2)
    for i in range(2):
        assert sorted(j.id for j in claim(engine.scripts, engine, 2)) == sorted([a2[i], b2[i]])
    assert ready_depth(engine.link.client, engine.keys) == 0
    assert engine.link.client.exists(engine.keys.queue) == 0


def test_a_cancelled_head_leaves_a_hint_the_claim_corrects(engine: Engine) -> None:
    (hi,) = enqueue(engine, [{"type": "noop", "company_id": "A", "priority": "high"}])
    (lo,) = enqueue(engine, [{"type": "noop", "company_id": "A", "priority": "low"}])
    (mid,) = enqueue(engine, [{"type": "noop", "company_id": "B", "priority": "normal"}])
    engine.link.run_sync(engine.ops.cancel, hi)
    # A's part is still filed at high; the claim re-files it at low and serves B first.
    assert [j.id for j in claim(engine.scripts, engine, 1)] == [mid]
    assert [j.id for j in claim(engine.scripts, engine, 5)] == [lo]


def test_parts_spell_type_and_company_unambiguously() -> None:
    assert part_name("a:b", "c") != part_name("a", "b:c")
    for job_type, company in [("a:b", "c"), ("a", "b:c"), ("żółw", "x:y"), ("noop", None)]:
        assert split_part(part_name(job_type, company)) == (job_type, company)


def test_ready_parts_lists_each_part_and_its_count(engine: Engine) -> None:
    enqueue(engine, [{"type": "noop", "company_id": "A"}] * 2 + [{"type": "noop"}])
    parts = {
        (p.job_type, p.company_id): p.ready for p in ready_parts(engine.link.client, engine.keys)
    }
    assert parts == {("noop", "A"): 2, ("noop", None): 1}


# -- limits -------------------------------------------------------------------------------


def test_type_concurrency_is_held_and_every_way_out_gives_the_slot_back(engine: Engine) -> None:
    limited = engine.scripts.for_claims(None, Limits({"noop": Limit(concurrency=2)}).encode())
    ids = enqueue(engine, [{"type": "noop"}] * 6)
    first = claim(limited, engine, 10)
    assert [j.id for j in first] == ids[:2]
    assert running(engine) == {"t:noop": 2}
    assert claim(limited, engine, 10) == []
    for job_id in ids[2:]:  # held back: pending, no attempt burnt
        assert status(engine, job_id) == (JobStatus.PENDING, 0)
    complete(engine, first[:1])  # complete gives one back
    (second,) = claim(limited, engine, 10)
    assert second.id == ids[2]
    delay = 60_000
    assert (
        engine.scripts.fail(engine.link.client, [(second.id, second.token, "x", "", True, delay)])[
            0
        ]
        > 0
    )  # fail gives one back
    (third,) = claim(limited, engine, 10)
    assert engine.scripts.release(engine.link.client, [(third.id, third.token)]) == [1]
    (again,) = claim(limited, engine, 10)  # release gave it back; it went to the head
    assert again.id == third.id
    assert running(engine) == {"t:noop": 2}
    complete(engine, [first[1], again])
    assert running(engine) == {}


def test_a_slot_of_a_dead_daemon_comes_back_when_its_lease_is_reaped(engine: Engine) -> None:
    limited = engine.scripts.for_claims(None, Limits({"noop": Limit(concurrency=1)}).encode())
    ids = enqueue(engine, [{"type": "noop"}] * 2)
    (held,) = claim(limited, engine, 5, lease_ms=1)  # its daemon dies: the lease runs out
    assert claim(limited, engine, 5) == []
    time.sleep(0.01)
    assert engine.scripts.reap(engine.link.client, 3, 100) == (1, 0, 0, 0)
    assert running(engine) == {}
    (nxt,) = claim(limited, engine, 5)  # the slot is free again: one more starts
    assert nxt.id == ids[1]  # the reaped job went back behind it (FIFO), to run again
    assert status(engine, held.id) == (JobStatus.PENDING, 1)


def test_company_concurrency_counts_each_company_apart(engine: Engine) -> None:
    limited = engine.scripts.for_claims(None, Limits(company=Limit(concurrency=1)).encode())
    enqueue(engine, [{"type": "noop", "company_id": "A"}] * 3)
    enqueue(engine, [{"type": "noop", "company_id": "B"}] * 3)
    enqueue(engine, [{"type": "noop"}] * 2)  # no company: not a company's limit
    got = claim(limited, engine, 10)
    assert sorted(j.company_id or "-" for j in got) == ["-", "-", "A", "B"]
    assert running(engine) == {"c:A": 1, "c:B": 1}


def test_rate_limit_counts_starts_in_a_sliding_window(engine: Engine) -> None:
    limits = Limits({"noop": Limit(starts=3, per=0.3)})
    limited = engine.scripts.for_claims(None, limits.encode())
    enqueue(engine, [{"type": "noop"}] * 5)
    first = claim(limited, engine, 10)
    assert len(first) == 3
    complete(engine, first)  # finishing does not give starts back
    assert claim(limited, engine, 10) == []
    time.sleep(0.35)
    assert len(claim(limited, engine, 10)) == 2


def test_limits_parse_and_encode() -> None:
    assert parse_limit("2") == Limit(2)
    assert parse_limit("10/1m") == Limit(0, 10, 60.0)
    assert parse_limit("3,10/1s") == Limit(3, 10, 1.0)
    assert parse_types(["data_export=2"]) == {"data_export": Limit(2)}
    for bad in (["x"], ["=2"], ["a=0"], ["a=2/0s"], ["a=2", "a=3"], ["a=two"]):
        with pytest.raises(ValueError):
            parse_types(bad)
    assert Limits().encode() == ""
    body = json.loads(Limits({"a": Limit(2)}, Limit(0, 5, 1.0)).encode())
    assert body == {"t": {"a": [2, 0, 0]}, "c": [0, 5, 1000]}


def test_waiting_reason_names_what_holds_a_job() -> None:
    limits = Limits({"data_export": Limit(2)}, Limit(5))
    assert waiting_reason(limits, "noop", "A", {}, {}, handled=False) == (
        "no running daemon has a handler for job type 'noop'"
    )
    assert "data_export" in (waiting_reason(limits, "data_export", "A", {"t:data_export": 2},
                                            {}, handled=True) or "")  # fmt: skip
    assert "company 'A'" in (waiting_reason(limits, "noop", "A", {"c:A": 5}, {}, True) or "")
    assert waiting_reason(limits, "noop", "A", {"c:A": 4}, {}, True) is None


def test_jobs_queued_by_a_version_before_parts_are_adopted(engine: Engine) -> None:
    """Before parts, `queue` held job ids: a claim moves each to its part, in place."""
    ids = enqueue(engine, [{"type": "noop", "company_id": "A"}] * 3)
    c, k = engine.link.client, engine.keys
    part = part_name("noop", "A")
    legacy = c.zrange(k.ready(part), 0, -1, withscores=True)
    c.delete(k.ready(part), k.queue)
    c.zadd(k.queue, dict(legacy))  # the old layout: job id → score
    assert [j.id for j in claim(engine.scripts, engine, 2)] == ids[:2]
    assert c.zrange(k.queue, 0, -1) == [part]
    assert [j.id for j in claim(engine.scripts, engine, 2)] == ids[2:]
