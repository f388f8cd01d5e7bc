"""The answers about workflows, declared once (pydantic): what the HTTP API sends, the
CLI's `--json` prints and `Client` returns as dicts.

A node's `state` is the workflow's view of its job: `waiting` (pending, parents not all
finished; `waiting_on` names them), `pending` (queued), `processing`, `retrying`,
`completed`, `failed`, `cancelled`, or `skipped` — a node whose condition was false or
whose parents did not end as its edges require; its job is `cancelled` with the error
"skipped: …" (the spec's six job statuses stay the only ones).
"""

from __future__ import annotations

from typing import Literal

from fleetd.jobs.answer import Body, Omitted, Timestamp

__all__ = [
    "NodeEdge",
    "NodeState",
    "WorkflowAnswer",
    "WorkflowCancelled",
    "WorkflowResponse",
    "WorkflowResumed",
    "WorkflowSubmitted",
]

WorkflowStatus = Literal["running", "failing", "cancelling", "completed", "failed", "cancelled"]


class NodeEdge(Body):
    node: str
    on: Literal["success", "failure", "any"]


class NodeState(Body):
    name: str
    job_id: str
    type: str
    state: str
    """waiting, pending, processing, retrying, completed, failed, cancelled, skipped"""
    status: str
    """the job's own status (one of the spec's six)"""
    depends_on: list[NodeEdge]
    waiting_on: list[str]
    """parents not finished yet (a waiting node)"""
    error: Omitted[str] = None


class WorkflowAnswer(Body):
    id: str
    name: str
    status: WorkflowStatus
    """running; failing or cancelling while nodes still run; then completed, failed or
    cancelled"""
    on_failure: Literal["fail", "continue"]
    company_id: Omitted[str] = None
    user_id: Omitted[str] = None
    created_at: Timestamp
    finished_at: Omitted[Timestamp] = None
    total: int
    counts: dict[str, int]
    """nodes per state"""
    nodes: list[NodeState]


class WorkflowResponse(Body):
    workflow: WorkflowAnswer


class WorkflowSubmitted(Body):
    workflow_id: str
    status: Literal["running"]
    nodes: dict[str, str]
    """node name → job id"""
    created_at: Timestamp


class WorkflowCancelled(Body):
    workflow_id: str
    status: str
    cancelled: bool
    """false while running nodes are still being cancelled"""


class WorkflowResumed(Body):
    workflow_id: str
    status: str
    resumed: int
    """nodes that run again"""
