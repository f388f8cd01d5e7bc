"""Job endpoints of the admin API, under /api/v1/admin/jobs.

Owns: enqueue (one, or many with `/enqueue/bulk`; an `Idempotency-Key` header), get,
list by status (cursor pages), cancel, reset, queue stats, throughput history (jobs
finished per bucket, fleetd.jobs.throughput), cleanup, the job types with their schemas, and
streaming a job's artifact (a report or export file). Bodies come from
fleetd.api.responses, the same the CLI prints with --json.

Company isolation: a company-bound token sees and acts on its company's jobs only —
another company's job answers 404, exactly like a job that does not exist — and its
enqueues are stamped with its company. Queue-wide operations (stats, throughput,
cleanup) need a platform admin.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
from quart import Blueprint, Response, g, jsonify, request

from fleetd.api import responses
from fleetd.api.body import read_json
from fleetd.api.context import (
    admin,
    audited,
    bind_company,
    enqueue_rows,
    principal,
    redis,
    require_platform,
    state,
)
from fleetd.api.errors import ApiError
from fleetd.backend.codec import JobRow
from fleetd.backend.redis_link import SyncClient
from fleetd.config.durations import parse_duration
from fleetd.jobs import throughput
from fleetd.jobs.artifacts import check_name
from fleetd.jobs.model import (
    MAX_IDEMPOTENCY_KEY_LENGTH,
    EnqueueRequest,
    FieldError,
    Job,
    JobStatus,
)
from fleetd.jobs.model import ValidationError as Invalid
from fleetd.jobs.queue import MAX_PAGE, EnqueueResult, QueueOps

__all__ = ["bp", "query_limit"]

bp = Blueprint("jobs", __name__, url_prefix="/api/v1/admin/jobs")

DEFAULT_PAGE = 50
# Artifact files are streamed in chunks of this size (one thread hop each).
CHUNK = 64 * 1024
# Ids longer than this are never valid (job ids are 30 characters); refused early.
MAX_ID = 128


def query_limit(default: int = DEFAULT_PAGE, maximum: int = MAX_PAGE) -> int:
    raw = request.args.get("limit")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Invalid("limit", f"must be an integer from 1 to {maximum}") from None
    if not 1 <= value <= maximum:
        raise Invalid("limit", f"must be an integer from 1 to {maximum}")
    return value


def _created(result: EnqueueResult) -> int:
    return 200 if result.duplicate else 201


def _idempotency_header() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH or not key.isprintable():
        raise Invalid(
            "Idempotency-Key",
            f"must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable characters",
        )
    return key


def _stamp(req: EnqueueRequest, key: str | None, field: str = "") -> EnqueueRequest:
    """Apply the caller's company (forced for company-bound tokens), default user and
    the idempotency key (enqueue.lua scopes it by company: two never share a key)."""
    if (company := bind_company(req.company_id, field)) is not None:
        req.company_id = company
    if req.user_id is None:
        req.user_id = principal().subject
    if key is not None:
        if req.idempotency_key not in (None, key):
            raise Invalid(f"{field}idempotency_key", "differs from the Idempotency-Key header")
        req.idempotency_key = key
    return req


@bp.post("/enqueue")
@admin
@audited("job.enqueue")
async def enqueue() -> Any:
    st = state()
    body = await read_json(st.limits)
    req = _stamp(EnqueueRequest.from_dict(body), _idempotency_header())
    row = st.ops.prepare(req)
    [result] = await enqueue_rows([row])
    g.audit_target = result.job_id
    g.audit_detail = {"type": req.type, "duplicate": result.duplicate}
    response = jsonify(responses.enqueue_body(result))
    response.headers["Location"] = f"{bp.url_prefix}/{result.job_id}"
    return response, _created(result)


@bp.post("/enqueue/bulk")
@admin
@audited("job.enqueue_bulk")
async def enqueue_bulk() -> Any:
    st = state()
    body = await read_json(st.limits)
    if not isinstance(body, dict):
        raise Invalid("body", 'must be a JSON object {"jobs": [...]}')
    if unknown := body.keys() - {"jobs"}:
        raise Invalid(min(unknown), "unknown field")
    items = body.get("jobs")
    limit = st.config.http.max_bulk_jobs
    if not isinstance(items, list) or not items:
        raise Invalid("jobs", "must be a non-empty list of job objects")
    if len(items) > limit:
        raise Invalid("jobs", f"at most {limit} jobs per request, got {len(items)}")
    key = _idempotency_header()
    rows: list[JobRow] = []
    errors: list[FieldError] = []
    for i, item in enumerate(items):
        # Every job is checked and every problem reported, then all or none is sent.
        try:
            req = EnqueueRequest.from_dict(item)
            req = _stamp(req, None if key is None else f"{key}:{i}", f"jobs[{i}].")
            rows.append(st.ops.prepare(req))
        except Invalid as exc:
            errors.extend(exc.prefixed(f"jobs[{i}].").errors)
    if errors:
        raise Invalid.of(errors)
    results = await enqueue_rows(rows)
    g.audit_detail = {"count": len(results), "duplicates": sum(r.duplicate for r in results)}
    status = 200 if all(r.duplicate for r in results) else 201
    return jsonify(responses.bulk_enqueue_body(results)), status


@bp.get("/types")
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
@admin
async def stats() -> Any:
    require_platform("queue-wide statistics")
    st = state()
    return jsonify(responses.stats_body(await redis(st.ops.stats)))


@bp.get("/throughput")
@admin
async def throughput_history() -> Any:
    # The status indexes hold no company: a company admin cannot be served from them.
    require_platform("throughput history")
    span = throughput.parse_span(request.args.get("window"), request.args.get("step"))
    keys = state().ops.keys
    return jsonify(responses.throughput_body(await redis(lambda c: throughput.read(c, keys, span))))


@bp.post("/cleanup")
@admin
@audited("job.cleanup")
async def cleanup() -> Any:
    require_platform("cleaning up every company's jobs")
    st = state()
    raw = request.args.get("older_than")
    if raw is None:
        raise Invalid("older_than", "is required, e.g. ?older_than=24h")
    try:
        older_than = parse_duration(raw)
    except ValueError as exc:
        raise Invalid("older_than", str(exc)) from None
    counts = await redis(lambda c: st.ops.cleanup(c, older_than))
    g.audit_detail = {"older_than": raw, "deleted": counts["deleted"]}
    return jsonify(responses.cleanup_body(counts, older_than))


@bp.get("/status/<status>")
@admin
async def by_status(status: str) -> Any:
    st = state()
    try:
        wanted = JobStatus(status)
    except ValueError:
        known = ", ".join(s.value for s in JobStatus)
        raise Invalid("status", f"unknown status {status!r} (one of {known})") from None
    limit = query_limit()
    cursor = request.args.get("cursor") or None
    job_type = request.args.get("type") or None
    company = principal().company_id
    page = await redis(
        lambda c: st.ops.list_jobs(
            c, wanted, limit=limit, cursor=cursor, company_id=company, job_type=job_type
        )
    )
    return jsonify(responses.list_body(page, wanted, limit))


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
@admin
async def get_job(job_id: str) -> Any:
    return jsonify(responses.job_body(await _get_visible(job_id)))


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
@admin
async def artifact(job_id: str) -> Any:
    """Stream one file the job produced: `?name=` picks it when there are several."""
    job = await _get_visible(job_id)
    listed = (job.result or {}).get("artifacts") or []
    names = [a.get("name") for a in listed if isinstance(a, dict)]
    name = request.args.get("name")
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
