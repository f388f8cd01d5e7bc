"""The analytics endpoints of the admin API: percentiles, throughput and failure rate
per job type, from the buckets the transition scripts keep (fleetd.analytics), and the
capacity planner (fleetd.analytics.capacity).

Owns `GET /api/v1/admin/jobs/analytics?window=hour|day|week&by=type|company|type_company
&type=…&company_id=…`. Unlike stats and throughput, the buckets are stored per company,
so a company-bound token is served too: its own company's figures only (naming another
company answers 403). Owns `GET /api/v1/admin/jobs/capacity` too: it counts every
company's jobs and every worker, so it is for platform admins.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, jsonify, request

from fleetd.analytics import answer, capacity_read, store
from fleetd.api.context import admin, bind_company, redis, require_platform, state
from fleetd.api.inputs import AnalyticsQuery, parse_query
from fleetd.api.operations import documented
from fleetd.backend.redis_link import SyncClient

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
    q = parse_query(AnalyticsQuery, request.args)
    company = bind_company(q.company_id) or q.company_id
    window = store.WINDOWS[q.window]
    spaces = state().ops.spaces  # every key space's figures, summed
    data = await redis(lambda c: store.read(c, spaces.all_keys(c), window, company))
    return jsonify(answer.build(data, q.by, q.type).jsonable())


@bp.get("/capacity")
@documented(
    "The capacity planner (platform admins): arrival rate, job time, utilisation, "
    "predicted wait (M/M/c, Erlang C), the concurrency that keeps the wait p95 under "
    "[capacity] wait_p95_target, the backlog's drain time and the arrivals' trend.",
    {200: (capacity_read.Capacity, "OK")},
    "403",
)
@admin
async def capacity() -> Any:
    require_platform("the capacity plan (every company's jobs)")
    st = state()
    c, spaces = st.config.capacity, st.ops.spaces

    def read(cl: SyncClient) -> capacity_read.Capacity:
        keys = spaces.all_keys(cl)
        return capacity_read.read(cl, keys, c.window, c.wait_p95_target)

    body = await redis(read)
    return jsonify(body.jsonable())
