"""The response bodies of the admin API, declared once (pydantic), and the one way
they become JSON.

Owns the shape of every JSON answer: the spec's structs (the stats, WorkerMetrics,
worker health) plus fleetd's extensions, and the error body
(docs/ARCHITECTURE.md#http-api); the rows and the bodies around them are declared next
to their records and re-exported here (Job,
Unreadable and the enqueue answer in fleetd.jobs.answer; ScheduledJob and the
schedule bodies in fleetd.schedules.answer). fleetd.api.openapi generates the
document's schemas from these classes, and the answers are built through them
(fleetd.api.responses, fleetd.schedules.model, `Job.to_dict()`): the endpoints, the
CLI's `--json` and Python callers print what the declaration serializes, nothing else.

Objects are closed (`extra="forbid"`, additionalProperties false in the document): a
field added to a body without its declaration fails the checks. A field that the body
leaves out when empty is declared so (`Omitted`: left out while None; `Shown`: only
when true or non-zero), and the serializer leaves it out.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, Literal

from annotated_types import Ge, MaxLen
from pydantic import Field

from fleetd.analytics.answer import Analytics
from fleetd.jobs.answer import Body, EnqueueResponse, Job, Omitted, Shown, Timestamp
from fleetd.jobs.status import JobStatus
from fleetd.schedules.answer import (
    ScheduledJob,
    ScheduledJobList,
    ScheduledJobResponse,
    SchedulerStats,
)

if TYPE_CHECKING:
    from fleetd.jobs.receipts import EnqueueResult
    from fleetd.spool.finished import Finished

__all__ = [
    "Analytics",
    "AuditList",
    "BulkEnqueueResponse",
    "CancelResponse",
    "Cleanup",
    "EnqueueResponse",
    "Error",
    "InlineEnqueueResponse",
    "Job",
    "JobList",
    "JobResponse",
    "JobTypes",
    "Liveness",
    "QuarantineList",
    "QuarantineReleased",
    "Readiness",
    "ResetResponse",
    "ScheduleDeleted",
    "ScheduledJob",
    "ScheduledJobList",
    "ScheduledJobResponse",
    "SchedulerStats",
    "SpoolStatus",
    "Stats",
    "Throughput",
    "Ticket",
    "WorkerHealth",
    "WorkerMetrics",
]

# The most buckets one throughput answer holds (fleetd.jobs.throughput.MAX_BUCKETS).
MAX_BUCKETS = 1440


Count = Annotated[int, Ge(0)]


class ErrorDetail(Body):
    code: str
    message: str
    details: dict[str, Any]
    """422: `fields`, a list of {field, message} (every problem at once)."""


class Error(Body):
    """Every error answer: `{"error": {"code", "message", "details"}}`."""

    error: ErrorDetail


class InlineEnqueueResponse(EnqueueResponse):
    """An enqueue with `fallback` or `bypass` (fleetd.runtime.inline)."""

    ran: Omitted[Literal["sync", "bypass"]] = None
    """How the job started without a claim: `bypass` (201: running on this daemon; 200:
    ran here while Redis was away) or `sync` (200: ran here while the queue was
    unavailable). Left out when it was queued as usual."""
    result: Omitted[dict[str, Any]] = None
    """The result of a job that ran here (`status` completed)."""
    error: Omitted[str] = None
    """Why a job that ran here failed (`status` failed)."""

    @classmethod
    def from_result(
        cls, result: EnqueueResult, done: Finished | None, ran: str
    ) -> InlineEnqueueResponse:
        base = EnqueueResponse.of(result)
        body = cls.model_construct(**dict(base), ran=ran or None)
        if done is not None:
            body.status = done.status
            body.result = json.loads(done.result) if done.result else None
            body.error = done.error or None
        return body


class BulkEnqueueResponse(Body):
    jobs: list[EnqueueResponse]
    count: int


class JobResponse(Body):
    job: Job
    status: JobStatus
    waiting: Omitted[str] = None
    """Present on a ready pending job that a global limit holds back, or whose type no
    live daemon has a handler for: why it waits."""


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
    cancel_requested: Shown[bool] = False


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
    t: Timestamp
    """Bucket start (inclusive)."""
    completed: Count
    failed: Count


class ThroughputWindow(Body):
    window: str
    step: str
    until: Timestamp
    """The server's clock when counted; finishes at or after it are not in the buckets
    (count live events from it on)."""
    buckets: Annotated[list[Bucket], MaxLen(MAX_BUCKETS)]


class Throughput(Body):
    throughput: ThroughputWindow


class Cleanup(Body):
    deleted: int
    older_than: str
    by_status: dict[str, int]
    workflows: int = 0
    """finished workflows deleted (their nodes' jobs are in `deleted`)"""


class QuarantineItem(Body):
    """A job type of a company held after repeated resource exhaustion, crashes or
    timeouts (fleetd.jobs.quarantine): its pending jobs wait until it is released."""

    job_type: str
    company_id: str | None
    since: Timestamp
    failures: int
    """Counted failures within the window when it was quarantined."""
    kinds: dict[str, int]
    """Those failures by kind: memory, cpu, timeout, crash."""
    window_seconds: float
    last_job_id: str


class QuarantineList(Body):
    quarantines: list[QuarantineItem]
    count: int


class QuarantineReleased(Body):
    released: QuarantineItem


class MetricsTotals(Body):
    """The spec's WorkerMetrics, summed over the live daemons."""

    jobs_processed: int
    jobs_succeeded: int
    jobs_failed: int
    jobs_retried: int
    average_job_time: str
    total_job_time: str
    last_job_time: Timestamp | None
    start_time: Timestamp
    uptime: str


class WorkerMetrics(Body):
    metrics: MetricsTotals
    daemons: list[dict[str, Any]]


class SpoolStatus(Body):
    jobs: int
    bytes: int
    oldest_age_seconds: float
    path: str
    set_aside: list[str]
    """Unreadable spool files, renamed aside and kept for an operator."""


class WorkerHealth(Body):
    status: Literal["healthy", "degraded", "unhealthy"]
    uptime: str
    jobs_processed: int
    jobs_succeeded: int
    jobs_failed: int
    jobs_retried: int
    average_job_time: str
    last_job_time: Timestamp | None
    concurrency: int
    success_rate: float
    failure_rate: float
    backlog: int
    workers: int
    reasons: list[str]
    spool: Omitted[SpoolStatus] = None
    """This daemon's enqueue spool (jobs acknowledged while Redis was away); absent
    when [spool] is off."""


class TypeDefaults(Body):
    priority: int
    max_retries: int
    timeout: float
    sync_fallback: Shown[bool] = False
    """Present (true) when jobs of the type may run inline while the queue is
    unavailable (`"fallback": "sync"` at enqueue)."""


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


class QueueFigures(Body):
    name: str
    paused: bool
    ready: int
    """jobs pending in the queue, ready to be claimed"""
    waiting: int
    """jobs delayed (run_at) or retrying (backoff)"""
    processing: int
    daemons: list[str]
    """ids of the live worker daemons serving the queue ([worker] queues); empty: its
    jobs wait (the unserved_queue alert)"""
    completed: int
    """jobs completed in the last hour"""
    failed: int
    """jobs failed for good in the last hour"""
    throughput: float
    """jobs finished (completed or failed) per minute over the last 5 minutes"""
    limit: str | None
    """the queue's own limit across all daemons ([limits] queues), e.g. "4 running, 600
    starts per 60s"; null: none"""
    estimated: bool
    """waiting and processing are scaled from a random sample of 10,000 jobs (more jobs
    are delayed or running than that)"""


class QueueList(Body):
    queues: list[QueueFigures]


class QueueSwitched(Body):
    name: str
    paused: bool
    changed: bool
    """false: the queue was in that state already"""


class ScheduleDeleted(Body):
    id: str
    deleted: bool


class AuditEntry(Body):
    id: str
    at: Timestamp
    action: str
    """one of fleetd.audit.Action (docs/OPERATIONS.md, "Audit log")"""
    door: str
    """http, cli, client, scheduler or handler"""
    subject: str
    company_id: str | None
    target: str | None
    outcome: str
    status: int
    method: str
    path: str
    remote: str | None
    detail: dict[str, Any]
    uid: str | None
    """unique per entry (null for entries written before it was recorded)"""


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
    expires_at: Timestamp
