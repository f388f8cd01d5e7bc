"""A template's declaration and its rendering, declared once; pure logic, no I/O.

A template is a job body (as for enqueueing one) or a workflow body (fleetd.workflows)
whose values may be `{"$param": "<name>"}` placeholders, plus a JSON Schema (`params`)
for those parameters. Saving checks the schema (fleetd.jobs.schema: the same JSON Schema
dialect and formats as job data) and that every placeholder names a declared
parameter; running checks the parameters against the schema — every problem at once,
under `params.` — and replaces each placeholder by its value (a parameter left out
takes the schema's `default`, else the placeholder becomes null).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from fleetd.jobs.fields import Line, OptionalId
from fleetd.jobs.schema import SchemaValidator, compile_schema
from fleetd.jobs.validation import FieldError, ValidationError, explained

__all__ = ["PARAM", "TemplateSpec", "placeholders", "render"]

PARAM = "$param"

TemplateName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$"),
    explained("must be 1 to 64 letters, digits, '_', '.' or '-'"),
]


class TemplateSpec(BaseModel):
    """A template to save (each save is a new version)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: TemplateName
    description: Annotated[str, StringConstraints(max_length=1000), Line] = ""
    company_id: OptionalId = None
    """the company whose template it is; none: the platform's (every company may run it)"""
    params: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    """JSON Schema of the parameters (an object)"""
    job: dict[str, Any] | None = None
    """a job body (POST …/jobs/enqueue), placeholders allowed"""
    workflow: dict[str, Any] | None = None
    """a workflow body (POST …/workflows), placeholders allowed"""

    @property
    def kind(self) -> Literal["job", "workflow"]:
        return "job" if self.job is not None else "workflow"

    def body(self) -> dict[str, Any]:
        return self.job if self.job is not None else dict(self.workflow or {})

    def check(self) -> None:
        """ValidationError listing every problem of the declaration."""
        errors: list[FieldError] = []
        if (self.job is None) == (self.workflow is None):
            errors.append(FieldError("job", "give exactly one of job or workflow"))
        declared: set[str] = set()
        try:
            compile_schema(self.params)
            declared = set((self.params.get("properties") or {}).keys())
        except ValueError as exc:
            errors.append(FieldError("params", str(exc)))
        for path, name in placeholders(self.body(), self.kind):
            if not isinstance(name, str) or name not in declared:
                errors.append(FieldError(path, f"$param {name!r} is not a property of params"))
        if errors:
            raise ValidationError.of(errors)


def placeholders(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every `{"$param": name}` in `value` as (field path, name)."""
    if isinstance(value, dict):
        if PARAM in value and len(value) == 1:
            yield path, value[PARAM]
            return
        for key, item in value.items():
            yield from placeholders(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from placeholders(item, f"{path}[{i}]")


def _fill(value: Any, params: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        if PARAM in value and len(value) == 1:
            return params.get(value[PARAM])
        return {k: _fill(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, params) for v in value]
    return value


def render(
    spec: TemplateSpec, params: object, schema: SchemaValidator | None = None
) -> dict[str, Any]:
    """The template's body with `params` filled in; ValidationError (fields under
    `params.`) when they do not match the schema. `schema`: spec.params compiled, for
    a caller rendering one template many times (a schedule's fan-out)."""
    if not isinstance(params, dict):
        raise ValidationError("params", "must be a JSON object")
    errors = (schema or compile_schema(spec.params)).errors(params)
    if errors:
        raise ValidationError.of([FieldError("params" + e.field[len("data") :], e.message)
                                  for e in errors])  # fmt: skip
    props = spec.params.get("properties") or {}
    full = {
        name: p["default"] for name, p in props.items() if isinstance(p, dict) and "default" in p
    }
    full.update(params)
    rendered: dict[str, Any] = _fill(spec.body(), full)
    return rendered
