"""Times as every answer writes them: milliseconds since the epoch → RFC 3339 UTC text
with milliseconds and `Z` (`2024-01-15T10:30:00.123Z`).

Sans-IO and apart from the answers' declarations (fleetd.jobs.answer, pydantic), so
that `fleetd workers` writes its times without importing pydantic (bench/cli_startup.py).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime

__all__ = ["format_ts"]


def format_ts(ms: int | None) -> str | None:
    """Milliseconds since the epoch → RFC 3339 UTC (`2024-01-15T10:30:00.123Z`)."""
    if ms is None:
        return None
    return f"{_second(ms // 1000)}{ms % 1000:03d}Z"


# The times of one job (created, started, completed, updated) and of the jobs of one
# listing mostly fall in a few seconds: the text up to the second is cached, which
# takes a time from 3 µs (datetime + strftime) to 0.4 µs, up to 5 times per job shown.
# 4096 seconds of ~100 bytes each: 0.4 MB at most.
@functools.lru_cache(maxsize=4096)
def _second(s: int) -> str:
    return datetime.fromtimestamp(s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")
