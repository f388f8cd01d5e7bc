"""This daemon's identity and WorkerMetrics, published to Redis with a heartbeat.

Owns the payload: the spec's WorkerMetrics (counters kept by the worker pool,
fleetd.runtime.metrics, which also sums them over the daemons) plus the daemon's id,
host, pid, roles, concurrency, running jobs and resource use (fleetd.runtime.resources:
CPU %, RSS, open fds, trio loop lag). Every `heartbeat_interval` the payload
is written by heartbeat.lua with an expiry of three intervals, so any daemon (and the
CLI) can report all live daemons, and a dead one drops out on its own.

Lifecycle: run() → starts the loop-lag probe, publishes at once, then every interval →
on exit publishes "leaving" (the entry is removed) when Redis is reachable.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

import trio

from fleetd.backend.redis_link import RedisLink, RedisUnavailable
from fleetd.backend.scripts import Scripts
from fleetd.jobs.timetext import format_ts
from fleetd.runtime.metrics import WorkerMetrics, aggregate_metrics
from fleetd.runtime.resources import ResourceMeter

__all__ = ["Heartbeat", "WorkerMetrics", "aggregate_metrics", "new_daemon_id"]

log = logging.getLogger("fleetd.heartbeat")

# A daemon counts as alive for three heartbeats: one lost write is not a death.
LIVENESS_FACTOR = 3


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)[:64] or "fleetd"


def new_daemon_id(name: str = "") -> str:
    """`<name or host>:<pid>:<random>`: unique across restarts and hosts, readable in logs."""
    return f"{_safe(name or socket.gethostname())}:{os.getpid()}:{os.urandom(3).hex()}"


class Heartbeat:
    """Publishes this daemon's payload every `interval` seconds."""

    def __init__(
        self,
        link: RedisLink,
        scripts: Scripts,
        daemon_id: str,
        metrics: WorkerMetrics,
        interval: float,
        details: Callable[[], Mapping[str, Any]],
    ) -> None:
        self.link = link
        self.scripts = scripts
        self.daemon_id = daemon_id
        self.metrics = metrics
        self.interval = interval
        self._details = details
        self._ttl_ms = int(interval * LIVENESS_FACTOR * 1000)
        self.resources = ResourceMeter()

    def payload(self) -> str:
        now = int(time.time() * 1000)
        return json.dumps({
            "daemon_id": self.daemon_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            **self._details(),
            "metrics": self.metrics.to_dict(now),
            "raw": self.metrics.raw(),
            "resources": self.resources.snapshot(),
            "heartbeat_at": format_ts(now),
        })  # fmt: skip

    async def beat(self, leaving: bool = False) -> None:
        await self.link.call(
            self.scripts.heartbeat, self.daemon_id, self.payload(), self._ttl_ms, leaving
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.resources.probe)
                while True:
                    # The link logs reachability changes once; a missed beat is harmless.
                    with contextlib.suppress(RedisUnavailable):
                        await self.beat()
                    await trio.sleep(self.interval)
        finally:
            with (
                trio.CancelScope(shield=True),
                trio.move_on_after(2),
                contextlib.suppress(RedisUnavailable),
            ):
                await self.beat(leaving=True)
