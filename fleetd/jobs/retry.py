"""The retry policy: how long a failed job waits before its next attempt.

Owns the one formula for retry delays, sans-IO: retry n (the n-th retry of a job,
counted from 1) waits n² units — with the default unit of one second, the spec's 1 s,
4 s, 9 s — plus optional jitter. The worker asks it for the delay of each failed
job and passes the number to fail.lua, which only adds it to Redis's clock: the Lua
side never knows the formula, and the worker's wake-up for the retry uses the same
number, so the two can never disagree.

Jitter spreads a storm of jobs that failed together (a dependency went down) over
`jitter` × the delay, so they do not all retry in the same millisecond. It is derived
from the job's id and the retry's number rather than a random draw: the same job and
retry always get the same delay, so anything that recomputes it (the worker's wake-up,
a test) agrees with what was stored, and jitter only ever lengthens a delay (the spec's
delays are minimums).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["DEFAULT_RETRY_POLICY", "RETRY_UNIT_MS", "RetryPolicy"]

# Retry n waits n² units: 1000 ms gives the spec's 1 s, 4 s, 9 s.
RETRY_UNIT_MS = 1000
# 2**64: the jitter fraction is the first 8 bytes of a BLAKE2b digest over this.
_SPAN = float(1 << 64)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """unit_ms: retry n waits n² × unit_ms; jitter: up to this fraction of the delay is
    added (0 = none, the spec's exact delays; 0.25 = up to a quarter more)."""

    unit_ms: int = RETRY_UNIT_MS
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.unit_ms < 1:
            raise ValueError(f"unit_ms must be at least 1, got {self.unit_ms}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must be from 0 to 1, got {self.jitter}")

    def delay_ms(self, retry: int, job_id: str = "") -> int:
        """The wait before retry number `retry` (1 = the first retry) of `job_id`."""
        if retry < 1:
            raise ValueError(f"retry numbers start at 1, got {retry}")
        base = retry * retry * self.unit_ms
        if not self.jitter:
            return base
        digest = hashlib.blake2b(f"{job_id}:{retry}".encode(), digest_size=8).digest()
        return base + int(base * self.jitter * (int.from_bytes(digest, "big") / _SPAN))

    def next_delay_ms(self, retry_count: int, job_id: str = "") -> int:
        """The wait before the retry that follows `retry_count` earlier retries (what a
        job claimed with that retry_count waits if its attempt fails)."""
        return self.delay_ms(retry_count + 1, job_id)


# The policy fleetd runs with: the spec's delays, no jitter.
DEFAULT_RETRY_POLICY = RetryPolicy()
