"""The spec's WorkerMetrics: the counters one daemon's worker pool keeps, their JSON
shape, and their sum over the live daemons (from the heartbeats' `raw` numbers).

Sans-IO and apart from the heartbeat (fleetd.runtime.heartbeat, a trio service), so
that `fleetd workers` sums the daemons' metrics without importing trio or pydantic
(bench/cli_startup.py).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleetd.config.durations import format_duration
from fleetd.jobs.timetext import format_ts

__all__ = ["WorkerMetrics", "aggregate_metrics"]


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
