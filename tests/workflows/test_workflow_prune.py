"""Retention of workflows against real Redis: a finished workflow older than the
retention goes with every node's job (clean-up, maintenance, HTTP); a node's job never
goes before its workflow; a workflow with a node that is not finished, or resumed, is
kept; big workflows are deleted over bounded calls, and kept ones are looked at within
the same bound, once per clean-up."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from api_client import api_config, running_api
from pool import registry_with, running_pool
from wf_helpers import Step, run_to_end, states, submit_stuck, wait_end

from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs import queue as queue_module
from fleetd.jobs.model import JobStatus
from fleetd.workflows.store import WorkflowOps

WF = "/api/v1/admin/workflows"


def _workflow_keys(engine: Engine, wid: str) -> list[str]:
    """Every key of one workflow still stored, and the indexes still naming it."""
    c, k = engine.link.client, engine.keys
    found = [key for key in (k.workflow(wid), k.workflow_nodes(wid)) if c.exists(key)]
    done = [k.workflows_done(s) for s in ("completed", "failed", "cancelled")]
    for index in (k.workflows, *done):
        if c.zscore(index, wid) is not None:
            found.append(index)
    return found


async def test_a_node_stays_while_its_workflow_runs_and_goes_with_it(config: Config) -> None:
    step = Step()
    async with running_pool(config, registry_with(step)) as (engine, _):
        ops = WorkflowOps(engine.ops)
        plan = await submit_stuck(engine, step, 1)
        wid, ids = plan.workflow_id, [n.row.id for n in plan.nodes]
        await trio.sleep(0.005)
        # "done" finished long enough ago for a 0 s retention: kept, its workflow runs.
        counts = await engine.queue.cleanup(0)
        assert counts["deleted"] == 0 and counts["workflows"] == 0
        mid = await engine.link.call(ops.get, wid)
        assert mid is not None and states(mid) == {
            "done": "completed", "stuck": "processing", "later": "waiting",
        }  # fmt: skip
        done_job = await engine.queue.get(ids[0])
        assert done_job is not None and done_job.status is JobStatus.COMPLETED
        await engine.link.call(ops.cancel, wid)
        assert (await wait_end(engine, wid)).status == "cancelled"
        # Not old enough yet: kept whole.
        kept = await engine.queue.cleanup(3600)
        assert kept["deleted"] == 0 and kept["workflows"] == 0
        await trio.sleep(0.005)
        gone = await engine.queue.cleanup(0)
    # Its three node jobs (one completed, two cancelled) counted under its status.
    assert gone == {"cancelled": 3, "completed": 0, "failed": 0, "deleted": 3, "workflows": 1}
    assert await engine.link.call(ops.get, wid) is None
    for job_id in ids:
        assert await engine.queue.get(job_id) is None
    assert _workflow_keys(engine, wid) == []
    c = engine.link.client
    for status in ("completed", "cancelled"):
        assert c.zcard(engine.keys.status(status)) == 0
    pruned = [f for _, f in c.xrange(engine.keys.events) if f["type"] == "workflows.pruned"]
    assert [(f["status"], f["data"]) for f in pruned] == [("cancelled", '{"count":1,"jobs":3}')]


async def test_unfinished_or_resumed_workflows_are_kept(config: Config, engine: Engine) -> None:
    async with running_pool(config, registry_with(Step())) as (pooled, _):
        reset_wf = await run_to_end(pooled, {"chain": [{"type": "step", "data": {"fail": True}}]})
        resumed_wf = await run_to_end(pooled, {"chain": [
            {"type": "step", "data": {"fail": True}}, {"type": "step"},
        ]})  # fmt: skip
        plain = await run_to_end(pooled, {"chain": [{"type": "step"}, {"type": "step"}]})
    assert (reset_wf.status, resumed_wf.status, plain.status) == ("failed", "failed", "completed")
    c, ops = engine.link.client, WorkflowOps(engine.ops)
    # An admin reset the failed node's job: it is pending again, its workflow stays.
    node = reset_wf.nodes[0].job_id
    assert engine.link.run_sync(engine.ops.reset, node).outcome == "reset"
    assert engine.link.run_sync(ops.resume, resumed_wf.id).outcome == "resumed"
    await trio.sleep(0.005)
    counts = engine.link.run_sync(engine.ops.cleanup, 0)
    assert counts["workflows"] == 1 and counts["deleted"] == 2  # only `plain`
    assert engine.link.run_sync(ops.get, plain.id) is None
    for kept in (reset_wf, resumed_wf):
        answer = engine.link.run_sync(ops.get, kept.id)
        assert answer is not None and len(answer.nodes) == len(kept.nodes)
        for n in kept.nodes:
            assert engine.link.run_sync(engine.ops.get, n.job_id) is not None
    # The reset one counts as finished from now on (looked at again after the age).
    done_failed = engine.keys.workflows_done("failed")
    assert c.zscore(done_failed, reset_wf.id) is not None
    assert c.zscore(done_failed, resumed_wf.id) is None  # resumed: running again
    again = engine.link.run_sync(ops.get, resumed_wf.id)
    assert again is not None and again.status == "running"
    # Once the reset job has ended again (cancelled), its workflow goes.
    assert engine.link.run_sync(engine.ops.cancel, node).outcome == "cancelled"
    await trio.sleep(0.005)
    assert engine.link.run_sync(engine.ops.cleanup, 0)["workflows"] == 1
    assert engine.link.run_sync(ops.get, reset_wf.id) is None
    assert _workflow_keys(engine, reset_wf.id) == []


async def test_big_workflows_go_over_bounded_calls(
    config: Config, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue_module, "PRUNE_BATCH", 7)
    async with running_pool(config, registry_with(Step()), concurrency=20) as (pooled, _):
        done = [
            await run_to_end(
                pooled, {"group": [{"type": "step"} for _ in range(size)], "then": {"type": "step"}}
            )
            for size in (12, 3, 3, 3)
        ]
        singles = [(await pooled.queue.enqueue({"type": "noop"})).job_id for _ in range(9)]
        with trio.fail_after(10):
            while True:
                last = await pooled.queue.get(singles[-1])
                if last is not None and last.status is JobStatus.COMPLETED:
                    break
                await trio.sleep(0.01)
    calls: list[tuple[int, int, bool]] = []
    real = engine.scripts.prune_workflows

    def spy(*args: Any) -> tuple[int, int, bool, int]:
        got = real(*args)
        calls.append(got[:3])
        return got

    monkeypatch.setattr(engine.scripts, "prune_workflows", spy)
    await trio.sleep(0.005)
    counts = engine.link.run_sync(engine.ops.cleanup, 0)
    assert counts["workflows"] == 4 and counts["deleted"] == 13 + 4 * 3 + 9
    # 13 nodes > 7: that workflow alone, then two of 4 (7 reached), then the last.
    assert [r for r in calls if r != (0, 0, False)] == [(1, 13, True), (2, 8, True), (1, 4, False)]
    for answer in done:
        assert engine.link.run_sync(WorkflowOps(engine.ops).get, answer.id) is None


async def test_http_cleanup_deletes_a_workflow_then_404s(config: Config) -> None:
    async with running_api(api_config(config), roles=("api", "worker")) as api:
        r = await api.post(WF, json={"chain": [{"type": "noop"}, {"type": "noop"}]})
        assert r.status_code == 201, r.text
        wid = r.json()["workflow_id"]
        with trio.fail_after(20):
            while (body := (await api.get(f"{WF}/{wid}")).json()["workflow"])["status"] != (
                "completed"
            ):
                await trio.sleep(0.05)
        job_ids = [n["job_id"] for n in body["nodes"]]
        await trio.sleep(0.01)
        r = await api.post("/api/v1/admin/jobs/cleanup", params={"older_than": "0s"})
        assert r.status_code == 200, r.text
        assert r.json()["workflows"] == 1 and r.json()["deleted"] == 2
        assert r.json()["by_status"]["completed"] == 2
        gone = await api.get(f"{WF}/{wid}")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
        for job_id in job_ids:
            assert (await api.get(f"/api/v1/admin/jobs/{job_id}")).status_code == 404
        assert (await api.delete(f"{WF}/{wid}")).status_code == 404
        assert (await api.post(f"{WF}/{wid}/resume")).status_code == 404


def plant_kept_workflows(engine: Engine, count: int, nodes: int) -> list[str]:
    """`count` workflows that failed long ago, each with `nodes` finished node jobs and
    a last one an admin reset (pending): looked at by a clean-up, and kept."""
    c, k = engine.link.client, engine.keys
    wids = []
    for w in range(count):
        wid = f"wf_planted_{w}"
        c.hset(k.workflow(wid), mapping={"status": "failed", "name": "planted"})
        for n in range(nodes + 1):
            job_id = f"job_planted_{w}_{n}"
            status = "completed" if n < nodes else "pending"
            c.hset(k.job(job_id), mapping={"id": job_id, "status": status})
            c.hset(k.workflow_nodes(wid), f"n{n}", job_id)
        c.zadd(k.workflows_done("failed"), {wid: 1000 + w})
        c.zadd(k.workflows, {wid: 1000 + w})
        wids.append(wid)
    return wids


async def test_kept_workflows_count_against_the_bound_of_a_call(engine: Engine) -> None:
    wids = plant_kept_workflows(engine, 3, 10)
    c, done = engine.link.client, engine.keys.workflows_done("failed")
    first = engine.link.run_sync(
        engine.scripts.prune_workflows, JobStatus.FAILED, 0, 5, None
    )  # fmt: skip
    # One workflow's 11 nodes looked at: over the bound of 5, the call ends there.
    assert first[:3] == (0, 0, True)
    assert [c.zscore(done, w) for w in wids[1:]] == [1001, 1002]  # not looked at yet
    assert c.zscore(done, wids[0]) > 1000  # kept: counts as finished from now
    second = engine.link.run_sync(
        engine.scripts.prune_workflows, JobStatus.FAILED, 0, 5, first[3]
    )  # fmt: skip
    assert second[:3] == (0, 0, True) and second[3] == first[3]


async def test_a_clean_up_looks_at_each_kept_workflow_once(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no age (older_than 0s), workflows kept and re-scored to now were found again
    by the next calls: a clean-up over 100 of them looked at them over and over."""
    plant_kept_workflows(engine, 120, 1)
    calls = []
    real = engine.scripts.prune_workflows

    def spy(*args: Any) -> tuple[int, int, bool, int]:
        calls.append(args)
        if len(calls) > 50:
            raise AssertionError("the clean-up does not end")
        return real(*args)

    monkeypatch.setattr(engine.scripts, "prune_workflows", spy)
    await trio.sleep(0.005)
    counts = engine.link.run_sync(engine.ops.cleanup, 0, [JobStatus.FAILED])
    assert counts["workflows"] == 0 and counts["deleted"] == 0
    assert len(calls) == 2  # 100 workflows (a call's most), then the other 20
