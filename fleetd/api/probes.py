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
from quart import Blueprint, Response, jsonify, request

from fleetd.api import responses
from fleetd.api.audit import FILTERS
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
from fleetd.api.jobs import query_limit
from fleetd.api.metrics import CONTENT_TYPE
from fleetd.jobs.model import ValidationError, parse_ts

__all__ = ["bp"]

bp = Blueprint("probes", __name__)


@bp.get("/healthz")
@public
async def healthz() -> Any:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
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
@metrics_access
async def metrics() -> Any:
    require_platform_if_authenticated("cluster-wide metrics (every company's jobs)")
    st = state()
    assert st.metrics is not None
    snapshot = await redis(st.metrics.read_redis)
    return Response(st.metrics.render(snapshot), content_type=CONTENT_TYPE)


@bp.get("/api/v1/openapi.json")
@public
async def openapi() -> Any:
    from fleetd.api.openapi import document

    return jsonify(document())


def _time_param(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    ms = parse_ts(raw, name)
    if ms < 0:
        raise ValidationError(name, "must be after 1970-01-01T00:00:00Z")
    return ms


@bp.get("/api/v1/admin/jobs/audit")
@admin
async def audit() -> Any:
    st = state()
    assert st.audit is not None
    log = st.audit
    filters = {k: request.args.get(k) for k in FILTERS}
    company = principal().company_id
    if company is not None:  # a company-bound token reads its own company's entries only
        filters["company_id"] = company
    limit = query_limit()
    cursor = request.args.get("cursor") or None
    since, until = _time_param("since"), _time_param("until")
    entries, next_cursor = await redis(
        lambda c: log.read(
            c,
            limit=limit,
            cursor=cursor,
            since_ms=since,
            until_ms=until,
            filters=filters,
        )
    )
    return jsonify(responses.audit_body(entries, next_cursor))
