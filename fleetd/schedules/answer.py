"""The JSON answers of the schedule endpoints, declared once (pydantic) and built
from the ScheduledJob record.

Owns the shape a schedule takes wherever it is shown — the HTTP API, `fleetd
schedules … --json`, `ScheduledJob.to_dict()` — as the `ScheduledJob` declaration (the
spec's struct: last_run, company_id and user_id left out when empty, next_run null
while paused; then fleetd's extensions), and the bodies around it: `{"scheduled_job":
…}`, `{"scheduled_jobs": […], "count", "limit", "next_cursor"}` (a page),
`{"scheduler_stats": {…}}`. fleetd.api.bodies re-exports them; the OpenAPI document
is generated from them. Built from trusted records with `model_construct`, as
fleetd.jobs.answer explains.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fleetd.analytics.histogram import percentile
from fleetd.jobs.answer import Body, Omitted, Shown, Timestamp, Unreadable, with_times
from fleetd.jobs.model_salvage import EPOCH_TEXT
from fleetd.schedules.misfire import MisfirePolicy

if TYPE_CHECKING:
    from fleetd.jobs.answer import TimeText
    from fleetd.schedules.model import ScheduledJob as ScheduleRecord

__all__ = [
    "Lateness",
    "ScheduledJob",
    "ScheduledJobList",
    "ScheduledJobResponse",
    "SchedulerCounts",
    "SchedulerStats",
]


class Lateness(Body):
    """How late a schedule's firings were (fire time - due time), over all its firings
    since it was created; percentiles within fleetd.analytics' bound (±9.05 %, or
    0.5 ms below 1 ms)."""

    count: int
    p50_ms: float
    p99_ms: float
    mean_ms: float

    @classmethod
    def of(cls, hist: Mapping[int, int]) -> Lateness | None:
        """From the record's histogram (its sum in ms under -1); None before a firing."""
        buckets = {k: n for k, n in hist.items() if k >= 0}
        count = sum(buckets.values())
        if not count:
            return None
        return cls.model_construct(
            count=count,
            p50_ms=round(percentile(buckets, 50) or 0.0, 2),
            p99_ms=round(percentile(buckets, 99) or 0.0, 2),
            mean_ms=round(hist.get(-1, 0) / count, 2),
        )


class ScheduledJob(Body):
    """The spec's ScheduledJob struct, then fleetd's extensions."""

    id: str
    name: str
    job_type: str
    data: dict[str, Any]
    schedule: str
    priority: int
    is_active: bool
    last_run: Omitted[Timestamp] = None
    next_run: Timestamp | None
    """null while paused."""
    company_id: Omitted[str] = None
    user_id: Omitted[str] = None
    created_at: Timestamp
    updated_at: Timestamp
    timezone: str
    misfire_policy: MisfirePolicy
    runs: int
    missed: int
    lateness: Omitted[Lateness] = None
    """how late its firings were (fire - due); left out before its first firing"""
    last_job_id: Omitted[str] = None
    last_error: Omitted[str] = None
    encrypted: Shown[bool] = False
    encrypt: Shown[bool] = False
    unreadable: Omitted[Unreadable] = None
    """Present on a degraded row (see Job.unreadable)."""
    template: Omitted[dict[str, Any]] = None
    """A schedule running a template: {"name", "version" (null: the latest)}."""
    params: Omitted[dict[str, Any]] = None
    for_each: Omitted[list[dict[str, Any]] | str] = None
    """One run per element; or the name of a list a plugin provides (e.g. companies)."""

    @classmethod
    def of(cls, job: ScheduleRecord) -> ScheduledJob:
        """The answer of `job`. A time that cannot be shown is left out (null) and
        named in the row's `unreadable` (created_at and updated_at, required, then
        show the epoch)."""
        return with_times("schedule", job.id, lambda ts, failed: cls._of(job, ts, failed))

    @classmethod
    def _of(cls, job: ScheduleRecord, ts: TimeText, failed: list[str]) -> ScheduledJob:
        last_run = ts(job.last_run_ms, "last_run")
        next_run = ts(job.next_run_ms, "next_run")
        created = ts(job.created_at_ms, "created_at") or EPOCH_TEXT
        updated = ts(job.updated_at_ms, "updated_at") or EPOCH_TEXT
        gone = [*job.unreadable, *failed]  # `failed` is filled by the calls above
        ref = job.template
        return cls.model_construct(
            id=job.id,
            name=job.name,
            job_type=job.job_type,
            data=job.data,
            schedule=job.schedule,
            priority=job.priority,
            is_active=job.is_active,
            last_run=last_run,
            next_run=next_run,
            company_id=job.company_id or None,
            user_id=job.user_id or None,
            created_at=created,
            updated_at=updated,
            timezone=job.timezone,
            misfire_policy=job.misfire_policy,
            runs=job.runs,
            missed=job.missed,
            lateness=Lateness.of(job.lateness),
            last_job_id=job.last_job_id or None,
            last_error=job.last_error or None,
            encrypted=bool(job.sealed),
            encrypt=job.encrypt,
            unreadable=Unreadable.naming(gone) if gone else None,
            template={"name": ref["name"], "version": ref.get("version")} if ref else None,
            params=ref.get("params") if ref else None,
            for_each=ref.get("for_each") if ref else None,
        )


class ScheduledJobResponse(Body):
    scheduled_job: ScheduledJob

    @classmethod
    def of(cls, job: ScheduleRecord) -> ScheduledJobResponse:
        return cls.model_construct(scheduled_job=ScheduledJob.of(job))


class ScheduledJobList(Body):
    """One page of the schedules, oldest first (fleetd.schedules.pages)."""

    scheduled_jobs: list[ScheduledJob]
    count: int
    """schedules on this page"""
    limit: int
    """the page size asked for"""
    next_cursor: str | None
    """the `cursor` of the next page; null on the last one"""

    @classmethod
    def of(
        cls, jobs: Sequence[ScheduleRecord], limit: int, next_cursor: str | None
    ) -> ScheduledJobList:
        return cls.model_construct(
            scheduled_jobs=[ScheduledJob.of(j) for j in jobs],
            count=len(jobs),
            limit=limit,
            next_cursor=next_cursor,
        )


class SchedulerCounts(Body):
    total_scheduled_jobs: int
    active_jobs: int
    inactive_jobs: int
    next_run: Timestamp | None
    missed_executions: int


class SchedulerStats(Body):
    scheduler_stats: SchedulerCounts

    @classmethod
    def of(cls, stats: Mapping[str, Any]) -> SchedulerStats:
        """Validated: the counts come from a Redis script, not a record."""
        return cls(scheduler_stats=SchedulerCounts.model_validate(stats))
