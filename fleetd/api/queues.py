"""Named queue endpoints of the admin API (fleetd.jobs.queues), for platform admins.

Owns `GET /api/v1/admin/queues` (every known queue: paused or not, the live worker
daemons serving it, its ready, waiting and processing jobs, those completed and failed
in the last hour and its throughput) and `POST /api/v1/admin/queues/<name>/pause|resume` (audited as
queue.pause and queue.resume): a paused queue is claimed by no daemon, its jobs stay
pending with no attempt spent. The figures count every company's jobs and a pause acts
on every company's, so a company-bound token gets 403 (context.require_platform).
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, g, jsonify

from fleetd.api import bodies
from fleetd.api.context import admin, audited, redis, require_platform, state
from fleetd.api.errors import ApiError
from fleetd.api.operations import documented
from fleetd.backend.redis_link import SyncClient
from fleetd.config.queue_section import Served, check_queue_name, parse_routes
from fleetd.jobs.queues import (
    known_queues,
    pause_queue,
    paused_queues,
    queue_figures,
    resume_queue,
    served_by,
)

__all__ = ["bp"]

bp = Blueprint("queues", __name__, url_prefix="/api/v1/admin/queues")


def _configured() -> list[str]:
    cfg = state().config
    return [*Served.parse(cfg.worker.queues).names, *parse_routes(cfg.queues.routes).values()]


def _name(name: str) -> str:
    try:
        return check_queue_name(name)
    except ValueError as exc:
        raise ApiError(
            400, "invalid_queue", str(exc), {"fields": [{"field": "name", "message": str(exc)}]}
        ) from None


@bp.get("")
@documented("Named queues and their jobs (platform admins)", {200: (bodies.QueueList, "OK")},
            tag="operations")  # fmt: skip
@admin
async def list_queues() -> Any:
    require_platform("queues (every company's jobs)")
    spaces, also = state().ops.spaces, _configured()

    def read(client: SyncClient) -> list[dict[str, object]]:
        daemons = state().ops.daemons(client)
        served = [q for d in daemons for q in served_by(d)]
        names = known_queues(client, spaces, [*also, *served])
        limits = state().config.limits.build().queues
        return [f.to_dict() for f in queue_figures(client, spaces, names, daemons, limits)]

    return jsonify({"queues": await redis(read)})


async def _switch(name: str, pause: bool) -> Any:
    require_platform("pausing a queue (every company's jobs)")
    name = _name(name)
    g.audit_target = name
    spaces = state().ops.spaces

    def write(client: SyncClient) -> tuple[bool, bool]:
        changed = (pause_queue if pause else resume_queue)(client, spaces, name)
        return changed, name in paused_queues(client, spaces)

    changed, paused = await redis(write)
    g.audit_detail = {"changed": changed}
    return jsonify({"name": name, "paused": paused, "changed": changed})


@bp.post("/<name>/pause")
@documented("Pause a queue on every daemon (platform admins)",
            {200: (bodies.QueueSwitched, "OK")}, "400", tag="operations")  # fmt: skip
@admin
@audited("queue.pause")
async def pause(name: str) -> Any:
    return await _switch(name, True)


@bp.post("/<name>/resume")
@documented("Resume a paused queue (platform admins)",
            {200: (bodies.QueueSwitched, "OK")}, "400", tag="operations")  # fmt: skip
@admin
@audited("queue.resume")
async def resume(name: str) -> Any:
    return await _switch(name, False)
