"""The response bodies of the admin API, declared once (pydantic).

Owns the shape of every JSON answer: the spec's structs (Job, ScheduledJob, the stats,
WorkerMetrics, worker health, scheduler stats) plus fleetd's extensions, and the error
body of DESIGN §6. fleetd.api.openapi generates the document's schemas from these
classes; fleetd.api.responses (jobs) and fleetd.schedules.model (schedules) build the
bodies that the endpoints and the CLI's `--json` print, and tests hold the two
together (tests/api/test_bodies.py; schemathesis checks a live daemon's answers).

Objects are closed (`extra="forbid"`, additionalProperties false in the document): a
field added to a body without its declaration fails the checks. A field that the body
leaves out when empty is declared with a default.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from annotated_types import Ge, MaxLen
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from fleetd.jobs.model import JobStatus
from fleetd.schedules.cadence import MisfirePolicy

__all__ = [
    "AuditList",
    "BulkEnqueueResponse",
    "CancelResponse",
    "Cleanup",
    "EnqueueResponse",
    "Error",
    "Job",
    "JobList",
    "JobResponse",
    "JobTypes",
    "Liveness",
    "Readiness",
    "ResetResponse",
    "ScheduleDeleted",
    "ScheduledJob",
    "ScheduledJobList",
    "ScheduledJobResponse",
    "SchedulerStats",
    "Stats",
    "Throughput",
    "Ticket",
    "WorkerHealth",
    "WorkerMetrics",
]

# The most buckets one throughput answer holds (fleetd.jobs.throughput.MAX_BUCKETS).
MAX_BUCKETS = 1440


class Body(BaseModel):
    """A closed JSON object; field docstrings become the document's descriptions."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


Count = Annotated[int, Ge(0)]


class ErrorDetail(Body):
    code: str
    message: str
    details: dict[str, Any]
    """422: `fields`, a list of {field, message} (every problem at once)."""


class Error(Body):
    """Every error answer: `{"error": {"code", "message", "details"}}`."""

    error: ErrorDetail


class EnqueueResponse(Body):
    job_id: str
    status: str
    enqueued: AwareDatetime
    duplicate: bool = False
    """Present (true) when the idempotency key matched an existing job."""


class BulkEnqueueResponse(Body):
    jobs: list[EnqueueResponse]
    count: int


class Unreadable(Body):
    """A degraded row: stored values that cannot be read or shown were left out."""

    code: Literal["unreadable"]
    message: str
    fields: list[str]
    """The fields left out (or shown at a placeholder when required)."""


class Job(Body):
    """The spec's Job struct (empty fields left out), then fleetd's extensions."""

    id: str
    type: str
    data: dict[str, Any]
    priority: int
    status: JobStatus
    created_at: AwareDatetime
    started_at: AwareDatetime | None = None
    completed_at: AwareDatetime | None = None
    retry_count: int
    max_retries: int
    error: str | None = None
    result: dict[str, Any] | None = None
    company_id: str | None = None
    user_id: str | None = None
    tags: list[str] | None = None
    run_at: AwareDatetime | None = None
    timeout: float | None = None
    idempotency_key: str | None = None
    worker: str | None = None
    progress: dict[str, Any] | None = None
    traceback: str | None = None
    updated_at: AwareDatetime | None = None
    attempts: int
    stalls: int = 0
    cancel_requested: bool = False
    encrypted: bool = False
    """data is sealed at rest; shown redacted ('***' per sealed field,
    {"encrypted": true} for sealed whole data)."""
    unreadable: Unreadable | None = None
    """Present on a degraded row: a stored value (from an older version, or written
    by hand) cannot be read or shown; the rest of the listing is unaffected."""


class JobResponse(Body):
    job: Job
    status: JobStatus


class JobList(Body):
    jobs: list[Job]
    status: JobStatus
    count: int
    limit: int
    next_cursor: str | None


class CancelResponse(Body):
    job_id: str
    status: str
    cancelled: bool
    cancel_requested: bool = False


class ResetResponse(Body):
    job_id: str
    status: str
    reset: bool


class StatusCounts(Body):
    pending: int
    processing: int
    completed: int
    failed: int
    retrying: int
    cancelled: int
    total: int


class Stats(Body):
    stats: StatusCounts


class Bucket(Body):
    t: AwareDatetime
    """Bucket start (inclusive)."""
    completed: Count
    failed: Count


class ThroughputWindow(Body):
    window: str
    step: str
    until: AwareDatetime
    """The server's clock when counted; finishes at or after it are not in the buckets
    (count live events from it on)."""
    buckets: Annotated[list[Bucket], MaxLen(MAX_BUCKETS)]


class Throughput(Body):
    throughput: ThroughputWindow


class Cleanup(Body):
    deleted: int
    older_than: str
    by_status: dict[str, int]


class MetricsTotals(Body):
    """The spec's WorkerMetrics, summed over the live daemons."""

    jobs_processed: int
    jobs_succeeded: int
    jobs_failed: int
    jobs_retried: int
    average_job_time: str
    total_job_time: str
    last_job_time: AwareDatetime | None
    start_time: AwareDatetime
    uptime: str


class WorkerMetrics(Body):
    metrics: MetricsTotals
    daemons: list[dict[str, Any]]


class WorkerHealth(Body):
    status: Literal["healthy", "degraded", "unhealthy"]
    uptime: str
    jobs_processed: int
    jobs_succeeded: int
    jobs_failed: int
    jobs_retried: int
    average_job_time: str
    last_job_time: AwareDatetime | None
    concurrency: int
    success_rate: float
    failure_rate: float
    backlog: int
    workers: int
    reasons: list[str]


class TypeDefaults(Body):
    priority: int
    max_retries: int
    timeout: float


class JobType(Body):
    type: str
    description: str
    plugin: str
    defaults: TypeDefaults
    schema_: dict[str, Any] | None = Field(alias="schema")
    """The data schema (JSON Schema), or null."""


class JobTypes(Body):
    job_types: list[JobType]
    count: int


class ScheduledJob(Body):
    """The spec's ScheduledJob struct, then fleetd's extensions."""

    id: str
    name: str
    job_type: str
    data: dict[str, Any]
    schedule: str
    priority: int
    is_active: bool
    last_run: AwareDatetime | None = None
    next_run: AwareDatetime | None
    """null while paused."""
    company_id: str | None = None
    user_id: str | None = None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    timezone: str
    misfire_policy: MisfirePolicy
    runs: int
    missed: int
    last_job_id: str | None = None
    last_error: str | None = None
    encrypted: bool = False
    encrypt: bool = False
    unreadable: Unreadable | None = None
    """Present on a degraded row (see Job.unreadable)."""


class ScheduledJobResponse(Body):
    scheduled_job: ScheduledJob


class ScheduledJobList(Body):
    scheduled_jobs: list[ScheduledJob]
    count: int


class ScheduleDeleted(Body):
    id: str
    deleted: bool


class SchedulerCounts(Body):
    total_scheduled_jobs: int
    active_jobs: int
    inactive_jobs: int
    next_run: AwareDatetime | None
    missed_executions: int


class SchedulerStats(Body):
    scheduler_stats: SchedulerCounts


class AuditEntry(Body):
    id: str
    at: AwareDatetime
    action: str
    subject: str
    company_id: str | None
    target: str | None
    outcome: str
    status: int
    method: str
    path: str
    remote: str | None
    detail: dict[str, Any]


class AuditList(Body):
    entries: list[AuditEntry]
    count: int
    next_cursor: str | None


class Liveness(Body):
    status: str


class Readiness(Body):
    status: str
    checks: dict[str, str]


class Ticket(Body):
    ticket: str
    expires_at: AwareDatetime
