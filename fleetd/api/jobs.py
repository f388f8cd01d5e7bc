"""Job endpoints of the admin API, under /api/v1/admin/jobs.

Owns: get, list by status (cursor pages), cancel, reset, queue stats, throughput
history (jobs finished per bucket, fleetd.jobs.throughput), cleanup, the job types with
their schemas, and streaming a job's artifact (a report or export file); enqueueing is
fleetd.api.enqueue. Bodies come from fleetd.api.responses, the same the CLI prints with
--json.

Company isolation: a company-bound token sees and acts on its company's jobs only —
another company's job answers 404, exactly like a job that does not exist. Queue-wide
operations (stats, throughput, cleanup) need a platform admin.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
from quart import Blueprint, Response, g, jsonify, request

from fleetd.api import bodies, responses
from fleetd.api.context import admin, audited, principal, redis, require_platform, state
from fleetd.api.errors import ApiError
from fleetd.api.inputs import ArtifactQuery, CleanupQuery, PageQuery, ThroughputQuery, parse_query
from fleetd.api.operations import documented
from fleetd.backend.redis_link import RedisUnavailable, SyncClient
from fleetd.jobs import throughput
from fleetd.jobs.artifacts import check_name, sweep_async
from fleetd.jobs.limits import read_waiting
from fleetd.jobs.model import Job, JobStatus
from fleetd.jobs.model import ValidationError as Invalid
from fleetd.jobs.queue import QueueOps
from fleetd.spool.answer import spooled_job_body
from fleetd.spool.file import SpooledJob

__all__ = ["bp"]

bp = Blueprint("jobs", __name__, url_prefix="/api/v1/admin/jobs")

# Artifact files are streamed in chunks of this size (one thread hop each).
CHUNK = 64 * 1024
# Ids longer than this are never valid (job ids are 30 characters); refused early.
MAX_ID = 128


@bp.get("/types")
@documented("Job types, their defaults and data schemas", {200: (bodies.JobTypes, "OK")})
@admin
async def job_types() -> Any:
    st = state()
    registry = st.registry
    from fleetd.plugins.discovery import describe, describe_type

    if registry.plugins is not None:
        return jsonify(responses.job_types_body(describe(registry)))
    w = st.config.worker
    plugins = {
        "plugins": [
            {"name": registry.source(t), "job_types": [describe_type(registry, t, w)]}
            for t in registry.types()
        ]
    }
    return jsonify(responses.job_types_body(plugins))


@bp.get("/stats")
@documented("Jobs per status (platform admins)", {200: (bodies.Stats, "OK")})
@admin
async def stats() -> Any:
    require_platform("queue-wide statistics")
    st = state()
    return jsonify(responses.stats_body(await redis(st.ops.stats)))


@bp.get("/throughput")
@documented(
    "Jobs completed and failed per step over a window, oldest bucket first "
    "(platform admins: the status indexes hold no company). Buckets are "
    "[start, start + step), aligned to the step, the last one holding now. "
    "Counts jobs by their current status and last finish time: a retrying "
    "attempt is not a failure, and jobs already deleted by clean-up or "
    "retention (or reset) are not counted.",
    {200: (bodies.Throughput, "OK")},
    query=ThroughputQuery,
)
@admin
async def throughput_history() -> Any:
    # The status indexes hold no company: a company admin cannot be served from them.
    require_platform("throughput history")
    q = parse_query(ThroughputQuery, request.args)
    span = throughput.parse_span(q.window, q.step)
    spaces = state().ops.spaces
    body = await redis(lambda c: throughput.read(c, span, *spaces.all_keys(c)))
    return jsonify(responses.throughput_body(body))


@bp.post("/cleanup")
@documented(
    "Delete finished jobs older than a duration (platform admins)",
    {200: (bodies.Cleanup, "OK")},
    query=CleanupQuery,
)
@admin
@audited("job.cleanup")
async def cleanup() -> Any:
    require_platform("cleaning up every company's jobs")
    st = state()
    older_than = parse_query(CleanupQuery, request.args).older_than
    counts = await redis(lambda c: st.ops.cleanup(c, older_than))
    # The removed jobs' files on this host (each worker host's maintenance sweeps its own).
    await sweep_async(
        st.artifacts_root,
        lambda ids: redis(lambda c: st.ops.exist(c, ids)),
        min_age=0.0,
        retention=st.config.artifacts.retention,
    )
    g.audit_detail = {"older_than": request.args["older_than"], "deleted": counts["deleted"]}
    return jsonify(responses.cleanup_body(counts, older_than))


@bp.get("/status/<status>")
@documented(
    "Jobs in one status, newest first",
    {200: (bodies.JobList, "OK")},
    query=PageQuery,
    path={"status": JobStatus},
)
@admin
async def by_status(status: str) -> Any:
    st = state()
    try:
        wanted = JobStatus(status)
    except ValueError:
        known = ", ".join(s.value for s in JobStatus)
        raise Invalid("status", f"unknown status {status!r} (one of {known})") from None
    q = parse_query(PageQuery, request.args)
    company = principal().company_id
    page = await redis(
        lambda c: st.ops.list_jobs(
            c,
            wanted,
            limit=q.limit,
            cursor=q.cursor,
            company_id=company,
            job_type=q.type,
            user_id=q.user_id,
            text=q.q,
            queue=q.queue,
        )
    )
    return responses.answer(responses.list_answer(page, wanted, q.limit))


def _visible(job: Job | None, job_id: str) -> Job:
    """The job if it exists and the caller may see it; else the same 404 either way."""
    company = principal().company_id
    if job is None or (company is not None and job.company_id != company):
        raise ApiError.not_found(f"no job {job_id!r}")
    return job


def _check_id(job_id: str) -> None:
    if len(job_id) > MAX_ID:
        raise ApiError.not_found("no such job")


async def _get_visible(job_id: str) -> Job:
    _check_id(job_id)
    st = state()
    return _visible(await redis(lambda c: st.ops.get(c, job_id)), job_id)


@bp.get("/<job_id>")
@documented(
    "One job (status `spooled` while it waits in this daemon's spool for Redis)",
    {200: (bodies.JobResponse, "OK")},
    "404",
)
@admin
async def get_job(job_id: str) -> Any:
    try:
        return await _answer_with_waiting(job_id)
    except (ApiError, RedisUnavailable) as exc:
        if isinstance(exc, ApiError) and exc.status not in (404, 503):
            raise
        if (spooled := await _spooled(job_id)) is None:
            raise
        return jsonify(spooled_job_body(spooled))


async def _answer_with_waiting(job_id: str) -> Any:
    """The job's answer, with why it waits when a limit or a missing handler holds it."""
    _check_id(job_id)
    st = state()
    limits = st.config.limits.build()

    def read(client: SyncClient) -> tuple[Job, str | None]:
        job = _visible(st.ops.get(client, job_id), job_id)
        keys = st.ops.spaces.locate(client, job.id).keys
        return job, read_waiting(client, keys, limits, st.ops.daemons(client), job)

    job, waiting = await redis(read)
    return responses.answer(responses.job_answer(job, waiting))


async def _spooled(job_id: str) -> SpooledJob | None:
    """The job in this daemon's spool, if the caller may see it (the same 404 else)."""
    spool, company = state().spool, principal().company_id
    found = None if spool is None else await spool.lookup(job_id)
    if found is None or (company is not None and found.company_id != company):
        return None
    return found


async def _act_on(job_id: str, action: Callable[[QueueOps, SyncClient, str], Any]) -> Any:
    """Run `action` in one Redis hop on a job this caller may see; 404 when there is none
    (or the id is too long to be one)."""
    g.audit_target = job_id
    _check_id(job_id)
    ops = state().ops

    def run(client: SyncClient) -> Any:
        _visible(ops.get(client, job_id), job_id)
        return action(ops, client, job_id)

    result = await redis(run)
    if result.outcome == "missing":
        raise ApiError.not_found(f"no job {job_id!r}")
    return result


@bp.delete("/<job_id>")
@documented(
    "Cancel a job",
    {
        200: (bodies.CancelResponse, "Cancelled"),
        202: (bodies.CancelResponse, "Running: its daemon was told"),
    },
    "404 409",
)
@admin
@audited("job.cancel")
async def cancel(job_id: str) -> Any:
    result = await _act_on(job_id, QueueOps.cancel)
    if result.outcome == "final":
        raise ApiError.conflict(
            f"job {job_id} is already {result.status}; nothing to cancel",
            {"status": result.status},
        )
    status = 202 if result.outcome == "cancelling" else 200
    return jsonify(responses.cancel_body(job_id, result)), status


@bp.post("/<job_id>/reset")
@documented(
    "Put a failed or cancelled job back to pending (under its company's quotas)",
    {200: (bodies.ResetResponse, "OK")},
    "404 409 429",
)
@admin
@audited("job.reset")
async def reset(job_id: str) -> Any:
    result = await _act_on(job_id, QueueOps.reset)
    if result.outcome == "refused":
        raise ApiError.conflict(
            f"job {job_id} is {result.status}; only failed or cancelled jobs can be reset",
            {"status": result.status},
        )
    return jsonify(responses.reset_body(job_id, result))


@bp.get("/<job_id>/artifact")
@documented(
    "Download a file the job produced",
    {200: (bytes, "The file, streamed")},
    "404",
    query=ArtifactQuery,
    media="application/octet-stream",
)
@admin
async def artifact(job_id: str) -> Any:
    """Stream one file the job produced: `?name=` picks it when there are several."""
    job = await _get_visible(job_id)
    listed = (job.result or {}).get("artifacts") or []
    names = [a.get("name") for a in listed if isinstance(a, dict)]
    name = parse_query(ArtifactQuery, request.args).name
    if not names:
        raise ApiError.not_found(f"job {job_id} has no artifact")
    if name is None:
        if len(names) > 1:
            raise Invalid("name", f"the job has {len(names)} artifacts; pick one: {names}")
        name = names[0]
    if name not in names:
        raise ApiError.not_found(f"job {job_id} has no artifact {name!r}")
    try:
        check_name(name)
    except ValueError:
        raise ApiError.not_found(f"artifact {name!r} is not served") from None
    # Only files in the job's own folder are served, whatever paths a result lists.
    path = state().artifacts_root / job_id / str(name)
    try:
        f = await trio.open_file(path, "rb")
    except (FileNotFoundError, IsADirectoryError):
        raise ApiError(
            404,
            "artifact_missing",
            f"artifact {name!r} of job {job_id} is not on this host (cleaned up, or "
            "written on another host: share [artifacts] dir between hosts)",
        ) from None
    size = (await trio.to_thread.run_sync(os.fstat, f.fileno())).st_size

    async def chunks() -> Any:
        async with f:
            while chunk := await f.read(CHUNK):
                yield chunk

    record = next(a for a in listed if isinstance(a, dict) and a.get("name") == name)
    content_type = mimetypes.guess_type(str(name))[0] or "application/octet-stream"
    response = Response(chunks(), mimetype=content_type)
    response.headers["Content-Length"] = str(size)
    response.headers["Content-Disposition"] = _disposition(Path(str(name)).name)
    if isinstance(record.get("sha256"), str):
        response.headers["ETag"] = f'"{record["sha256"]}"'
    response.timeout = None  # a large file on a slow link may take long; no 60 s cap
    return response


def _disposition(name: str) -> str:
    from urllib.parse import quote

    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"
