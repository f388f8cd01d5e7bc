"""The JSON answer of a job, declared once (pydantic) and built from the Job record.

Owns the shape a job takes wherever it is shown — the HTTP API, the CLI's `--json`,
`Job.to_dict()` for Python callers — as the `Job` declaration: the spec's Job struct
(empty fields left out), then fleetd's extensions. Also the pieces every answer shares:
`Body` (a closed JSON object), `Timestamp` (RFC 3339 UTC text as `format_ts` writes
it), `Unreadable` (what a degraded row carries), and the enqueue answer.
fleetd.api.bodies declares the other answers on top of these and re-exports them; the
OpenAPI document is generated from the declarations (fleetd.api.openapi).

A field "left out when empty" says so in its declaration (`Omitted`, `Shown`), so the
serializer, not the builder, leaves it out. Answers are built from trusted domain
objects with `model_construct` (no validation: it would copy and re-check each job's
data, which the queue checked at enqueue) and serialized by pydantic-core; tests
validate built answers against the same declarations (tests/api/test_bodies.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from fleetd.jobs.model_salvage import EPOCH_TEXT, Timestamps, report, unreadable_body
from fleetd.jobs.status import JobStatus
from fleetd.jobs.timetext import format_ts

if TYPE_CHECKING:
    from fleetd.jobs.model import Job as JobRecord
    from fleetd.jobs.receipts import EnqueueResult

__all__ = [
    "Body",
    "EnqueueResponse",
    "Job",
    "Omitted",
    "Shown",
    "Timestamp",
    "Unreadable",
    "format_ts",
]

T = TypeVar("T")


def _rfc3339(text: str) -> str:
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an RFC 3339 time: {text!r}") from None
    if dt.tzinfo is None:
        raise ValueError(f"needs a UTC offset or Z: {text!r}")
    return text


# A time in an answer: held and sent as the text format_ts writes (millisecond
# precision, `Z`), so serializing costs no Python call; validated as RFC 3339.
Timestamp = Annotated[
    str, AfterValidator(_rfc3339), WithJsonSchema({"type": "string", "format": "date-time"})
]


def _is_none(value: object) -> bool:
    return value is None


def _is_unset(value: object) -> bool:
    return not value


# A field left out of the answer while None (the spec's omitempty).
Omitted = Annotated[T | None, Field(exclude_if=_is_none)]
# A flag or counter shown only when set (true, non-zero).
Shown = Annotated[T, Field(exclude_if=_is_unset)]


class Body(BaseModel):
    """A closed JSON object; field docstrings become the document's descriptions."""

    # Sent by the field's JSON name (JobType's `schema`, held as `schema_`).
    model_config = ConfigDict(
        extra="forbid", use_attribute_docstrings=True, serialize_by_alias=True
    )

    def jsonable(self) -> dict[str, Any]:
        """The answer as JSON-ready Python values: what the HTTP API sends and the
        CLI's `--json` prints."""
        return self.model_dump(mode="json")


class Unreadable(Body):
    """A degraded row: stored values that cannot be read or shown were left out."""

    code: Literal["unreadable"]
    message: str
    fields: list[str]
    """The fields left out (or shown at a placeholder when required)."""

    @classmethod
    def naming(cls, fields: Sequence[str]) -> Unreadable:
        return cls.model_construct(**unreadable_body(list(fields)))


class EnqueueResponse(Body):
    job_id: str
    status: str
    enqueued: Timestamp
    duplicate: Shown[bool] = False
    """Present (true) when the idempotency key matched an existing job."""

    @classmethod
    def of(cls, result: EnqueueResult) -> EnqueueResponse:
        return cls.model_construct(
            job_id=result.job_id,
            status=result.status,
            enqueued=format_ts(result.enqueued_at_ms),
            duplicate=result.duplicate,
        )


# Formats one time of a row; the name is for Timestamps (which field failed).
TimeText = Callable[[int | None, str], str | None]


def _plain(ms: int | None, _name: str) -> str | None:
    return format_ts(ms)


def with_times(kind: str, ident: str, build: Callable[[TimeText, list[str]], T]) -> T:
    """`build(format, failed)` with plain times; when a time cannot be shown (beyond
    year 9999), built again with the times that fail left out and named in `failed`,
    and reported once (the job and schedule answers share this)."""
    try:
        return build(_plain, [])
    except (ValueError, OverflowError, OSError):
        times = Timestamps(format_ts)
        answer = build(times, times.failed)
        report(kind, ident, times.failed)
        return answer


class Job(Body):
    """The spec's Job struct (empty fields left out), then fleetd's extensions."""

    id: str
    type: str
    data: dict[str, Any]
    priority: int
    status: JobStatus
    created_at: Timestamp
    started_at: Omitted[Timestamp] = None
    completed_at: Omitted[Timestamp] = None
    retry_count: int
    max_retries: int
    error: Omitted[str] = None
    result: Omitted[dict[str, Any]] = None
    company_id: Omitted[str] = None
    user_id: Omitted[str] = None
    tags: Omitted[list[str]] = None
    run_at: Omitted[Timestamp] = None
    timeout: Omitted[float] = None
    idempotency_key: Omitted[str] = None
    worker: Omitted[str] = None
    progress: Omitted[dict[str, Any]] = None
    traceback: Omitted[str] = None
    updated_at: Omitted[Timestamp] = None
    attempts: int
    stalls: Shown[int] = 0
    cancel_requested: Shown[bool] = False
    encrypted: Shown[bool] = False
    """data is sealed at rest; shown redacted ('***' per sealed field,
    {"encrypted": true} for sealed whole data)."""
    queue: str = "default"
    """The named queue the job waits in (jobs from before queues: default)."""
    unreadable: Omitted[Unreadable] = None
    """Present on a degraded row: a stored value (from an older version, or written
    by hand) cannot be read or shown; the rest of the listing is unaffected."""

    @classmethod
    def of(cls, job: JobRecord) -> Job:
        """The answer of `job`. A time that cannot be shown (beyond year 9999) is left
        out, and the row carries `unreadable` naming it (created_at, required, then
        shows the epoch)."""
        return with_times("job", job.id, lambda ts, failed: cls._of(job, ts, failed))

    @classmethod
    def _of(cls, job: JobRecord, ts: TimeText, failed: list[str]) -> Job:
        created = ts(job.created_at_ms, "created_at") or EPOCH_TEXT
        started = ts(job.started_at_ms, "started_at")
        completed = ts(job.completed_at_ms, "completed_at")
        run_at = ts(job.run_at_ms, "run_at")
        updated = ts(job.updated_at_ms, "updated_at")
        gone = [*job.unreadable, *failed]  # `failed` is filled by the calls above
        return cls.model_construct(
            id=job.id,
            type=job.type,
            data=job.data,
            priority=job.priority,
            status=job.status,
            created_at=created,
            started_at=started,
            completed_at=completed,
            retry_count=job.retry_count,
            max_retries=job.max_retries,
            error=job.error,
            result=job.result,
            company_id=job.company_id,
            user_id=job.user_id,
            tags=list(job.tags) or None,
            run_at=run_at,
            timeout=job.timeout,
            idempotency_key=job.idempotency_key,
            worker=job.worker,
            progress=job.progress,
            traceback=job.traceback,
            updated_at=updated,
            attempts=job.attempts,
            stalls=job.stalls,
            # A stop asked of a job no longer running means nothing to a reader.
            cancel_requested=job.cancel_requested and job.status is JobStatus.PROCESSING,
            encrypted=job.encrypted,
            queue=job.queue,
            unreadable=Unreadable.naming(gone) if gone else None,
        )
