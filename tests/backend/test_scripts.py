"""The Lua transition scripts (fleetd/lua/*.lua through fleetd.backend.scripts) against the real
redis-server: stale tokens, retries and their backoff, release, renew, reap, the events
each transition appends, heartbeats and pruning; then the same scenario on the embedded
`memory://` store (fakeredis + lupa), which must behave identically.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import make_config

from fleetd.backend.scripts import ClaimedJob, ClaimResult
from fleetd.engine import Engine
from fleetd.jobs.model import Job, JobStatus, format_ts
from fleetd.jobs.retry import DEFAULT_RETRY_POLICY, RETRY_UNIT_MS

DAEMON = "test-daemon:1:abc"
LEASE_MS = 30_000
MAX_STALLS = 3
REAP_LIMIT = 100


# --- helpers --------------------------------------------------------------------------


def enqueue(engine: Engine, **fields: Any) -> str:
    rows = engine.ops.prepare_many([{"type": "noop", **fields}])
    return engine.link.run_sync(engine.ops.enqueue_rows, rows)[0].job_id


def claim(
    engine: Engine, count: int = 1, lease_ms: int = LEASE_MS, daemon: str = DAEMON
) -> ClaimResult:
    token = uuid.uuid4().hex
    return engine.scripts.claim(engine.link.client, count, lease_ms, token, daemon)


def claim_one(engine: Engine, lease_ms: int = LEASE_MS) -> ClaimedJob:
    jobs = claim(engine, lease_ms=lease_ms).jobs
    assert len(jobs) == 1
    return jobs[0]


def complete(engine: Engine, job_id: str, token: str, result: str = "{}") -> int:
    return engine.scripts.complete(engine.link.client, [(job_id, token, result, "{}")])[0]


def fail(engine: Engine, job: ClaimedJob, *, retryable: bool = True, error: str = "boom") -> int:
    delay = DEFAULT_RETRY_POLICY.next_delay_ms(job.retry_count, job.id)
    item = (job.id, job.token, error, "Traceback: " + error, retryable, delay)
    return engine.scripts.fail(engine.link.client, [item])[0]


def reap(engine: Engine, max_stalls: int = MAX_STALLS) -> tuple[int, int, int]:
    requeued, failed, cancelled, _quarantined = engine.scripts.reap(
        engine.link.client, max_stalls, REAP_LIMIT
    )
    return requeued, failed, cancelled


def get(engine: Engine, job_id: str) -> Job:
    job = engine.link.run_sync(engine.ops.get, job_id)
    assert job is not None
    return job


def make_due(engine: Engine, job_id: str) -> None:
    """End a retry's backoff now instead of waiting n² seconds."""
    assert engine.link.client.zadd(engine.keys.delayed, {job_id: 0}, xx=True, ch=True) == 1


def redis_ms(engine: Engine) -> int:
    sec, usec = engine.link.client.time()
    return int(sec) * 1000 + int(usec) // 1000


def events(engine: Engine) -> list[dict[str, str]]:
    return [fields for _, fields in engine.link.client.xrange(engine.keys.events)]


def last_event(engine: Engine) -> dict[str, str]:
    return events(engine)[-1]


def stats(engine: Engine) -> dict[str, int]:
    return engine.link.run_sync(engine.ops.stats)


# --- complete / fail ------------------------------------------------------------------


def test_complete_records_result(engine: Engine) -> None:
    job_id = enqueue(engine)
    job = claim_one(engine)
    assert complete(engine, job_id, job.token, '{"echo":{}}') == 1
    done = get(engine, job_id)
    assert done.status is JobStatus.COMPLETED
    assert done.result == {"echo": {}}
    assert done.completed_at_ms is not None and done.started_at_ms is not None
    assert done.completed_at_ms >= done.started_at_ms
    client = engine.link.client
    assert client.zscore(engine.keys.leases, job_id) is None
    assert client.hget(engine.keys.job(job_id), "lease") is None
    assert stats(engine)["completed"] == 1


def test_complete_with_a_stale_token_changes_nothing(engine: Engine) -> None:
    job_id = enqueue(engine)
    job = claim_one(engine)
    client = engine.link.client
    before = client.hgetall(engine.keys.job(job_id))
    n_events = client.xlen(engine.keys.events)
    assert complete(engine, job_id, "not-the-token") == 0
    assert client.hgetall(engine.keys.job(job_id)) == before
    assert client.xlen(engine.keys.events) == n_events
    assert client.zscore(engine.keys.leases, job_id) is not None
    # The true token still works once; a second completion is stale.
    assert complete(engine, job_id, job.token) == 1
    assert complete(engine, job_id, job.token) == 0
    assert get(engine, job_id).status is JobStatus.COMPLETED


def test_batched_complete_reports_each_job(engine: Engine) -> None:
    a, b = enqueue(engine), enqueue(engine)
    jobs = claim(engine, count=2).jobs
    items = [(a, jobs[0].token, "{}", "{}"), (b, "stale", "{}", "{}")]
    assert engine.scripts.complete(engine.link.client, items) == [1, 0]
    assert (get(engine, a).status, get(engine, b).status) == ("completed", "processing")


def test_stale_tokens_are_refused_by_every_running_transition(engine: Engine) -> None:
    job_id = enqueue(engine)
    job = claim_one(engine)
    client = engine.link.client
    before = client.hgetall(engine.keys.job(job_id))
    stale = dataclasses.replace(job, token="stale")
    assert fail(engine, stale) == -1
    assert engine.scripts.abort(client, [(job_id, "stale")]) == [0]
    assert engine.scripts.release(client, [(job_id, "stale")]) == [0]
    assert engine.scripts.renew(client, 1000, [(job_id, "stale")]) == [0]
    assert engine.scripts.progress(client, job_id, "stale", '{"percent":1}') is False
    assert client.hgetall(engine.keys.job(job_id)) == before


def test_fail_retries_after_n_squared_seconds_then_fails(engine: Engine) -> None:
    job_id = enqueue(engine, max_retries=3, company_id="c1")
    client = engine.link.client
    for n in (1, 2, 3):
        job = claim_one(engine)
        assert (job.id, job.attempts, job.retry_count) == (job_id, n, n - 1)
        before = redis_ms(engine)
        due = fail(engine, job, error=f"boom {n}")
        after = redis_ms(engine)
        delay = n * n * RETRY_UNIT_MS
        assert before + delay <= due <= after + delay
        retrying = get(engine, job_id)
        assert retrying.status is JobStatus.RETRYING
        assert retrying.retry_count == n
        assert retrying.run_at_ms == due
        assert retrying.error == f"boom {n}"
        assert retrying.traceback == f"Traceback: boom {n}"
        assert retrying.completed_at_ms is None
        assert client.zscore(engine.keys.delayed, job_id) == due
        assert stats(engine)["retrying"] == 1
        ev = last_event(engine)
        assert (ev["type"], ev["status"]) == ("job.retrying", "retrying")
        assert json.loads(ev["data"]) == {
            "error": f"boom {n}",
            "retry_count": n,
            "run_at": due,
            "attempt": n,
        }
        # Not claimable before its backoff is over.
        early = claim(engine)
        assert early.jobs == []
        assert early.next_due_ms == due
        make_due(engine, job_id)

    last = claim_one(engine)
    assert (last.attempts, last.retry_count) == (4, 3)
    assert fail(engine, last, error="boom 4") == 0
    failed = get(engine, job_id)
    assert failed.status is JobStatus.FAILED
    assert failed.retry_count == 3
    assert failed.attempts == 4
    assert failed.error == "boom 4"
    assert failed.completed_at_ms is not None
    assert client.zscore(engine.keys.delayed, job_id) is None
    assert stats(engine) == {
        "pending": 0,
        "processing": 0,
        "completed": 0,
        "failed": 1,
        "retrying": 0,
        "cancelled": 0,
        "total": 1,
    }
    ev = last_event(engine)
    assert (ev["type"], ev["job_id"], ev["status"], ev["company_id"]) == (
        "job.failed",
        job_id,
        "failed",
        "c1",
    )
    assert json.loads(ev["data"]) == {"error": "boom 4", "attempt": 4}


def test_error_text_is_json_escaped_in_the_event(engine: Engine) -> None:
    enqueue(engine, max_retries=0)
    nasty = 'quote " backslash \\ newline \n tab \t unicode é'
    assert fail(engine, claim_one(engine), error=nasty) == 0
    assert json.loads(last_event(engine)["data"])["error"] == nasty


def test_non_retryable_failure_fails_at_once(engine: Engine) -> None:
    job_id = enqueue(engine, max_retries=3)
    assert fail(engine, claim_one(engine), retryable=False) == 0
    job = get(engine, job_id)
    assert (job.status, job.retry_count) == (JobStatus.FAILED, 0)
    assert job.completed_at_ms is not None
    assert engine.link.client.zcard(engine.keys.delayed) == 0


def test_max_retries_zero_fails_at_once(engine: Engine) -> None:
    job_id = enqueue(engine, max_retries=0)
    assert fail(engine, claim_one(engine)) == 0
    assert get(engine, job_id).status is JobStatus.FAILED


def test_promote_moves_due_retries_back_to_pending(engine: Engine) -> None:
    job_id = enqueue(engine)
    due = fail(engine, claim_one(engine))
    client = engine.link.client
    client.delete(engine.keys.wake)
    moved, next_due, _ = engine.scripts.promote(client)
    assert (moved, next_due) == (0, due)
    make_due(engine, job_id)
    moved, next_due, _ = engine.scripts.promote(client)
    assert (moved, next_due) == (1, None)
    assert get(engine, job_id).status is JobStatus.PENDING
    assert stats(engine)["pending"] == 1 and stats(engine)["retrying"] == 0
    assert client.llen(engine.keys.wake) == 1
    assert claim_one(engine).retry_count == 1


# --- release / abort / renew / progress -----------------------------------------------


def test_release_puts_a_job_at_the_head_of_its_priority(engine: Engine) -> None:
    first = enqueue(engine)
    job = claim_one(engine)
    second, third = enqueue(engine), enqueue(engine)
    high = enqueue(engine, priority="high")
    assert engine.scripts.release(engine.link.client, [(first, job.token)]) == [1]
    back = get(engine, first)
    assert back.status is JobStatus.PENDING
    assert back.attempts == 0  # the interrupted attempt is not counted
    assert back.retry_count == 0
    assert back.worker is None
    ev = last_event(engine)
    assert (ev["type"], ev["job_id"], ev["status"]) == ("job.requeued", first, "pending")
    order = [claim_one(engine) for _ in range(4)]
    assert [j.id for j in order] == [high, first, second, third]
    assert order[1].attempts == 1


def test_release_of_a_job_with_a_cancel_request_cancels_it(engine: Engine) -> None:
    job_id = enqueue(engine)
    job = claim_one(engine)
    assert engine.link.run_sync(engine.ops.cancel, job_id).outcome == "cancelling"
    assert engine.scripts.release(engine.link.client, [(job_id, job.token)]) == [1]
    assert get(engine, job_id).status is JobStatus.CANCELLED
    ev = last_event(engine)
    assert (ev["type"], ev["status"], json.loads(ev["data"])) == (
        "job.cancelled",
        "cancelled",
        {"running": True},
    )
    assert claim(engine).jobs == []
    assert stats(engine)["cancelled"] == 1


def test_abort_ends_a_running_job_cancelled(engine: Engine) -> None:
    job_id = enqueue(engine)
    job = claim_one(engine)
    engine.link.run_sync(engine.ops.cancel, job_id)
    assert engine.scripts.abort(engine.link.client, [(job_id, job.token)]) == [1]
    cancelled = get(engine, job_id)
    assert cancelled.status is JobStatus.CANCELLED
    assert cancelled.cancel_requested is False
    assert cancelled.completed_at_ms is not None
    assert stats(engine) == {**_zero(), "cancelled": 1, "total": 1}


def _zero() -> dict[str, int]:
    return dict.fromkeys(
        ("pending", "processing", "completed", "failed", "retrying", "cancelled", "total"), 0
    )


def test_renew_answers_renewed_cancel_requested_or_lost(engine: Engine) -> None:
    a, b = enqueue(engine), enqueue(engine)
    jobs = {j.id: j for j in claim(engine, count=2, lease_ms=1000).jobs}
    client = engine.link.client
    old = client.zscore(engine.keys.leases, a)
    assert old is not None
    now = redis_ms(engine)
    assert engine.scripts.renew(client, 60_000, [(a, jobs[a].token), (b, jobs[b].token)]) == [
        1,
        1,
    ]
    new = client.zscore(engine.keys.leases, a)
    assert new is not None and new >= now + 60_000 > old
    engine.link.run_sync(engine.ops.cancel, b)
    assert engine.scripts.renew(client, 1000, [(a, jobs[a].token), (b, jobs[b].token)]) == [1, 2]
    assert complete(engine, a, jobs[a].token) == 1
    assert engine.scripts.renew(client, 1000, [(a, jobs[a].token), (b, "stale")]) == [0, 0]
    # A lost lease is not re-created.
    assert client.zscore(engine.keys.leases, a) is None


def test_progress_is_recorded_and_published(engine: Engine) -> None:
    job_id = enqueue(engine, company_id="c1")
    job = claim_one(engine)
    progress = '{"percent":40,"message":"rows"}'
    assert engine.scripts.progress(engine.link.client, job_id, job.token, progress) is True
    assert get(engine, job_id).progress == {"percent": 40, "message": "rows"}
    ev = last_event(engine)
    assert (ev["type"], ev["status"], ev["company_id"], ev["data"]) == (
        "job.progress",
        "processing",
        "c1",
        progress,
    )


# --- reap -----------------------------------------------------------------------------


def test_reap_returns_an_expired_lease_to_pending(engine: Engine) -> None:
    job_id = enqueue(engine)
    job = claim_one(engine, lease_ms=200)
    assert reap(engine) == (0, 0, 0)
    assert get(engine, job_id).status is JobStatus.PROCESSING
    time.sleep(0.25)
    assert reap(engine) == (1, 0, 0)
    back = get(engine, job_id)
    assert back.status is JobStatus.PENDING
    assert back.stalls == 1
    assert back.worker is None
    assert stats(engine)["pending"] == 1 and stats(engine)["processing"] == 0
    ev = last_event(engine)
    assert (ev["type"], ev["job_id"], ev["status"]) == ("job.stalled", job_id, "pending")
    assert json.loads(ev["data"]) == {"stalls": 1, "worker": DAEMON}
    # The old holder's completion is stale; the next claim runs it again.
    assert complete(engine, job_id, job.token) == 0
    again = claim_one(engine)
    assert (again.id, again.attempts) == (job_id, 2)


def test_reap_leaves_live_leases_alone(engine: Engine) -> None:
    live = enqueue(engine)
    claim_one(engine)
    dead = enqueue(engine)
    claim_one(engine, lease_ms=0)
    assert reap(engine) == (1, 0, 0)
    assert get(engine, live).status is JobStatus.PROCESSING
    assert get(engine, dead).status is JobStatus.PENDING


def test_reap_fails_a_job_after_max_stalls(engine: Engine) -> None:
    job_id = enqueue(engine)
    outcomes = []
    for _ in range(MAX_STALLS):
        claim_one(engine, lease_ms=0)
        time.sleep(0.002)
        outcomes.append(reap(engine))
    assert outcomes == [(1, 0, 0), (1, 0, 0), (0, 1, 0)]
    job = get(engine, job_id)
    assert job.status is JobStatus.FAILED
    assert job.stalls == MAX_STALLS
    assert job.error is not None and "stalled 3 times" in job.error
    assert job.completed_at_ms is not None
    assert stats(engine) == {**_zero(), "failed": 1, "total": 1}
    ev = last_event(engine)
    assert (ev["type"], ev["status"]) == ("job.failed", "failed")
    assert json.loads(ev["data"]) == {"error": "stalled", "stalls": MAX_STALLS}


def test_reap_cancels_a_job_with_a_cancel_request(engine: Engine) -> None:
    job_id = enqueue(engine)
    claim_one(engine, lease_ms=0)
    assert engine.link.run_sync(engine.ops.cancel, job_id).outcome == "cancelling"
    time.sleep(0.002)
    assert reap(engine) == (0, 0, 1)
    job = get(engine, job_id)
    assert job.status is JobStatus.CANCELLED
    assert job.completed_at_ms is not None
    assert stats(engine) == {**_zero(), "cancelled": 1, "total": 1}
    ev = last_event(engine)
    assert (ev["type"], ev["status"], json.loads(ev["data"])) == (
        "job.cancelled",
        "cancelled",
        {"running": True},
    )


# --- the events stream ----------------------------------------------------------------


def test_each_transition_appends_exactly_its_event(engine: Engine) -> None:
    client = engine.link.client
    # A: enqueue → start → retry → (backoff over) start → complete.
    a = enqueue(engine, company_id="c1")
    job = claim_one(engine)
    fail(engine, job)
    make_due(engine, a)
    job = claim_one(engine)
    complete(engine, a, job.token)
    # B: enqueue → cancel while pending → reset → cancel again.
    b = enqueue(engine, company_id="c2")
    engine.link.run_sync(engine.ops.cancel, b)
    engine.link.run_sync(engine.ops.reset, b)
    engine.link.run_sync(engine.ops.cancel, b)
    # C: enqueue → start → cancel requested (no event yet) → aborted.
    c = enqueue(engine)
    job = claim_one(engine)
    engine.link.run_sync(engine.ops.cancel, c)
    engine.scripts.abort(client, [(c, job.token)])
    # D: enqueue → start → lease expires → stalled → start → released.
    d = enqueue(engine)
    claim_one(engine, lease_ms=0)
    time.sleep(0.002)
    reap(engine)
    job = claim_one(engine)
    engine.scripts.release(client, [(d, job.token)])
    # Refused or stale transitions add nothing.
    complete(engine, d, "stale")
    engine.link.run_sync(engine.ops.reset, a)
    engine.link.run_sync(engine.ops.cancel, a)

    got = [
        (e["type"], e["job_id"], e["job_type"], e["company_id"], e["status"])
        for e in events(engine)
    ]
    assert got == [
        ("job.enqueued", a, "noop", "c1", "pending"),
        ("job.started", a, "noop", "c1", "processing"),
        ("job.retrying", a, "noop", "c1", "retrying"),
        ("job.started", a, "noop", "c1", "processing"),
        ("job.completed", a, "noop", "c1", "completed"),
        ("job.enqueued", b, "noop", "c2", "pending"),
        ("job.cancelled", b, "noop", "c2", "cancelled"),
        ("job.reset", b, "noop", "c2", "pending"),
        ("job.cancelled", b, "noop", "c2", "cancelled"),
        ("job.enqueued", c, "noop", "", "pending"),
        ("job.started", c, "noop", "", "processing"),
        ("job.cancelled", c, "noop", "", "cancelled"),
        ("job.enqueued", d, "noop", "", "pending"),
        ("job.started", d, "noop", "", "processing"),
        ("job.stalled", d, "noop", "", "pending"),
        ("job.started", d, "noop", "", "processing"),
        ("job.requeued", d, "noop", "", "pending"),
    ]
    every = events(engine)
    assert all(
        set(e) == {"type", "job_id", "job_type", "company_id", "status", "ts", "data"}
        for e in every
    )
    ts = [int(e["ts"]) for e in every]
    assert ts == sorted(ts)
    assert json.loads(every[0]["data"]) == {"priority": 5}
    assert json.loads(every[1]["data"]) == {"attempt": 1, "worker": DAEMON}
    assert json.loads(every[3]["data"]) == {"attempt": 2, "worker": DAEMON}
    assert json.loads(every[7]["data"]) == {"from": "cancelled"}


def test_enqueue_events_carry_run_at_for_delayed_jobs(engine: Engine) -> None:
    run_at = redis_ms(engine) + 60_000
    enqueue(engine, run_at=format_ts(run_at), priority=7)
    assert json.loads(last_event(engine)["data"]) == {"priority": 7, "run_at": run_at}


# --- wake tokens ----------------------------------------------------------------------


def test_wake_tokens_are_capped_and_cleared_when_the_queue_empties(engine: Engine) -> None:
    rows = engine.ops.prepare_many([{"type": "noop"} for _ in range(100)])
    engine.link.run_sync(engine.ops.enqueue_rows, rows)
    client = engine.link.client
    assert client.llen(engine.keys.wake) == 64
    claim(engine, count=99)
    assert client.llen(engine.keys.wake) == 64
    claim(engine, count=1)
    assert client.exists(engine.keys.wake) == 0


# --- heartbeats and pruning -----------------------------------------------------------


def heartbeat(engine: Engine, daemon_id: str, ttl_ms: int, leaving: bool = False) -> int:
    payload = json.dumps({"daemon_id": daemon_id})
    return engine.scripts.heartbeat(engine.link.client, daemon_id, payload, ttl_ms, leaving)


def live_daemons(engine: Engine) -> set[str]:
    return {d["daemon_id"] for d in engine.link.run_sync(engine.ops.daemons)}


def test_heartbeat_entries_expire_after_their_ttl(engine: Engine) -> None:
    client = engine.link.client
    now = heartbeat(engine, "short", 100)
    assert abs(now - redis_ms(engine)) < 1000
    heartbeat(engine, "long", 60_000)
    assert live_daemons(engine) == {"short", "long"}
    assert client.zscore(engine.keys.heartbeats, "short") == now + 100
    time.sleep(0.15)
    # Any daemon's next beat forgets the dead one.
    heartbeat(engine, "long", 60_000)
    assert set(client.hkeys(engine.keys.daemons)) == {"long"}
    assert client.zrange(engine.keys.heartbeats, 0, -1) == ["long"]
    assert live_daemons(engine) == {"long"}
    # Leaving removes the entry at once.
    heartbeat(engine, "long", 60_000, leaving=True)
    assert live_daemons(engine) == set()
    assert client.exists(engine.keys.daemons, engine.keys.heartbeats) == 0


def test_daemons_lists_only_live_entries_before_any_sweep(engine: Engine) -> None:
    # A daemon that died alone: nobody's heartbeat has swept its entry yet.
    client = engine.link.client
    if redis_ms(engine) % 1000 < 50:
        time.sleep(0.06)  # be at least 50 ms into a second
    now = redis_ms(engine)
    client.hset(engine.keys.daemons, "dead", json.dumps({"daemon_id": "dead"}))
    client.zadd(engine.keys.heartbeats, {"dead": now - 20})
    assert live_daemons(engine) == set()


def test_prune_deletes_old_finished_jobs_and_emits_jobs_pruned(engine: Engine) -> None:
    client = engine.link.client
    ids = [enqueue(engine, idempotency_key=f"k{i}") for i in range(3)]
    for job in claim(engine, count=3).jobs:
        complete(engine, job.id, job.token)
    n_events = client.xlen(engine.keys.events)
    assert engine.scripts.prune(client, JobStatus.COMPLETED, 3_600_000, 100) == (0, 0)
    assert client.xlen(engine.keys.events) == n_events  # nothing pruned, no event
    time.sleep(0.005)
    assert engine.scripts.prune(client, JobStatus.COMPLETED, 0, 2) == (2, 0)
    assert engine.scripts.prune(client, JobStatus.COMPLETED, 0, 2) == (1, 0)
    assert all(client.exists(engine.keys.job(i)) == 0 for i in ids)
    assert all(client.exists(engine.keys.idem(None, f"k{i}")) == 0 for i in range(3))
    assert client.zcard(engine.keys.status(JobStatus.COMPLETED)) == 0
    pruned = events(engine)[-2:]
    assert [(e["type"], e["job_id"], e["status"]) for e in pruned] == [
        ("jobs.pruned", "", "completed"),
        ("jobs.pruned", "", "completed"),
    ]
    assert [json.loads(e["data"]) for e in pruned] == [{"count": 2}, {"count": 1}]


def test_prune_pages_past_the_kept_nodes_of_live_workflows(engine: Engine) -> None:
    """Jobs of a stored workflow are kept; the clean-up's later calls skip them (by
    rank) and delete every other old job, also with more kept than one call takes."""
    client = engine.link.client
    ids = [enqueue(engine) for _ in range(12)]
    for job in claim(engine, count=12).jobs:
        complete(engine, job.id, job.token)
    kept = set(ids[::2])  # every other one: kept and deleted interleave on each page
    client.set(engine.keys.prefix + "wf:wf_live", "1")
    for job_id in kept:
        client.hset(engine.keys.job(job_id), "wf", "wf_live")
    time.sleep(0.005)
    calls, offset, deleted = [], 0, 0
    while True:
        n, k = engine.scripts.prune(client, JobStatus.COMPLETED, 0, 4, offset)
        calls.append((n, k))
        deleted, offset = deleted + n, offset + k
        if n + k < 4:
            break
    assert deleted == 6 and offset == 6, calls
    left = client.zrange(engine.keys.status(JobStatus.COMPLETED), 0, -1)
    assert set(left) == kept
    assert all(client.exists(engine.keys.job(i)) == (1 if i in kept else 0) for i in ids)


# --- embedded store parity ------------------------------------------------------------


def scenario(engine: Engine) -> dict[str, Any]:
    """A small life of three jobs; returns everything observable but ids and times."""
    rows = engine.ops.prepare_many(
        [
            {"type": "noop", "priority": "low", "company_id": "c1"},
            {"type": "noop", "priority": "high", "max_retries": 1},
            {"type": "noop", "priority": "critical", "tags": ["x"]},
        ]
    )
    low, high, critical = (r.job_id for r in engine.link.run_sync(engine.ops.enqueue_rows, rows))
    names = {low: "low", high: "high", critical: "critical"}
    order = []
    first = claim_one(engine)
    order.append(names[first.id])
    assert complete(engine, first.id, first.token, '{"ok":true}') == 1
    second = claim_one(engine)
    order.append(names[second.id])
    retry_due = fail(engine, second)
    cancel = engine.link.run_sync(engine.ops.cancel, low)
    after_retry = claim(engine)
    make_due(engine, high)
    third = claim_one(engine)
    order.append(names[third.id])
    final = fail(engine, third)
    reset = engine.link.run_sync(engine.ops.reset, high)
    jobs = {name: get(engine, job_id) for job_id, name in names.items()}
    return {
        "order": order,
        "retry_delay_ok": 0 < retry_due - after_retry.now_ms <= RETRY_UNIT_MS,
        "claim_while_backing_off": (len(after_retry.jobs), after_retry.next_due_ms == retry_due),
        "final_fail": final,
        "cancel": (cancel.outcome, cancel.status),
        "reset": (reset.outcome, reset.status),
        "jobs": {
            name: (
                job.status.value,
                job.priority,
                job.retry_count,
                job.attempts,
                job.result,
                job.company_id,
                job.tags,
                job.error,
            )
            for name, job in jobs.items()
        },
        "stats": stats(engine),
        "events": [(e["type"], names[e["job_id"]], e["status"]) for e in events(engine)],
    }


def running_scenario(engine: Engine) -> dict[str, Any]:
    """Leases of running jobs: renew, reap, release, abort, progress, heartbeat, prune."""
    client = engine.link.client
    a, b, c = (enqueue(engine, idempotency_key=k) for k in ("a", "b", "c"))
    names = {a: "a", b: "b", c: "c"}
    token = "tok"
    first = engine.scripts.claim(client, 2, 0, token, DAEMON)
    renewed = engine.scripts.renew(client, 60_000, [(a, token), (b, "stale")])
    progressed = engine.scripts.progress(client, a, token, '{"percent":50}')
    time.sleep(0.002)
    reaped = reap(engine)
    again = claim(engine, count=5)
    held = {j.id: j.token for j in again.jobs}
    released = engine.scripts.release(client, [(b, held[b])])
    engine.link.run_sync(engine.ops.cancel, c)
    aborted = engine.scripts.abort(client, [(c, held[c]), (b, "stale")])
    completed = complete(engine, a, token)
    time.sleep(0.005)
    pruned = engine.link.run_sync(engine.ops.cleanup, 0)
    duplicate = engine.link.run_sync(
        engine.ops.enqueue_rows, engine.ops.prepare_many([{"type": "noop", "idempotency_key": "b"}])
    )[0]
    heartbeat(engine, "d1", 60_000)
    heartbeat(engine, "d2", 60_000)
    heartbeat(engine, "d2", 60_000, leaving=True)
    names.setdefault(duplicate.job_id, "new")
    return {
        "first": sorted(names[j.id] for j in first.jobs),
        "renewed": renewed,
        "progressed": progressed,
        "reaped": reaped,
        "again": sorted(names[j.id] for j in again.jobs),
        "released": released,
        "aborted": aborted,
        "completed": completed,
        "pruned": pruned,
        "duplicate": (names[duplicate.job_id], duplicate.status, duplicate.duplicate),
        "daemons": live_daemons(engine),
        "jobs": {
            name: (j.status.value, j.attempts, j.stalls, j.progress)
            for job_id, name in names.items()
            if (j := engine.link.run_sync(engine.ops.get, job_id)) is not None
        },
        "stats": stats(engine),
        "events": [(e["type"], names.get(e["job_id"], ""), e["status"]) for e in events(engine)],
    }


@pytest.mark.parametrize("run", [scenario, running_scenario], ids=["lifecycle", "leases"])
def test_embedded_store_runs_the_same_scripts_identically(
    engine: Engine, namespace: str, tmp_path: Path, run: Callable[[Engine], dict[str, Any]]
) -> None:
    cfg = make_config("memory://", namespace, tmp_path / "s", redis={"memory_listen": ""})
    embedded = Engine.build(cfg, daemon=True)
    try:
        assert embedded.link.embedded
        assert embedded.link.served_url is None  # not served on TCP
        for script in embedded.scripts.all():
            script.load(embedded.link.client)
        on_memory = run(embedded)
    finally:
        embedded.close()
    on_redis = run(engine)
    assert on_memory == on_redis
    if run is scenario:
        # And the scenario itself went as the contract says.
        assert on_redis["order"] == ["critical", "high", "high"]
        assert on_redis["jobs"]["critical"][0] == "completed"
        assert on_redis["jobs"]["low"][0] == "cancelled"
        assert on_redis["jobs"]["high"][:3] == ("pending", 10, 0)
        assert on_redis["stats"] == {
            **_zero(),
            "pending": 1,
            "completed": 1,
            "cancelled": 1,
            "total": 3,
        }
    else:
        assert on_redis["renewed"] == [1, 0]
        assert on_redis["reaped"] == (1, 0, 0)
        assert on_redis["released"] == [1]
        assert on_redis["aborted"] == [1, 0]
        assert on_redis["completed"] == 1
        assert on_redis["pruned"]["deleted"] == 2
        assert on_redis["duplicate"] == ("b", "pending", True)
        assert on_redis["daemons"] == {"d1"}
