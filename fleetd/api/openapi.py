"""The OpenAPI 3.1 document of the admin API, served at /api/v1/openapi.json — generated.

Owns `document()`, which walks the app's route table (fleetd.api.routes) and builds
every operation from what its view states with `documented()` (fleetd.api.operations):
schemas come from the pydantic declarations (fleetd.api.bodies for answers,
EnqueueRequest, ScheduleSpec and fleetd.api.inputs for what is sent), never written
here. A route without `documented()` is an error, so the document cannot miss one.

Error statuses follow from the view: admin views answer 401, 403 and 503; a body adds
400, 413, 415 and 422; validated query or path parameters add 422. Every error answer
is the Error body (fleetd.api.errors).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from fleetd import __version__
from fleetd.api.bodies import Error
from fleetd.api.context import AUTH_PUBLIC, auth_decision
from fleetd.api.operations import Operation, operation_of
from fleetd.api.routes import route_table

__all__ = ["document"]

REF = "#/components/schemas/{model}"
# Path parameters keep the spec's names (`{id}`), whatever the view calls them.
_PATH_NAMES = {"job_id": "id", "schedule_id": "id", "workflow_id": "id", "name": "name"}
_RULE_PARAM = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")

_ERRORS = {
    400: "Malformed request (invalid JSON, nesting too deep)",
    401: "Missing, malformed, expired or otherwise invalid bearer token",
    403: "Valid token without the needed rights",
    404: "Not found (or another company's)",
    409: "Conflict with the current state",
    413: "Body over the size limit",
    415: "Body is not application/json",
    422: "Invalid fields (details.fields lists each path)",
    426: "A WebSocket endpoint asked for with plain HTTP (Upgrade: websocket)",
    429: "A company's quota ([limits]) is exceeded (Retry-After says when to retry)",
    503: "Redis unreachable (Retry-After says when to retry)",
}


class _Schemas:
    """The component schemas of the document, from the declarations it references."""

    def __init__(self) -> None:
        self.models: dict[str, tuple[Any, str]] = {"Error": (Error, "serialization")}
        self.partial: set[str] = set()

    def ref(self, kind: Any, mode: str, partial: bool = False) -> dict[str, Any]:
        if not isinstance(kind, type) or not hasattr(kind, "__pydantic_fields__"):
            return TypeAdapter(kind).json_schema(mode=mode)  # type: ignore[arg-type]
        self.models[kind.__name__] = (kind, mode)
        if not partial:
            return {"$ref": REF.format(model=kind.__name__)}
        name = kind.__name__ + "Update"
        self.partial.add(kind.__name__)
        return {"$ref": REF.format(model=name)}

    def components(self) -> dict[str, Any]:
        pairs = list(self.models.values())
        _, top = models_json_schema(pairs, ref_template=REF)  # type: ignore[arg-type]
        out: dict[str, Any] = dict(top.get("$defs", {}))
        for name in self.partial:
            whole = out[name]
            out[name + "Update"] = {k: v for k, v in whole.items() if k != "required"}
        return dict(sorted(out.items()))


def _parameters(model: type[BaseModel], where: str) -> list[dict[str, Any]]:
    schema = model.model_json_schema(mode="validation", ref_template=REF)
    required = set(schema.get("required", ()))
    out = []
    for name, declared in schema.get("properties", {}).items():
        prop = {k: v for k, v in declared.items() if k not in ("description", "title")}
        doc = declared.get("description", "")
        param = {"name": name, "in": where, "required": name in required, "schema": prop}
        if doc:
            param["description"] = doc
        out.append(param)
    return out


def _error(code: int) -> dict[str, Any]:
    content = {"application/json": {"schema": {"$ref": REF.format(model="Error")}}}
    return {"description": _ERRORS[code], "content": content}


def _operation(op: Operation, names: list[str], decision: str | None, s: _Schemas) -> Any:
    responses: dict[str, Any] = {}
    for status, (kind, description) in sorted(op.ok.items()):
        answer: dict[str, Any] = {"description": description}
        if kind is not None:
            answer["content"] = {op.media: {"schema": s.ref(kind, "serialization")}}
        responses[str(status)] = answer
    codes = set(op.errors)
    if decision != AUTH_PUBLIC:
        codes |= {401, 403, 503}
    if op.body is not None:
        codes |= {400, 413, 415, 422}
    if op.query is not None or op.path:
        codes.add(422)
    responses.update((str(code), _error(code)) for code in sorted(codes))
    out: dict[str, Any] = {"summary": op.summary, "tags": [op.tag], "responses": responses}
    params = [
        {
            "name": _PATH_NAMES.get(n, n),
            "in": "path",
            "required": True,
            "schema": s.ref(op.path.get(n, str), "validation"),
        }
        for n in names
    ]
    if op.headers is not None:
        params += _parameters(op.headers, "header")
    if op.query is not None:
        params += _parameters(op.query, "query")
    if params:
        out["parameters"] = params
    if op.body is not None:
        schema = s.ref(op.body, "validation", op.partial)
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    if decision == AUTH_PUBLIC:
        out["security"] = []
    return out


@cache
def document() -> dict[str, Any]:
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for rule, view in route_table():
        op = operation_of(view)
        if op is None:
            raise RuntimeError(f"route {rule.rule} ({rule.endpoint}) has no documented()")
        names = _RULE_PARAM.findall(rule.rule)
        path = _RULE_PARAM.sub(lambda m: "{" + _PATH_NAMES.get(m[1], m[1]) + "}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            described = _operation(op, names, auth_decision(view), schemas)
            # A WebSocket route and its plain-HTTP refusal share GET: one operation,
            # the answers of both (the route registered first names it).
            same = paths.setdefault(path, {}).setdefault(method.lower(), described)
            for status, answer in described["responses"].items():
                same["responses"].setdefault(status, answer)
            same["responses"] = dict(sorted(same["responses"].items()))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "fleetd admin API",
            "version": __version__,
            "description": "Background jobs of FleetTracker Pro: enqueue, inspect, cancel, "
            "reset, clean up, schedule. Bearer JWT with role admin; a company_id claim "
            "limits the caller to that company's jobs and schedules.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "tags": [
            {"name": "jobs"},
            {"name": "scheduled"},
            {"name": "workflows"},
            {"name": "templates"},
            {"name": "operations"},
        ],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas.components(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
