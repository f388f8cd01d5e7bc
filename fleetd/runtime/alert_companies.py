"""The alerts that name companies and job types: `quarantined` and `enqueue_anomaly`
(fleetd.runtime.alerts evaluates them with the others, with the same hysteresis).

    quarantined      a job type of a company is quarantined (fleetd.jobs.quarantine):
                     raised while any part is held, naming each type and company;
                     resolved when admins released them all
    enqueue_anomaly  a company enqueues far above its own recent baseline: its jobs in
                     the last minute at least `[alerts] anomaly_min` and over
                     `anomaly_factor` times its mean per minute over the hour before
                     (a company with no enqueue in that hour has no baseline: not
                     named, so a new company's first import raises nothing);
                     resolved when every company is back under 80 % of that bar

The enqueue counts are the analytics minute buckets (`an:m:<minute>`, field
`in\\n<type>\\n<company>`, written by enqueue.lua's _analytics.lua). `EnqueueHistory`
keeps the per-company count of each finished minute once read (a finished minute's
count no longer changes), so an evaluation reads two buckets, not 62.

Sans-IO but for `EnqueueHistory.read` and `read_quarantines`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import SyncClient
from fleetd.jobs.quarantine import Quarantine, list_quarantines

__all__ = ["EnqueueHistory", "anomaly_reading", "quarantine_reading", "read_quarantines"]

MINUTE_MS = 60_000
# The baseline: the mean per minute over this many minutes before the last finished one.
BASELINE_MINUTES = 60
# Of the bar (factor × baseline, at least anomaly_min): a raised anomaly resolves below it.
CLEAR_RATIO = 0.8

# (over, clear, value, text), as fleetd.runtime.alerts.Reading takes them.
Verdict = tuple[bool, bool, float, str]


def read_quarantines(client: SyncClient, keys: Keys) -> list[Quarantine]:
    return list_quarantines(client, keys)


def quarantine_reading(held: Iterable[Quarantine]) -> Verdict:
    names = [f"{q.job_type} of company {q.company_id or '(none)'}" for q in held]
    text = (
        "quarantined (jobs held until an admin releases them): job type " + "; ".join(names)
        if names
        else "no job type quarantined"
    )
    return bool(names), not names, float(len(names)), text


def enqueues_of(bucket: Mapping[str, str]) -> dict[str, int]:
    """Per company ('' = none) the jobs enqueued in one minute bucket, over its types."""
    out: dict[str, int] = {}
    for name, n in bucket.items():
        kind, _, rest = name.partition("\n")
        if kind == "in":
            company = rest.partition("\n")[2]
            out[company] = out.get(company, 0) + int(n)
    return out


@dataclass
class EnqueueHistory:
    """The per-company enqueue counts of the recent minutes, by minute since epoch."""

    minutes: dict[int, dict[str, int]] = field(default_factory=dict)
    now_minute: int = 0

    def read(self, client: SyncClient, keys: Keys) -> None:
        """Fetch the current and previous minutes, and any finished minute of the
        baseline not read yet (all 62 at the first reading), in one pipeline."""
        sec, _usec = client.time()
        now = int(sec) * 1000 // MINUTE_MS
        first = now - BASELINE_MINUTES - 1
        want = [m for m in range(first, now + 1) if m >= now - 1 or m not in self.minutes]
        pipe = client.pipeline(transaction=False)
        for m in want:
            pipe.hgetall(keys.analytics_minute(m))
        for m, bucket in zip(want, pipe.execute(), strict=True):
            self.minutes[m] = enqueues_of({str(k): str(v) for k, v in bucket.items()})
        for m in [m for m in self.minutes if m < first]:
            del self.minutes[m]
        self.now_minute = now

    def recent(self) -> dict[str, int]:
        """Per company: its enqueues in the last minute — the current minute so far or
        the last finished one, whichever is more (a burst counts as it happens and for
        the minute after)."""
        cur = self.minutes.get(self.now_minute, {})
        prev = self.minutes.get(self.now_minute - 1, {})
        return {c: max(cur.get(c, 0), prev.get(c, 0)) for c in {*cur, *prev}}

    def baseline(self, company: str) -> float:
        """A company's mean enqueues per minute over the hour before the last minute."""
        start = self.now_minute - 1 - BASELINE_MINUTES
        total = sum(
            self.minutes.get(m, {}).get(company, 0) for m in range(start, start + BASELINE_MINUTES)
        )
        return total / BASELINE_MINUTES


def anomaly_reading(history: EnqueueHistory, factor: float, minimum: int) -> Verdict:
    """The companies enqueueing over `factor` × their baseline (and `minimum` at least)."""
    if factor <= 0:
        return False, True, 0.0, "enqueue anomaly alert off"
    over: list[str] = []
    high = False
    for company, n in sorted(history.recent().items()):
        base = history.baseline(company)
        if base == 0:
            continue  # no enqueue in the hour before: a new company, no baseline to leave
        bar = max(factor * base, float(minimum))
        if n >= bar:
            over.append(f"{company or '(none)'} ({n}/min, baseline {base:.1f}/min)")
        if n > bar * CLEAR_RATIO:
            high = True
    text = (
        "enqueue rate far above the company's own baseline: company(ies) " + ", ".join(over)
        if over
        else "every company enqueues near its baseline"
    )
    return bool(over), not high, float(len(over)), text
