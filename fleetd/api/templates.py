"""Template endpoints of the admin API, under /api/v1/admin/templates.

Owns save (POST: a new version), list (GET), get one (GET /{name}, `?version=N`),
delete (DELETE /{name}: every version) and run (POST /{name}/run: `{"params": {…},
"version": N}` creates the job or the workflow). A company-bound token saves, sees,
runs and deletes its company's templates, and sees and runs the platform's (running
one as its own company); another company's template answers 404.
"""

from __future__ import annotations

from typing import Annotated, Any

from annotated_types import Ge
from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, g, jsonify, request

from fleetd.api.body import read_json
from fleetd.api.context import admin, audited, bind_company, principal, redis, state
from fleetd.api.errors import ApiError
from fleetd.api.inputs import parse, parse_query
from fleetd.api.operations import documented
from fleetd.templates.model import TemplateSpec
from fleetd.templates.store import TemplateOps

__all__ = ["RunTemplate", "bp"]

bp = Blueprint("templates", __name__, url_prefix="/api/v1/admin/templates")

MAX_NAME = 64


class RunTemplate(BaseModel):
    """Run a template: its parameters, and a version (default: the latest)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    params: dict[str, Any] = Field(default_factory=dict)
    version: Annotated[int, Ge(1)] | None = None


class TemplateQuery(BaseModel):
    """GET /templates/{name}."""

    model_config = ConfigDict(extra="ignore", use_attribute_docstrings=True)

    version: Annotated[int, Ge(1)] | None = None
    """a version (default: the latest)"""


def _ops() -> TemplateOps:
    return TemplateOps(state().ops)


def _not_found(name: str) -> ApiError:
    return ApiError.not_found(f"no template {name!r}")


@bp.post("")
@documented(
    "Save a template (each save is a new version)",
    {201: (dict[str, Any], "Saved: the version stored")},
    body=TemplateSpec,
    tag="templates",
)
@admin
@audited("template.save")
async def save() -> Any:
    spec = parse(TemplateSpec, await read_json(state().limits))
    if (company := bind_company(spec.company_id)) is not None:
        spec.company_id = company
    ops = _ops()
    saved = await redis(lambda c: ops.save(c, spec))
    g.audit_target = spec.name
    g.audit_detail = {"version": saved["version"], "kind": saved["kind"]}
    return jsonify({"template": saved}), 201


@bp.get("")
@documented(
    "Templates (the latest version of each)", {200: (dict[str, Any], "OK")}, tag="templates"
)
@admin
async def list_templates() -> Any:
    ops = _ops()
    found = await redis(lambda c: ops.list(c, principal().company_id))
    return jsonify({"templates": found, "count": len(found)})


@bp.get("/<name>")
@documented(
    "One template", {200: (dict[str, Any], "OK")}, "404", query=TemplateQuery, tag="templates"
)
@admin
async def get_template(name: str) -> Any:
    q = parse_query(TemplateQuery, request.args)
    ops = _ops()
    found = None if len(name) > MAX_NAME else await redis(
        lambda c: ops.get(c, name, principal().company_id, q.version)
    )  # fmt: skip
    if found is None:
        raise _not_found(name)
    return jsonify({"template": found})


@bp.delete("/<name>")
@documented("Delete a template, every version", {200: (dict[str, Any], "Deleted")}, "404",
            tag="templates")  # fmt: skip
@admin
@audited("template.delete")
async def delete(name: str) -> Any:
    g.audit_target = name
    ops = _ops()
    deleted = await redis(lambda c: ops.delete(c, name, principal().company_id))
    if not deleted:
        raise _not_found(name)
    return jsonify({"name": name, "deleted": True})


@bp.post("/<name>/run")
@documented(
    "Run a template: creates its job or workflow",
    {201: (dict[str, Any], "Created")},
    "404",
    body=RunTemplate,
    tag="templates",
)
@admin
@audited("template.run")
async def run(name: str) -> Any:
    g.audit_target = name
    body = parse(RunTemplate, await read_json(state().limits))
    ops = _ops()
    p = principal()
    result = await redis(
        lambda c: ops.run(
            c, name, body.params, company=p.company_id, user_id=p.subject, version=body.version
        )
    )
    if result is None:
        raise _not_found(name)
    g.audit_detail = {"version": result.version, "kind": result.kind, "id": result.id}
    key = "job_id" if result.kind == "job" else "workflow_id"
    return jsonify({"template": name, "version": result.version, "kind": result.kind,
                    key: result.id}), 201  # fmt: skip
