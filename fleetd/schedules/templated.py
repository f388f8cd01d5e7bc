"""Schedules that run a template: checking one when saved, and what an occurrence makes.

Owns, for fleetd.schedules.store (saving, run now) and fleetd.schedules.firing:
- `check_templated`: the template exists for the schedule's company (its own, else
  the platform's) and every run's parameters — `params`, with each `for_each` element
  merged over them — match its JSON Schema and make a valid job or workflow; every
  problem at once, as field errors (`template.name`, `params.…`, `for_each[i].…`);
- `templated_runs`: the runs of one occurrence (or of a manual run), built by
  fleetd.templates.store.TemplateOps.prepare as `POST …/templates/{name}/run` builds
  them: job rows tagged `schedule:<id>` and `occurrence:<ISO time>` with the
  idempotency key `schedule:<id>:<ISO time>:<i>`, or workflow plans, each with an id
  derived from the schedule, the occurrence and its index (`occurrence_workflow_id`);
- `workflow_args`: those plans as schedule_fire.lua stores them, in the very call that
  wins the occurrence (so an occurrence makes its workflows once, or not at all,
  whichever scheduler dies when).

Each run is made as the schedule's company: a company's schedule cannot reach another
company's template nor name another company in its parameters, nor name a plugin's
list (`for_each: "companies"`), which spans every company. A platform schedule
(no company) runs platform templates, and each run's company is the one its rendered
body names (e.g. `"company_id": {"$param": "company_id"}`): the Monthly Fleet Report
as one job per company. Every function takes a Redis client (one RedisLink hop).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from typing import Any

from fleetd.backend.codec import JobRow
from fleetd.backend.redis_link import SyncClient
from fleetd.jobs.queue import QueueOps
from fleetd.jobs.validation import FieldError, ValidationError
from fleetd.schedules.model import ScheduledJob, ScheduleSpec, occurrence_tags
from fleetd.schedules.templated_spec import MAX_FAN_OUT
from fleetd.templates.store import Loaded, Prepared, TemplateOps
from fleetd.workflows.plan import Plan
from fleetd.workflows.scripts import plan_args
from fleetd.workflows.spec import MAX_NODES

# The most workflow nodes one occurrence makes in all: schedule_fire.lua stores every
# workflow of an occurrence in the call that wins it (exactly once), so its work is
# bounded like one workflow's (MAX_FAN_OUT workflows of MAX_NODES nodes each would hold
# Redis for minutes).
MAX_OCCURRENCE_NODES = MAX_NODES

__all__ = ["check_templated", "occurrence_workflow_id", "templated_runs", "workflow_args"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

# Why a company's schedule may not name a plugin's list (see _source).
NAMED_LIST_OF_COMPANY = (
    "a named list spans every company: only a schedule of no company (a platform "
    "admin's) may name one; give this company's elements as a list"
)


def occurrence_workflow_id(schedule_id: str, occurrence_ms: int, index: int) -> str:
    """The id of run `index` of an occurrence when it is a workflow: `wf_` and a
    ULID-shaped id (as fleetd.workflows.plan.new_workflow_id) made of the occurrence's
    ms and 80 bits of a hash of the three — the same on every scheduler."""
    seed = f"{len(schedule_id)}:{schedule_id}:{occurrence_ms}:{index}".encode()
    bits = int.from_bytes(hashlib.blake2b(seed, digest_size=10).digest(), "big")
    value = (occurrence_ms << 80) | bits
    return "wf_" + "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -5, -5))


def workflow_args(plans: list[Plan]) -> list[object]:
    """The workflows of one occurrence as schedule_fire.lua's ARGV takes them."""
    return [arg for plan in plans for arg in plan_args(plan)]


def _source(ops: QueueOps, name: str, company: str | None) -> Any:
    """The function of a named parameter list (fleetd_param_sources). A plugin's list
    spans every company (the hook takes no company: e.g. `companies`, each one's id and
    name), so only a schedule of no company may name one: a company's schedule would
    put other companies' values in its own jobs, or in its errors."""
    if company is not None:
        raise ValidationError("for_each", NAMED_LIST_OF_COMPANY)
    pm = ops.registry.plugins
    sources = pm.param_sources if pm is not None else {}
    if name not in sources:
        known = ", ".join(sorted(sources)) or "none"
        raise ValidationError("for_each", f"no parameter list named {name!r} (known: {known})")
    return sources[name]


def _elements(
    ops: QueueOps, for_each: list[dict[str, Any]] | str, company: str | None
) -> list[dict[str, Any]]:
    """A `for_each` as its list: a named one read from its plugin now."""
    if not isinstance(for_each, str):
        return for_each
    fetch = _source(ops, for_each, company)
    try:
        found = fetch()
    except ValidationError:
        raise
    except Exception as exc:  # the plugin's: a database away, say
        raise ValidationError("for_each", f"list {for_each!r} cannot be read: {exc}") from None
    if not isinstance(found, list) or not all(isinstance(e, dict) for e in found):
        raise ValidationError("for_each", f"list {for_each!r} is not a list of objects")
    if len(found) > MAX_FAN_OUT:
        raise ValidationError("for_each", f"list {for_each!r} has over {MAX_FAN_OUT} elements")
    return found


def _runs(
    ops: QueueOps,
    params: dict[str, Any] | None,
    for_each: list[dict[str, Any]] | str | None,
    company: str | None,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(field prefix of its errors, parameters) of each run of a schedule of `company`."""
    base = dict(params or {})
    if for_each is None:
        yield "", base
        return
    for i, element in enumerate(_elements(ops, for_each, company)):
        yield f"for_each[{i}].", {**base, **element}


def _load(
    templates: TemplateOps, client: SyncClient, ref: dict[str, Any], company: str | None
) -> Loaded:
    """The template once for all the runs; ValidationError on template.name if none."""
    loaded = templates.load(client, ref["name"], company, ref.get("version"))
    if loaded is None:
        version = f" version {ref['version']}" if ref.get("version") else ""
        raise ValidationError("template.name", f"no template {ref['name']!r}{version}")
    return loaded


def _prepare(
    templates: TemplateOps,
    client: SyncClient,
    loaded: Loaded,
    company: str | None,
    user_id: str | None,
    extra: dict[str, Any] | None,
    params: dict[str, Any],
) -> Prepared:
    prepared = templates.prepare(
        client, loaded.spec.name, params, company=company, user_id=user_id, extra=extra,
        loaded=loaded,
    )  # fmt: skip
    assert prepared is not None  # given `loaded`, prepare reads nothing
    return prepared


def check_templated(client: SyncClient, ops: QueueOps, spec: ScheduleSpec) -> None:
    """ValidationError listing every problem of a template schedule's runs."""
    if spec.template is None:
        return
    ref = {"name": spec.template.name, "version": spec.template.version}
    templates = TemplateOps(ops)
    loaded = _load(templates, client, ref, spec.company_id)
    if isinstance(spec.for_each, str):  # read when it fires: check the name only
        _source(ops, spec.for_each, spec.company_id)
        return
    errors: list[FieldError] = []
    nodes = 0
    for prefix, params in _runs(ops, spec.params, spec.for_each, spec.company_id):
        try:
            made = _prepare(
                templates, client, loaded, spec.company_id, spec.user_id, None, params
            ).made
        except ValidationError as exc:
            errors.extend(exc.prefixed(prefix).errors if prefix else exc.errors)
        else:
            nodes += len(made.nodes) if isinstance(made, Plan) else 0
    if nodes > MAX_OCCURRENCE_NODES:
        errors.append(_too_many_nodes(nodes))
    if errors:
        raise ValidationError.of(errors)


def _too_many_nodes(nodes: int) -> FieldError:
    return FieldError("for_each", f"an occurrence would make {nodes} workflow nodes in all, "
                      f"at most {MAX_OCCURRENCE_NODES}")  # fmt: skip


def templated_runs(
    client: SyncClient, ops: QueueOps, job: ScheduledJob, occurrence_ms: int | None
) -> tuple[list[JobRow], list[Plan]]:
    """The job rows (a job template) or workflow plans of one occurrence, or of a
    manual run (occurrence_ms None: tagged `run-now`). Raises ValidationError when
    the template is gone or no longer accepts the stored parameters."""
    ref = job.template or {}
    tags = [f"schedule:{job.id}", "run-now"]
    idem = ""
    if occurrence_ms is not None:
        tags, idem = occurrence_tags(job.id, occurrence_ms)
    templates = TemplateOps(ops)
    loaded = _load(templates, client, ref, job.company_id)
    rows: list[JobRow] = []
    plans: list[Plan] = []
    for_each = ref.get("for_each")
    for i, (_, params) in enumerate(_runs(ops, ref.get("params"), for_each, job.company_id)):
        extra: dict[str, Any] = {"tags": tags}
        if idem:
            extra["idempotency_key"] = f"{idem}:{i}"
        made = _prepare(templates, client, loaded, job.company_id, job.user_id, extra, params).made
        if isinstance(made, Plan):
            if occurrence_ms is not None:
                made = dataclasses.replace(
                    made, workflow_id=occurrence_workflow_id(job.id, occurrence_ms, i)
                )
            plans.append(made)
        else:
            rows.append(made)
    if (nodes := sum(len(p.nodes) for p in plans)) > MAX_OCCURRENCE_NODES:
        raise ValidationError.of([_too_many_nodes(nodes)])  # recorded as the run's error
    return rows, plans
