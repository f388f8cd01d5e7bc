"""Throughput history: jobs finished per time bucket, read from the status indexes.

Owns:
- the limits of a request (`window` 1m..24h, `step` 1s..1h, at most MAX_BUCKETS) and
  their validation, every problem reported at once with its field (sans-IO);
- the bucket grid (`bucket_starts`): buckets of `step` aligned to the epoch, the last
  one holding now (floor of now), reaching back `window` (sans-IO);
- `read(client, keys, window_ms, step_ms)`: one Redis hop — the server's clock (TIME),
  then one pipeline with two ZCOUNTs per bucket on the completed and failed indexes.

What is counted: the `completed` and `failed` status zsets are scored by finish time
(Redis's clock, set inside the complete and fail scripts), so a bucket's count is the
jobs of that status whose last finish falls in [start, end). Consequences, documented
for users:
- a `retrying` attempt is not a failure (the job is in the retrying index); only a job
  whose last attempt failed counts as failed;
- jobs deleted by clean-up or by retention (`[maintenance] completed_ttl`, …) before
  the window ends are no longer in the indexes and are not counted; a failed job reset
  to pending leaves the failed index and is no longer counted as failed;
- the indexes hold no company, so this is queue-wide: platform admins only. Serving a
  company admin would mean reading every finished job's hash in the window (up to the
  whole window's jobs per request) or a second, per-company index written by every
  finish — not worth it for one chart.

Everything is counted up to `until`, the server's clock when the counts were read (ms,
exclusive): a finish at or after `until` is not in the answer. A client that adds live
events on top counts only those with `ts >= until`, and nothing is counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import SyncClient
from fleetd.config.durations import format_duration, parse_duration
from fleetd.jobs.model import FieldError, JobStatus, ValidationError

__all__ = [
    "DEFAULT_STEP",
    "DEFAULT_WINDOW",
    "MAX_BUCKETS",
    "Bucket",
    "Span",
    "Throughput",
    "bucket_starts",
    "parse_span",
    "read",
]

_SECOND_MS = 1_000
_MINUTE_MS = 60 * _SECOND_MS
_HOUR_MS = 60 * _MINUTE_MS
# The dashboard's chart: the last ten minutes in 10 s bars.
DEFAULT_WINDOW = "10m"
DEFAULT_STEP = "10s"
# A day is the longest look back: retention keeps completed jobs 7 days by default, but
# a longer window is a report, not a chart.
MIN_WINDOW_MS, MAX_WINDOW_MS = _MINUTE_MS, 24 * _HOUR_MS
# Finish times are in ms, but buckets under a second are noise on any chart.
MIN_STEP_MS, MAX_STEP_MS = _SECOND_MS, _HOUR_MS
# 2 ZCOUNTs per bucket in one pipeline: 2,880 commands, about 1-2 ms of Redis time
# (each ZCOUNT is O(log n)), and a day in one-minute bars fits.
MAX_BUCKETS = 1_440
_MS_SLACK = 1e-6


@dataclass(frozen=True, slots=True)
class Span:
    """A validated request: the window and the step in whole milliseconds."""

    window_ms: int
    step_ms: int

    @property
    def buckets(self) -> int:
        return self.window_ms // self.step_ms

    @property
    def window(self) -> str:
        return format_duration(self.window_ms / 1000)

    @property
    def step(self) -> str:
        return format_duration(self.step_ms / 1000)


@dataclass(frozen=True, slots=True)
class Bucket:
    start_ms: int
    completed: int
    failed: int


@dataclass(frozen=True, slots=True)
class Throughput:
    span: Span
    until_ms: int
    buckets: list[Bucket]


def _ms(field: str, raw: str, low: int, high: int) -> tuple[int | None, FieldError | None]:
    bounds = f"from {format_duration(low / 1000)} to {format_duration(high / 1000)}"
    try:
        seconds = parse_duration(raw)
    except ValueError as exc:
        return None, FieldError(field, f"{exc}; {bounds}")
    if not low <= seconds * 1000 <= high:
        return None, FieldError(field, f"must be {bounds}, got {raw!r}")
    ms = round(seconds * 1000)
    # Finish times are whole ms; "1.1s" is 1100.0000000000002 ms as a float, hence the slack.
    if abs(seconds * 1000 - ms) > _MS_SLACK:
        return None, FieldError(field, f"must be a whole number of milliseconds, got {raw!r}")
    return ms, None


def parse_span(window: str | None, step: str | None) -> Span:
    """Validate `window` and `step` (fleetd durations; None takes the default). Raises
    ValidationError listing every bad field: `window`, `step`."""
    window_ms, w_err = _ms(
        "window", DEFAULT_WINDOW if window is None else window, MIN_WINDOW_MS, MAX_WINDOW_MS
    )
    step_ms, s_err = _ms("step", DEFAULT_STEP if step is None else step, MIN_STEP_MS, MAX_STEP_MS)
    errors = [e for e in (w_err, s_err) if e is not None]
    if window_ms is not None and step_ms is not None:
        w, s = format_duration(window_ms / 1000), format_duration(step_ms / 1000)
        if window_ms % step_ms:
            errors.append(FieldError("step", f"must divide the window ({w}) evenly, got {s}"))
        elif window_ms // step_ms > MAX_BUCKETS:
            finest = format_duration(-(-window_ms // MAX_BUCKETS) / 1000)
            errors.append(
                FieldError(
                    "step",
                    f"{s} makes {window_ms // step_ms:,} buckets of the {w} window; at most "
                    f"{MAX_BUCKETS:,} (a step of at least {finest})",
                )
            )
    if errors:
        raise ValidationError.of(errors)
    assert window_ms is not None and step_ms is not None
    return Span(window_ms, step_ms)


def bucket_starts(span: Span, now_ms: int) -> list[int]:
    """Start of each bucket, oldest first: the last is `now_ms` floored to the step."""
    last = now_ms - now_ms % span.step_ms
    first = last - (span.buckets - 1) * span.step_ms
    return list(range(first, last + 1, span.step_ms))


def read(client: SyncClient, span: Span, *spaces: Keys) -> Throughput:
    """Count finished jobs per bucket in one hop: TIME, then one pipeline of ZCOUNTs,
    summed over `spaces` (the namespace's key spaces, fleetd.backend.spaces).

    The clock is Redis's own (the one the scripts stamp finishes with), so no host's
    clock skew shifts a bucket. The last bucket is counted up to `until` (exclusive):
    any script that runs after TIME stamps its finish at `until` or later."""
    sec, usec = client.time()
    until = int(sec) * 1000 + int(usec) // 1000
    starts = bucket_starts(span, until)
    pipe = client.pipeline(transaction=False)
    for status in (JobStatus.COMPLETED, JobStatus.FAILED):
        for start in starts:
            end = min(start + span.step_ms, until)
            for keys in spaces:
                pipe.zcount(keys.status(status), start, f"({end}")
    got, w = [int(n) for n in pipe.execute()], len(spaces)
    counts = [sum(got[i : i + w]) for i in range(0, len(got), w)]
    n = len(starts)
    buckets = [Bucket(start, counts[i], counts[n + i]) for i, start in enumerate(starts)]
    return Throughput(span, until, buckets)
