"""Enqueue endpoints of the admin API: `POST /api/v1/admin/jobs/enqueue` (one job) and
`/enqueue/bulk` (many, all or none).

Owns reading an enqueue body through its declaration (InlineEnqueueRequest — a job plus
`fallback` and `bypass`, handled by fleetd.api.fallback — and the bulk body of
fleetd.api.inputs) and answering with every problem at once — the body's fields,
unknown ones included, and the job data's own (its handler's schema) — then stamping
the caller's company, default user and idempotency key (the `Idempotency-Key` header,
scoped by company so two companies never share a key) before the queue prepares the
rows. Bodies come from fleetd.api.responses, the same the CLI prints with --json.
"""

from __future__ import annotations

import re
from typing import Any

from quart import Blueprint, g, jsonify, request

from fleetd.api import bodies, responses
from fleetd.api.body import read_json
from fleetd.api.context import admin, audited, bind_company, enqueue_rows, principal, state
from fleetd.api.fallback import enqueue_inline
from fleetd.api.inputs import (
    BulkEnqueueRequest,
    IdempotencyHeader,
    InlineEnqueueRequest,
    header_key,
    parse,
)
from fleetd.api.operations import documented
from fleetd.backend.codec import JobRow
from fleetd.jobs.model import EnqueueRequest, FieldError
from fleetd.jobs.model import ValidationError as Invalid
from fleetd.jobs.queue import EnqueueResult
from fleetd.spool.outage import SPOOLED

__all__ = ["bp"]

bp = Blueprint("enqueue", __name__, url_prefix="/api/v1/admin/jobs")


def _created(result: EnqueueResult) -> int:
    """201 stored, 200 a duplicate, 202 spooled while Redis is away (fleetd.spool)."""
    return 202 if result.status == SPOOLED else 200 if result.duplicate else 201


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
@documented(
    "Enqueue a job (Idempotency-Key header: at most one job per key)",
    {
        201: (bodies.EnqueueResponse, "Enqueued"),
        200: (
            bodies.InlineEnqueueResponse,
            "Duplicate: the job of this idempotency key; "
            "or a job run here (`fallback`, `bypass`) while the queue was unavailable: "
            "its outcome",
        ),
        202: (bodies.EnqueueResponse, "Spooled while Redis is away: status `spooled`"),
    },
    body=InlineEnqueueRequest,
    headers=IdempotencyHeader,
)
@admin
@audited("job.enqueue")
async def enqueue() -> Any:
    st = state()
    body = await read_json(st.limits)
    key = header_key(request.headers)
    try:
        req = InlineEnqueueRequest.from_dict(body)
    except Invalid as exc:
        raise Invalid.of(exc.errors + _data_errors(body)) from None
    row = st.ops.prepare(_stamp(req, key))
    if req.fallback or req.bypass:  # fleetd.api.fallback
        result, answer, status = await enqueue_inline(req, row)
        g.audit_target = result.job_id
        g.audit_detail = {"type": req.type, "duplicate": result.duplicate, "status": result.status}
        if answer.get("ran"):
            g.audit_detail["ran"] = answer["ran"]
        return answer, status, {"Location": f"{bp.url_prefix}/{result.job_id}"}
    [result] = await enqueue_rows([row])
    g.audit_target = result.job_id
    g.audit_detail = {"type": req.type, "duplicate": result.duplicate}
    if result.status == SPOOLED:
        g.audit_detail["spooled"] = True
    response = jsonify(responses.enqueue_body(result))
    response.headers["Location"] = f"{bp.url_prefix}/{result.job_id}"
    return response, _created(result)


def _data_errors(body: object) -> list[FieldError]:
    """The job data's problems in a body refused for others: all of them in one
    answer, when its type is known and its data an object."""
    registry = state().registry
    if not isinstance(body, dict) or not isinstance(data := body.get("data"), dict):
        return []
    handler = registry.get(str(body.get("type", "")).strip())
    if handler is None:
        return []
    try:
        registry.validate(handler, dict(data))
    except Invalid as exc:
        return exc.errors
    return []


_JOB_INDEX = re.compile(r"jobs\[(\d+)\]")


def _by_job(error: FieldError) -> int:
    """Errors of the bulk body first, then each job's in request order."""
    found = _JOB_INDEX.match(error.field)
    return -1 if found is None else int(found[1])


@bp.post("/enqueue/bulk")
@documented(
    "Enqueue many jobs at once, all or none",
    {
        201: (bodies.BulkEnqueueResponse, "Enqueued"),
        200: (bodies.BulkEnqueueResponse, "All were duplicates"),
        202: (bodies.BulkEnqueueResponse, "Spooled while Redis is away"),
    },
    body=BulkEnqueueRequest,
    headers=IdempotencyHeader,
)
@admin
@audited("job.enqueue_bulk")
async def enqueue_bulk() -> Any:
    st = state()
    body = await read_json(st.limits)
    items = body.get("jobs") if isinstance(body, dict) else None
    limit = st.config.http.max_bulk_jobs
    if isinstance(items, list) and len(items) > limit:
        # Refused before any job is read: the limit bounds the work of one request.
        raise Invalid("jobs", f"at most {limit} jobs per request, got {len(items)}")
    key = header_key(request.headers)
    errors: list[FieldError] = []
    reqs: list[EnqueueRequest | None]
    try:
        reqs = list(parse(BulkEnqueueRequest, body).jobs)
    except Invalid as exc:
        # Every job is checked and every problem reported, then all or none is sent.
        errors.extend(exc.errors)
        reqs = [_valid(item) for item in items] if isinstance(items, list) else []
    rows: list[JobRow] = []
    for i, req in enumerate(reqs):
        if req is None:
            continue
        try:
            stamped = _stamp(req, None if key is None else f"{key}:{i}", f"jobs[{i}].")
            rows.append(st.ops.prepare(stamped))
        except Invalid as exc:
            errors.extend(exc.prefixed(f"jobs[{i}].").errors)
    if errors:
        raise Invalid.of(sorted(errors, key=_by_job))
    results = await enqueue_rows(rows)
    g.audit_detail = {"count": len(results), "duplicates": sum(r.duplicate for r in results)}
    status = 200 if all(r.duplicate for r in results) else 201
    if results and results[0].status == SPOOLED:  # all or none are spooled
        g.audit_detail["spooled"] = True
        status = 202
    return jsonify(responses.bulk_enqueue_body(results)), status


def _valid(item: object) -> EnqueueRequest | None:
    try:
        return EnqueueRequest.from_dict(item)
    except Invalid:
        return None  # its problems are in the bulk body's errors already
