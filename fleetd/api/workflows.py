"""Workflow endpoints of the admin API, under /api/v1/admin/workflows.

Owns run (POST: a whole graph in one call, all or nothing), get one with every node's
state (GET /{id}), cancel (DELETE /{id}) and resume a failed or cancelled one (POST
/{id}/resume). Bodies are fleetd.workflows.answer's, the same the CLI prints with
--json. A company-bound token runs its company's workflows (every node is that
company's job) and sees, cancels and resumes only those; another company's workflow
answers 404, like one that does not exist.
"""

from __future__ import annotations

from typing import Any

import trio
from quart import Blueprint, g, jsonify

from fleetd.api.body import read_json
from fleetd.api.context import admin, audited, bind_company, principal, redis, state
from fleetd.api.errors import ApiError
from fleetd.api.inputs import parse
from fleetd.api.operations import documented
from fleetd.backend.redis_link import SyncClient
from fleetd.workflows import answer
from fleetd.workflows.spec import WorkflowRequest
from fleetd.workflows.store import ActionResult, WorkflowOps

__all__ = ["bp"]

bp = Blueprint("workflows", __name__, url_prefix="/api/v1/admin/workflows")

# Ids longer than this are never valid (workflow ids are 29 characters).
MAX_ID = 128
# Redis stores a workflow in one script call: ~0.1-0.25 ms a node on a busy 2-core box
# (bench/README.md), so a large graph may need longer than `[http] redis_timeout` (1.5 s),
# which bounds ordinary requests: the submit's answer waits this much more per node.
SUBMIT_MS_PER_NODE = 0.5
# Plans of more nodes than this are built in a worker thread: checking 10,000 nodes'
# data takes ~0.5 s, which must not stall the daemon's trio thread.
THREAD_PLAN_NODES = 200


def _ops() -> WorkflowOps:
    return WorkflowOps(state().ops)


@bp.post("")
@documented(
    "Run a workflow: a graph of jobs, stored all or nothing",
    {201: (answer.WorkflowSubmitted, "Stored; nodes without parents are queued")},
    body=WorkflowRequest,
    tag="workflows",
)
@admin
@audited("workflow.run")
async def run() -> Any:
    # `[http] max_body_size` (256 KiB) bounds this body as any other: ~4,000 nodes of a
    # short job; raise it for larger graphs over HTTP (the CLI and client have no limit).
    body = await read_json(state().limits)
    raw = body if isinstance(body, dict) else {}
    size = sum(len(v) for k in ("nodes", "chain", "group") if isinstance(v := raw.get(k), list))
    # A large graph is read and planned in a worker thread (see THREAD_PLAN_NODES).
    if size > THREAD_PLAN_NODES:
        req = await trio.to_thread.run_sync(parse, WorkflowRequest, body)
    else:
        req = parse(WorkflowRequest, body)
    if (company := bind_company(req.company_id)) is not None:
        req.company_id = company
    if req.user_id is None:
        req.user_id = principal().subject
    ops = _ops()
    plan = (
        await trio.to_thread.run_sync(ops.plan, req) if size > THREAD_PLAN_NODES else ops.plan(req)
    )
    st = state()
    submitted: answer.WorkflowSubmitted | None = None
    with trio.move_on_after(st.redis_timeout + len(plan.nodes) * SUBMIT_MS_PER_NODE / 1000):
        submitted = await st.link.call(ops.submit, plan)
    if submitted is None:  # the deadline passed: stored or not, the caller cannot know
        raise ApiError.unavailable(f"no answer from Redis for workflow {plan.workflow_id}")
    g.audit_target = plan.workflow_id
    g.audit_detail = {"name": req.name, "nodes": len(plan.nodes)}
    response = jsonify(submitted.jsonable())
    response.headers["Location"] = f"{bp.url_prefix}/{plan.workflow_id}"
    return response, 201


def _check_visible(client: SyncClient, ops: WorkflowOps, workflow_id: str) -> None:
    company = principal().company_id
    exists, owner = (
        (False, None) if len(workflow_id) > MAX_ID else ops.company_of(client, workflow_id)
    )
    if not exists or (company is not None and owner != company):
        raise ApiError.not_found(f"no workflow {workflow_id!r}")


@bp.get("/<workflow_id>")
@documented(
    "One workflow with every node's state",
    {200: (answer.WorkflowResponse, "OK")},
    "404",
    tag="workflows",
)
@admin
async def get_workflow(workflow_id: str) -> Any:
    ops = _ops()

    def read(client: SyncClient) -> answer.WorkflowAnswer | None:
        _check_visible(client, ops, workflow_id)
        return ops.get(client, workflow_id)

    found = await redis(read)
    if found is None:
        raise ApiError.not_found(f"no workflow {workflow_id!r}")
    return jsonify(answer.WorkflowResponse(workflow=found).jsonable())


async def _act(workflow_id: str, action: str) -> ActionResult:
    g.audit_target = workflow_id
    ops = _ops()

    def act(client: SyncClient) -> ActionResult:
        _check_visible(client, ops, workflow_id)
        return (
            ops.cancel(client, workflow_id)
            if action == "cancel"
            else ops.resume(client, workflow_id)
        )

    result = await redis(act)
    if result.outcome == "missing":
        raise ApiError.not_found(f"no workflow {workflow_id!r}")
    return result


@bp.delete("/<workflow_id>")
@documented(
    "Cancel a workflow: nodes not started end cancelled, running ones are told",
    {
        200: (answer.WorkflowCancelled, "Cancelled"),
        202: (answer.WorkflowCancelled, "Nodes still running: their daemons were told"),
    },
    "404 409",
    tag="workflows",
)
@admin
@audited("workflow.cancel")
async def cancel(workflow_id: str) -> Any:
    result = await _act(workflow_id, "cancel")
    if result.outcome == "final":
        raise ApiError.conflict(
            f"workflow {workflow_id} is already {result.status}; nothing to cancel",
            {"status": result.status},
        )
    body = answer.WorkflowCancelled(
        workflow_id=workflow_id, status=result.status, cancelled=result.outcome == "cancelled"
    )
    return jsonify(body.jsonable()), 200 if result.outcome == "cancelled" else 202


@bp.post("/<workflow_id>/resume")
@documented(
    "Run a failed or cancelled workflow again from the nodes that did not complete "
    "(under its company's quotas)",
    {200: (answer.WorkflowResumed, "Resumed")},
    "404 409 429",
    tag="workflows",
)
@admin
@audited("workflow.resume")
async def resume(workflow_id: str) -> Any:
    result = await _act(workflow_id, "resume")
    if result.outcome == "refused":
        raise ApiError.conflict(
            f"workflow {workflow_id} is {result.status}; only failed or cancelled ones resume",
            {"status": result.status},
        )
    g.audit_detail = {"nodes": result.count}
    body = answer.WorkflowResumed(
        workflow_id=workflow_id, status=result.status, resumed=result.count
    )
    return jsonify(body.jsonable())
