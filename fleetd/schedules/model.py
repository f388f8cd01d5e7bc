"""The scheduled-job model: the spec's ScheduledJob, what callers may ask for, and the
JSON bodies of the schedule endpoints (sans-IO).

Owns:
- `ScheduledJob`: the spec's struct exactly (id, name, job_type, data, schedule,
  priority, is_active, last_run, next_run, company_id, user_id, created_at, updated_at)
  plus fleetd's `timezone`, `misfire_policy`, `runs`, `missed`, `last_job_id`,
  `last_error`, `encrypt`/`encrypted`; read from the schedule hash the Lua scripts
  write, sealed data (fleetd.jobs.sealing) shown redacted;
- `ScheduleSpec`: a create body (the spec's fields plus `id`, `timezone`,
  `misfire_policy`, `encrypt`) validated, and `updated()` for a partial update;
- the stable ids of default schedules (`default_id`: the same on every daemon);
- the HTTP/CLI bodies: `{"scheduled_job": …}`, `{"scheduled_jobs": […], "count"}`,
  `{"scheduler_stats": {…}}`, as JSON values built through their declarations
  (fleetd.schedules.answer).

Time arithmetic lives in fleetd.schedules.cadence; Redis in fleetd.schedules.store.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import pydantic
from annotated_types import MaxLen, MinLen
from pydantic import ConfigDict, Field, PlainValidator, Strict, StringConstraints, TypeAdapter
from pydantic.dataclasses import dataclass

from fleetd.jobs.fields import (
    MAX_ID_LENGTH,
    MAX_TYPE_LENGTH,
    Flag,
    JobData,
    PriorityValue,
    text_problem,
)
from fleetd.jobs.model import format_ts
from fleetd.jobs.model_salvage import report, salvage
from fleetd.jobs.sealing import MARK_DATA
from fleetd.jobs.validation import FieldError, ValidationError, explained, from_pydantic, rule
from fleetd.schedules import answer
from fleetd.schedules.cadence import Cadence, MisfirePolicy, load_timezone
from fleetd.schedules.model_hash import HASH_FIELDS
from fleetd.schedules.templated_spec import (
    ForEach,
    TemplateRef,
    template_job_type,
    templated_problems,
)

__all__ = [
    "ScheduleSpec",
    "ScheduledJob",
    "default_id",
    "list_body",
    "name_key",
    "occurrence_tags",
    "scheduled_job_body",
    "stats_body",
]

# Names are shown in listings and logs; 200 characters is a sentence.
MAX_NAME_LENGTH = 200
# Schedule ids appear in tags (`schedule:<id>`, at most 128 characters) and URLs.
MAX_SCHEDULE_ID_LENGTH = 64
_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def default_id(name: str) -> str:
    """The stable id of a default schedule: its name as a slug ("Daily Data Cleanup" →
    "daily-data-cleanup"), the same on every daemon and every start."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:MAX_SCHEDULE_ID_LENGTH].rstrip("-") or "default"


def name_key(name: str, company_id: str | None) -> str:
    """The field of the names index: names are unique per company (a name holds no
    control characters, so the first newline splits the two unambiguously)."""
    return f"{name}\n{company_id or ''}"


def occurrence_tags(schedule_id: str, occurrence_ms: int) -> tuple[list[str], str]:
    """The tags and the idempotency key of the job for one occurrence."""
    when = format_ts(occurrence_ms)
    return [f"schedule:{schedule_id}", f"occurrence:{when}"], f"schedule:{schedule_id}:{when}"


def _text(limit: int, *, required: bool) -> PlainValidator:
    """The rule of a line of text (name, job type, ids): not blank, at most `limit`
    characters, no control characters; "" and null are absent."""

    def check(value: object) -> str | None:
        if value is None or value == "":
            if required:
                raise ValidationError("", "is required")
            return None
        if not isinstance(value, str) or not value.strip():
            raise ValidationError("", "must be a non-empty string")
        if problem := text_problem(value, limit):
            raise ValidationError("", problem)
        return value

    return rule(check, Annotated[str, MinLen(1), MaxLen(limit)])


def _expression(value: object) -> str:
    """The schedule's syntax (time zone apart: both are valid in any zone)."""
    Cadence.parse(value, "UTC")  # type: ignore[arg-type]  # raises on a non-string
    return " ".join(str(value).split())


def _timezone(value: object) -> str:
    load_timezone(value)  # type: ignore[arg-type]  # raises on a non-string
    return str(value)


Name = Annotated[str, _text(MAX_NAME_LENGTH, required=True)]
OptionalJobType = Annotated[str | None, _text(MAX_TYPE_LENGTH, required=False)]
OptionalText = Annotated[str | None, _text(MAX_ID_LENGTH, required=False)]
ScheduleId = Annotated[
    str,
    Strict(),
    StringConstraints(pattern=_ID_PATTERN),
    explained("must be 1 to 64 of A-Z a-z 0-9 _ . - starting with a letter or digit"),
]
Expression = Annotated[str, rule(_expression, Annotated[str, MinLen(1)])]
TimezoneName = Annotated[str, rule(_timezone, str)]
Misfire = Annotated[MisfirePolicy, explained("must be run_once or skip")]


@dataclass(
    frozen=True,
    slots=True,
    kw_only=True,
    config=ConfigDict(extra="forbid", use_attribute_docstrings=True, title="ScheduleSpec"),
)
class ScheduleSpec:
    """A schedule's definition as a caller gives it (the create body). `priority` None
    takes the job type's default when the store checks the spec against the handler
    registry."""

    name: Name
    job_type: OptionalJobType = None
    """The job to enqueue; or give `template` instead."""
    schedule: Expression
    """@hourly, @daily, @weekly, @monthly, @yearly, an interval (30m, 1h, 1d, 1w) or a
    5-field cron expression."""
    data: JobData = Field(default_factory=dict)
    priority: PriorityValue | None = None
    is_active: Flag = True
    company_id: OptionalText = None
    user_id: OptionalText = None
    timezone: TimezoneName = "UTC"
    """IANA time zone, e.g. Europe/Berlin."""
    misfire_policy: Misfire = MisfirePolicy.RUN_ONCE
    id: ScheduleId | None = None
    """A stable id, unique across companies; left out, one is assigned. Over the API
    only platform admins choose it: a company-bound token that sends one gets 422."""
    encrypt: Flag = False
    """Seal the whole data at rest, in the schedule and in every job it enqueues."""
    template: TemplateRef | None = None
    """Run this template (instead of job_type and data) with `params`."""
    params: JobData | None = None
    """The template's parameters (every run; each `for_each` element adds to them)."""
    for_each: ForEach | None = None
    """Fan-out: one run per element (a parameter object merged over `params`)."""

    @classmethod
    def from_dict(cls, raw: object, *, default_timezone: str = "UTC") -> ScheduleSpec:
        """Validate a create body; raises ValidationError listing every problem."""
        if isinstance(raw, Mapping) and "timezone" not in raw:
            raw = {**raw, "timezone": default_timezone}
        return _validate(raw)

    def updated(self, changes: object) -> ScheduleSpec:
        """This spec with the fields of a partial update body changed (validated; the
        fields not given keep their values)."""
        if not isinstance(changes, Mapping):
            raise ValidationError("body", "must be a JSON object")
        problems: list[FieldError] = []
        if "id" in changes and changes["id"] != self.id:
            problems.append(FieldError("id", "cannot be changed"))
        current = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.template is not None:  # derived from the template (see _validate)
            current["job_type"] = None
        try:
            spec = _validate({**current, **{k: v for k, v in changes.items() if k != "id"}})
        except ValidationError as exc:
            raise ValidationError.of(problems + exc.errors) from None
        if problems:
            raise ValidationError.of(problems)
        return spec

    def cadence(self, anchor_ms: int = 0) -> Cadence:
        return Cadence.parse(self.schedule, self.timezone, anchor_ms)

    def timing_differs(self, other: ScheduleSpec) -> bool:
        """True when the run times change (expression or time zone)."""
        return (self.schedule, self.timezone) != (other.schedule, other.timezone)

    def hash_fields(self) -> list[tuple[str, Any]]:
        """The definition as schedule-hash fields (schedule_save.lua writes them)."""
        return [
            ("name", self.name),
            ("job_type", self.job_type),
            ("data", json.dumps(self.data, separators=(",", ":"))),
            ("schedule", self.schedule),
            ("priority", self.priority if self.priority is not None else 5),
            ("is_active", 1 if self.is_active else 0),
            ("company_id", self.company_id or ""),
            ("user_id", self.user_id or ""),
            ("timezone", self.timezone),
            ("misfire_policy", self.misfire_policy.value),
            ("template", self.template_json()),
        ]

    def template_json(self) -> str:
        """The `template` hash field: name, version, params, for_each as JSON ("": none)."""
        if self.template is None:
            return ""
        ref: dict[str, Any] = {"name": self.template.name, "version": self.template.version}
        ref |= {"params": self.params or {}, "for_each": self.for_each}
        return json.dumps(ref, separators=(",", ":"))


SPEC = TypeAdapter(ScheduleSpec)


def _validate(raw: object) -> ScheduleSpec:
    try:
        spec = SPEC.validate_python(raw)
    except pydantic.ValidationError as exc:
        raise from_pydantic(exc) from None
    problems = templated_problems(spec)
    if problems:
        raise ValidationError.of(problems)
    if spec.template is not None:  # shown and indexed as the template it runs
        spec = dataclasses.replace(spec, job_type=template_job_type(spec.template.name))
    return spec


@dataclasses.dataclass(frozen=True, slots=True)
class ScheduledJob:
    """A schedule as stored: the spec's fields, then fleetd's extensions. Times are ms."""

    id: str
    name: str
    job_type: str
    data: dict[str, Any]
    schedule: str
    priority: int
    is_active: bool
    next_run_ms: int | None
    created_at_ms: int
    updated_at_ms: int
    last_run_ms: int | None = None
    company_id: str | None = None
    user_id: str | None = None
    # Extensions.
    timezone: str = "UTC"
    misfire_policy: MisfirePolicy = MisfirePolicy.RUN_ONCE
    runs: int = 0
    missed: int = 0
    # Lateness of its firings: histogram bucket → count, the sum in ms under -1.
    lateness: dict[int, int] = dataclasses.field(default_factory=dict, compare=False)
    last_job_id: str | None = None
    last_error: str | None = None
    last_occurrence_ms: int | None = None
    # Internal: where interval occurrences start, and the revision compared by scripts.
    anchor_ms: int = 0
    rev: int = 0
    # fleetd.jobs.sealing's marker ("" = plain) and, when sealed, the data as stored (for
    # the firing, which opens it); `data` is then redacted.
    sealed: str = ""
    stored_data: dict[str, Any] | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def encrypt(self) -> bool:
        return self.sealed == MARK_DATA

    # A schedule running a template: {"name", "version", "params", "for_each"}.
    template: dict[str, Any] | None = None

    # Stored fields that could not be read (see `readable`).
    unreadable: tuple[str, ...] = ()

    @classmethod
    def from_hash(cls, h: Mapping[str, str]) -> ScheduledJob:
        """Build from the schedule hash; raises when a stored value cannot be read (the
        firing must not run a schedule it cannot read)."""
        return cls(**{name: read(h) for name, read, _ in HASH_FIELDS})

    @classmethod
    def readable(cls, h: Mapping[str, str]) -> ScheduledJob:
        """from_hash for listing and showing: never raises; a field that cannot be
        read takes its default and is named in `unreadable` (one poison value
        degrades its row, not the listing)."""
        try:
            return cls.from_hash(h)
        except Exception:  # a reader's error: read again field by field
            found = salvage(h)
            values = {name: found.read(name, read, default) for name, read, default in HASH_FIELDS}
            report("schedule", values["id"], found.failed)
            return cls(**values, unreadable=tuple(found.failed))

    def spec(self) -> ScheduleSpec:
        if self.unreadable:
            raise ValidationError(
                "body",
                f"stored schedule {self.id} cannot be read ({', '.join(self.unreadable)}): "
                "delete it and create it again",
            )
        ref = self.template or {}
        return ScheduleSpec(
            name=self.name,
            job_type=None if ref else self.job_type,
            schedule=self.schedule,
            data=dict(self.data),
            priority=self.priority,
            is_active=self.is_active,
            company_id=self.company_id,
            user_id=self.user_id,
            timezone=self.timezone,
            misfire_policy=self.misfire_policy,
            id=self.id,
            encrypt=self.encrypt,
            template=TemplateRef(name=ref["name"], version=ref.get("version")) if ref else None,
            params=ref.get("params") if ref else None,
            for_each=ref.get("for_each") if ref else None,
        )

    def cadence(self) -> Cadence:
        return Cadence.parse(self.schedule, self.timezone, self.anchor_ms)

    def to_dict(self) -> dict[str, Any]:
        """The schedule's JSON answer (fleetd.schedules.answer.ScheduledJob: the spec's
        shape, then fleetd's extensions; a time that cannot be shown degrades the row)."""
        return answer.ScheduledJob.of(self).jsonable()


# -- bodies of the schedule endpoints (HTTP and `fleetd schedules … --json`) ------------


def scheduled_job_body(job: ScheduledJob) -> dict[str, Any]:
    """POST/PUT /jobs/scheduled[/{id}] and the CLI's add, update, pause, resume, show."""
    return answer.ScheduledJobResponse.of(job).jsonable()


def list_body(
    jobs: Sequence[ScheduledJob], limit: int, next_cursor: str | None = None
) -> dict[str, Any]:
    """GET /jobs/scheduled: a page of the schedules (of one company when filtered),
    oldest first, with the cursor of the next page (fleetd.schedules.pages)."""
    return answer.ScheduledJobList.of(jobs, limit, next_cursor).jsonable()


def stats_body(stats: Mapping[str, Any]) -> dict[str, Any]:
    """GET /jobs/scheduled/stats: the spec's four fields plus missed_executions."""
    return answer.SchedulerStats.of(stats).jsonable()
