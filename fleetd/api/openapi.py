"""The OpenAPI 3.1 document of the admin API, served at /api/v1/openapi.json.

Owns the description of every route: its parameters, request body and every response
with its schema, the spec's shapes and fleetd's extensions. Written by hand next to the
code; a test fails when the app's routes and this document disagree, and schemathesis
checks the app's answers against it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fleetd.jobs.model import JobStatus

__all__ = ["document"]

PREFIX = "/api/v1/admin/jobs"
TS = {"type": "string", "format": "date-time"}
NULL_TS = {"type": ["string", "null"], "format": "date-time"}
STR = {"type": "string"}
INT = {"type": "integer"}
OBJ = {"type": "object"}
STATUSES = [s.value for s in JobStatus]


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(
    required: dict[str, Any], optional: dict[str, Any] | None = None, *, closed: bool = True
) -> dict[str, Any]:
    props = {**required, **(optional or {})}
    out: dict[str, Any] = {"type": "object", "properties": props, "required": list(required)}
    if closed:
        out["additionalProperties"] = False
    return out


_ERRORS = {
    "400": "Malformed request (invalid JSON, nesting too deep)",
    "401": "Missing, malformed, expired or otherwise invalid bearer token",
    "403": "Valid token without the needed rights",
    "404": "Not found (or another company's)",
    "409": "Conflict with the current state",
    "413": "Body over the size limit",
    "415": "Body is not application/json",
    "422": "Invalid fields (details.fields lists each path)",
    "426": "A WebSocket endpoint asked for with plain HTTP (Upgrade: websocket)",
    "503": "Redis unreachable (Retry-After says when to retry)",
}


def _error(code: str) -> dict[str, Any]:
    return {
        "description": _ERRORS[code],
        "content": {"application/json": {"schema": ref("Error")}},
    }


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def op(
    summary: str,
    ok: dict[str, dict[str, Any]],
    errors: str = "",
    *,
    body: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
    auth: bool = True,
    tag: str = "jobs",
) -> dict[str, Any]:
    """One operation; `errors` lists its error statuses ("404 409"); admin operations
    also answer 401, 403 and 503."""
    codes = errors.split()
    if auth:
        codes += ["401", "403", "503"]
    if body is not None:
        codes += ["400", "413", "415", "422"]
    responses = dict(ok)
    for code in sorted(set(codes)):
        responses[code] = _error(code)
    out: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if params:
        out["parameters"] = params
    if body is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if not auth:
        out["security"] = []
    return out


def path_param(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or STR}


def query(
    name: str, schema: dict[str, Any], required: bool = False, doc: str = ""
) -> dict[str, Any]:
    out = {"name": name, "in": "query", "required": required, "schema": schema}
    if doc:
        out["description"] = doc
    return out


LIMIT = query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50})
CURSOR = query("cursor", STR, doc="next_cursor of the previous page")
IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "required": False, "schema": STR}


def _schemas() -> dict[str, Any]:
    job_props = {
        "id": STR,
        "type": STR,
        "data": OBJ,
        "priority": INT,
        "status": {"type": "string", "enum": STATUSES},
        "created_at": TS,
    }
    job_optional = {
        "started_at": TS,
        "completed_at": TS,
        "retry_count": INT,
        "max_retries": INT,
        "error": STR,
        "result": OBJ,
        "company_id": STR,
        "user_id": STR,
        "tags": {"type": "array", "items": STR},
        "run_at": TS,
        "timeout": {"type": "number"},
        "idempotency_key": STR,
        "worker": STR,
        "progress": OBJ,
        "traceback": STR,
        "updated_at": TS,
        "attempts": INT,
        "stalls": INT,
        "cancel_requested": {"type": "boolean"},
        "encrypted": {
            "type": "boolean",
            "description": "data is sealed at rest; shown redacted ('***' per sealed field, "
            '{"encrypted": true} for sealed whole data)',
        },
    }
    enqueue_props = {
        "data": OBJ,
        "priority": {
            "oneOf": [
                {"type": "integer", "minimum": 1, "maximum": 20},
                {"type": "string", "enum": ["low", "normal", "high", "critical"]},
            ]
        },
        "max_retries": {"type": "integer", "minimum": 0, "maximum": 100},
        "timeout": {"oneOf": [{"type": "number", "exclusiveMinimum": 0}, STR]},
        "company_id": STR,
        "user_id": STR,
        "tags": {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 64},
        "run_at": TS,
        "idempotency_key": STR,
        "encrypt": {
            "type": "boolean",
            "description": "seal the whole data at rest (AES-GCM); the handler sees plaintext",
        },
    }
    enqueued = obj(
        {"job_id": STR, "status": STR, "enqueued": TS}, {"duplicate": {"type": "boolean"}}
    )
    metrics = obj(
        {
            "jobs_processed": INT,
            "jobs_succeeded": INT,
            "jobs_failed": INT,
            "jobs_retried": INT,
            "average_job_time": STR,
            "total_job_time": STR,
            "last_job_time": NULL_TS,
            "start_time": TS,
            "uptime": STR,
        }
    )
    schedule_props = {
        "id": STR,
        "name": STR,
        "job_type": STR,
        "data": OBJ,
        "schedule": STR,
        "priority": INT,
        "is_active": {"type": "boolean"},
        "next_run": NULL_TS,
        "created_at": TS,
        "updated_at": TS,
        "timezone": STR,
        "misfire_policy": {"type": "string", "enum": ["run_once", "skip"]},
        "runs": INT,
        "missed": INT,
    }
    schedule_optional = {
        "last_run": TS,
        "company_id": STR,
        "user_id": STR,
        "last_job_id": STR,
        "last_error": STR,
        "encrypt": {"type": "boolean"},
        "encrypted": {"type": "boolean"},
    }
    schedule_write = {
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "job_type": {"type": "string", "minLength": 1},
        "data": OBJ,
        "schedule": {
            "type": "string",
            "minLength": 1,
            "description": "@hourly, @daily, 30m, 1h, 1d, 1w, or a cron expression",
        },
        "priority": enqueue_props["priority"],
        "is_active": {"type": "boolean"},
        "company_id": STR,
        "user_id": STR,
        "timezone": {"type": "string", "description": "IANA time zone, e.g. Europe/Berlin"},
        "misfire_policy": {"type": "string", "enum": ["run_once", "skip"]},
        "encrypt": enqueue_props["encrypt"],
    }
    stats_props = {
        k: INT
        for k in ("pending", "processing", "completed", "failed", "retrying", "cancelled", "total")
    }
    return {
        "Error": obj({"error": obj({"code": STR, "message": STR, "details": OBJ})}),
        "EnqueueRequest": obj({"type": {"type": "string", "minLength": 1}}, enqueue_props),
        "EnqueueResponse": enqueued,
        "BulkEnqueueRequest": obj(
            {"jobs": {"type": "array", "items": ref("EnqueueRequest"), "minItems": 1}}
        ),
        "BulkEnqueueResponse": obj({"jobs": {"type": "array", "items": enqueued}, "count": INT}),
        "Job": obj(job_props, job_optional),
        "JobResponse": obj({"job": ref("Job"), "status": {"type": "string", "enum": STATUSES}}),
        "JobList": obj(
            {
                "jobs": {"type": "array", "items": ref("Job")},
                "status": {"type": "string", "enum": STATUSES},
                "count": INT,
                "limit": INT,
                "next_cursor": {"type": ["string", "null"]},
            }
        ),
        "CancelResponse": obj(
            {"job_id": STR, "status": STR, "cancelled": {"type": "boolean"}},
            {"cancel_requested": {"type": "boolean"}},
        ),
        "ResetResponse": obj({"job_id": STR, "status": STR, "reset": {"type": "boolean"}}),
        "Stats": obj({"stats": obj(stats_props)}),
        "Throughput": obj(
            {
                "throughput": obj(
                    {
                        "window": STR,
                        "step": STR,
                        "until": {
                            **TS,
                            "description": "the server's clock when counted; finishes at or "
                            "after it are not in the buckets (count live events from it on)",
                        },
                        "buckets": {
                            "type": "array",
                            "maxItems": 1440,
                            "items": obj(
                                {
                                    "t": {**TS, "description": "bucket start (inclusive)"},
                                    "completed": {"type": "integer", "minimum": 0},
                                    "failed": {"type": "integer", "minimum": 0},
                                }
                            ),
                        },
                    }
                )
            }
        ),
        "Cleanup": obj(
            {
                "deleted": INT,
                "older_than": STR,
                "by_status": {"type": "object", "additionalProperties": INT},
            }
        ),
        "WorkerMetrics": obj({"metrics": metrics, "daemons": {"type": "array", "items": OBJ}}),
        "WorkerHealth": obj(
            {
                "status": {"type": "string", "enum": ["healthy", "degraded", "unhealthy"]},
                "uptime": STR,
                "jobs_processed": INT,
                "jobs_succeeded": INT,
                "jobs_failed": INT,
                "jobs_retried": INT,
                "average_job_time": STR,
                "last_job_time": NULL_TS,
                "concurrency": INT,
                "success_rate": {"type": "number"},
                "failure_rate": {"type": "number"},
                "backlog": INT,
                "workers": INT,
                "reasons": {"type": "array", "items": STR},
            }
        ),
        "JobTypes": obj(
            {
                "job_types": {
                    "type": "array",
                    "items": obj(
                        {
                            "type": STR,
                            "description": STR,
                            "plugin": STR,
                            "defaults": obj(
                                {"priority": INT, "max_retries": INT, "timeout": {"type": "number"}}
                            ),
                            "schema": {"type": ["object", "null"]},
                        }
                    ),
                },
                "count": INT,
            }
        ),
        "ScheduledJob": obj(schedule_props, schedule_optional),
        "ScheduledJobResponse": obj({"scheduled_job": ref("ScheduledJob")}),
        "ScheduledJobList": obj(
            {"scheduled_jobs": {"type": "array", "items": ref("ScheduledJob")}, "count": INT}
        ),
        "ScheduleCreate": obj(
            {k: schedule_write[k] for k in ("name", "job_type", "schedule")},
            {
                **schedule_write,
                "id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
            },
        ),
        "ScheduleUpdate": obj({}, schedule_write),
        "ScheduleDeleted": obj({"id": STR, "deleted": {"type": "boolean"}}),
        "SchedulerStats": obj(
            {
                "scheduler_stats": obj(
                    {
                        "total_scheduled_jobs": INT,
                        "active_jobs": INT,
                        "inactive_jobs": INT,
                        "next_run": NULL_TS,
                        "missed_executions": INT,
                    }
                )
            }
        ),
        "AuditList": obj(
            {
                "entries": {
                    "type": "array",
                    "items": obj(
                        {
                            "id": STR,
                            "at": TS,
                            "action": STR,
                            "subject": STR,
                            "company_id": {"type": ["string", "null"]},
                            "target": {"type": ["string", "null"]},
                            "outcome": STR,
                            "status": INT,
                            "method": STR,
                            "path": STR,
                            "remote": {"type": ["string", "null"]},
                            "detail": OBJ,
                        }
                    ),
                },
                "count": INT,
                "next_cursor": {"type": ["string", "null"]},
            }
        ),
    }


def _paths() -> dict[str, Any]:
    job_id = path_param("id")
    sched_id = path_param("id")
    return {
        "/healthz": {
            "get": op(
                "Liveness", {"200": _json(obj({"status": STR}))}, auth=False, tag="operations"
            )
        },
        "/readyz": {
            "get": op(
                "Readiness: Redis reachable and every service started",
                {"200": _json(obj({"status": STR, "checks": OBJ}))},
                "503",
                auth=False,
                tag="operations",
            )
        },
        "/metrics": {
            "get": op(
                "Prometheus metrics (platform admins; auth per [http] metrics_auth)",
                {
                    "200": {
                        "description": "Prometheus text format",
                        "content": {"text/plain": {"schema": STR}},
                    }
                },
                tag="operations",
            )
        },
        "/api/v1/openapi.json": {
            "get": op("This document", {"200": _json(OBJ)}, auth=False, tag="operations")
        },
        f"{PREFIX}/enqueue": {
            "post": op(
                "Enqueue a job (Idempotency-Key header: at most one job per key)",
                {
                    "201": _json(ref("EnqueueResponse"), "Enqueued"),
                    "200": _json(
                        ref("EnqueueResponse"), "Duplicate: the job of this idempotency key"
                    ),
                },
                body=ref("EnqueueRequest"),
                params=[IDEMPOTENCY_KEY],
            )
        },
        f"{PREFIX}/enqueue/bulk": {
            "post": op(
                "Enqueue many jobs at once, all or none",
                {
                    "201": _json(ref("BulkEnqueueResponse"), "Enqueued"),
                    "200": _json(ref("BulkEnqueueResponse"), "All were duplicates"),
                },
                body=ref("BulkEnqueueRequest"),
                params=[IDEMPOTENCY_KEY],
            )
        },
        f"{PREFIX}/types": {
            "get": op("Job types, their defaults and data schemas", {"200": _json(ref("JobTypes"))})
        },
        f"{PREFIX}/stats": {
            "get": op("Jobs per status (platform admins)", {"200": _json(ref("Stats"))})
        },
        f"{PREFIX}/throughput": {
            "get": op(
                "Jobs completed and failed per step over a window, oldest bucket first "
                "(platform admins: the status indexes hold no company). Buckets are "
                "[start, start + step), aligned to the step, the last one holding now. "
                "Counts jobs by their current status and last finish time: a retrying "
                "attempt is not a failure, and jobs already deleted by clean-up or "
                "retention (or reset) are not counted.",
                {"200": _json(ref("Throughput"))},
                "422",
                params=[
                    query("window", STR, doc="1m to 24h, a whole number of steps; default 10m"),
                    query("step", STR, doc="1s to 1h, at most 1,440 buckets; default 10s"),
                ],
            )
        },
        f"{PREFIX}/cleanup": {
            "post": op(
                "Delete finished jobs older than a duration (platform admins)",
                {"200": _json(ref("Cleanup"))},
                "422",
                params=[query("older_than", STR, required=True, doc="e.g. 24h, 7d")],
            )
        },
        f"{PREFIX}/status/{{status}}": {
            "get": op(
                "Jobs in one status, newest first",
                {"200": _json(ref("JobList"))},
                "422",
                params=[
                    path_param("status", {"type": "string", "enum": STATUSES}),
                    LIMIT,
                    CURSOR,
                    query("type", STR, doc="only jobs of this type"),
                ],
            )
        },
        f"{PREFIX}/audit": {
            "get": op(
                "Audit log of mutating calls, newest first",
                {"200": _json(ref("AuditList"))},
                "422",
                params=[
                    LIMIT,
                    CURSOR,
                    *(
                        query(n, STR)
                        for n in ("action", "subject", "company_id", "target", "outcome")
                    ),
                    query("since", TS),
                    query("until", TS),
                ],
            )
        },
        f"{PREFIX}/worker/metrics": {
            "get": op(
                "Worker metrics of the live daemons (platform admins)",
                {"200": _json(ref("WorkerMetrics"))},
            )
        },
        f"{PREFIX}/worker/health": {
            "get": op("Worker health (platform admins)", {"200": _json(ref("WorkerHealth"))})
        },
        f"{PREFIX}/scheduled": {
            "get": op("Scheduled jobs", {"200": _json(ref("ScheduledJobList"))}, tag="scheduled"),
            "post": op(
                "Create a scheduled job",
                {"201": _json(ref("ScheduledJobResponse"), "Created")},
                "409",
                body=ref("ScheduleCreate"),
                tag="scheduled",
            ),
        },
        f"{PREFIX}/scheduled/stats": {
            "get": op(
                "Scheduler statistics", {"200": _json(ref("SchedulerStats"))}, tag="scheduled"
            )
        },
        f"{PREFIX}/scheduled/{{id}}": {
            "get": op(
                "One scheduled job",
                {"200": _json(ref("ScheduledJobResponse"))},
                "404",
                params=[sched_id],
                tag="scheduled",
            ),
            "put": op(
                "Change some fields of a scheduled job",
                {"200": _json(ref("ScheduledJobResponse"))},
                "404 409",
                body=ref("ScheduleUpdate"),
                params=[sched_id],
                tag="scheduled",
            ),
            "delete": op(
                "Delete a scheduled job",
                {"200": _json(ref("ScheduleDeleted"))},
                "404",
                params=[sched_id],
                tag="scheduled",
            ),
        },
        f"{PREFIX}/events": {
            "get": op(
                "Live job events (WebSocket; see docs/EVENTS.md for the messages)",
                {
                    "101": {
                        "description": "Switching to the WebSocket protocol. Auth: bearer "
                        "token or ?ticket=; filters: type, status, job_id, company_id "
                        "(repeatable or comma-separated); resume: last_event_id. A refused "
                        "handshake answers 401, 403, 422 or 503 with the error body."
                    }
                },
                "426",
                params=[
                    query(name, STR, doc=doc)
                    for name, doc in (
                        ("type", "job types"),
                        ("status", "job statuses"),
                        ("job_id", "job ids"),
                        ("company_id", "one company (platform admins)"),
                        ("last_event_id", "resume after this stream id"),
                        ("ticket", "a ticket from POST .../events/ticket, instead of a token"),
                    )
                ],
            )
        },
        f"{PREFIX}/events/ticket": {
            "post": op(
                "A single-use ticket to open the events WebSocket (browsers)",
                {"201": _json(obj({"ticket": STR, "expires_at": TS}), "Issued")},
            )
        },
        f"{PREFIX}/{{id}}": {
            "get": op("One job", {"200": _json(ref("JobResponse"))}, "404", params=[job_id]),
            "delete": op(
                "Cancel a job",
                {
                    "200": _json(ref("CancelResponse"), "Cancelled"),
                    "202": _json(ref("CancelResponse"), "Running: its daemon was told"),
                },
                "404 409",
                params=[job_id],
            ),
        },
        f"{PREFIX}/{{id}}/reset": {
            "post": op(
                "Put a failed or cancelled job back to pending",
                {"200": _json(ref("ResetResponse"))},
                "404 409",
                params=[job_id],
            )
        },
        f"{PREFIX}/{{id}}/artifact": {
            "get": op(
                "Download a file the job produced",
                {
                    "200": {
                        "description": "The file, streamed",
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    }
                },
                "404 422",
                params=[job_id, query("name", STR, doc="which artifact, when there are several")],
            )
        },
    }


@cache
def document() -> dict[str, Any]:
    from fleetd import __version__

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "fleetd admin API",
            "version": __version__,
            "description": "Background jobs of FleetTracker Pro: enqueue, inspect, cancel, "
            "reset, clean up, schedule. Bearer JWT with role admin; a company_id claim "
            "limits the caller to that company's jobs and schedules.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "tags": [{"name": "jobs"}, {"name": "scheduled"}, {"name": "operations"}],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
