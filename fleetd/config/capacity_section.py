"""The [capacity] config section: what the capacity planner sizes for.

Owns the target wait p95 and the look-back of the measured load
(fleetd.analytics.capacity, `fleetd capacity`, `GET /api/v1/admin/jobs/capacity`);
gathered into `Config` by fleetd.config.model.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetd.config.settings import HOUR, MINUTE, SECOND, setting

__all__ = ["CapacityConfig"]


@dataclass(frozen=True)
class CapacityConfig:
    wait_p95_target: float = setting(
        5 * SECOND,
        "the planner sizes concurrency so 95% of jobs wait less than this to start",
        kind="duration",
        above=0,
        max=24 * HOUR,
    )
    window: float = setting(
        15 * MINUTE,
        "arrival rate and job time are measured over this much of the recent past",
        kind="duration",
        min=MINUTE,
        max=HOUR,
    )
