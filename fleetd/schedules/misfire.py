"""`MisfirePolicy`: what a schedule does about occurrences it missed.

Its own module so that the schedule's JSON answer (fleetd.schedules.answer), which the
CLI's read commands load through fleetd.api.bodies, declares the field without
importing fleetd.schedules.cadence and croniter with it (CLI start-up:
tests/cli/test_cli_startup.py). fleetd.schedules.cadence re-exports it.
"""

from __future__ import annotations

import enum

__all__ = ["MisfirePolicy"]


class MisfirePolicy(enum.StrEnum):
    """What a schedule does about occurrences missed by more than the grace period."""

    RUN_ONCE = "run_once"
    SKIP = "skip"

    def __str__(self) -> str:
        return self.value
