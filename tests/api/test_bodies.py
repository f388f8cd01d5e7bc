"""fleetd.api.bodies, the single source of every answer: each body the endpoints and the
CLI's `--json` print (fleetd.api.responses, fleetd.schedules.model) and each row Python
callers get (`Job.to_dict()`, `ScheduledJob.to_dict()`, `EnqueueResult.to_dict()`) is
built through its declaration; built without validation (model_construct), so these
tests validate what is built against the same declaration, and check that the
declaration gives the very same JSON back (no I/O)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from fleetd.api import bodies, responses
from fleetd.api.errors import ApiError, validation_error
from fleetd.api.errors import error_body as build_error
from fleetd.jobs.model import FieldError, Job, JobStatus, ValidationError, new_job_id
from fleetd.jobs.queue import CancelResult, EnqueueResult, JobPage, ResetResult
from fleetd.jobs.throughput import Bucket, Span, Throughput
from fleetd.schedules import model as schedules

T0 = 1_705_314_600_123
COUNTS = {s.value: 1 for s in JobStatus} | {"total": 6}


def full_job(status: JobStatus = JobStatus.PROCESSING) -> Job:
    return Job(
        id=new_job_id(T0), type="email_notification", data={"to": "a@example.com"},
        priority=10, status=status, created_at_ms=T0, started_at_ms=T0 + 1, completed_at_ms=T0 + 2,
        retry_count=1, max_retries=5, error="boom", result={"ok": True}, company_id="c1",
        user_id="u1", tags=("a",), run_at_ms=T0, timeout=30.0, attempts=2, stalls=1,
        idempotency_key="k", worker="w", progress={"percent": 50}, traceback="tb",
        cancel_requested=True, updated_at_ms=T0 + 3, encrypted=True,
    )  # fmt: skip


def minimal_job() -> Job:
    return Job(new_job_id(T0), "noop", {}, 5, JobStatus.PENDING, T0)


SCHEDULE_HASH = {
    "id": "sch_1", "name": "Nightly", "job_type": "noop", "data": "{}", "schedule": "@daily",
    "priority": "5", "is_active": "1", "next_run": str(T0), "created_at": str(T0),
    "updated_at": str(T0), "last_run": str(T0), "company_id": "acme", "user_id": "u",
    "timezone": "UTC", "misfire_policy": "skip", "runs": "3", "missed": "1",
    "last_job_id": "job_X", "last_error": "boom",
}  # fmt: skip
DAEMON = {
    "daemon_id": "host:1:abc",
    "roles": ["worker", "api"],
    "concurrency": 5,
    "raw": {"jobs_processed": 4, "jobs_succeeded": 3, "jobs_failed": 1, "start_time_ms": T0},
}

PLUGINS = {
    "plugins": [
        {
            "name": "builtin",
            "job_types": [
                {
                    "type": "noop",
                    "description": "Does nothing",
                    "defaults": {"priority": 5, "max_retries": 3, "timeout": 30.0},
                    "schema": {"type": "object"},
                }
            ],
        }
    ]
}

CASES: list[tuple[type[BaseModel], Any]] = [
    (bodies.EnqueueResponse, responses.enqueue_body(EnqueueResult("job_1", "pending", T0))),
    (bodies.EnqueueResponse, responses.enqueue_body(EnqueueResult("job_1", "pending", T0, True))),
    (
        bodies.BulkEnqueueResponse,
        responses.bulk_enqueue_body([EnqueueResult("job_1", "pending", T0)] * 2),
    ),
    (bodies.JobResponse, responses.job_body(full_job())),
    (bodies.JobResponse, responses.job_body(minimal_job())),
    (
        bodies.JobList,
        responses.list_body(JobPage([full_job(), minimal_job()], "1.2"), JobStatus.PENDING, 50),
    ),
    (bodies.JobList, responses.list_body(JobPage([], None), JobStatus.FAILED, 10)),
    (bodies.CancelResponse, responses.cancel_body("job_1", CancelResult("cancelling", "x"))),
    (bodies.CancelResponse, responses.cancel_body("job_1", CancelResult("cancelled", "x"))),
    (bodies.ResetResponse, responses.reset_body("job_1", ResetResult("reset", "pending"))),
    (bodies.Stats, responses.stats_body(COUNTS)),
    (
        bodies.Throughput,
        responses.throughput_body(Throughput(Span(60_000, 10_000), T0, [Bucket(T0, 1, 0)])),
    ),
    (bodies.Cleanup, responses.cleanup_body({"deleted": 2, "completed": 2}, 86400)),
    (bodies.WorkerMetrics, responses.metrics_body([DAEMON], T0 + 5000)),
    (
        bodies.WorkerHealth,
        responses.health_body([DAEMON], T0, 3, max_failure_rate=20.0, max_backlog=100),
    ),
    (bodies.ScheduleDeleted, responses.schedule_deleted_body("sch_1")),
    (bodies.JobTypes, responses.job_types_body(PLUGINS)),
    (bodies.AuditList, responses.audit_body([], None)),
    (
        bodies.ScheduledJobResponse,
        schedules.scheduled_job_body(schedules.ScheduledJob.from_hash(SCHEDULE_HASH)),
    ),
    (
        bodies.ScheduledJobList,
        schedules.list_body([schedules.ScheduledJob.from_hash(SCHEDULE_HASH)], 50, "1.sch_1"),
    ),
    (
        bodies.SchedulerStats,
        schedules.stats_body(
            {
                "total_scheduled_jobs": 1,
                "active_jobs": 1,
                "inactive_jobs": 0,
                "next_run": None,
                "missed_executions": 0,
            }
        ),
    ),
    (bodies.Error, build_error("not_found", "no job 'x'")),
]


@pytest.mark.parametrize(("model", "body"), CASES, ids=[m.__name__ for m, _ in CASES])
def test_each_body_is_its_declaration(model: type[BaseModel], body: Any) -> None:
    model.model_validate(body)


@pytest.mark.parametrize(("model", "body"), CASES, ids=[m.__name__ for m, _ in CASES])
def test_the_declaration_gives_the_same_json_back(model: type[BaseModel], body: Any) -> None:
    # Times stay RFC 3339 text with milliseconds, empty fields stay left out.
    assert model.model_validate(body).model_dump(mode="json") == body


def test_rows_are_the_same_everywhere() -> None:
    job, schedule = full_job(), schedules.ScheduledJob.from_hash(SCHEDULE_HASH)
    assert responses.job_body(job)["job"] == job.to_dict() == bodies.Job.of(job).jsonable()
    page = responses.list_body(JobPage([job], None), JobStatus.PROCESSING, 1)
    assert page["jobs"] == [job.to_dict()]
    assert schedules.scheduled_job_body(schedule)["scheduled_job"] == schedule.to_dict()
    assert schedules.list_body([schedule], 1)["scheduled_jobs"] == [schedule.to_dict()]
    result = EnqueueResult("job_1", "pending", T0, True)
    assert responses.enqueue_body(result) == result.to_dict()


def test_empty_fields_are_left_out_by_the_declaration() -> None:
    d = minimal_job().to_dict()
    assert set(d) == {
        "id", "type", "data", "priority", "status", "created_at", "retry_count",
        "max_retries", "attempts", "queue",
    }  # fmt: skip
    assert "cancel_requested" not in responses.cancel_body(
        "job_1", CancelResult("cancelled", "cancelled")
    )
    paused = schedules.ScheduledJob.from_hash({**SCHEDULE_HASH, "next_run": ""}).to_dict()
    assert paused["next_run"] is None  # null while paused, not left out


def test_a_degraded_row_is_its_declaration() -> None:
    beyond = 400_000_000_000_000  # year 14645: no datetime holds it
    job = Job(new_job_id(T0), "noop", {}, 5, JobStatus.PENDING, beyond, updated_at_ms=beyond)
    body = responses.job_body(job)
    bodies.JobResponse.model_validate(body)
    assert body["job"]["created_at"] == "1970-01-01T00:00:00.000Z"
    assert "updated_at" not in body["job"]
    assert body["job"]["unreadable"]["fields"] == ["created_at", "updated_at"]


def test_a_time_without_an_offset_is_not_a_timestamp() -> None:
    body = responses.job_body(minimal_job())
    body["job"]["created_at"] = "2024-01-15T10:30:00.123"
    with pytest.raises(ValueError, match="offset"):
        bodies.JobResponse.model_validate(body)


def test_an_undeclared_field_fails() -> None:
    body = responses.job_body(minimal_job())
    body["job"]["colour"] = "red"
    with pytest.raises(ValueError, match="colour"):
        bodies.JobResponse.model_validate(body)


def test_a_422_lists_every_field() -> None:
    exc = ValidationError.of([FieldError("priority", "bad"), FieldError("colour", "unknown")])
    err: ApiError = validation_error(exc)
    body = build_error(err.code, err.message, err.details)
    bodies.Error.model_validate(body)
    assert body["error"]["details"]["fields"] == [
        {"field": "priority", "message": "bad"},
        {"field": "colour", "message": "unknown"},
    ]
