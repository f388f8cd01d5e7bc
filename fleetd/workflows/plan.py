"""From a workflow request to what wf_submit.lua stores: `build_plan`.

Owns the checks that need the whole graph, every problem reported at once with its
field path (422 over HTTP, one line per problem in the CLI): node names unique,
`depends_on` naming known nodes at most once, no cycle (Kahn's algorithm: what is
left after peeling nodes without parents lies on or behind a cycle), conditions that
compile as JMESPath, `$from` references to a parent's result, and each node's job as
any enqueue checks it (known type, data valid for its handler — unless it holds
`$from` references, then its handler checks it when the node starts — sealed as the
handler or `encrypt` asks). The plan carries each node's job row and its workflow
fields (its children, parents, how many parents it waits for).

Pure logic apart from the queue's row building (no Redis).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError

from fleetd.backend.codec import JobRow
from fleetd.jobs.model import EnqueueRequest, new_job_id
from fleetd.jobs.queue import QueueOps
from fleetd.jobs.validation import FieldError, ValidationError
from fleetd.workflows.spec import Edge, Expanded, WorkflowNode, WorkflowRequest, expand

__all__ = ["FROM", "Plan", "PlannedNode", "build_plan", "from_refs", "new_workflow_id"]

# The key of a reference: {"$from": "<parent>.result.<field>.<field>…"}.
FROM = "$from"
# Cycle members named in the error: enough to find it, short enough to read.
CYCLE_NAMES_SHOWN = 10


def new_workflow_id() -> str:
    """wf_ + the sortable random part of a job id (fleetd.jobs.model.new_job_id)."""
    return "wf_" + new_job_id()[4:]


@dataclass(frozen=True, slots=True)
class PlannedNode:
    name: str
    row: JobRow
    # Job-hash fields of the node (_workflow.lua's header): all strings.
    extra: dict[str, str]


@dataclass(frozen=True, slots=True)
class Plan:
    workflow_id: str
    # wf:<id> fields besides those the script sets (name, company_id, user_id, policy).
    meta: dict[str, str]
    nodes: list[PlannedNode]


def from_refs(data: Any, path: str = "data") -> Iterator[tuple[str, Any]]:
    """Every `$from` reference in `data` as (field path, its value)."""
    if isinstance(data, dict):
        if FROM in data and len(data) == 1:
            yield path, data[FROM]
            return
        for key, value in data.items():
            yield from from_refs(value, f"{path}.{key}")
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from from_refs(value, f"{path}[{i}]")


def _cycle_errors(order: list[Expanded], parents: dict[str, list[Edge]]) -> list[FieldError]:
    kids: dict[str, list[str]] = {name: [] for name in parents}
    waiting = {name: len(edges) for name, edges in parents.items()}
    for name, edges in parents.items():
        for e in edges:
            kids[e.node].append(name)
    ready = deque(name for name, n in waiting.items() if n == 0)
    while ready:
        for kid in kids[ready.popleft()]:
            waiting[kid] -= 1
            if waiting[kid] == 0:
                ready.append(kid)
    stuck = [name for name, n in waiting.items() if n > 0]
    if not stuck:
        return []
    shown = ", ".join(stuck[:CYCLE_NAMES_SHOWN]) + (", …" if len(stuck) > CYCLE_NAMES_SHOWN else "")
    path = next(x.path for x in order if x.name == stuck[0])
    return [
        FieldError(
            f"{path}.depends_on", f"forms a cycle: {len(stuck)} nodes wait on each other ({shown})"
        )
    ]


def _check_refs(path: str, node: WorkflowNode, parent_names: set[str]) -> list[FieldError]:
    errors = []
    for field, ref in from_refs(node.data, f"{path}.data"):
        parts = ref.split(".") if isinstance(ref, str) else []
        if len(parts) < 2 or parts[1] != "result" or not all(parts):
            errors.append(
                FieldError(field, "$from must be '<parent>.result' or '<parent>.result.<field>…'")
            )
        elif parts[0] not in parent_names:
            errors.append(
                FieldError(field, f"$from names {parts[0]!r}, which is not a parent of this node")
            )
    return errors


def _row(ops: QueueOps, req: EnqueueRequest, has_refs: bool) -> JobRow:
    if not has_refs:
        return ops.prepare(req)
    # Data with references is checked by its handler when the node starts (the
    # parents' values are not known before); the type must exist now.
    handler = ops.registry.require(req.type)
    paths = None if req.encrypt else ops.registry.sensitive(req.type)
    return ops.build_row(req, dict(req.data), handler.defaults, paths)


def build_plan(req: WorkflowRequest, ops: QueueOps) -> Plan:
    """The plan of `req` (company and user already stamped); ValidationError lists
    every problem."""
    order, shape = expand(req)
    errors = [FieldError(f, m) for f, m in shape]
    seen: dict[str, str] = {}
    for x in order:
        if x.name is None:
            continue
        if x.name in seen:
            errors.append(
                FieldError(f"{x.path}.name", f"{x.name!r} is also the name of {seen[x.name]}")
            )
        else:
            seen[x.name] = x.path
    parents: dict[str, list[Edge]] = {}
    for x in order:
        if x.name is None or seen.get(x.name) != x.path:
            continue
        edges, names = [], set()
        for j, e in enumerate(x.edges):
            if e.node not in seen:
                errors.append(FieldError(f"{x.path}.depends_on[{j}]", f"no node named {e.node!r}"))
            elif e.node in names:
                errors.append(FieldError(f"{x.path}.depends_on[{j}]", f"names {e.node!r} twice"))
            else:
                names.add(e.node)
                edges.append(e)
        parents[x.name] = edges
        if x.node.condition is not None:
            try:
                jmespath.compile(x.node.condition)
            except JMESPathError as exc:
                errors.append(
                    FieldError(f"{x.path}.condition", f"not a JMESPath expression: {exc}")
                )
        errors.extend(_check_refs(x.path, x.node, names))
    if not errors:
        errors.extend(_cycle_errors(order, parents))
    rows: dict[str, JobRow] = {}
    for x in order:
        try:
            rows[str(x.name)] = _row(ops, _job(req, x.node), _has_refs(x.node))
        except ValidationError as exc:
            errors.extend(exc.prefixed(f"{x.path}.").errors)
    if errors:
        raise ValidationError.of(errors)
    return _plan(req, order, parents, rows)


def _has_refs(node: WorkflowNode) -> bool:
    return any(True for _ in from_refs(node.data))


def _job(req: WorkflowRequest, node: WorkflowNode) -> EnqueueRequest:
    """The node's job request. Its fields were validated by the node's declaration,
    which uses EnqueueRequest's own field types (fleetd.jobs.fields): built without a
    second validation (~45 µs a node)."""
    return EnqueueRequest.model_construct(
        type=node.type, data=node.data, priority=node.priority or req.priority,
        max_retries=node.max_retries, timeout=node.timeout, tags=node.tags,
        encrypt=node.encrypt, company_id=req.company_id, user_id=req.user_id,
    )  # fmt: skip


def _plan(
    req: WorkflowRequest,
    order: list[Expanded],
    parents: dict[str, list[Edge]],
    rows: dict[str, JobRow],
) -> Plan:
    # Per child: its job id, the edge's `on` and its number of parents (a child with
    # one is released by it without a count: lua/_workflow.lua).
    kids: dict[str, list[list[str | int]]] = {name: [] for name in rows}
    for name, edges in parents.items():
        for e in edges:
            kids[e.node].append([rows[name].id, e.on, len(edges)])
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    nodes = []
    for x in order:
        name, node = str(x.name), x.node
        edges = parents[name]
        extra = {
            "wf_node": name,
            "wf_kids": dumps(kids[name]),
            "wf_parents": dumps({e.node: [rows[e.node].id, e.on] for e in edges}),
            "wf_wait": str(len(edges)),
        }
        if node.condition is not None:
            extra["wf_cond"] = node.condition
        if (
            node.condition is not None
            or node.with_parents
            or any(True for _ in from_refs(node.data))
        ):
            extra["wf_in"] = "1"
        nodes.append(PlannedNode(name, rows[name], extra))
    meta = {"name": req.name, "policy": req.on_failure}
    if req.company_id:
        meta["company_id"] = req.company_id
    if req.user_id:
        meta["user_id"] = req.user_id
    return Plan(new_workflow_id(), meta, nodes)
