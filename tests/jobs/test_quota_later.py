"""`company_max_pending` counts every pending job of a company, not only the ready ones:
jobs waiting for their `run_at` and workflow nodes waiting for their parents are pending
too (GET /jobs/stats counts them), and a cap that did not see them let a company store
any number of them. Each is counted while it waits and not once it leaves that state,
whichever way it leaves (due, released, cancelled, skipped)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from fleetd.config.limit_sections import LimitsConfig
from fleetd.engine import Engine
from fleetd.jobs.errors import QuotaExceeded
from fleetd.jobs.model import JobStatus
from fleetd.workflows.store import WorkflowOps


def with_cap(engine: Engine, cap: int) -> None:
    engine.ops.quota = LimitsConfig(company_max_pending=cap).build().encode_quota(["noop"])


def enqueue(engine: Engine, company: str, n: int = 1, *, later_s: float = 0) -> list[str]:
    req: dict[str, object] = {"type": "noop", "company_id": company}
    if later_s:
        req["run_at"] = (datetime.now(UTC) + timedelta(seconds=later_s)).isoformat()
    rows = engine.ops.prepare_many([req] * n)
    return [r.job_id for r in engine.ops.enqueue_rows(engine.link.client, rows)]


def later(engine: Engine, company: str) -> set[str]:
    return set(engine.link.client.zrange(engine.keys.quota_later(company), 0, -1))


def test_jobs_waiting_for_their_run_at_count_against_the_pending_cap(engine: Engine) -> None:
    with_cap(engine, 3)
    a, b, c = enqueue(engine, "A", 3, later_s=3600)
    assert later(engine, "A") == {a, b, c}
    # Ready now or later, a fourth job is over the cap: three are pending already.
    for later_s in (0, 3600):
        with pytest.raises(QuotaExceeded) as refused:
            enqueue(engine, "A", later_s=later_s)
        assert refused.value.companies == ["A"]
    enqueue(engine, "B", 3, later_s=3600)  # another company is not counted with A
    # A cancelled job leaves the count: one more fits.
    assert engine.link.run_sync(engine.ops.cancel, a).outcome == "cancelled"
    assert later(engine, "A") == {b, c}
    enqueue(engine, "A")
    with pytest.raises(QuotaExceeded):
        enqueue(engine, "A")
    assert engine.ops.stats(engine.link.client)[JobStatus.PENDING.value] == 6


def test_a_due_job_is_counted_once_in_its_part_not_twice(engine: Engine) -> None:
    with_cap(engine, 2)
    [a] = enqueue(engine, "A", later_s=0.2)
    time.sleep(0.3)
    moved, _, _ = engine.link.run_sync(engine.ops.scripts.promote)
    assert moved == 1 and later(engine, "A") == set()  # ready now, in its part
    enqueue(engine, "A")  # 1 ready + 1 = 2: within the cap
    with pytest.raises(QuotaExceeded):
        enqueue(engine, "A")
    assert engine.link.client.hget(engine.keys.job(a), "status") == "pending"


def test_workflow_nodes_waiting_for_parents_count_until_released_or_skipped(
    engine: Engine,
) -> None:
    ops = WorkflowOps(engine.ops)
    client = engine.link.client
    chain = {"company_id": "A", "chain": [{"type": "noop"}] * 4}
    submitted = ops.submit(client, ops.plan(chain))
    first, *waiting = submitted.nodes.values()
    assert later(engine, "A") == set(waiting)  # the first is ready, in its part
    with_cap(engine, 4)
    with pytest.raises(QuotaExceeded):
        enqueue(engine, "A")  # 1 ready + 3 waiting: the cap is reached
    # The first node runs and completes: the second is released to its part (still
    # pending, counted there), the other two still wait.
    [job] = engine.scripts.claim(client, 1, 30_000, "tok", "d1").jobs
    assert job.id == first
    assert engine.scripts.complete(client, [(first, "tok", "{}", "{}")]) == [1]
    assert later(engine, "A") == set(waiting[1:])
    enqueue(engine, "A")  # 1 released + 2 waiting + 1 = 4
    with pytest.raises(QuotaExceeded):
        enqueue(engine, "A")
    # Cancelling the workflow skips the nodes that wait: none is counted any more.
    ops.cancel(client, submitted.workflow_id)
    assert later(engine, "A") == set()


def test_a_resumed_workflow_counts_its_nodes_that_wait_again(engine: Engine) -> None:
    ops = WorkflowOps(engine.ops)
    client = engine.link.client
    submitted = ops.submit(client, ops.plan({"company_id": "A", "chain": [{"type": "noop"}] * 3}))
    first, *rest = submitted.nodes.values()
    [job] = engine.scripts.claim(client, 1, 30_000, "tok", "d1").jobs
    assert job.id == first
    assert engine.scripts.fail(client, [(first, "tok", "boom", "", False, 0)]) == [0]
    assert later(engine, "A") == set()  # the failure skipped the rest: none waits
    assert ops.resume(client, submitted.workflow_id).outcome == "resumed"
    assert later(engine, "A") == set(rest)  # the first is ready again, the rest wait
    with_cap(engine, 3)
    with pytest.raises(QuotaExceeded):
        enqueue(engine, "A")


def test_entries_that_no_longer_wait_never_refuse_a_company(engine: Engine) -> None:
    """A version that did not keep `quota:later` (a downgrade, then an upgrade) leaves
    ids there whose jobs moved on: before refusing, the check drops them."""
    client = engine.link.client
    [waiting] = enqueue(engine, "A", later_s=3600)
    [ready] = enqueue(engine, "A")
    key = engine.keys.quota_later("A")
    client.zadd(key, {ready: 1, "job_gone": 2})  # a ready job (counted in its part), a gone one
    with_cap(engine, 3)
    enqueue(engine, "A")  # 1 waiting + 1 ready + 1 = 3: the two stale entries are dropped
    assert later(engine, "A") == {waiting}
    with pytest.raises(QuotaExceeded):
        enqueue(engine, "A")  # a real refusal still refuses
    assert later(engine, "A") == {waiting}


async def test_jobs_stored_before_the_sets_are_back_filled_once(engine: Engine) -> None:
    """A version that kept no `quota:later` sets left delayed jobs and waiting workflow
    nodes uncounted: the maintenance's back-fill (later_fill.lua) counts them, once, and
    leaves out ready jobs, jobs of no company and jobs no longer pending."""
    from fleetd.runtime.maintenance import Maintenance, MaintenanceSettings

    client = engine.link.client
    delayed = enqueue(engine, "A", 3, later_s=3600)
    ready = enqueue(engine, "A", 2)
    enqueue(engine, "", 2, later_s=3600)  # no company: counted nowhere
    wf = WorkflowOps(engine.ops)
    chain = {"company_id": "B", "chain": [{"type": "noop"}] * 3}
    _first, *waiting = wf.submit(client, wf.plan(chain)).nodes.values()
    gone = delayed.pop()
    assert engine.link.run_sync(engine.ops.cancel, gone).outcome == "cancelled"
    # As the previous version left them: no sets at all.
    client.delete(engine.keys.quota_later("A"), engine.keys.quota_later("B"))
    with_cap(engine, 5)
    enqueue(engine, "A", 2)  # 2 ready + 2 = 4 seen; the 2 delayed are not
    maintenance = Maintenance(engine.link, engine.scripts, engine.ops, MaintenanceSettings(
        interval=0.1, max_stalls=3, completed_ttl=0, failed_ttl=0, cancelled_ttl=0,
        reconnect_max_backoff=1.0))  # fmt: skip
    assert await maintenance.backfill_once() == 4  # A's 2 delayed, B's 2 waiting nodes
    assert later(engine, "A") == set(delayed) and later(engine, "B") == set(waiting)
    assert not later(engine, "") and ready[0] not in later(engine, "A")
    assert client.exists(engine.keys.quota_backfilled)
    with pytest.raises(QuotaExceeded):
        enqueue(engine, "A")  # 4 ready + 2 delayed = 6 of 5
    # Done once: a later start does not scan again.
    client.delete(engine.keys.quota_later("A"))
    assert await maintenance.backfill_once() is None
    assert later(engine, "A") == set()


def test_the_back_fill_steps_through_jobs_of_one_millisecond(engine: Engine) -> None:
    """A bulk enqueue gives many jobs one creation ms: the steps' cursor (score, entries
    of it seen) goes through all of them, a few at a time, each once."""
    client = engine.link.client
    delayed = set(enqueue(engine, "A", 25, later_s=3600))
    enqueue(engine, "A", 5)  # ready: in their part
    client.delete(engine.keys.quota_later("A"))
    cursor, added, steps = "-inf:0", 0, 0
    while cursor != "0":
        cursor, n = engine.link.run_sync(engine.scripts.later_fill, cursor, 4)
        added, steps = added + n, steps + 1
    assert later(engine, "A") == delayed and added == 25 and steps == 8  # 30 jobs, 4 a step
