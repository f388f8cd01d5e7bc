"""The alerts that name companies and job types: `quarantined`, `enqueue_anomaly` and
`payload_anomaly` (fleetd.runtime.alerts evaluates them with the others, with the same
hysteresis).

    quarantined      a job type of a company is quarantined (fleetd.jobs.quarantine):
                     raised while any part is held, naming each type and company;
                     resolved when admins released them all
    enqueue_anomaly  a company enqueues far above its own recent baseline: its jobs in
                     the last minute at least `[alerts] anomaly_min` and over
                     `anomaly_factor` times its mean per minute over the hour before
                     (a company with no enqueue in that hour has no baseline: not
                     named, so a new company's first import raises nothing);
                     resolved when every company is back under 80 % of that bar
    payload_anomaly  a company's payloads grow far above its own recent baseline: the
                     mean size of its jobs' payloads in the last minute at least
                     `[alerts] payload_min_kib` and over `payload_factor` times its
                     mean size over the hour before (the same minutes as the rate's;
                     a company with no job in that hour has no baseline: not named);
                     resolved when every company is back under 80 % of that bar. A
                     mean, not a count: one 50 MB payload among a minute's 1 KB ones
                     of the same company is named, a steady import of big files that
                     started an hour ago is its baseline

The enqueue counts and payload bytes are the analytics minute buckets (`an:m:<minute>`,
fields `in\\n<type>\\n<company>` and `inb\\n<type>\\n<company>`, written by
enqueue.lua's _analytics.lua: the bytes are the stored data's JSON text, sealed or
not; a queue with a key space of its own records them in that space, and the readings
sum the spaces). `EnqueueHistory` keeps the per-company figures of each finished
minute once read (a finished minute's no longer change), so an evaluation reads two
buckets a space, not 62.

Sans-IO but for `EnqueueHistory.read`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import SyncClient
from fleetd.jobs.quarantine import Quarantine

__all__ = [
    "EnqueueHistory",
    "anomaly_reading",
    "payload_reading",
    "quarantine_reading",
]

MINUTE_MS = 60_000
# The baseline: the mean per minute over this many minutes before the last finished one.
BASELINE_MINUTES = 60
# Of the bar (factor × baseline, at least anomaly_min): a raised anomaly resolves below it.
CLEAR_RATIO = 0.8
KIB = 1024

# (over, clear, value, text), as fleetd.runtime.alerts.Reading takes them.
Verdict = tuple[bool, bool, float, str]


def quarantine_reading(held: Iterable[Quarantine]) -> Verdict:
    names = [f"{q.job_type} of company {q.company_id or '(none)'}" for q in held]
    text = (
        "quarantined (jobs held until an admin releases them): job type " + "; ".join(names)
        if names
        else "no job type quarantined"
    )
    return bool(names), not names, float(len(names)), text


def enqueues_of(bucket: Mapping[str, str], field: str = "in") -> dict[str, int]:
    """Per company ('' = none) the jobs enqueued in one minute bucket, over its types
    (`field` "inb": their payloads' bytes)."""
    out: dict[str, int] = {}
    for name, n in bucket.items():
        kind, _, rest = name.partition("\n")
        if kind == field:
            company = rest.partition("\n")[2]
            out[company] = out.get(company, 0) + int(n)
    return out


def _add(into: dict[str, int], more: Mapping[str, int]) -> None:
    for company, n in more.items():
        into[company] = into.get(company, 0) + n


@dataclass
class EnqueueHistory:
    """The per-company enqueue counts of the recent minutes, by minute since epoch."""

    minutes: dict[int, dict[str, int]] = field(default_factory=dict)
    # The same minutes' payload bytes per company.
    sizes: dict[int, dict[str, int]] = field(default_factory=dict)
    now_minute: int = 0
    # The key spaces (their prefixes) each minute was summed over.
    _read_in: dict[int, frozenset[str]] = field(default_factory=dict)

    def read(self, client: SyncClient, keys: Keys | Sequence[Keys]) -> None:
        """Fetch the current and previous minutes, and any finished minute of the
        baseline not read yet (all 62 at the first reading), in one pipeline, summed
        over the key spaces `keys` (fleetd.backend.spaces; one Keys: that space alone).
        A finished minute read before a space was known is read again."""
        spaces = [keys] if isinstance(keys, Keys) else list(keys)
        names = frozenset(k.prefix for k in spaces)
        sec, _usec = client.time()
        now = int(sec) * 1000 // MINUTE_MS
        first = now - BASELINE_MINUTES - 1
        want = [m for m in range(first, now + 1)
                if m >= now - 1 or self._read_in.get(m) != names]  # fmt: skip
        pipe = client.pipeline(transaction=False)
        for m in want:
            for k in spaces:
                pipe.hgetall(k.analytics_minute(m))
        replies = iter(pipe.execute())
        for m in want:
            jobs: dict[str, int] = {}
            sizes: dict[str, int] = {}
            for _k in spaces:
                text = {str(k): str(v) for k, v in next(replies).items()}
                _add(jobs, enqueues_of(text))
                _add(sizes, enqueues_of(text, "inb"))
            self.minutes[m], self.sizes[m], self._read_in[m] = jobs, sizes, names
        for m in [m for m in self.minutes if m < first]:
            del self.minutes[m]
            self.sizes.pop(m, None)
            self._read_in.pop(m, None)
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

    def recent_sizes(self) -> dict[str, tuple[int, int]]:
        """Per company: (jobs, payload bytes) of the last minute — the current one so
        far or the last finished one, whichever had more bytes (as `recent`)."""
        out: dict[str, tuple[int, int]] = {}
        for m in (self.now_minute, self.now_minute - 1):
            jobs, sizes = self.minutes.get(m, {}), self.sizes.get(m, {})
            for company, size in sizes.items():
                if jobs.get(company, 0) > 0 and size > out.get(company, (0, -1))[1]:
                    out[company] = (jobs[company], size)
        return out

    def size_baseline(self, company: str) -> float:
        """A company's mean payload bytes per job over the hour before the last minute
        (0.0: no job in that hour)."""
        start = self.now_minute - 1 - BASELINE_MINUTES
        jobs = size = 0
        for m in range(start, start + BASELINE_MINUTES):
            jobs += self.minutes.get(m, {}).get(company, 0)
            size += self.sizes.get(m, {}).get(company, 0)
        return size / jobs if jobs else 0.0


def payload_reading(history: EnqueueHistory, factor: float, min_kib: int) -> Verdict:
    """The companies whose mean payload size in the last minute is over `factor` × their
    baseline mean (and `min_kib` at least)."""
    if factor <= 0:
        return False, True, 0.0, "payload anomaly alert off"
    rows = []
    for company, (jobs, size) in sorted(history.recent_sizes().items()):
        base, mean = history.size_baseline(company), size / jobs
        rows.append((company, mean, base, f"{mean / KIB:.1f} KiB/job over {jobs} jobs, "
                                          f"baseline {base / KIB:.1f} KiB/job"))  # fmt: skip
    return _over_baseline(
        rows, factor, float(min_kib * KIB),
        "payload sizes far above the company's own baseline",
        "every company's payloads are near their baseline size",
    )  # fmt: skip


def anomaly_reading(history: EnqueueHistory, factor: float, minimum: int) -> Verdict:
    """The companies enqueueing over `factor` × their baseline (and `minimum` at least)."""
    if factor <= 0:
        return False, True, 0.0, "enqueue anomaly alert off"
    rows = []
    for company, n in sorted(history.recent().items()):
        base = history.baseline(company)
        rows.append((company, float(n), base, f"{n}/min, baseline {base:.1f}/min"))
    return _over_baseline(
        rows, factor, float(minimum),
        "enqueue rate far above the company's own baseline",
        "every company enqueues near its baseline",
    )  # fmt: skip


def _over_baseline(
    rows: list[tuple[str, float, float, str]], factor: float, floor: float, what: str, calm: str
) -> Verdict:
    """Rows of (company, value, its baseline, how to say it): raised for the companies at
    or over max(`factor` × baseline, `floor`), clear once every one is under CLEAR_RATIO
    of its bar. A company with no baseline (nothing in the hour before: a new one) has
    none to leave and is left out."""
    over: list[str] = []
    high = False
    for company, value, base, said in rows:
        if base == 0:
            continue
        bar = max(factor * base, floor)
        if value >= bar:
            over.append(f"{company or '(none)'} ({said})")
        if value > bar * CLEAR_RATIO:
            high = True
    text = f"{what}: company(ies) " + ", ".join(over) if over else calm
    return bool(over), not high, float(len(over)), text
