"""The JSON bodies of the admin API, built in one place so that the HTTP endpoints and
the CLI's `--json` print exactly the same shapes (the spec's, plus fleetd's extensions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fleetd.config.durations import format_duration
from fleetd.jobs.model import Job, JobStatus, format_ts
from fleetd.jobs.queue import CancelResult, EnqueueResult, JobPage, ResetResult
from fleetd.jobs.throughput import Throughput
from fleetd.runtime.heartbeat import aggregate_metrics

__all__ = [
    "audit_body",
    "bulk_enqueue_body",
    "cancel_body",
    "cleanup_body",
    "enqueue_body",
    "health_body",
    "job_body",
    "job_types_body",
    "list_body",
    "metrics_body",
    "reset_body",
    "schedule_deleted_body",
    "stats_body",
    "throughput_body",
]


def enqueue_body(result: EnqueueResult) -> dict[str, Any]:
    """POST /jobs/enqueue: {"job_id", "status", "enqueued"} (+ "duplicate")."""
    return result.to_dict()


def bulk_enqueue_body(results: Sequence[EnqueueResult]) -> dict[str, Any]:
    """POST /jobs/enqueue/bulk: the enqueue body of each job, in request order."""
    return {"jobs": [r.to_dict() for r in results], "count": len(results)}


def job_body(job: Job) -> dict[str, Any]:
    """GET /jobs/{id}: {"job": {...}, "status": ...}."""
    return {"job": job.to_dict(), "status": job.status.value}


def list_body(page: JobPage, status: JobStatus, limit: int) -> dict[str, Any]:
    """GET /jobs/status/{status}: newest first, with a cursor for the next page."""
    return {
        "jobs": [j.to_dict() for j in page.jobs],
        "status": status.value,
        "count": len(page.jobs),
        "limit": limit,
        "next_cursor": page.next_cursor,
    }


def cancel_body(job_id: str, result: CancelResult) -> dict[str, Any]:
    """DELETE /jobs/{id}: `cancelled` true once the job is cancelled; a running job
    reports status processing and `cancel_requested` until its daemon stops it."""
    body: dict[str, Any] = {
        "job_id": job_id,
        "status": result.status,
        "cancelled": result.status == JobStatus.CANCELLED.value,
    }
    if result.outcome == "cancelling":
        body["cancel_requested"] = True
    return body


def reset_body(job_id: str, result: ResetResult) -> dict[str, Any]:
    """POST /jobs/{id}/reset."""
    return {"job_id": job_id, "status": result.status, "reset": result.outcome == "reset"}


def stats_body(stats: Mapping[str, int]) -> dict[str, Any]:
    """GET /jobs/stats: {"stats": {...}}."""
    return {"stats": dict(stats)}


def throughput_body(result: Throughput) -> dict[str, Any]:
    """GET /jobs/throughput?window=…&step=…: {"throughput": {...}} with the window and
    step in the duration syntax, `until` (the server's clock when counted: finishes at
    or after it are not in the buckets) and each bucket's start, completed and failed."""
    return {
        "throughput": {
            "window": result.span.window,
            "step": result.span.step,
            "until": format_ts(result.until_ms),
            "buckets": [
                {"t": format_ts(b.start_ms), "completed": b.completed, "failed": b.failed}
                for b in result.buckets
            ],
        }
    }


def cleanup_body(counts: Mapping[str, int], older_than: float) -> dict[str, Any]:
    """POST /jobs/cleanup?older_than=…"""
    by_status = {k: v for k, v in counts.items() if k != "deleted"}
    return {
        "deleted": counts["deleted"],
        "older_than": format_duration(older_than),
        "by_status": by_status,
    }


def metrics_body(daemons: Sequence[Mapping[str, Any]], now_ms: int) -> dict[str, Any]:
    """GET /jobs/worker/metrics: the spec's WorkerMetrics summed over live daemons,
    plus each daemon's own."""
    return {
        "metrics": aggregate_metrics(daemons, now_ms),
        "daemons": [{k: v for k, v in d.items() if k != "raw"} for d in daemons],
    }


def health_body(
    daemons: Sequence[Mapping[str, Any]],
    now_ms: int,
    backlog: int,
    *,
    max_failure_rate: float,
    max_backlog: int,
) -> dict[str, Any]:
    """GET /jobs/worker/health: the spec's fields, then `failure_rate`, `backlog`
    (pending jobs), `workers` (live worker daemons) and `reasons`. Status: unhealthy
    with no live worker daemon; degraded when the failure rate (failed / processed, %)
    is over `max_failure_rate` or the backlog over `max_backlog`; else healthy."""
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
    status = "unhealthy" if not workers else "degraded" if reasons else "healthy"
    return {
        "status": status,
        "uptime": m["uptime"],
        "jobs_processed": processed,
        "jobs_succeeded": m["jobs_succeeded"],
        "jobs_failed": m["jobs_failed"],
        "jobs_retried": m["jobs_retried"],
        "average_job_time": m["average_job_time"],
        "last_job_time": m["last_job_time"],
        "concurrency": sum(int(d.get("concurrency", 0)) for d in workers),
        "success_rate": success_rate,
        "failure_rate": failure_rate,
        "backlog": backlog,
        "workers": len(workers),
        "reasons": reasons,
    }


def job_types_body(plugins: Mapping[str, Any]) -> dict[str, Any]:
    """GET /jobs/types: every job type with its plugin, defaults and data schema, from
    `fleetd.plugins.describe` (what `fleetd plugins --json` prints, flattened)."""
    types = [{**jt, "plugin": p["name"]} for p in plugins["plugins"] for jt in p["job_types"]]
    types.sort(key=lambda t: t["type"])
    return {"job_types": types, "count": len(types)}


def schedule_deleted_body(schedule_id: str) -> dict[str, Any]:
    """DELETE /jobs/scheduled/{id}."""
    return {"id": schedule_id, "deleted": True}


def audit_body(entries: Sequence[Mapping[str, Any]], next_cursor: str | None) -> dict[str, Any]:
    """GET /jobs/audit: newest first, with a cursor for the next page."""
    return {"entries": list(entries), "count": len(entries), "next_cursor": next_cursor}
