"""Releasing children in the script that completes their parent (lua/_workflow.lua),
against real Redis through the scripts themselves: a fan-out's children are queued by
one batched step in priority order, FIFO within a priority, each with its `released`
event; a fan-in child waits for its last parent; a node whose workflow was deleted by
hand completes without leaving a stray workflow hash."""

from __future__ import annotations

import uuid

from fleetd.backend.codec import ClaimedJob
from fleetd.engine import Engine
from fleetd.workflows.plan import Plan
from fleetd.workflows.store import WorkflowOps

PRIORITIES = ["low", "high", "normal", "high", "low", "normal"]


def _submit(engine: Engine, spec: dict[str, object]) -> Plan:
    ops = WorkflowOps(engine.ops)
    plan = ops.plan(spec)
    ops.submit(engine.link.client, plan)
    return plan


def _claim(engine: Engine, count: int) -> list[ClaimedJob]:
    client = engine.link.client
    return engine.scripts.claim(client, count, 60_000, uuid.uuid4().hex, "t:1:a").jobs


def _complete(engine: Engine, jobs: list[ClaimedJob]) -> list[int]:
    items = [(j.id, j.token, "{}", "{}") for j in jobs]
    return engine.scripts.complete(engine.link.client, items)


def _released(engine: Engine) -> list[str]:
    entries = engine.link.client.xrange(engine.keys.events)
    return [f["job_id"] for _, f in entries if f["type"] == "workflow.node"
            and f["status"] == "released"]  # fmt: skip


def test_a_fan_out_is_queued_in_priority_order_then_fans_in(engine: Engine) -> None:
    plan = _submit(engine, {
        "first": {"type": "noop"},
        "group": [{"type": "noop", "priority": p} for p in PRIORITIES],
        "then": {"type": "noop"},
    })  # fmt: skip
    ids = {n.name: n.row.id for n in plan.nodes}
    kids = [ids[f"task-{i + 1}"] for i in range(len(PRIORITIES))]
    first = _claim(engine, 10)
    assert [j.id for j in first] == [ids["first"]]  # the others wait
    assert _complete(engine, first) == [1]
    assert sorted(_released(engine)) == sorted(kids)
    claimed = _claim(engine, 10)
    by_priority = sorted(range(len(kids)), key=lambda i: ("high", "normal", "low").index(
        PRIORITIES[i]))  # fmt: skip
    assert [j.id for j in claimed] == [kids[i] for i in by_priority]
    # The fan-in child is released by the last of its six parents, not before.
    assert _complete(engine, claimed[:5]) == [1] * 5
    assert _claim(engine, 10) == []
    assert _complete(engine, claimed[5:]) == [1]
    last = _claim(engine, 10)
    assert [j.id for j in last] == [ids["then"]]
    assert _released(engine).count(ids["then"]) == 1
    assert _complete(engine, last) == [1]
    answer = WorkflowOps(engine.ops).get(engine.link.client, plan.workflow_id)
    assert answer is not None and answer.status == "completed"
    assert answer.counts == {"completed": len(PRIORITIES) + 2}


def test_a_node_of_a_workflow_deleted_by_hand_completes_cleanly(engine: Engine) -> None:
    plan = _submit(engine, {"chain": [{"type": "noop"}, {"type": "noop"}]})
    client, keys = engine.link.client, engine.keys
    client.delete(keys.workflow(plan.workflow_id), keys.workflow_nodes(plan.workflow_id))
    first = _claim(engine, 5)
    assert _complete(engine, first) == [1]
    assert client.exists(keys.workflow(plan.workflow_id)) == 0  # no stray hash
    assert _released(engine) == []
    job = engine.ops.get(client, first[0].id)
    assert job is not None and job.status.value == "completed"
