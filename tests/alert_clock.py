"""Helpers of the alert tests: settings that evaluate at once, and a clock the test moves."""

from __future__ import annotations

from fleetd.config import AlertsConfig

# Raise and clear at the first evaluation; the loop's own interval never fires in a test.
NOW = AlertsConfig(interval=600.0, raise_after=0.0, clear_after=0.0, window=60.0)


class Clock:
    """A monotonic clock that stands still until the test sets `t`."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t
