"""Workflow operations shared by the HTTP API, the CLI and the client: `WorkflowOps`.

Owns submitting a planned workflow (one script call: all or nothing), reading one with
every node's state, cancelling and resuming one. Each method takes a Redis client and
is one RedisLink hop (a read is one pipeline). Company isolation is the caller's: the
answer carries `company_id` and the API answers 404 for another company's workflow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fleetd.backend.redis_link import SyncClient
from fleetd.backend.replication import replicated
from fleetd.jobs.answer import format_ts
from fleetd.jobs.queue import QueueOps
from fleetd.workflows.answer import NodeEdge, NodeState, WorkflowAnswer, WorkflowSubmitted
from fleetd.workflows.plan import Plan, build_plan
from fleetd.workflows.scripts import WorkflowScripts
from fleetd.workflows.spec import WorkflowRequest, parse_request

__all__ = ["ActionResult", "WorkflowOps"]

# Job-hash fields a node's state is read from.
_NODE_FIELDS = ("type", "status", "error", "wf_node", "wf_parents", "wf_done")


@dataclass(frozen=True, slots=True)
class ActionResult:
    """outcome: cancelled | cancelling | resumed | final | refused | missing."""

    outcome: str
    status: str
    count: int = 0


def _state(h: Mapping[str, str | None], parents: Mapping[str, Any], done: set[str]) -> str:
    """A node's state; `done`: the nodes (by name) with their final state. A pending
    node waits while one of its parents has none (lua/_workflow.lua releases it when
    the last one gets it)."""
    if h.get("wf_done"):
        return h["wf_done"] or ""
    status = h.get("status") or "pending"
    if status == "pending" and not done.issuperset(parents):
        return "waiting"
    return status


class WorkflowOps:
    def __init__(self, ops: QueueOps) -> None:
        self.ops = ops
        self.keys = ops.keys
        self.scripts = WorkflowScripts(ops.scripts)

    def plan(self, req: WorkflowRequest | Mapping[str, Any]) -> Plan:
        """Validate and plan; raises ValidationError listing every problem."""
        if not isinstance(req, WorkflowRequest):
            req = parse_request(req)
        return build_plan(req, self.ops)

    def submit(self, client: SyncClient, plan: Plan) -> WorkflowSubmitted:
        now = replicated(  # acknowledged like an enqueue ([redis] wait_replicas)
            client, self.keys, self.ops.wait, lambda c: self.scripts.submit(c, plan, self.ops.quota)
        )
        return WorkflowSubmitted(
            workflow_id=plan.workflow_id, status="running",
            nodes={n.name: n.row.id for n in plan.nodes}, created_at=str(format_ts(now)),
        )  # fmt: skip

    def company_of(self, client: SyncClient, workflow_id: str) -> tuple[bool, str | None]:
        """(exists, its company)."""
        h = client.hmget(self.keys.workflow(workflow_id), ["id", "company_id"])
        return h[0] is not None, h[1] or None

    def get(self, client: SyncClient, workflow_id: str) -> WorkflowAnswer | None:
        w = client.hgetall(self.keys.workflow(workflow_id))
        if not w:
            return None
        names = client.hgetall(self.keys.workflow_nodes(workflow_id))
        pipe = client.pipeline(transaction=False)
        for job_id in names.values():
            pipe.hmget(self.keys.job(job_id), list(_NODE_FIELDS))
        rows = [dict(zip(_NODE_FIELDS, r, strict=True)) for r in pipe.execute()]
        done = {row["wf_node"] or "" for row in rows if row["wf_done"]}
        edges = [json.loads(row["wf_parents"] or "{}") for row in rows]
        states = {
            row["wf_node"] or "": _state(row, parents, done)
            for row, parents in zip(rows, edges, strict=True)
        }
        nodes: list[NodeState] = []
        counts: dict[str, int] = {}
        for job_id, row, parents in zip(names.values(), rows, edges, strict=True):
            state = states[row["wf_node"] or ""]
            counts[state] = counts.get(state, 0) + 1
            nodes.append(NodeState(
                name=row["wf_node"] or "?", job_id=job_id, type=row["type"] or "?",
                state=state, status=row["status"] or "?",
                depends_on=[NodeEdge(node=p, on=edge[1]) for p, edge in parents.items()],
                waiting_on=[p for p in parents if states.get(p) in _UNFINISHED],
                error=row["error"] or None,
            ))  # fmt: skip
        return WorkflowAnswer(
            id=workflow_id, name=w.get("name", ""), status=w["status"],
            on_failure=w.get("policy", "fail"),
            company_id=w.get("company_id") or None, user_id=w.get("user_id") or None,
            created_at=str(format_ts(int(w["created_at"]))),
            finished_at=format_ts(int(w["finished_at"])) if w.get("finished_at") else None,
            total=int(w.get("total", 0)), counts=counts, nodes=nodes,
        )  # fmt: skip

    def cancel(self, client: SyncClient, workflow_id: str) -> ActionResult:
        outcome, status = self.scripts.cancel(client, workflow_id)
        return ActionResult(outcome, status)

    def resume(self, client: SyncClient, workflow_id: str) -> ActionResult:
        """Its nodes that did not complete back to pending, under the company's quotas
        (each counts as one enqueued): over one raises QuotaExceeded, nothing changes."""
        outcome, status, count = self.scripts.resume(client, workflow_id, self.ops.quota)
        return ActionResult(outcome, status, count)


_UNFINISHED = frozenset({"waiting", "pending", "processing", "retrying"})
