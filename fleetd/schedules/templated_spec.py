"""A schedule that runs a template: the declaration of its fields (sans-IO).

Owns `TemplateRef` (`{"name", "version"}`), `ForEach` (the fan-out: a list of
parameter objects, one run per element) and `templated_problems`, the rules across
fields: a schedule gives exactly one of `job_type` or `template`; `params` and
`for_each` (a list, or a named list a plugin provides) only with a template; no
`data` or `encrypt` with one (the template's body holds the job, and its `encrypt`).
What the template itself accepts (it exists, the parameters match its JSON Schema)
needs Redis: fleetd.schedules.templated checks it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from annotated_types import Ge, MaxLen, MinLen
from pydantic import ConfigDict, Strict, StringConstraints
from pydantic.dataclasses import dataclass

from fleetd.jobs.validation import FieldError, explained
from fleetd.templates.model import TemplateName

if TYPE_CHECKING:
    from fleetd.schedules.model import ScheduleSpec

__all__ = [
    "MAX_FAN_OUT",
    "TEMPLATE_TYPE_PREFIX",
    "ForEach",
    "TemplateRef",
    "template_job_type",
    "templated_problems",
]

# Runs of one occurrence: every job of a job template's fan-out is enqueued by one
# script call (with the schedule's advance), so the list is bounded like a batch.
MAX_FAN_OUT = 1000
# The `job_type` a template schedule shows (the spec's struct has one).
TEMPLATE_TYPE_PREFIX = "template:"


@dataclass(frozen=True, slots=True, config=ConfigDict(extra="forbid", title="TemplateRef"))
class TemplateRef:
    """The template a schedule runs: its name and, optionally, a fixed version (the
    latest at each run otherwise)."""

    name: TemplateName
    version: Annotated[int, Strict(), Ge(1)] | None = None


SourceName = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,63}$"),
    explained("must name a parameter list: 1 to 64 of a-z 0-9 _ - starting with a letter"),
]
# A list of parameter objects, or the name of a list a plugin provides (e.g.
# "companies": fleetd_param_sources), read when the schedule fires.
ForEach = Annotated[list[dict[str, Any]], MinLen(1), MaxLen(MAX_FAN_OUT)] | SourceName


def template_job_type(name: str) -> str:
    return f"{TEMPLATE_TYPE_PREFIX}{name}"


def templated_problems(spec: ScheduleSpec) -> list[FieldError]:
    """The cross-field rules of a schedule's job or template (empty: none broken)."""
    if spec.template is None:
        out = [FieldError(f, "only with template") for f in ("params", "for_each")
               if getattr(spec, f) is not None]  # fmt: skip
        if spec.job_type is None:
            out.append(FieldError("job_type", "is required (or give template)"))
        return out
    out = []
    if spec.job_type is not None and spec.job_type != template_job_type(spec.template.name):
        out.append(FieldError("job_type", "give either job_type or template, not both"))
    if spec.data:
        out.append(FieldError("data", "not with template: give params"))
    if spec.encrypt:
        out.append(FieldError("encrypt", "not with template: the template's body sets it"))
    return out
