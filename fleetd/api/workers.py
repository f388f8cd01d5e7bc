"""Worker endpoints of the admin API: the spec's metrics and health of the workers.

Owns `GET /api/v1/admin/jobs/worker/metrics` (the spec's WorkerMetrics summed over every
live daemon, plus each daemon's own, from their heartbeats) and
`GET /api/v1/admin/jobs/worker/health` (healthy, degraded or unhealthy, with the
thresholds of the alerts, `[alerts] failure_rate` and `backlog`; the backlog is the jobs
ready to run and waiting for a worker). Both count every company's jobs, so they are for
platform admins; a company-bound token gets 403, as for stats (context.require_platform).
Health also shows this daemon's enqueue spool (fleetd.spool), and with one answers
`unhealthy` while Redis is unreachable (enqueues are still acknowledged) instead of 503.
"""

from __future__ import annotations

import time
from typing import Any

from quart import Blueprint, jsonify

from fleetd.api import bodies, responses
from fleetd.api.context import admin, redis, require_platform, state
from fleetd.api.errors import ApiError
from fleetd.api.operations import documented
from fleetd.backend.redis_link import RedisUnavailable, SyncClient
from fleetd.jobs.parts import ready_depth

__all__ = ["bp"]

bp = Blueprint("workers", __name__, url_prefix="/api/v1/admin/jobs/worker")


@bp.get("/metrics")
@documented(
    "Worker metrics of the live daemons (platform admins)", {200: (bodies.WorkerMetrics, "OK")}
)
@admin
async def worker_metrics() -> Any:
    require_platform("worker metrics (every company's jobs)")
    st = state()
    daemons = await redis(st.ops.daemons)
    return jsonify(responses.metrics_body(daemons, int(time.time() * 1000)))


@bp.get("/health")
@documented("Worker health (platform admins)", {200: (bodies.WorkerHealth, "OK")})
@admin
async def worker_health() -> Any:
    require_platform("worker health (every company's jobs)")
    st = state()

    def read(client: SyncClient) -> tuple[list[dict[str, Any]], int]:
        spaces = st.ops.spaces.all_keys(client)
        return st.ops.daemons(client), ready_depth(client, spaces)

    spool, down = st.spool, None
    try:
        daemons, backlog = await redis(read)
    except (ApiError, RedisUnavailable) as exc:
        if spool is None or (isinstance(exc, ApiError) and exc.status != 503):
            raise
        # With a spool the daemon still takes enqueues: say so rather than answer 503.
        daemons, backlog, down = [], 0, str(exc)
    if spool is not None:
        await spool.refresh()
    a = st.config.alerts
    return jsonify(
        responses.health_body(
            daemons,
            int(time.time() * 1000),
            backlog,
            max_failure_rate=a.failure_rate,
            max_backlog=a.backlog,
            spool=None if spool is None else spool.status(),
            redis_error=down,
        )
    )
