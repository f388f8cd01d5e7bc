"""What a worker daemon runs per key space it serves (fleetd.backend.spaces): a worker
pool (fleetd.runtime.pools shares the daemon's concurrency between them) and the
maintenance of that space's delayed jobs and leases. The namespace's space is always
served; a queue's own space when the daemon lists the queue in `[worker] queues`,
including a queue given a slot of its own after the daemon started."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

import trio

from fleetd.backend.redis_link import RedisUnavailable
from fleetd.backend.spaces import REFRESH_S, Space
from fleetd.config.queue_section import Served
from fleetd.jobs.artifacts import artifacts_root
from fleetd.runtime.maintenance import Maintenance, MaintenanceSettings
from fleetd.runtime.worker import PoolSettings, WorkerPool

if TYPE_CHECKING:
    from fleetd.config import Config
    from fleetd.engine import Engine
    from fleetd.runtime.heartbeat import WorkerMetrics
    from fleetd.runtime.pools import Pools

__all__ = ["SPACES_EVERY", "serve_space", "watch_spaces"]

log = logging.getLogger("fleetd.daemon")

# How often a worker daemon looks for queues that got a slot of their own since it started.
SPACES_EVERY = 6 * REFRESH_S


class Serving(Protocol):
    """The parts of fleetd.runtime.daemon.Daemon used here."""

    cfg: Config
    engine: Engine
    daemon_id: str
    metrics: WorkerMetrics
    pool: Pools | None

    @property
    def stopping(self) -> bool: ...


async def serve_space(d: Serving, services: trio.Nursery, work: trio.Nursery, space: Space) -> None:
    """A pool and maintenance for `space`: the namespace's, or a served queue's own."""
    e, cfg, pools = d.engine, d.cfg, d.pool
    assert pools is not None
    if not space.home and space.queue not in Served.parse(cfg.worker.queues).names:
        return
    m = cfg.maintenance
    maintenance = Maintenance(e.link, space.scripts, e.ops, MaintenanceSettings(
        interval=m.interval, max_stalls=cfg.worker.max_stalls,
        completed_ttl=m.completed_ttl, failed_ttl=m.failed_ttl,
        cancelled_ttl=m.cancelled_ttl,
        reconnect_max_backoff=cfg.redis.reconnect_max_backoff,
        artifacts_dir=artifacts_root(cfg),
        artifacts_retention=cfg.artifacts.retention, isolation=cfg.isolation),
        whole=space.home)  # fmt: skip
    await services.start(maintenance.run)
    w = cfg.worker
    settings = PoolSettings(
        concurrency=w.concurrency, poll_interval=w.poll_interval,
        job_timeout=w.job_timeout, shutdown_timeout=w.shutdown_timeout,
        claim_batch=w.claim_batch, lease=w.lease,
        reconnect_max_backoff=cfg.redis.reconnect_max_backoff,
        command_timeout=cfg.redis.command_timeout,
        connect_timeout=cfg.redis.connect_timeout,
        log_jobs=cfg.daemon.log_jobs, isolation=cfg.isolation)  # fmt: skip
    pool = WorkerPool(
        e.link, e.worker_scripts(space), e.queue, e.registry, settings, d.daemon_id,
        d.metrics, audit=e.audit, slots=pools.slots)  # fmt: skip
    pools.slots.join(pool)
    await work.start(pool.run)
    pools.add(pool, space.queue)
    if not space.home:
        log.info("serving queue %s from its own slot (%s)", space.queue, space.keys.prefix)


async def watch_spaces(d: Serving, services: trio.Nursery, work: trio.Nursery) -> None:
    """Serve a queue that got a slot of its own since start-up (another process's
    `[queues] own_slot`) without a restart."""
    pools = d.pool
    assert pools is not None
    while not d.stopping:
        await trio.sleep(SPACES_EVERY)
        try:
            spaces = await d.engine.link.call(d.engine.spaces.known)
        except RedisUnavailable:
            continue
        for space in spaces:
            if not space.home and space.queue not in pools.queues and not d.stopping:
                await serve_space(d, services, work, space)
