"""The JSON bodies of the admin API, built through their declarations
(fleetd.api.bodies) in one place, so that the HTTP endpoints and the CLI's `--json`
print exactly the same shapes (the spec's, plus fleetd's extensions), and `answer()`,
which sends a body that holds stored rows.

Rows (jobs, schedules) are built from their records with `model_construct` (see
fleetd.jobs.answer); the small bodies with the validating constructors, so a value that
breaks its declaration fails where it is built.

A stored row may hold a string no UTF-8 encoder can write (a lone surrogate, stored by
an older version or by hand): `answer()` then degrades that row only — the values that
cannot be encoded left out, its `unreadable` naming them — and the rest of the listing
is sent as usual. The check costs nothing on the usual path: the body is encoded once,
and rows are examined only when that fails.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic_core import PydanticSerializationError

from fleetd.api import bodies
from fleetd.config.durations import format_duration
from fleetd.jobs.answer import Body
from fleetd.jobs.model import Job, JobStatus, format_ts
from fleetd.jobs.model_salvage import report, unreadable_body
from fleetd.jobs.queue import CancelResult, EnqueueResult, JobPage, ResetResult
from fleetd.jobs.throughput import Throughput
from fleetd.runtime.metrics import aggregate_metrics

if TYPE_CHECKING:
    from quart import Response

__all__ = [
    "answer",
    "audit_body",
    "bulk_enqueue_body",
    "cancel_body",
    "cleanup_body",
    "enqueue_body",
    "health_body",
    "job_answer",
    "job_body",
    "job_types_body",
    "list_answer",
    "list_body",
    "metrics_body",
    "reset_body",
    "schedule_deleted_body",
    "stats_body",
    "throughput_body",
]


def enqueue_body(result: EnqueueResult) -> dict[str, Any]:
    """POST /jobs/enqueue: {"job_id", "status", "enqueued"} (+ "duplicate")."""
    return bodies.EnqueueResponse.of(result).jsonable()


def bulk_enqueue_body(results: Sequence[EnqueueResult]) -> dict[str, Any]:
    """POST /jobs/enqueue/bulk: the enqueue body of each job, in request order."""
    jobs = [bodies.EnqueueResponse.of(r) for r in results]
    return bodies.BulkEnqueueResponse.model_construct(jobs=jobs, count=len(jobs)).jsonable()


def job_answer(job: Job, waiting: str | None = None) -> bodies.JobResponse:
    """GET /jobs/{id}: {"job": {...}, "status": ..., "waiting": why (when held back)},
    for `answer()`."""
    return bodies.JobResponse.model_construct(
        job=bodies.Job.of(job), status=job.status, waiting=waiting
    )


def job_body(job: Job, waiting: str | None = None) -> dict[str, Any]:
    """job_answer() as JSON values (the CLI's `--json`)."""
    return job_answer(job, waiting).jsonable()


def list_answer(page: JobPage, status: JobStatus, limit: int) -> bodies.JobList:
    """GET /jobs/status/{status}: newest first, with a cursor for the next page, for
    `answer()`."""
    return bodies.JobList.model_construct(
        jobs=[bodies.Job.of(j) for j in page.jobs],
        status=status,
        count=len(page.jobs),
        limit=limit,
        next_cursor=page.next_cursor,
    )


def list_body(page: JobPage, status: JobStatus, limit: int) -> dict[str, Any]:
    """list_answer() as JSON values (the CLI's `--json`)."""
    return list_answer(page, status, limit).jsonable()


def cancel_body(job_id: str, result: CancelResult) -> dict[str, Any]:
    """DELETE /jobs/{id}: `cancelled` true once the job is cancelled; a running job
    reports status processing and `cancel_requested` until its daemon stops it."""
    return bodies.CancelResponse(
        job_id=job_id,
        status=result.status,
        cancelled=result.status == JobStatus.CANCELLED.value,
        cancel_requested=result.outcome == "cancelling",
    ).jsonable()


def reset_body(job_id: str, result: ResetResult) -> dict[str, Any]:
    """POST /jobs/{id}/reset."""
    return bodies.ResetResponse(
        job_id=job_id, status=result.status, reset=result.outcome == "reset"
    ).jsonable()


def stats_body(stats: Mapping[str, int]) -> dict[str, Any]:
    """GET /jobs/stats: {"stats": {...}}."""
    return bodies.Stats(stats=bodies.StatusCounts.model_validate(stats)).jsonable()


def throughput_body(result: Throughput) -> dict[str, Any]:
    """GET /jobs/throughput?window=…&step=…: {"throughput": {...}} with the window and
    step in the duration syntax, `until` (the server's clock when counted: finishes at
    or after it are not in the buckets) and each bucket's start, completed and failed."""
    buckets = [
        bodies.Bucket(t=_ts(b.start_ms), completed=b.completed, failed=b.failed)
        for b in result.buckets
    ]
    window = bodies.ThroughputWindow(
        window=result.span.window,
        step=result.span.step,
        until=_ts(result.until_ms),
        buckets=buckets,
    )
    return bodies.Throughput(throughput=window).jsonable()


def cleanup_body(counts: Mapping[str, int], older_than: float) -> dict[str, Any]:
    """POST /jobs/cleanup?older_than=…"""
    return bodies.Cleanup(
        deleted=counts["deleted"],
        older_than=format_duration(older_than),
        by_status={k: v for k, v in counts.items() if k not in ("deleted", "workflows")},
        workflows=counts.get("workflows", 0),
    ).jsonable()


def metrics_body(daemons: Sequence[Mapping[str, Any]], now_ms: int) -> dict[str, Any]:
    """GET /jobs/worker/metrics: the spec's WorkerMetrics summed over live daemons,
    plus each daemon's own."""
    return bodies.WorkerMetrics(
        metrics=bodies.MetricsTotals.model_validate(aggregate_metrics(daemons, now_ms)),
        daemons=[{k: v for k, v in d.items() if k != "raw"} for d in daemons],
    ).jsonable()


def health_body(
    daemons: Sequence[Mapping[str, Any]],
    now_ms: int,
    backlog: int,
    *,
    max_failure_rate: float,
    max_backlog: int,
    spool: Mapping[str, Any] | None = None,
    redis_error: str | None = None,
) -> dict[str, Any]:
    """GET /jobs/worker/health: the spec's fields, then `failure_rate`, `backlog`
    (pending jobs), `workers` (live worker daemons) and `reasons`. Status: unhealthy
    with no live worker daemon (or Redis unreachable: `redis_error`); degraded when the
    failure rate (failed / processed, %) is over `max_failure_rate`, the backlog over
    `max_backlog`, or jobs wait in this daemon's `spool`; else healthy."""
    m = aggregate_metrics(daemons, now_ms)
    workers = [d for d in daemons if "worker" in d.get("roles", ())]
    processed = m["jobs_processed"]
    success_rate = round(100.0 * m["jobs_succeeded"] / processed, 1) if processed else 100.0
    failure_rate = round(100.0 * m["jobs_failed"] / processed, 1) if processed else 0.0
    reasons = []
    if not workers:
        reasons.append("no live worker daemon")
    if failure_rate > max_failure_rate:
        reasons.append(f"failure rate {failure_rate:g}% is over {max_failure_rate:g}%")
    if backlog > max_backlog:
        reasons.append(f"backlog of {backlog} pending jobs is over {max_backlog}")
    if redis_error is not None:
        reasons.append(f"Redis is unreachable: {redis_error}")
    if spool is not None and spool["jobs"]:
        reasons.append(f"{spool['jobs']} enqueued jobs wait in the spool for Redis")
    if spool is not None and spool["set_aside"]:
        reasons.append(f"{len(spool['set_aside'])} unreadable spool file(s) set aside")
    return bodies.WorkerHealth(
        status="unhealthy" if not workers else "degraded" if reasons else "healthy",
        uptime=m["uptime"],
        jobs_processed=processed,
        jobs_succeeded=m["jobs_succeeded"],
        jobs_failed=m["jobs_failed"],
        jobs_retried=m["jobs_retried"],
        average_job_time=m["average_job_time"],
        last_job_time=m["last_job_time"],
        concurrency=sum(int(d.get("concurrency", 0)) for d in workers),
        success_rate=success_rate,
        failure_rate=failure_rate,
        backlog=backlog,
        workers=len(workers),
        reasons=reasons,
        spool=None if spool is None else bodies.SpoolStatus.model_construct(**spool),
    ).jsonable()


def job_types_body(plugins: Mapping[str, Any]) -> dict[str, Any]:
    """GET /jobs/types: every job type with its plugin, defaults and data schema, from
    `fleetd.plugins.describe` (what `fleetd plugins --json` prints, flattened)."""
    types = [
        bodies.JobType.model_validate({**jt, "plugin": p["name"]})
        for p in plugins["plugins"]
        for jt in p["job_types"]
    ]
    types.sort(key=lambda t: t.type)
    return bodies.JobTypes(job_types=types, count=len(types)).jsonable()


def schedule_deleted_body(schedule_id: str) -> dict[str, Any]:
    """DELETE /jobs/scheduled/{id}."""
    return bodies.ScheduleDeleted(id=schedule_id, deleted=True).jsonable()


def _ts(ms: int) -> str:
    text = format_ts(ms)
    assert text is not None  # only None for None
    return text


def audit_body(entries: Sequence[Mapping[str, Any]], next_cursor: str | None) -> dict[str, Any]:
    """GET /jobs/audit: newest first, with a cursor for the next page."""
    return {"entries": list(entries), "count": len(entries), "next_cursor": next_cursor}


# Keys of the bodies that hold stored rows: one row, or a list of them.
_ROW_KEYS = ("job", "scheduled_job")
_ROWS_KEYS = ("jobs", "scheduled_jobs", "entries")
# Fields a row cannot leave out (fleetd.api.bodies): a string shown with its lone
# surrogates replaced (U+FFFD), an object shown empty.
_REQUIRED_TEXT = frozenset({"id", "type", "name", "job_type", "schedule", "timezone"})
_SURROGATES = re.compile("[\ud800-\udfff]")


def answer(body: Body | dict[str, Any], status: int = 200) -> tuple[Response, int]:
    """`body` as a JSON response; a row that cannot be encoded is sent degraded. A
    declared body is encoded by pydantic-core straight to bytes (one pass, no dict of
    JSON values in between: a 100-job listing takes 1.4 ms, against 2.5 ms through
    jsonify)."""
    # Imported here, for start-up: the CLI's read commands print these bodies too and
    # load neither quart nor hypercorn (tests/cli/test_cli_startup.py).
    from quart import Response, current_app, jsonify

    if isinstance(body, Body):
        try:
            encoded = body.model_dump_json().encode() + b"\n"  # as jsonify ends its bodies
        except PydanticSerializationError:  # a lone surrogate: find the row below
            body = body.jsonable()
        else:
            return Response(encoded, status=status, mimetype="application/json"), status
    try:  # strictly: the app's jsonify would escape a lone surrogate, not degrade its row
        text = current_app.json.dumps(body, separators=(",", ":"))
        encoded = (text + "\n").encode()
    except UnicodeEncodeError:
        pass
    else:
        return Response(encoded, status=status, mimetype="application/json"), status
    fixed = dict(body)
    for key in _ROW_KEYS:
        if isinstance(fixed.get(key), dict):
            fixed[key] = _encodable_row(fixed[key])
    for key in _ROWS_KEYS:
        if isinstance(fixed.get(key), list):
            fixed[key] = [_encodable_row(r) if isinstance(r, dict) else r for r in fixed[key]]
    try:
        return jsonify(fixed), status
    except UnicodeEncodeError:  # outside the rows: escaped, as JSON allows
        text = json.dumps(fixed, ensure_ascii=True)
        return Response(text, status=status, mimetype="application/json"), status


def _encodes(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _encodable_row(row: dict[str, Any]) -> dict[str, Any]:
    if _encodes(row):
        return row
    out: dict[str, Any] = {}
    failed: list[str] = []
    for key, value in row.items():
        if key == "unreadable" or _encodes(value):
            out[key] = value
            continue
        failed.append(key)
        if key in _REQUIRED_TEXT and isinstance(value, str):
            out[key] = _SURROGATES.sub("\ufffd", value)
        elif key == "data":
            out[key] = {}
    earlier = row.get("unreadable", {}).get("fields", []) if "unreadable" in row else []
    out["unreadable"] = unreadable_body([*earlier, *failed])
    report("row", out.get("id"), failed)
    return out
