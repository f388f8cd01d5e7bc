"""What a daemon says about itself: its heartbeat's details and systemd's STATUS= line.

`details()` is what every other daemon, the API and the CLI read of this one from its
heartbeat (fleetd.runtime.heartbeat): roles, slots, readiness, the job types it has
handlers for and the named queues it serves (fleetd.jobs.queues.served_by), its raised
alerts. `status_line()` is the one-line summary systemd shows (fleetd.runtime.systemd).
Both read the daemon as it is at the call (fleetd.runtime.daemon).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import trio

from fleetd.backend.redis_link import RedisCommandError, RedisUnavailable
from fleetd.config.queue_section import Served

if TYPE_CHECKING:
    from fleetd.config import Config
    from fleetd.engine import Engine
    from fleetd.runtime.alerts import Alerts
    from fleetd.runtime.pools import Pools

__all__ = ["STATUS_TIMEOUT", "details", "status_line"]

# The STATUS= line's counts (one round trip, ~1 ms) wait this long, then say "no answer".
STATUS_TIMEOUT = 1.0


class Reporting(Protocol):
    """The parts of fleetd.runtime.daemon.Daemon read here."""

    cfg: Config
    engine: Engine
    roles: frozenset[str]
    pool: Pools | None
    alerts: Alerts | None
    ready: bool

    @property
    def stopping(self) -> bool: ...


def details(d: Reporting) -> dict[str, Any]:
    pool = d.pool
    return {
        "roles": sorted(d.roles),
        "concurrency": pool.concurrency if pool else 0,
        "running": pool.running if pool else 0,
        "ready": d.ready and d.engine.link.ready,
        "job_types": d.engine.registry.types(),
        # `[worker] queues`, in its order, on a worker daemon (none on others): a job of
        # a queue no live worker daemon lists waits (fleetd.jobs.limits, unserved_queue).
        "queues": Served.parse(d.cfg.worker.queues).names if "worker" in d.roles else [],
        # A list (possibly empty) marks a daemon that evaluates alerts (fleetd.runtime.alerts).
        "alerts": d.alerts.active if d.alerts is not None else None,
    }


async def status_line(d: Reporting) -> str:
    """systemd's STATUS=, e.g. "processing 3, pending 120" (shown by systemctl status)."""
    link = d.engine.link
    running = d.pool.running if d.pool is not None else 0
    prefix = "stopping: " if d.stopping else ""
    if not link.ready:
        return f"{prefix}waiting for Redis at {link.safe_url}"
    try:
        with trio.fail_after(STATUS_TIMEOUT):
            counts = await link.call(d.engine.ops.stats)
    except (RedisUnavailable, RedisCommandError, trio.TooSlowError):
        return f"{prefix}processing {running}, Redis not answering"
    return f"{prefix}processing {running}, pending {counts['pending']}"
