"""Helpers of the workflow tests: a handler that records what it saw, and waiting for a
workflow to end (against the test redis-server, through an in-process pool)."""

from __future__ import annotations

from typing import Any

import trio

from fleetd.engine import Engine
from fleetd.jobs.context import JobContext
from fleetd.jobs.handlers import HandlerDefaults, PermanentError
from fleetd.workflows.answer import WorkflowAnswer
from fleetd.workflows.plan import Plan
from fleetd.workflows.store import WorkflowOps


class Step:
    """`step`: returns {"n": data.n} (or data.out), fails for good on data.fail, blocks
    on data.block; records the node data and ctx.parents it ran with."""

    job_type = "step"
    defaults = HandlerDefaults(max_retries=0)

    def __init__(self) -> None:
        self.seen: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        return data

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        self.seen.append((data, dict(ctx.parents)))
        if data.get("block"):
            await trio.sleep_forever()
        if data.get("fail"):
            raise PermanentError("asked to fail")
        return dict(data.get("out") or {"n": data.get("n", 0)})


async def submit_stuck(engine: Engine, step: Step, n: int) -> Plan:
    """Submit done (data n) → stuck (blocks) → later, and wait until stuck runs: a
    workflow held mid-way, with one node completed and one waiting. Its plan."""
    ops = WorkflowOps(engine.ops)
    plan = ops.plan({"nodes": [
        {"name": "done", "type": "step", "data": {"n": n}},
        {"name": "stuck", "type": "step", "depends_on": ["done"], "data": {"block": True}},
        {"name": "later", "type": "step", "depends_on": ["stuck"]},
    ]})  # fmt: skip
    await engine.link.call(ops.submit, plan)
    with trio.fail_after(10):
        while len(step.seen) < 2:
            await trio.sleep(0.01)
    return plan


async def run_to_end(engine: Engine, spec: dict[str, Any], limit: float = 20) -> WorkflowAnswer:
    ops = WorkflowOps(engine.ops)
    plan = ops.plan(spec)
    await engine.link.call(ops.submit, plan)
    return await wait_end(engine, plan.workflow_id, limit)


async def wait_end(engine: Engine, workflow_id: str, limit: float = 20) -> WorkflowAnswer:
    ops = WorkflowOps(engine.ops)
    with trio.fail_after(limit):
        while True:
            answer = await engine.link.call(ops.get, workflow_id)
            assert answer is not None
            if answer.status in ("completed", "failed", "cancelled"):
                return answer
            await trio.sleep(0.02)


def states(answer: WorkflowAnswer) -> dict[str, str]:
    return {n.name: n.state for n in answer.nodes}
