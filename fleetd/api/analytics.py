"""The analytics endpoint of the admin API: percentiles, throughput and failure rate
per job type, from the buckets the transition scripts keep (fleetd.analytics).

Owns `GET /api/v1/admin/jobs/analytics?window=hour|day|week&by=type|company|type_company
&type=…&company_id=…`. Unlike stats and throughput, the buckets are stored per company,
so a company-bound token is served too: its own company's figures only (naming another
company answers 403).
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, jsonify, request

from fleetd.analytics import answer, store
from fleetd.api.context import admin, bind_company, redis, state
from fleetd.api.inputs import AnalyticsQuery, parse
from fleetd.api.operations import documented

__all__ = ["bp"]

bp = Blueprint("analytics", __name__, url_prefix="/api/v1/admin/jobs")


@bp.get("/analytics")
@documented(
    "Run and wait time percentiles (p50, p95, p99), throughput, failure rate and the "
    "slowest attempts per job type (or company) over the last hour, day or week, with "
    "one point per bucket for charts. Percentiles are estimates from log-spaced "
    "buckets, within `error_bound` of the exact value. A company-bound token sees its "
    "own company only.",
    {200: (answer.Analytics, "OK")},
    "403",
    query=AnalyticsQuery,
)
@admin
async def analytics() -> Any:
    q = parse(AnalyticsQuery, request.args.to_dict())
    company = bind_company(q.company_id) or q.company_id
    window = store.WINDOWS[q.window]
    keys = state().ops.keys
    data = await redis(lambda c: store.read(c, keys, window, company))
    return jsonify(answer.build(data, q.by, q.type).jsonable())
