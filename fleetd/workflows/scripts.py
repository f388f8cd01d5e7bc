"""Typed calls of the workflow scripts (lua/wf_*.lua); argument order defined here only.

Each method mirrors its script's header, builds KEYS from `Keys` and ARGV in the
documented order and runs through fleetd.backend.scripts.Scripts (which loads every
script at start-up, with lua/_workflow.lua's helpers prepended). Synchronous: callers
run them inside one RedisLink hop.
"""

from __future__ import annotations

import json
from typing import Any

from fleetd.backend.codec import encode_row
from fleetd.backend.redis_link import SyncClient
from fleetd.backend.scripts import CONTROL_TTL_S, WAKE_TOKEN_CAP, Scripts, quota_refusal
from fleetd.jobs.model import JobStatus
from fleetd.workflows.plan import Plan

__all__ = ["WorkflowScripts", "plan_args"]

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def plan_args(plan: Plan) -> list[Any]:
    """A plan as wf_store (lua/_workflow.lua) reads it: its id, fields, number of
    nodes, then each node's row and workflow fields."""
    args: list[Any] = [plan.workflow_id, _encode(plan.meta), len(plan.nodes)]
    for node in plan.nodes:
        args.extend((encode_row(node.row), _encode(node.extra)))
    return args


class WorkflowScripts:
    def __init__(self, scripts: Scripts) -> None:
        self._scripts = scripts
        self.keys = scripts.keys

    def submit(self, client: SyncClient, plan: Plan, quota: str = "") -> int:
        """Store the whole plan in one script call; returns Redis now ms. `quota`: the
        companies' quotas (Limits.encode_quota), every node counted: a company over one
        raises QuotaExceeded and nothing is stored."""
        k = self.keys
        keys = [
            k.queue, k.delayed, k.seq, k.status(JobStatus.PENDING), k.events, k.wake,
            k.workflows,
        ]  # fmt: skip
        workflow_id, fields, *nodes = plan_args(plan)  # nodes: their count, then each
        args: list[Any] = [workflow_id, WAKE_TOKEN_CAP, fields, *nodes]
        if quota:
            args.append(quota)
        reply = self._scripts.call(client, "wf_submit", keys, args)
        if isinstance(reply, list):  # [-1, refused companies...]
            raise quota_refusal(reply[1:])
        return int(reply)

    def skip(self, client: SyncClient, job_id: str, token: str, why: str) -> bool:
        """A started node whose condition is false ends skipped; False when stale."""
        k = self.keys
        keys = [k.leases, k.status(JobStatus.CANCELLED), k.events]
        return bool(self._scripts.call(client, "wf_skip", keys, [job_id, token, why]))

    def cancel(self, client: SyncClient, workflow_id: str) -> tuple[str, str]:
        """(outcome cancelled | cancelling | final | missing, the workflow's status)."""
        keys = [self.keys.workflow(workflow_id)]
        r = self._scripts.call(client, "wf_cancel", keys, [workflow_id, CONTROL_TTL_S])
        return str(r[0]), str(r[1])

    def resume(self, client: SyncClient, workflow_id: str, quota: str = "") -> tuple[str, str, int]:
        """(outcome resumed | refused | missing, the workflow's status, nodes reset).
        `quota`: the companies' quotas (Limits.encode_quota), every node put back
        counted: over one raises QuotaExceeded and nothing is written."""
        k = self.keys
        keys = [
            k.workflow(workflow_id), k.status(JobStatus.FAILED), k.status(JobStatus.CANCELLED),
        ]  # fmt: skip
        r = self._scripts.call(client, "wf_resume", keys, [workflow_id, quota])
        if r[0] == -1:  # [-1, refused companies...]
            raise quota_refusal(r[1:])
        return str(r[0]), str(r[1]), int(r[2])
