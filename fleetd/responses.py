"""The JSON bodies of the admin API, built in one place so that the HTTP endpoints and
the CLI's `--json` print exactly the same shapes (the spec's, plus fleetd's extensions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fleetd.durations import format_duration
from fleetd.heartbeat import aggregate_metrics
from fleetd.model import Job, JobStatus
from fleetd.queue import CancelResult, EnqueueResult, JobPage, ResetResult

__all__ = [
    "bulk_enqueue_body",
    "cancel_body",
    "cleanup_body",
    "enqueue_body",
    "job_body",
    "list_body",
    "metrics_body",
    "reset_body",
    "stats_body",
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
