"""fleetd.jobs.queue against the real redis-server: enqueue (one, bulk, idempotent, delayed),
priority order, cancel, reset, stats, listing with cursors, and cleanup.

Jobs are driven through their lifecycle with the transition scripts directly
(claim/complete/fail), so no worker pool runs here.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import trio

from fleetd.backend.codec import JobRow
from fleetd.backend.scripts import ClaimedJob, ClaimResult
from fleetd.engine import Engine
from fleetd.jobs import pages as pages_module
from fleetd.jobs import queue as queue_module
from fleetd.jobs.handlers import HandlerDefaults
from fleetd.jobs.model import JobStatus, ValidationError, format_ts
from fleetd.jobs.parts import ready_depth
from fleetd.jobs.queue import EnqueueResult, JobPage
from fleetd.jobs.retry import DEFAULT_RETRY_POLICY

DAEMON = "test-daemon:1:abc"
LEASE_MS = 30_000
ZERO_STATS = {
    "pending": 0,
    "processing": 0,
    "completed": 0,
    "failed": 0,
    "retrying": 0,
    "cancelled": 0,
    "total": 0,
}


class EchoHandler:
    """A second job type (for type filters and handler defaults)."""

    job_type = "echo"
    defaults = HandlerDefaults(priority=10, max_retries=1, timeout=7.0)

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        return data

    async def run(self, ctx: Any, data: dict[str, Any]) -> dict[str, Any]:
        return data


# --- helpers (sync path: one RedisLink hop each) --------------------------------------


def enqueue_many(engine: Engine, reqs: Sequence[dict[str, Any]]) -> list[EnqueueResult]:
    rows = engine.ops.prepare_many(reqs)
    return engine.link.run_sync(engine.ops.enqueue_rows, rows)


def enqueue(engine: Engine, **fields: Any) -> str:
    return enqueue_many(engine, [{"type": "noop", **fields}])[0].job_id


def claim(engine: Engine, count: int = 1, lease_ms: int = LEASE_MS) -> ClaimResult:
    token = uuid.uuid4().hex
    return engine.scripts.claim(engine.link.client, count, lease_ms, token, DAEMON)


def claim_one(engine: Engine) -> ClaimedJob:
    jobs = claim(engine).jobs
    assert len(jobs) == 1
    return jobs[0]


def complete(engine: Engine, job: ClaimedJob, result: dict[str, Any] | None = None) -> None:
    item = (job.id, job.token, json.dumps(result or {}), "{}")
    assert engine.scripts.complete(engine.link.client, [item]) == [1]


def fail(engine: Engine, job: ClaimedJob, *, retryable: bool = True) -> int:
    delay = DEFAULT_RETRY_POLICY.next_delay_ms(job.retry_count, job.id)
    item = (job.id, job.token, "boom", "Traceback: boom", retryable, delay)
    return engine.scripts.fail(engine.link.client, [item])[0]


def status_of(engine: Engine, job_id: str) -> JobStatus:
    job = engine.link.run_sync(engine.ops.get, job_id)
    assert job is not None
    return job.status


def stats(engine: Engine) -> dict[str, int]:
    return engine.link.run_sync(engine.ops.stats)


def redis_ms(engine: Engine) -> int:
    sec, usec = engine.link.client.time()
    return int(sec) * 1000 + int(usec) // 1000


def namespace_keys(engine: Engine) -> set[str]:
    return set(engine.link.client.scan_iter(match=engine.keys.prefix + "*", count=1000))


def event_types(engine: Engine) -> list[tuple[str, str]]:
    return [(f["type"], f["job_id"]) for _, f in engine.link.client.xrange(engine.keys.events)]


def list_page(engine: Engine, status: JobStatus, **kw: Any) -> JobPage:
    return engine.link.run_sync(lambda c: engine.ops.list_jobs(c, status, **kw))


def walk(engine: Engine, status: JobStatus, limit: int, **kw: Any) -> list[list[str]]:
    """Every page of a listing, as lists of ids."""
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = list_page(engine, status, limit=limit, cursor=cursor, **kw)
        pages.append([j.id for j in page.jobs])
        cursor = page.next_cursor
        if cursor is None:
            return pages
        assert len(pages) < 100, "pagination does not end"


def pause_ms(ms: float = 3) -> None:
    """Let the Redis clock move on, so creation/finish scores differ."""
    time.sleep(ms / 1000)


# --- enqueue --------------------------------------------------------------------------


async def test_enqueue_then_get_returns_the_spec_shape(engine: Engine) -> None:
    before = redis_ms(engine)
    res = await engine.queue.enqueue(
        {
            "type": "noop",
            "data": {"to": "user@example.com"},
            "priority": 10,
            "max_retries": 2,
            "tags": ["test", "notification"],
            "company_id": "c1",
            "user_id": "u1",
            "timeout": "30s",
        }
    )
    assert res.status == "pending"
    assert res.duplicate is False
    assert before <= res.enqueued_at_ms <= redis_ms(engine)
    body = res.to_dict()
    assert body == {"job_id": res.job_id, "status": "pending", "enqueued": body["enqueued"]}
    assert body["enqueued"] == format_ts(res.enqueued_at_ms)

    job = await engine.queue.get(res.job_id)
    assert job is not None
    assert job.to_dict() == {
        "id": res.job_id,
        "type": "noop",
        "data": {"to": "user@example.com"},
        "priority": 10,
        "status": "pending",
        "created_at": format_ts(res.enqueued_at_ms),
        "retry_count": 0,
        "max_retries": 2,
        "company_id": "c1",
        "user_id": "u1",
        "tags": ["test", "notification"],
        "timeout": 30.0,
        "updated_at": format_ts(res.enqueued_at_ms),
        "attempts": 0,
        "queue": "default",
    }
    assert await engine.queue.get("job_missing") is None


def test_enqueue_stamps_defaults(engine: Engine) -> None:
    engine.registry.register(EchoHandler(), source="test")
    plain = engine.link.run_sync(engine.ops.get, enqueue(engine))
    echo = engine.link.run_sync(engine.ops.get, enqueue(engine, type="echo"))
    explicit = engine.link.run_sync(
        engine.ops.get, enqueue(engine, type="echo", priority="low", max_retries=0, timeout=2)
    )
    assert plain is not None and echo is not None and explicit is not None
    # Config defaults: priority 5 (normal), max_retries 3, timeout left to the worker.
    assert (plain.priority, plain.max_retries, plain.timeout) == (5, 3, None)
    # Handler defaults win over the config's; the caller wins over both (0 included).
    assert (echo.priority, echo.max_retries, echo.timeout) == (10, 1, 7.0)
    assert (explicit.priority, explicit.max_retries, explicit.timeout) == (1, 0, 2.0)


async def test_enqueue_many_in_one_hop_and_chunks(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    script_calls: list[int] = []
    hops: list[str] = []
    real_enqueue = engine.scripts.enqueue
    real_run_sync = engine.link.run_sync

    def counting_enqueue(client: Any, rows: Sequence[JobRow], quota: str = "") -> Any:
        script_calls.append(len(rows))
        return real_enqueue(client, rows, quota)

    def counting_run_sync(fn: Callable[..., Any], *args: Any) -> Any:
        hops.append(getattr(fn, "__name__", "?"))
        return real_run_sync(fn, *args)

    monkeypatch.setattr(engine.scripts, "enqueue", counting_enqueue)
    monkeypatch.setattr(engine.link, "run_sync", counting_run_sync)

    n = 2500
    reqs = [{"type": "noop", "data": {"i": i}} for i in range(n)]
    results = await engine.queue.enqueue_many(reqs)
    monkeypatch.undo()

    assert hops == ["enqueue_rows"]
    assert script_calls == [1000, 1000, 500]
    assert len(results) == n
    assert len({r.job_id for r in results}) == n
    assert all(r.status == "pending" and not r.duplicate for r in results)
    assert stats(engine) == {**ZERO_STATS, "pending": n, "total": n}
    client = engine.link.client
    assert ready_depth(client, engine.keys) == n
    assert client.xlen(engine.keys.events) == n
    # Results come back in input order, and the queue is FIFO in that order.
    first = claim(engine, count=3).jobs
    assert [j.id for j in first] == [r.job_id for r in results[:3]]
    assert [j.data for j in first] == [{"i": 0}, {"i": 1}, {"i": 2}]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"type": "noop", "priority": 99}, "jobs[2].priority"),
        ({"type": "noop", "bogus": 1}, "jobs[2].bogus"),
        ({"type": "noop", "data": {"sleep_ms": -1}}, "jobs[2].data.sleep_ms"),
        ({"type": "nope"}, "jobs[2].type"),
        ({"type": "noop", "run_at": "tomorrow"}, "jobs[2].run_at"),
    ],
)
async def test_bulk_validation_is_all_or_nothing(
    engine: Engine, bad: dict[str, Any], field: str
) -> None:
    good = {"type": "noop", "data": {}}
    with pytest.raises(ValidationError) as info:
        await engine.queue.enqueue_many([good, good, bad, good])
    assert info.value.field == field
    assert stats(engine) == ZERO_STATS
    assert namespace_keys(engine) == set()


async def test_unknown_job_type_enqueues_nothing(engine: Engine) -> None:
    with pytest.raises(ValidationError) as info:
        await engine.queue.enqueue({"type": "no_such_type", "data": {}})
    assert info.value.field == "type"
    assert "noop" in info.value.message  # names the known types
    assert stats(engine) == ZERO_STATS
    assert namespace_keys(engine) == set()


async def test_idempotency_key_returns_the_same_job(engine: Engine) -> None:
    first = await engine.queue.enqueue({"type": "noop", "idempotency_key": "report-2024-01"})
    second = await engine.queue.enqueue({"type": "noop", "idempotency_key": "report-2024-01"})
    assert (first.duplicate, second.duplicate) == (False, True)
    assert second.job_id == first.job_id
    assert second.to_dict()["duplicate"] is True
    assert stats(engine)["total"] == 1
    assert event_types(engine) == [("job.enqueued", first.job_id)]
    client = engine.link.client
    assert client.get(engine.keys.idem(None, "report-2024-01")) == first.job_id

    job = claim_one(engine)
    assert job.id == first.job_id
    complete(engine, job)
    third = await engine.queue.enqueue({"type": "noop", "idempotency_key": "report-2024-01"})
    assert (third.job_id, third.status, third.duplicate) == (first.job_id, "completed", True)
    # A duplicate reports when the existing job was enqueued, not when it was asked again.
    assert third.enqueued_at_ms == second.enqueued_at_ms == first.enqueued_at_ms
    assert stats(engine) == {**ZERO_STATS, "completed": 1, "total": 1}
    # A different key is a different job.
    other = await engine.queue.enqueue({"type": "noop", "idempotency_key": "report-2024-02"})
    assert other.job_id != first.job_id and not other.duplicate


def test_duplicates_inside_one_bulk_call_keep_their_places(engine: Engine) -> None:
    """enqueue.lua lists only the duplicates of a call, by position: the others are
    the rows' own ids, pending, created at the call's time."""
    earlier = enqueue_many(engine, [{"type": "noop", "idempotency_key": "k0"}])[0]
    reqs: list[dict[str, Any]] = [
        {"type": "noop"},
        {"type": "noop", "idempotency_key": "k1"},
        {"type": "noop", "idempotency_key": "k0"},  # the earlier call's job
        {"type": "noop", "idempotency_key": "k1"},  # the second job of this call
        {"type": "noop", "priority": 10},
    ]
    out = enqueue_many(engine, reqs)
    assert [r.duplicate for r in out] == [False, False, True, True, False]
    assert out[2].job_id == earlier.job_id and out[3].job_id == out[1].job_id
    assert out[2].enqueued_at_ms == earlier.enqueued_at_ms
    assert len({out[0].job_id, out[1].job_id, out[4].job_id, earlier.job_id}) == 4
    assert {r.status for r in out} == {"pending"}
    assert stats(engine)["pending"] == 4
    # FIFO within a priority and priority first, as with one ZADD per job.
    assert [j.id for j in claim(engine, 4).jobs] == [
        out[4].job_id, earlier.job_id, out[0].job_id, out[1].job_id,
    ]  # fmt: skip


async def test_idempotency_keys_of_companies_whose_ids_hold_colons_never_meet(
    engine: Engine,
) -> None:
    """`acme` + `eu:order-1` and `acme:eu` + `order-1` once shared `idem:acme:eu:order-1`:
    the second job was dropped as a duplicate and told the first company's job id."""
    # Also: no company against a key shaped like a namespaced one, and multi-byte company
    # ids (the length counts UTF-8 bytes on both sides).
    pairs = [("acme", "eu:order-1"), ("acme:eu", "order-1"), (None, "4:acme:eu:order-1"),
             ("żółw", "x"), ("żó", "łw:x")]  # fmt: skip
    first = []
    for company, key in pairs:
        req = {"type": "noop", "company_id": company, "idempotency_key": key}
        first.append(await engine.queue.enqueue(req))
    assert [r.duplicate for r in first] == [False] * len(pairs)
    assert len({r.job_id for r in first}) == len(pairs)
    client = engine.link.client
    for (company, key), result in zip(pairs, first, strict=True):
        assert client.get(engine.keys.idem(company, key)) == result.job_id
        job = await engine.queue.get(result.job_id)
        assert job is not None and job.idempotency_key == key  # stored as given
        again = await engine.queue.enqueue(
            {"type": "noop", "company_id": company, "idempotency_key": key}
        )
        assert (again.job_id, again.duplicate) == (result.job_id, True)
    assert stats(engine)["total"] == len(pairs)


async def test_cleanup_deletes_idempotency_keys_old_and_new(engine: Engine) -> None:
    """A job enqueued before keys were namespaced by company left `idem:<key>`; cleanup
    deletes it with the job, but never a key that names another job."""
    client = engine.link.client
    done = await engine.queue.enqueue(
        {"type": "noop", "company_id": "acme", "idempotency_key": "k"}
    )
    other = await engine.queue.enqueue({"type": "noop"})
    legacy, foreign = f"{engine.keys.prefix}idem:k", f"{engine.keys.prefix}idem:acme:k"
    client.set(legacy, done.job_id)
    client.set(foreign, other.job_id)
    job = claim_one(engine)
    assert job.id == done.job_id
    complete(engine, job)
    await trio.sleep(0.005)  # cleanup(0) takes jobs finished before this millisecond
    assert (await engine.queue.cleanup(0))["deleted"] == 1
    assert client.exists(engine.keys.idem("acme", "k"), legacy) == 0
    assert client.get(foreign) == other.job_id


def test_idempotency_key_repeated_inside_one_bulk(engine: Engine) -> None:
    res = enqueue_many(
        engine,
        [
            {"type": "noop", "idempotency_key": "k"},
            {"type": "noop", "idempotency_key": "k"},
            {"type": "noop"},
        ],
    )
    assert res[1].job_id == res[0].job_id
    assert [r.duplicate for r in res] == [False, True, False]
    assert stats(engine)["pending"] == 2


async def test_future_run_at_waits_until_due(engine: Engine) -> None:
    run_at_ms = redis_ms(engine) + 1200
    res = await engine.queue.enqueue({"type": "noop", "run_at": format_ts(run_at_ms)})
    assert res.status == "pending"
    job = await engine.queue.get(res.job_id)
    assert job is not None
    assert job.status is JobStatus.PENDING
    assert job.run_at_ms == run_at_ms
    assert job.to_dict()["run_at"] == format_ts(run_at_ms)
    assert (await engine.queue.stats())["pending"] == 1

    early = claim(engine)
    assert early.jobs == []
    assert early.next_due_ms == run_at_ms
    assert early.now_ms < run_at_ms

    await trio.sleep((run_at_ms - redis_ms(engine)) / 1000 + 0.05)
    due = claim(engine)
    assert [j.id for j in due.jobs] == [res.job_id]
    assert due.next_due_ms is None
    assert status_of(engine, res.job_id) is JobStatus.PROCESSING


def test_past_run_at_is_ready_at_once(engine: Engine) -> None:
    job_id = enqueue(engine, run_at="2020-01-01T00:00:00Z")
    assert [j.id for j in claim(engine).jobs] == [job_id]


async def test_priority_order_strict_and_fifo_within(engine: Engine) -> None:
    names = ["low-1", "critical-1", "normal", "low-2", "high", "critical-2"]
    ids: dict[str, str] = {}
    for name in names:
        priority = name.split("-")[0]
        res = await engine.queue.enqueue({"type": "noop", "priority": priority})
        ids[name] = res.job_id
    claimed = [claim_one(engine) for _ in names]
    assert claim(engine).jobs == []
    by_id = {v: k for k, v in ids.items()}
    assert [by_id[j.id] for j in claimed] == [
        "critical-1",
        "critical-2",
        "high",
        "normal",
        "low-1",
        "low-2",
    ]
    assert [j.priority for j in claimed] == [20, 20, 10, 5, 1, 1]


def test_batch_claim_keeps_priority_order(engine: Engine) -> None:
    res = enqueue_many(engine, [{"type": "noop", "priority": p} for p in (1, 20, 5, 20, 10, 1)])
    ids = [r.job_id for r in res]
    got = [j.id for j in claim(engine, count=10).jobs]
    assert got == [ids[1], ids[3], ids[4], ids[2], ids[0], ids[5]]


# --- cancel ---------------------------------------------------------------------------


async def test_cancel_pending(engine: Engine) -> None:
    job_id = enqueue(engine, company_id="c1")
    res = await engine.queue.cancel(job_id)
    assert (res.outcome, res.status) == ("cancelled", "cancelled")
    job = await engine.queue.get(job_id)
    assert job is not None
    assert job.status is JobStatus.CANCELLED
    assert job.completed_at_ms is not None
    assert claim(engine).jobs == []
    assert stats(engine) == {**ZERO_STATS, "cancelled": 1, "total": 1}
    last = engine.link.client.xrange(engine.keys.events)[-1][1]
    assert (last["type"], last["job_id"], last["status"], last["company_id"]) == (
        "job.cancelled",
        job_id,
        "cancelled",
        "c1",
    )
    assert json.loads(last["data"]) == {"running": False}


def test_cancel_delayed(engine: Engine) -> None:
    job_id = enqueue(engine, run_at=format_ts(redis_ms(engine) + 60_000))
    assert engine.link.run_sync(engine.ops.cancel, job_id).outcome == "cancelled"
    assert engine.link.client.zcard(engine.keys.delayed) == 0
    assert claim(engine).next_due_ms is None


def test_cancel_retrying(engine: Engine) -> None:
    job_id = enqueue(engine)
    assert fail(engine, claim_one(engine)) > 0
    assert status_of(engine, job_id) is JobStatus.RETRYING
    res = engine.link.run_sync(engine.ops.cancel, job_id)
    assert (res.outcome, res.status) == ("cancelled", "cancelled")
    assert status_of(engine, job_id) is JobStatus.CANCELLED
    assert engine.link.client.zscore(engine.keys.delayed, job_id) is None
    assert stats(engine) == {**ZERO_STATS, "cancelled": 1, "total": 1}
    # Even once the backoff is over it never runs again.
    engine.link.client.zadd(engine.keys.delayed, {job_id: 0})
    assert claim(engine).jobs == []


def test_cancel_finished_or_missing(engine: Engine) -> None:
    job_id = enqueue(engine)
    complete(engine, claim_one(engine))
    res = engine.link.run_sync(engine.ops.cancel, job_id)
    assert (res.outcome, res.status) == ("final", "completed")
    assert status_of(engine, job_id) is JobStatus.COMPLETED
    missing = engine.link.run_sync(engine.ops.cancel, "job_nope")
    assert missing.outcome == "missing"


def test_cancel_processing_signals_its_daemon(engine: Engine) -> None:
    job_id = enqueue(engine)
    claim_one(engine)
    events_before = engine.link.client.xlen(engine.keys.events)
    res = engine.link.run_sync(engine.ops.cancel, job_id)
    assert (res.outcome, res.status) == ("cancelling", "processing")
    job = engine.link.run_sync(engine.ops.get, job_id)
    assert job is not None
    assert job.status is JobStatus.PROCESSING
    assert job.cancel_requested is True
    assert job.to_dict()["cancel_requested"] is True
    ctl = engine.keys.control(DAEMON)
    assert engine.link.client.lrange(ctl, 0, -1) == [job_id]
    assert engine.link.client.ttl(ctl) > 0
    # No event yet: the job is cancelled when its daemon stops the handler.
    assert engine.link.client.xlen(engine.keys.events) == events_before


# --- reset ----------------------------------------------------------------------------


async def test_reset_failed(engine: Engine) -> None:
    job_id = enqueue(engine, max_retries=1)
    fail(engine, claim_one(engine))
    engine.link.client.zadd(engine.keys.delayed, {job_id: 0})
    assert fail(engine, claim_one(engine)) == 0
    failed = await engine.queue.get(job_id)
    assert failed is not None
    assert (failed.status, failed.retry_count, failed.error) == (JobStatus.FAILED, 1, "boom")

    res = await engine.queue.reset(job_id)
    assert (res.outcome, res.status) == ("reset", "pending")
    job = await engine.queue.get(job_id)
    assert job is not None
    assert job.status is JobStatus.PENDING
    assert job.retry_count == 0
    assert (job.error, job.traceback, job.completed_at_ms, job.started_at_ms) == (
        None,
        None,
        None,
        None,
    )
    assert stats(engine) == {**ZERO_STATS, "pending": 1, "total": 1}
    assert claim_one(engine).id == job_id
    assert ("job.reset", job_id) in event_types(engine)


def test_reset_cancelled(engine: Engine) -> None:
    job_id = enqueue(engine)
    engine.link.run_sync(engine.ops.cancel, job_id)
    assert engine.link.run_sync(engine.ops.reset, job_id).outcome == "reset"
    assert claim_one(engine).id == job_id


@pytest.mark.parametrize("how", ["completed", "pending", "processing"])
def test_reset_refused_unless_failed_or_cancelled(engine: Engine, how: str) -> None:
    job_id = enqueue(engine)
    if how != "pending":
        job = claim_one(engine)
        if how == "completed":
            complete(engine, job)
    res = engine.link.run_sync(engine.ops.reset, job_id)
    assert (res.outcome, res.status) == ("refused", how)
    assert status_of(engine, job_id) == how


def test_reset_missing(engine: Engine) -> None:
    res = engine.link.run_sync(engine.ops.reset, "job_nope")
    assert (res.outcome, res.status) == ("missing", "")


# --- stats ----------------------------------------------------------------------------


async def test_stats_after_a_mix(engine: Engine) -> None:
    ids = [r.job_id for r in enqueue_many(engine, [{"type": "noop"} for _ in range(9)])]
    # Claim six in FIFO order: 2 complete, 1 fails for good, 1 retries, 2 keep running.
    jobs = claim(engine, count=6).jobs
    assert [j.id for j in jobs] == ids[:6]
    complete(engine, jobs[0])
    complete(engine, jobs[1])
    assert fail(engine, jobs[2], retryable=False) == 0
    assert fail(engine, jobs[3]) > 0
    # One pending cancelled; two left pending.
    engine.link.run_sync(engine.ops.cancel, ids[6])
    got = await engine.queue.stats()
    assert got == {
        "pending": 2,
        "processing": 2,
        "completed": 2,
        "failed": 1,
        "retrying": 1,
        "cancelled": 1,
        "total": 9,
    }
    assert list(got) == list(ZERO_STATS)


# --- listing --------------------------------------------------------------------------


def enqueue_spaced(engine: Engine, n: int, **fields: Any) -> list[str]:
    """n jobs in n calls, each in a later millisecond (creation scores differ)."""
    ids = []
    for _ in range(n):
        ids.append(enqueue(engine, **fields))
        pause_ms(2)
    return ids


def test_list_newest_first(engine: Engine) -> None:
    ids = enqueue_spaced(engine, 5)
    page = list_page(engine, JobStatus.PENDING)
    assert [j.id for j in page.jobs] == ids[::-1]
    assert page.next_cursor is None
    assert list_page(engine, JobStatus.FAILED).jobs == []


def test_list_completed_by_finish_time(engine: Engine) -> None:
    ids = enqueue_spaced(engine, 3)
    jobs = {j.id: j for j in claim(engine, count=3).jobs}
    for job_id in (ids[1], ids[2], ids[0]):
        complete(engine, jobs[job_id])
        pause_ms(2)
    page = list_page(engine, JobStatus.COMPLETED)
    assert [j.id for j in page.jobs] == [ids[0], ids[2], ids[1]]


async def test_pagination_yields_every_job_once(engine: Engine) -> None:
    ids = enqueue_spaced(engine, 5)
    pages = walk(engine, JobStatus.PENDING, limit=2)
    assert pages == [[ids[4], ids[3]], [ids[2], ids[1]], [ids[0]]]
    # Same through the async facade, with a status given as a string.
    first = await engine.queue.list_jobs("pending", limit=2)
    second = await engine.queue.list_jobs("pending", limit=2, cursor=first.next_cursor)
    assert [j.id for j in second.jobs] == [ids[2], ids[1]]


def test_pagination_of_an_exact_multiple_ends_without_a_cursor(engine: Engine) -> None:
    ids = enqueue_spaced(engine, 4)
    assert walk(engine, JobStatus.PENDING, limit=2) == [[ids[3], ids[2]], [ids[1], ids[0]]]


def test_pagination_within_one_millisecond(engine: Engine) -> None:
    # A bulk enqueue gives every job the same creation score: the cursor's skip count
    # must step through entries that tie.
    ids = [r.job_id for r in enqueue_many(engine, [{"type": "noop"} for _ in range(7)])]
    for limit in (1, 2, 3, 7, 8):
        pages = walk(engine, JobStatus.PENDING, limit=limit)
        seen = [i for p in pages for i in p]
        assert sorted(seen) == sorted(ids), limit
        assert all(len(p) <= limit for p in pages)


def test_cursor_is_stable_while_jobs_are_added(engine: Engine) -> None:
    ids = enqueue_spaced(engine, 5)
    page = list_page(engine, JobStatus.PENDING, limit=2)
    assert [j.id for j in page.jobs] == [ids[4], ids[3]]
    newer = enqueue_spaced(engine, 3)
    rest: list[str] = []
    cursor = page.next_cursor
    while cursor is not None:
        page = list_page(engine, JobStatus.PENDING, limit=2, cursor=cursor)
        rest.extend(j.id for j in page.jobs)
        cursor = page.next_cursor
    assert rest == [ids[2], ids[1], ids[0]]
    assert [j.id for j in list_page(engine, JobStatus.PENDING, limit=3).jobs] == newer[::-1]


def test_malformed_cursor_is_a_validation_error(engine: Engine) -> None:
    with pytest.raises(ValidationError) as info:
        list_page(engine, JobStatus.PENDING, cursor="abc")
    assert info.value.field == "cursor"


def test_filters_by_company_and_type(engine: Engine) -> None:
    engine.registry.register(EchoHandler(), source="test")
    made: list[tuple[str, str, str]] = []
    for i in range(12):
        made_company = "c1" if i % 3 == 0 else "c2"
        made_type = "echo" if i % 2 == 0 else "noop"
        job_id = enqueue(engine, type=made_type, company_id=made_company)
        made.append((job_id, made_company, made_type))
        pause_ms(2)
    newest_first = made[::-1]

    def expect(company: str | None, job_type: str | None) -> list[str]:
        return [
            i
            for i, c, t in newest_first
            if (company is None or c == company) and (job_type is None or t == job_type)
        ]

    cases: list[tuple[str | None, str | None]] = [
        ("c1", None),
        (None, "echo"),
        ("c2", "noop"),
        ("c3", None),
    ]
    for company, job_type in cases:
        page = list_page(engine, JobStatus.PENDING, company_id=company, job_type=job_type)
        assert [j.id for j in page.jobs] == expect(company, job_type)
        assert page.next_cursor is None
        pages = walk(engine, JobStatus.PENDING, limit=1, company_id=company, job_type=job_type)
        assert [i for p in pages for i in p] == expect(company, job_type)
        assert all(j.company_id == company for j in page.jobs if company)
        assert all(j.type == job_type for j in page.jobs if job_type)


def test_filters_by_user_and_by_text(engine: Engine) -> None:
    # The spec's user-specific job tracking (#19), and the dashboard's search.
    made = [
        enqueue(engine, user_id="alice", company_id="acme"),
        enqueue(engine, user_id="bob", company_id="acme"),
        enqueue(engine, user_id="alice", company_id="globex"),
        enqueue(engine),
    ]
    alice = list_page(engine, JobStatus.PENDING, user_id="alice").jobs
    assert sorted(j.id for j in alice) == sorted([made[0], made[2]])
    both = list_page(engine, JobStatus.PENDING, user_id="alice", company_id="acme").jobs
    assert [j.id for j in both] == [made[0]]
    assert [i for p in walk(engine, JobStatus.PENDING, limit=1, user_id="bob") for i in p] == [
        made[1]
    ]
    assert list_page(engine, JobStatus.PENDING, user_id="carol").jobs == []
    # Text: a case-insensitive part of the id, type, company or user.
    assert {j.id for j in list_page(engine, JobStatus.PENDING, text="GLOB").jobs} == {made[2]}
    assert {j.id for j in list_page(engine, JobStatus.PENDING, text="li").jobs} == {
        made[0], made[2]
    }  # fmt: skip
    assert [j.id for j in list_page(engine, JobStatus.PENDING, text=made[3][-8:]).jobs] == [made[3]]
    assert len(list_page(engine, JobStatus.PENDING, text="").jobs) == 4  # blank: no filter


class CountingClient:
    """A Redis client that counts the job-hash reads its pipelines queue: the work a
    listing page does, whatever Redis' speed."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.reads = {"hmget": 0, "hgetall": 0}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def pipeline(self, **kw: Any) -> Any:
        pipe = self.client.pipeline(**kw)
        reads = self.reads

        class Counted:
            def __getattr__(self, name: str) -> Any:
                if name in reads:
                    reads[name] += 1
                return getattr(pipe, name)

        return Counted()


def test_a_sparse_filter_examines_a_bounded_window_per_page(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    scan = 40
    monkeypatch.setattr(pages_module, "MAX_FILTER_SCAN", scan)
    # 200 jobs of another company, 3 of ours among them (newest, middle, oldest).
    ours = {3, 101, 199}
    reqs: list[dict[str, Any]] = [
        {"type": "noop", "company_id": "acme" if i in ours else "globex", "data": {"n": i}}
        for i in range(200)
    ]
    engine.ops.enqueue_rows(engine.link.client, engine.ops.prepare_many(reqs))
    everything = [i for p in walk(engine, JobStatus.PENDING, limit=500) for i in p]
    assert len(everything) == 200
    acme = {
        j.id
        for j in engine.ops.get_many(engine.link.client, everything)
        if j and j.company_id == "acme"
    }
    expected = [i for i in everything if i in acme]

    counting = CountingClient(engine.link.client)
    found: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        before = dict(counting.reads)
        page = engine.ops.list_jobs(
            counting, JobStatus.PENDING, limit=500, cursor=cursor, company_id="acme"
        )
        pages += 1
        # One page: at most `scan` two-field probes, whole hashes only for its jobs.
        assert counting.reads["hmget"] - before["hmget"] <= scan
        assert counting.reads["hgetall"] - before["hgetall"] == len(page.jobs)
        assert all(j.company_id == "acme" for j in page.jobs)
        found += [j.id for j in page.jobs]
        cursor = page.next_cursor
        if cursor is None:
            break
        assert pages < 20, "pagination does not end"
    assert found == expected  # every job of ours once, newest first, none skipped
    assert pages == 200 // scan  # the index, walked in windows of `scan`
    # A page that fills up stops early; unfiltered listings read the page only.
    page = engine.ops.list_jobs(counting, JobStatus.PENDING, limit=1, company_id="globex")
    assert len(page.jobs) == 1 and page.next_cursor is not None
    counting.reads = {"hmget": 0, "hgetall": 0}
    page = engine.ops.list_jobs(counting, JobStatus.PENDING, limit=7)
    assert counting.reads == {"hmget": 0, "hgetall": 7} and len(page.jobs) == 7


# --- cleanup --------------------------------------------------------------------------


async def test_cleanup_deletes_only_old_finished_jobs(engine: Engine) -> None:
    done_ids = [enqueue(engine, idempotency_key=f"k{i}") for i in range(2)]
    failed_id = enqueue(engine)
    cancelled_id = enqueue(engine)
    running_id = enqueue(engine, priority="low")
    pending_id = enqueue(engine, priority="low")
    jobs = {j.id: j for j in claim(engine, count=4).jobs}
    assert set(jobs) == {*done_ids, failed_id, cancelled_id}
    for job_id in done_ids:
        complete(engine, jobs[job_id])
    fail(engine, jobs[failed_id], retryable=False)
    # cancelled_id was claimed: give it back, then cancel it while pending.
    assert engine.scripts.release(engine.link.client, [(cancelled_id, jobs[cancelled_id].token)])
    assert engine.link.run_sync(engine.ops.cancel, cancelled_id).outcome == "cancelled"
    assert claim_one(engine).id == running_id
    pause_ms(5)

    kept = await engine.queue.cleanup(3600)
    assert kept == {"cancelled": 0, "completed": 0, "failed": 0, "deleted": 0, "workflows": 0}
    assert stats(engine)["total"] == 6

    gone = await engine.queue.cleanup(0)
    assert gone == {"cancelled": 1, "completed": 2, "failed": 1, "deleted": 4, "workflows": 0}
    for job_id in [*done_ids, failed_id, cancelled_id]:
        assert await engine.queue.get(job_id) is None
    assert status_of(engine, running_id) is JobStatus.PROCESSING
    assert status_of(engine, pending_id) is JobStatus.PENDING
    assert stats(engine) == {**ZERO_STATS, "pending": 1, "processing": 1, "total": 2}
    client = engine.link.client
    assert client.get(engine.keys.idem(None, "k0")) is None
    pruned = [f for _, f in client.xrange(engine.keys.events) if f["type"] == "jobs.pruned"]
    assert sorted((f["status"], json.loads(f["data"])["count"]) for f in pruned) == [
        ("cancelled", 1),
        ("completed", 2),
        ("failed", 1),
    ]
    # The idempotency key went with its job: the same key now makes a new job.
    again = await engine.queue.enqueue({"type": "noop", "idempotency_key": "k0"})
    assert again.job_id != done_ids[0]
    assert again.duplicate is False


def test_cleanup_loops_over_batches(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queue_module, "PRUNE_BATCH", 2)
    ids = [r.job_id for r in enqueue_many(engine, [{"type": "noop"} for _ in range(5)])]
    for job in claim(engine, count=5).jobs:
        complete(engine, job)
    pause_ms(5)
    counts = engine.link.run_sync(engine.ops.cleanup, 0)
    assert counts["completed"] == 5
    assert all(engine.link.run_sync(engine.ops.get, i) is None for i in ids)


def test_cleanup_refuses_unfinished_statuses(engine: Engine) -> None:
    with pytest.raises(ValidationError) as info:
        engine.link.run_sync(engine.ops.cleanup, 0, [JobStatus.PENDING])
    assert info.value.field == "status"


def test_cleanup_with_an_unfinished_status_deletes_nothing(engine: Engine) -> None:
    job_id = enqueue(engine)
    complete(engine, claim_one(engine))
    pause_ms(5)
    with pytest.raises(ValidationError):
        engine.link.run_sync(engine.ops.cleanup, 0, [JobStatus.COMPLETED, JobStatus.PENDING])
    assert engine.link.run_sync(engine.ops.get, job_id) is not None
