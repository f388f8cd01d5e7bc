"""Submitting workflows against real Redis: every problem listed at once, all or nothing,
10,000 nodes in one call, waiting nodes visible and counted as pending."""

from __future__ import annotations

import pytest

from fleetd.engine import Engine
from fleetd.jobs.model import JobStatus
from fleetd.jobs.parts import ready_depth
from fleetd.jobs.validation import ValidationError
from fleetd.workflows.store import WorkflowOps


def test_bad_graphs_are_refused_with_every_problem_listed(engine: Engine) -> None:
    ops = WorkflowOps(engine.ops)
    with pytest.raises(ValidationError) as caught:
        ops.plan({"nodes": [
            {"name": "a", "type": "noop", "depends_on": ["c"]},
            {"name": "b", "type": "nope"},
            {"name": "c", "type": "noop", "depends_on": ["a", "ghost"]},
            {"name": "a", "type": "noop", "data": {"sleep_ms": -1}},
            {"name": "d", "type": "noop", "condition": "parents.[[["},
            {"name": "e", "type": "noop", "depends_on": ["b"],
             "data": {"x": {"$from": "a.result.x"}}},
        ]})  # fmt: skip
    fields = {e.field for e in caught.value.errors}
    assert {
        "nodes[1].type", "nodes[2].depends_on[1]", "nodes[3].name", "nodes[3].data.sleep_ms",
        "nodes[4].condition", "nodes[5].data.x",
    } <= fields  # fmt: skip
    with pytest.raises(ValidationError) as cycle:
        ops.plan({"nodes": [
            {"name": "a", "type": "noop", "depends_on": ["c"]},
            {"name": "b", "type": "noop", "depends_on": ["a"]},
            {"name": "c", "type": "noop", "depends_on": ["b"]},
            {"name": "free", "type": "noop"},
        ]})  # fmt: skip
    [error] = cycle.value.errors
    assert "cycle" in error.message and "a, b, c" in error.message
    with pytest.raises(ValidationError) as shape:
        ops.plan({"chain": [{"type": "noop"}], "nodes": [{"name": "x", "type": "noop"}]})
    assert shape.value.errors[0].field == "nodes"
    assert engine.link.client.keys(engine.keys.prefix + "*") == []  # nothing was stored


def test_10000_nodes_in_one_call_waiting_nodes_visible_and_pending(engine: Engine) -> None:
    ops = WorkflowOps(engine.ops)
    plan = ops.plan({
        "first": {"type": "noop"},
        "group": [{"type": "noop", "data": {"i": i}} for i in range(9998)],
        "then": {"type": "noop"},
    })  # fmt: skip
    assert len(plan.nodes) == 10_000
    submitted = ops.submit(engine.link.client, plan)
    assert len(submitted.nodes) == 10_000
    client = engine.link.client
    assert ready_depth(client, engine.keys) == 1  # only "first" is ready
    assert engine.ops.stats(client)[JobStatus.PENDING.value] == 10_000
    answer = ops.get(client, plan.workflow_id)
    assert answer is not None
    assert answer.counts == {"pending": 1, "waiting": 9999}
    then = next(n for n in answer.nodes if n.name == "then")
    assert len(then.waiting_on) == 9998 and then.status == "pending"
