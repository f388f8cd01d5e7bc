"""A workflow node starting: its parents' results, its condition, its `$from` data.

Runs in the worker (fleetd.runtime.running) before the handler, only for nodes that
read their parents (`wf_in`: a condition, a `$from` reference or `with_parents`), so
other jobs — workflow nodes included — pay nothing: one Redis hop reads the node's
parents and their results. Then:

- the condition (JMESPath, the `jmespath` library: no parser of ours, never eval) is
  evaluated over {"parents": {name: {"state", "result"}}}; false, null or empty skips
  the node (wf_skip.lua, which settles its children in the same step);
- each {"$from": "<parent>.result.<field>…"} in the data is replaced by that value; a
  missing one fails the node for good (a retry would read the same results), and so
  does data its handler then refuses;
- `ctx.parents` gets {name: result} (None for a parent without a result).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError

from fleetd.backend.codec import ClaimedJob
from fleetd.backend.redis_link import SyncClient
from fleetd.jobs.context import JobServices
from fleetd.jobs.handlers import Handler, HandlerRegistry
from fleetd.jobs.validation import ValidationError
from fleetd.workflows.plan import FROM
from fleetd.workflows.scripts import WorkflowScripts

__all__ = ["NodeStart", "start_node"]

_MISSING = object()


@dataclass(frozen=True, slots=True)
class NodeStart:
    """What the runner does next: run the handler on `data` with `parents`, or write
    nothing (`skipped`: done in Redis already, or stale), or fail with `error`."""

    data: dict[str, Any]
    parents: dict[str, Any]
    skipped: bool = False
    error: str | None = None


def _read(
    client: SyncClient, services: JobServices, job_id: str
) -> tuple[str | None, dict[str, dict[str, Any]]]:
    keys = services.keys
    raw_parents, cond = client.hmget(keys.job(job_id), ["wf_parents", "wf_cond"])
    parents: dict[str, list[str]] = json.loads(raw_parents or "{}")
    pipe = client.pipeline(transaction=False)
    for parent_id, _ in parents.values():
        pipe.hmget(keys.job(parent_id), ["wf_done", "result"])
    out = {}
    for name, (state, result) in zip(parents, pipe.execute(), strict=True):
        out[name] = {"state": state, "result": json.loads(result) if result else None}
    return cond, out


def _lookup(ref: str, parents: dict[str, dict[str, Any]]) -> Any:
    name, _, *path = ref.split(".")
    value: Any = (parents.get(name) or {}).get("result")
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return _MISSING if value is None and not path else value


def _resolve(data: Any, parents: dict[str, dict[str, Any]], problems: list[str]) -> Any:
    if isinstance(data, dict):
        if FROM in data and len(data) == 1:
            value = _lookup(str(data[FROM]), parents)
            if value is _MISSING:
                problems.append(f"$from {data[FROM]!r} is not in that parent's result")
                return None
            return value
        return {k: _resolve(v, parents, problems) for k, v in data.items()}
    if isinstance(data, list):
        return [_resolve(v, parents, problems) for v in data]
    return data


async def start_node(
    services: JobServices,
    registry: HandlerRegistry,
    handler: Handler,
    job: ClaimedJob,
    data: dict[str, Any],
) -> NodeStart:
    cond, parents = await services.link.call(_read, services, job.id)
    results = {name: p["result"] for name, p in parents.items()}
    if cond:
        try:
            keep = jmespath.search(cond, {"parents": parents})
        except JMESPathError as exc:
            return NodeStart(data, results, error=f"condition {cond!r} failed: {exc}")
        if not keep:
            why = f"skipped: condition {cond!r} is false"
            scripts = WorkflowScripts(services.scripts)
            await services.link.call(scripts.skip, job.id, job.token, why)
            return NodeStart(data, results, skipped=True)
    problems: list[str] = []
    resolved = _resolve(data, parents, problems)
    if problems:
        return NodeStart(data, results, error="; ".join(problems))
    if resolved != data:
        try:
            resolved = registry.validate(handler, resolved)
        except ValidationError as exc:
            return NodeStart(data, results, error=f"data after $from: {exc}")
    return NodeStart(resolved, results)
