"""A workflow node waits in its own named queue: released by its parent's completion
(_workflow.lua's ready_add), it goes to the queue its type is routed to, where a pool
serving only `default` leaves it and a claim of that queue finds it."""

from __future__ import annotations

import dataclasses
import uuid

import trio
from pool import registry_with, running_pool
from wf_helpers import Step

from fleetd.config import Config
from fleetd.config.queue_section import Served
from fleetd.jobs.model import JobStatus
from fleetd.jobs.parts import ready_parts
from fleetd.workflows.store import WorkflowOps


async def test_a_released_node_goes_to_its_types_queue(config: Config) -> None:
    async with running_pool(config, registry_with(Step())) as (engine, _):
        engine.ops.defaults = dataclasses.replace(engine.ops.defaults, routes={"noop": "bulk"})
        ops = WorkflowOps(engine.ops)
        plan = ops.plan({"chain": [{"type": "step", "data": {"n": 1}}, {"type": "noop"}]})
        await engine.link.call(ops.submit, plan)
        client, keys = engine.link.client, engine.keys
        with trio.fail_after(20):  # the pool (default queue) runs step-1 only
            while not ready_parts(client, keys, "bulk"):
                await trio.sleep(0.02)
        answer = await engine.link.call(ops.get, plan.workflow_id)
        assert answer is not None
        node = next(n for n in answer.nodes if n.type == "noop")
        job = await engine.link.call(engine.ops.get, node.job_id)
        assert job is not None and job.queue == "bulk"
        assert (job.status, job.attempts) == (JobStatus.PENDING, 0)
        bulk = engine.scripts.for_claims(None, "", Served.parse(["bulk"]))
        got = bulk.claim(client, 5, 30_000, uuid.uuid4().hex, "d2").jobs
        assert [j.id for j in got] == [node.job_id]
