"""Workflows run by a worker pool against real Redis: shapes, conditions, results passed
along, failure policy, cancel and resume."""

from __future__ import annotations

import dataclasses
import json

from pool import registry_with, running_pool
from wf_helpers import Step, run_to_end, states, submit_stuck, wait_end

from fleetd.config import Config
from fleetd.jobs.sealing import format_key
from fleetd.workflows.store import WorkflowOps

KEY = format_key("k1", b"\x11" * 32)


async def test_a_chain_runs_in_order_and_passes_results_along(config: Config) -> None:
    step = Step()
    async with running_pool(config, registry_with(step)) as (engine, _):
        answer = await run_to_end(engine, {"chain": [
            {"type": "step", "data": {"n": 1}},
            {"type": "step", "data": {"n": {"$from": "step-1.result.n"}}, "with_parents": True},
            {"type": "step", "data": {"got": {"$from": "step-2.result"}}},
        ]})  # fmt: skip
    assert answer.status == "completed"
    assert states(answer) == {"step-1": "completed", "step-2": "completed", "step-3": "completed"}
    assert [data for data, _ in step.seen][:2] == [{"n": 1}, {"n": 1}]
    got = step.seen[2][0]["got"]  # a whole result: the worker's run facts included
    assert got["n"] == 1 and got["worker_id"] == "test-daemon:1:abc"
    assert step.seen[1][1] == {
        "step-1": {
            "n": 1,
            "processing_time": step.seen[1][1]["step-1"]["processing_time"],
            "worker_id": "test-daemon:1:abc",
        }
    }  # ctx.parents by name
    assert step.seen[0][1] == {}  # a node without parents to read has none


async def test_a_diamond_joins_once_both_branches_completed(config: Config) -> None:
    step = Step()
    async with running_pool(config, registry_with(step)) as (engine, _):
        answer = await run_to_end(engine, {"nodes": [
            {"name": "a", "type": "step"},
            {"name": "b", "type": "step", "depends_on": ["a"]},
            {"name": "c", "type": "step", "depends_on": ["a"]},
            {"name": "d", "type": "step", "depends_on": ["b", "c"], "with_parents": True},
        ]})  # fmt: skip
    assert answer.status == "completed"
    assert len(step.seen) == 4
    assert sorted(step.seen[-1][1]) == ["b", "c"]


async def test_fan_out_of_1000_then_fan_in(config: Config) -> None:
    step = Step()
    async with running_pool(config, registry_with(step), concurrency=50) as (engine, _):
        answer = await run_to_end(engine, {
            "first": {"type": "step"},
            "group": [{"type": "step", "data": {"n": i}} for i in range(1000)],
            "then": {"type": "step", "with_parents": True},
        }, limit=60)  # fmt: skip
    assert answer.status == "completed"
    assert answer.counts == {"completed": 1002}
    fan_in_parents = step.seen[-1][1]
    assert len(fan_in_parents) == 1000
    assert sorted(p["n"] for p in fan_in_parents.values()) == list(range(1000))


async def test_a_false_condition_skips_the_node_and_what_needed_it(config: Config) -> None:
    step = Step()
    async with running_pool(config, registry_with(step)) as (engine, _):
        answer = await run_to_end(engine, {"on_failure": "continue", "nodes": [
            {"name": "count", "type": "step", "data": {"n": 3}},
            {"name": "big", "type": "step", "depends_on": ["count"],
             "condition": "parents.count.result.n > `10`"},
            {"name": "small", "type": "step", "depends_on": ["count"],
             "condition": "parents.count.result.n <= `10`"},
            {"name": "after_big", "type": "step", "depends_on": ["big"]},
            {"name": "after_either", "type": "step",
             "depends_on": [{"node": "big", "on": "any"}, {"node": "small", "on": "any"}]},
        ]})  # fmt: skip
    assert states(answer) == {
        "count": "completed", "big": "skipped", "small": "completed",
        "after_big": "skipped", "after_either": "completed",
    }  # fmt: skip
    assert answer.status == "completed"
    big = next(n for n in answer.nodes if n.name == "big")
    assert big.status == "cancelled" and big.error is not None and "skipped" in big.error


async def test_an_on_failure_branch_runs_only_on_failure(config: Config) -> None:
    step = Step()

    def spec(fail: bool) -> dict[str, object]:
        return {
            "nodes": [
                {"name": "work", "type": "step", "data": {"fail": fail}},
                {
                    "name": "cleanup",
                    "type": "step",
                    "depends_on": [{"node": "work", "on": "failure"}],
                },
                {"name": "report", "type": "step", "depends_on": ["work"]},
            ]
        }

    async with running_pool(config, registry_with(step)) as (engine, _):
        ok = await run_to_end(engine, spec(False))
        bad = await run_to_end(engine, spec(True))
    assert states(ok) == {"work": "completed", "cleanup": "skipped", "report": "completed"}
    assert ok.status == "completed"
    assert states(bad) == {"work": "failed", "cleanup": "completed", "report": "skipped"}
    # The failure was handled by its on-failure edge: the workflow did what it said.
    assert bad.status == "completed"


async def test_failure_policy_fail_rest_or_carry_on(config: Config) -> None:
    step = Step()
    nodes = [
        {"name": "a", "type": "step", "data": {"fail": True}},
        {"name": "a2", "type": "step", "depends_on": ["a"]},
        {"name": "slow", "type": "step"},
        {"name": "b", "type": "step", "depends_on": ["slow"]},
    ]
    async with running_pool(config, registry_with(step), concurrency=1) as (engine, _):
        stop = await run_to_end(engine, {"on_failure": "fail", "nodes": nodes})
        go_on = await run_to_end(engine, {"on_failure": "continue", "nodes": nodes})
    assert stop.status == "failed" and go_on.status == "failed"
    assert states(stop)["a"] == "failed" and states(stop)["a2"] == "skipped"
    assert states(stop)["b"] == "skipped"  # never started: the rest failed with it
    assert states(go_on) == {"a": "failed", "a2": "skipped", "slow": "completed", "b": "completed"}


async def test_cancel_a_workflow_then_resume_it(config: Config) -> None:
    step = Step()
    async with running_pool(config, registry_with(step)) as (engine, _):
        ops = WorkflowOps(engine.ops)
        plan = await submit_stuck(engine, step, 7)
        mid = await engine.link.call(ops.get, plan.workflow_id)
        assert mid is not None
        assert states(mid) == {"done": "completed", "stuck": "processing", "later": "waiting"}
        assert [n.waiting_on for n in mid.nodes if n.name == "later"] == [["stuck"]]
        result = await engine.link.call(ops.cancel, plan.workflow_id)
        assert result.outcome == "cancelling"
        cancelled = await wait_end(engine, plan.workflow_id)
        assert cancelled.status == "cancelled"
        assert states(cancelled) == {
            "done": "completed",
            "stuck": "cancelled",
            "later": "cancelled",
        }
        # Resume: "stuck" runs again (unblocked this time), "done" does not.
        node = engine.keys.job(plan.nodes[1].row.id)
        await engine.link.call(lambda c: c.hset(node, "data", json.dumps({"n": 2})))
        resumed = await engine.link.call(ops.resume, plan.workflow_id)
        assert (resumed.outcome, resumed.count) == ("resumed", 2)
        again = await wait_end(engine, plan.workflow_id)
        assert again.status == "completed"
        assert [d.get("n") for d, _ in step.seen] == [7, None, 2, None]
        refused = await engine.link.call(ops.resume, plan.workflow_id)
        assert refused.outcome == "refused"


async def test_encrypted_nodes_are_sealed_at_rest_and_pass_results_along(config: Config) -> None:
    sealed = dataclasses.replace(
        config, encryption=dataclasses.replace(config.encryption, keys=(KEY,))
    )
    step = Step()
    async with running_pool(sealed, registry_with(step)) as (engine, _):
        answer = await run_to_end(engine, {"chain": [
            {"type": "step", "data": {"out": {"token": "s3cret"}}, "encrypt": True},
            {"type": "step", "encrypt": True,
             "data": {"n": 1, "got": {"$from": "step-1.result.token"}}},
        ]})  # fmt: skip
        stored = [engine.link.client.hget(engine.keys.job(n.job_id), "data") for n in answer.nodes]
    assert answer.status == "completed"
    assert all("s3cret" not in (raw or "") and "n" not in json.loads(raw or "{}") for raw in stored)
    assert step.seen[0][0] == {"out": {"token": "s3cret"}}  # the handler sees plaintext
    assert step.seen[1][0] == {"n": 1, "got": "s3cret"}
