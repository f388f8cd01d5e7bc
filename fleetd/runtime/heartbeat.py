"""This daemon's identity and WorkerMetrics, published to Redis with a heartbeat.

Owns the spec's WorkerMetrics (counters kept by the worker pool) plus the daemon's id,
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from fleetd.backend.redis_link import RedisLink, RedisUnavailable
from fleetd.backend.scripts import Scripts
from fleetd.config.durations import format_duration
from fleetd.jobs.model import format_ts
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


@dataclass(slots=True)
class WorkerMetrics:
    """The spec's WorkerMetrics counters for this daemon (wall-clock times in ms)."""

    start_time_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    jobs_processed: int = 0
    jobs_succeeded: int = 0
    jobs_failed: int = 0
    jobs_retried: int = 0
    total_job_time: float = 0.0
    last_job_time_ms: int | None = None

    def record(self, elapsed: float, *, succeeded: bool, retried: bool = False) -> None:
        """One finished attempt. A retried attempt counts as processed and retried; a
        final failure as processed and failed."""
        self.jobs_processed += 1
        self.total_job_time += elapsed
        self.last_job_time_ms = int(time.time() * 1000)
        if succeeded:
            self.jobs_succeeded += 1
        elif retried:
            self.jobs_retried += 1
        else:
            self.jobs_failed += 1

    def to_dict(self, now_ms: int | None = None) -> dict[str, Any]:
        """The spec's WorkerMetrics JSON shape."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        avg = self.total_job_time / self.jobs_processed if self.jobs_processed else 0.0
        return {
            "jobs_processed": self.jobs_processed,
            "jobs_succeeded": self.jobs_succeeded,
            "jobs_failed": self.jobs_failed,
            "jobs_retried": self.jobs_retried,
            "average_job_time": format_duration(round(avg, 3)),
            "total_job_time": format_duration(round(self.total_job_time, 3)),
            "last_job_time": format_ts(self.last_job_time_ms),
            "start_time": format_ts(self.start_time_ms),
            "uptime": format_duration(max(0, now - self.start_time_ms) // 1000),
        }

    def raw(self) -> dict[str, Any]:
        """Unformatted numbers, for summing across daemons."""
        return {
            "jobs_processed": self.jobs_processed,
            "jobs_succeeded": self.jobs_succeeded,
            "jobs_failed": self.jobs_failed,
            "jobs_retried": self.jobs_retried,
            "total_job_time_s": self.total_job_time,
            "last_job_time_ms": self.last_job_time_ms,
            "start_time_ms": self.start_time_ms,
        }


def aggregate_metrics(daemons: Sequence[Mapping[str, Any]], now_ms: int) -> dict[str, Any]:
    """WorkerMetrics of the whole cluster, from the daemons' heartbeats."""
    total = WorkerMetrics(start_time_ms=now_ms)
    for d in daemons:
        raw = d.get("raw", {})
        total.jobs_processed += raw.get("jobs_processed", 0)
        total.jobs_succeeded += raw.get("jobs_succeeded", 0)
        total.jobs_failed += raw.get("jobs_failed", 0)
        total.jobs_retried += raw.get("jobs_retried", 0)
        total.total_job_time += raw.get("total_job_time_s", 0.0)
        last = raw.get("last_job_time_ms")
        if last is not None and (total.last_job_time_ms is None or last > total.last_job_time_ms):
            total.last_job_time_ms = last
        total.start_time_ms = min(total.start_time_ms, raw.get("start_time_ms", now_ms))
    return total.to_dict(now_ms)


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
