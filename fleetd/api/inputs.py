"""What the admin API reads besides a job's or a schedule's own body, declared once.

Owns the bulk enqueue body (`{"jobs": [EnqueueRequest, …]}`), the query strings of
the endpoints that take one (list pages, cleanup, throughput, audit, artifact, the
events feed), the `Idempotency-Key` header, and `parse()`: one pydantic validation
whose every problem becomes fleetd's ValidationError (422 with the field paths). The
OpenAPI document (fleetd.api.openapi) lists the parameters from these classes.

Query models ignore parameters they do not declare (a proxy's cache buster is not an
error), but refuse one they declare given twice (`?limit=5&limit=500`: which one the
caller meant is a guess, and a proxy or a client may not agree with ours); bodies
refuse unknown fields.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import pydantic
from annotated_types import Ge, Le, MaxLen, MinLen
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from fleetd.jobs.fields import (
    MAX_IDEMPOTENCY_KEY_LENGTH,
    Line,
    OptionalFlag,
    QueueName,
    parse_duration_text,
    parse_ts,
)
from fleetd.jobs.model import EnqueueRequest
from fleetd.jobs.pages import MAX_PAGE
from fleetd.jobs.validation import FieldError, ValidationError, explained, from_pydantic, rule

__all__ = [
    "AnalyticsQuery",
    "ArtifactQuery",
    "AuditQuery",
    "BulkEnqueueRequest",
    "CleanupQuery",
    "EventsQuery",
    "IdempotencyHeader",
    "InlineEnqueueRequest",
    "PageQuery",
    "ThroughputQuery",
    "parse",
    "parse_query",
]

M = TypeVar("M", bound=BaseModel)

DEFAULT_PAGE = 50


def parse(model: type[M], raw: object) -> M:
    """`raw` validated by `model` (wire names); ValidationError lists every problem."""
    try:
        return model.model_validate(raw, by_alias=True, by_name=False)
    except pydantic.ValidationError as exc:
        raise from_pydantic(exc) from None


def parse_query(model: type[M], args: Any) -> M:
    """A query string (a MultiDict: `request.args`) validated by `model`; a parameter
    the model declares given more than once is refused, naming it, with the others."""
    errors: list[FieldError] = []
    for name, info in model.model_fields.items():
        wire = info.alias or name
        if len(args.getlist(wire)) > 1:
            errors.append(FieldError(wire, "given more than once; give it once"))
    try:
        parsed = parse(model, args.to_dict())
    except ValidationError as exc:
        errors.extend(exc.errors)
        raise ValidationError.of(errors) from None
    if errors:
        raise ValidationError.of(errors)
    return parsed


def _blank_is_none(value: object) -> object:
    return None if value == "" else value


def _duration(value: object) -> float:
    # 0s is a cleanup of every finished job, as it always was
    if not isinstance(value, str):
        raise ValidationError("", "must be a duration such as 24h or 7d")
    return parse_duration_text(value, "", zero=True)


def _since_epoch(value: object) -> int:
    if not isinstance(value, str):
        raise ValidationError("", "must be an ISO 8601 time string")
    ms = parse_ts(value)
    if ms < 0:
        raise ValidationError("", "must be after 1970-01-01T00:00:00Z")
    return ms


def _idempotency_key(value: object) -> str:
    key = value.strip() if isinstance(value, str) else ""
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH or not key.isprintable():
        raise ValidationError("", f"must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable characters")
    return key


# A filter value: ids, types, actions are at most 128 characters (fleetd.jobs.fields);
# 256 leaves room and bounds what a lookup compares.
MAX_FILTER_LENGTH = 256
Text = Annotated[
    Annotated[str, MaxLen(MAX_FILTER_LENGTH), Line] | None, BeforeValidator(_blank_is_none)
]
# next_cursor of a job listing: "<score>.<entries seen at that score>" (fleetd.jobs.queue);
# 17 digits hold any score an index uses (priority·10^13 + sequence, or ms times).
JobCursor = Annotated[
    Annotated[str, StringConstraints(pattern=r"^-?[0-9]{1,17}\.[0-9]{1,9}$")] | None,
    explained("must be the next_cursor of the previous page"),
    BeforeValidator(_blank_is_none),
]
# next_cursor of the audit log: a stream id "<ms>-<seq>"; Redis takes 64-bit parts,
# and 19 digits stay below 2^64.
StreamCursor = Annotated[
    Annotated[str, StringConstraints(pattern=r"^[0-9]{1,19}(-[0-9]{1,19})?$")] | None,
    explained("must be the next_cursor of the previous page"),
    BeforeValidator(_blank_is_none),
]
Limit = Annotated[int, Ge(1), Le(MAX_PAGE), explained(f"must be an integer from 1 to {MAX_PAGE}")]
Time = Annotated[int, rule(_since_epoch, AwareDatetime)]


class Query(BaseModel):
    model_config = ConfigDict(extra="ignore", use_attribute_docstrings=True)


class InlineEnqueueRequest(EnqueueRequest):
    """POST /jobs/enqueue: a job, and what to do when the queue cannot take it now
    (fleetd.runtime.inline; docs/OPERATIONS.md, "What happens during a Redis outage")."""

    fallback: Literal["sync"] | None = None
    """`sync`: while the queue is unavailable, run the job here at once and answer 200
    with its outcome (only for types that declare `sync_fallback`). No effect while
    Redis answers."""
    bypass: OptionalFlag = False
    """Priority critical only: start the job at once on this daemon (worker role), in a
    reserved slot (`[worker] critical_slots`), claimed by it without waiting for a
    claim; while Redis is away it runs here and the answer is its outcome (200)."""

    @classmethod
    def from_dict(cls, raw: object) -> InlineEnqueueRequest:
        try:
            return cls.model_validate(raw)
        except pydantic.ValidationError as exc:
            raise from_pydantic(exc) from None


class BulkEnqueueRequest(BaseModel):
    """Many jobs at once, all or none."""

    model_config = ConfigDict(extra="forbid")

    jobs: Annotated[list[EnqueueRequest], MinLen(1)]


class PageQuery(Query):
    """GET /jobs/status/{status}."""

    limit: Limit = DEFAULT_PAGE
    cursor: JobCursor = None
    """next_cursor of the previous page"""
    type: Text = None
    """only jobs of this type"""
    user_id: Text = None
    """only jobs of this user (the spec's user-specific job tracking)"""
    q: Text = None
    """only jobs whose id, type, company or user holds this text (case-insensitive)"""
    queue: QueueName = None
    """only jobs of this named queue"""


class AuditQuery(Query):
    """GET /jobs/audit: the filters (fleetd.audit.reader.FILTERS) and a time range."""

    limit: Limit = DEFAULT_PAGE
    cursor: StreamCursor = None
    """next_cursor of the previous page"""
    action: Text = None
    subject: Text = None
    company_id: Text = None
    target: Text = None
    outcome: Text = None
    door: Text = None
    since: Time | None = None
    until: Time | None = None

    def filters(self) -> dict[str, str | None]:
        return {
            "action": self.action,
            "subject": self.subject,
            "company_id": self.company_id,
            "target": self.target,
            "outcome": self.outcome,
            "door": self.door,
        }


class CleanupQuery(Query):
    """POST /jobs/cleanup."""

    older_than: Annotated[float, rule(_duration, str)]
    """e.g. 24h, 7d; at most 10 years"""


class ThroughputQuery(Query):
    """GET /jobs/throughput (fleetd.jobs.throughput checks the span)."""

    window: str | None = None
    """1m to 24h, a whole number of steps; default 10m"""
    step: str | None = None
    """1s to 1h, at most 1,440 buckets; default 10s"""


class AnalyticsQuery(Query):
    """GET /jobs/analytics (fleetd.analytics)."""

    window: Annotated[Literal["hour", "day", "week"], explained("must be hour, day or week")] = (
        "hour"
    )
    """hour (1-minute buckets), day or week (1-hour buckets)"""
    by: Annotated[
        Literal["type", "company", "type_company"],
        explained("must be type, company or type_company"),
    ] = "type"
    """group by job type, company, or both"""
    type: Text = None
    """only this job type"""
    company_id: Text = None
    """only this company (a company-bound token: its own, the default)"""


class ArtifactQuery(Query):
    """GET /jobs/{id}/artifact."""

    name: str | None = None
    """which artifact, when there are several"""


class EventsQuery(Query):
    """The events WebSocket's query (fleetd.api.ws_session reads the repeatable
    filters; each may also be comma-separated)."""

    type: str | None = None
    """job types"""
    status: str | None = None
    """job statuses"""
    job_id: str | None = None
    """job ids"""
    company_id: str | None = None
    """one company (platform admins)"""
    last_event_id: str | None = None
    """resume after this event id (an event's `id`: a stream id, with queue spaces followed
    by `,<queue>=<stream id>` parts)"""
    ticket: str | None = None
    """a ticket from POST .../events/ticket, instead of a token"""


class IdempotencyHeader(Query):
    """The enqueue endpoints' header: at most one job per key (per company)."""

    key: Annotated[str | None, rule(_idempotency_key, str)] = Field(
        default=None, alias="Idempotency-Key"
    )


def header_key(headers: Any) -> str | None:
    """The Idempotency-Key header, checked (None when absent)."""
    raw = headers.get("Idempotency-Key")
    return None if raw is None else parse(IdempotencyHeader, {"Idempotency-Key": raw}).key
