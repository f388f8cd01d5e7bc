"""The body of a workflow, declared once: `WorkflowRequest` and its `WorkflowNode`s.

Owns the JSON shape (docs/WORKFLOWS.md): a graph given as `nodes` (each with a name
and `depends_on`), or one of two shorthands — `chain` (each node depends on the one
before) and `group` (fan-out, with an optional `first` node before the group and a
`then` node after all of it: fan-in) — and `expand()`, which turns any of the three
into one list of nodes with their edges. The checks that need the whole graph (names
unique and known, no cycle, references to parents) are fleetd.workflows.plan's.

Pure declarations, no I/O. The OpenAPI document describes these classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, TypeVar

import pydantic
from annotated_types import Ge, Le, MaxLen, MinLen
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from fleetd.jobs.fields import (
    JobData,
    JobTypeName,
    Line,
    MaxRetries,
    OptionalFlag,
    OptionalId,
    PriorityValue,
    Tags,
    Timeout,
)
from fleetd.jobs.validation import explained, from_pydantic

__all__ = [
    "MAX_NODES",
    "Edge",
    "Expanded",
    "NodeName",
    "Policy",
    "WorkflowNode",
    "WorkflowRequest",
    "expand",
    "parse_model",
    "parse_request",
]

# Nodes one workflow may hold: 10,000 is the size the issue asks to handle in one call
# (bench/workflows.py: ~0.5 s of Lua for 10,000 on this machine); twice that leaves room
# and still bounds what one script call holds Redis for.
MAX_NODES = 20_000
# A JMESPath condition is one expression, not a program.
MAX_CONDITION_LENGTH = 1000

# Node names appear in `$from` paths ("export.result.path") and JMESPath expressions
# (`parents.export`): letters, digits, `_` and `-`, so neither needs quoting rules of
# its own (a name with `-` is written `parents."my-node"` in JMESPath).
NodeName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$"),
    explained("must be 1 to 64 letters, digits, '_' or '-'"),
]
Policy = Literal["fail", "continue"]
On = Literal["success", "failure", "any"]


class Edge(BaseModel):
    """A dependency that names the parent's outcome it needs."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    node: NodeName
    """the parent's name"""
    on: On = "success"
    """success (default): the parent completed; failure: it failed for good; any: either"""


class WorkflowNode(BaseModel):
    """One node: an ordinary job (type, data, priority, retries, timeout, tags,
    encrypt) with a name and its dependencies. The company and user are the
    workflow's."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: NodeName | None = None
    """unique in the workflow; required in `nodes`, defaulted in the shorthands"""
    type: JobTypeName
    data: JobData = Field(default_factory=dict)
    """the handler's input; a value {"$from": "<parent>.result.<field>…"} is replaced by
    that parent's result field when the node starts"""
    priority: PriorityValue | None = None
    max_retries: MaxRetries | None = None
    timeout: Timeout | None = None
    tags: Tags = ()
    encrypt: OptionalFlag = False
    depends_on: Annotated[list[NodeName | Edge], MaxLen(MAX_NODES)] = Field(default_factory=list)
    """parents: a name (needs it completed) or {"node", "on"}"""
    condition: (
        Annotated[str, StringConstraints(min_length=1, max_length=MAX_CONDITION_LENGTH), Line]
        | None
    ) = None
    """a JMESPath expression over {"parents": {name: {"state", "result"}}}: false (or
    empty, null) when the node starts skips it"""
    with_parents: OptionalFlag = False
    """load the parents' results into ctx.parents even without a condition or $from"""


Nodes = Annotated[list[WorkflowNode], MinLen(1), MaxLen(MAX_NODES)]


class WorkflowRequest(BaseModel):
    """A workflow: exactly one of `nodes`, `chain` or `group` (with `first`/`then`)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: Annotated[str, StringConstraints(min_length=1, max_length=128), Line] = "workflow"
    company_id: OptionalId = None
    user_id: OptionalId = None
    on_failure: Policy = "fail"
    """fail: a node failing (with no `on: failure|any` edge to handle it) ends the nodes
    not started yet as skipped; continue: only what depends on it is skipped"""
    nodes: Nodes | None = None
    chain: Nodes | None = None
    """shorthand: each node depends on the one before (names default to step-1, …)"""
    group: Nodes | None = None
    """shorthand: fan-out (names default to task-1, …)"""
    first: WorkflowNode | None = None
    """with `group`: runs before every node of the group (name default: first)"""
    then: WorkflowNode | None = None
    """with `group`: runs after every node of the group, the fan-in (name default: then)"""
    priority: Annotated[int, Ge(1), Le(20)] | None = None
    """the default priority of nodes that give none"""


M = TypeVar("M", bound=BaseModel)


def parse_model(model: type[M], raw: object) -> M:
    """`raw` (JSON-shaped) validated by `model`; fleetd's ValidationError lists every
    problem."""
    try:
        return model.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise from_pydantic(exc) from None


def parse_request(raw: object) -> WorkflowRequest:
    return parse_model(WorkflowRequest, raw)


@dataclass(frozen=True, slots=True)
class Expanded:
    """One node of a request with its field path (`nodes[2]`, `group[0]`, `then`), its
    name (a shorthand's default when it gave none) and every edge, the shorthand's
    included. (Not copies of the node: 10,000 pydantic copies cost ~0.5 s.)"""

    path: str
    node: WorkflowNode
    name: str | None
    edges: list[Edge]


def _edges(node: WorkflowNode, *extra: str) -> list[Edge]:
    out = [d if isinstance(d, Edge) else Edge.model_construct(node=d, on="success")
           for d in node.depends_on]  # fmt: skip
    out.extend(Edge.model_construct(node=name, on="success") for name in extra)
    return out


def expand(req: WorkflowRequest) -> tuple[list[Expanded], list[tuple[str, str]]]:
    """The request's nodes with the shorthand's names and edges, and the shape problems
    as (field, message) pairs (none when it is well formed)."""
    shapes = [k for k in ("nodes", "chain", "group") if getattr(req, k) is not None]
    problems: list[tuple[str, str]] = []
    if len(shapes) != 1:
        problems.append(("nodes", "give exactly one of nodes, chain or group"))
        return [], problems
    if (req.first or req.then) and req.group is None:
        problems.append(("group", "first and then go with group"))
    out: list[Expanded] = []
    if req.nodes is not None:
        for i, node in enumerate(req.nodes):
            if node.name is None:
                problems.append((f"nodes[{i}].name", "is required"))
            out.append(Expanded(f"nodes[{i}]", node, node.name, _edges(node)))
    elif req.chain is not None:
        prev: tuple[str, ...] = ()
        for i, node in enumerate(req.chain):
            name = node.name or f"step-{i + 1}"
            out.append(Expanded(f"chain[{i}]", node, name, _edges(node, *prev)))
            prev = (name,)
    else:
        assert req.group is not None
        before: tuple[str, ...] = ()
        if req.first is not None:
            first = req.first.name or "first"
            out.append(Expanded("first", req.first, first, _edges(req.first)))
            before = (first,)
        group = [
            Expanded(f"group[{i}]", n, n.name or f"task-{i + 1}", _edges(n, *before))
            for i, n in enumerate(req.group)
        ]
        out.extend(group)
        if req.then is not None:
            names = [str(g.name) for g in group]
            out.append(
                Expanded("then", req.then, req.then.name or "then", _edges(req.then, *names))
            )
    return out, problems
