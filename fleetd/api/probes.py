"""Operations endpoints: liveness, readiness, Prometheus metrics, the OpenAPI document,
and the audit log listing.

Owns `GET /healthz` (the process serves; no auth, no Redis), `GET /readyz` (Redis
answers within `[http] redis_timeout` and every service of the daemon has started; 503
with the failing checks otherwise; no auth), `GET /metrics` (Prometheus text, every
company's counts: a platform admin token unless `[http] metrics_auth = false`; a
company-bound token gets 403), `GET /api/v1/openapi.json` (public: it
describes the API, it holds no data) and `GET /api/v1/admin/jobs/audit`.
"""

from __future__ import annotations

from typing import Any

import trio
from quart import Blueprint, Response, current_app, jsonify, request

from fleetd.api import bodies, responses
from fleetd.api.context import (
    REDIS_GRACE,
    admin,
    metrics_access,
    principal,
    public,
    redis,
    require_platform_if_authenticated,
    state,
)
from fleetd.api.errors import RETRY_AFTER, ApiError
from fleetd.api.inputs import AuditQuery, parse
from fleetd.api.metrics import CONTENT_TYPE
from fleetd.api.operations import documented

__all__ = ["bp"]

bp = Blueprint("probes", __name__)


@bp.get("/healthz")
@documented("Liveness", {200: (bodies.Liveness, "OK")}, tag="operations")
@public
async def healthz() -> Any:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
@documented(
    "Readiness: Redis reachable and every service started",
    {200: (bodies.Readiness, "OK")},
    "503",
    tag="operations",
)
@public
async def readyz() -> Any:
    st = state()
    checks: dict[str, str] = {
        "services": "started" if st.ready() else "not running (starting or stopping)"
    }
    with trio.move_on_after(st.redis_timeout + REDIS_GRACE) as scope:
        try:
            await st.link.call(lambda c: c.ping())
            checks["redis"] = "ok"
        except Exception as exc:  # any failure means "not ready"; the reason is shown
            checks["redis"] = f"unreachable: {exc}"
    if scope.cancelled_caught:
        checks["redis"] = f"no answer within {st.redis_timeout:g}s"
    if checks["redis"] != "ok" or not st.ready():
        failing = ", ".join(k for k, v in checks.items() if v not in ("ok", "started"))
        raise ApiError(
            503,
            "not_ready",
            f"not ready: {failing}",
            {"checks": checks},
            headers={"Retry-After": str(RETRY_AFTER)},
        )
    return jsonify({"status": "ready", "checks": checks})


@bp.get("/metrics")
@documented(
    "Prometheus metrics (platform admins; auth per [http] metrics_auth)",
    {200: (str, "Prometheus text format")},
    tag="operations",
    media="text/plain",
)
@metrics_access
async def metrics() -> Any:
    require_platform_if_authenticated("cluster-wide metrics (every company's jobs)")
    st = state()
    assert st.metrics is not None
    snapshot = await redis(st.metrics.read_redis)
    return Response(st.metrics.render(snapshot), content_type=CONTENT_TYPE)


@bp.get("/api/v1/openapi.json")
@documented("This document", {200: (dict[str, Any], "OK")}, tag="operations")
@public
async def openapi() -> Any:
    return jsonify(current_app.extensions["fleetd.openapi"]())


@bp.get("/api/v1/admin/jobs/audit")
@documented(
    "Audit log of mutating calls, newest first", {200: (bodies.AuditList, "OK")}, query=AuditQuery
)
@admin
async def audit() -> Any:
    st = state()
    assert st.audit is not None
    log = st.audit
    q = parse(AuditQuery, request.args.to_dict())
    filters = q.filters()
    company = principal().company_id
    if company is not None:  # a company-bound token reads its own company's entries only
        filters["company_id"] = company
    entries, next_cursor = await redis(
        lambda c: log.read(
            c,
            limit=q.limit,
            cursor=q.cursor,
            since_ms=q.since,
            until_ms=q.until,
            filters=filters,
        )
    )
    return jsonify(responses.audit_body(entries, next_cursor))
