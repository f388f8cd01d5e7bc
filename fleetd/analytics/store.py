"""Reading the analytics buckets back: one window's figures per type and company.

Owns the windows (`WINDOWS`: the last hour in minute buckets, the last day and week in
hour buckets), `Figures` (one group's counts, sums and histograms, added up bucket by
bucket) and `read()`, which fetches a window: Redis's clock, then one pipeline of
the buckets (60, 24 or 168: the closed ones as sealed by fleetd.analytics.sealed, one
string each), then one of the slowest-attempt zsets of the groups found. A queue with a
key space of its own (fleetd.backend.spaces) records its jobs' figures there: a read
sums the spaces' buckets (`merge`) in the same hops. Field layout and key names:
fleetd/backend/lua/_analytics.lua.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleetd.analytics import sealed
from fleetd.analytics.histogram import MAX_BUCKET, percentiles
from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import SyncClient

__all__ = [
    "WINDOWS", "Figures", "Group", "Window", "WindowData", "buckets", "merge", "parse_bucket",
    "read", "total",
]  # fmt: skip

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
# Slowest attempts answered per group.
SLOWEST = 5


@dataclass(frozen=True)
class Window:
    name: str
    step_ms: int
    steps: int

    @property
    def step(self) -> str:
        return "1m" if self.step_ms == MINUTE_MS else "1h"


WINDOWS: dict[str, Window] = {
    "hour": Window("hour", MINUTE_MS, 60),
    "day": Window("day", HOUR_MS, 24),
    "week": Window("week", HOUR_MS, 168),
}

# (type, company): company '' is none, as stored.
Group = tuple[str, str]


@dataclass
class Figures:
    """What one group recorded over some buckets."""

    run: dict[int, int] = field(default_factory=dict)
    wait: dict[int, int] = field(default_factory=dict)
    run_ms: int = 0
    wait_ms: int = 0
    completed: int = 0
    retried: int = 0
    failed: int = 0
    enqueued: int = 0
    # One bucket's run and wait p50/p95/p99 (MARKS), computed when it was sealed; None
    # for sums of buckets (the answer computes theirs).
    marks: tuple[float | None, ...] | None = field(default=None, compare=False)

    @classmethod
    def of(cls, counts: dict[str, int]) -> Figures:
        """From one bucket's fields of a group, by kind (as in _analytics.lua)."""
        f = cls()
        for kind, n in counts.items():
            name = _COUNTS.get(kind)
            if name is not None:
                setattr(f, name, n)
            elif kind[1:].isdigit():
                if kind[0] == "r":
                    f.run[int(kind[1:])] = n
                elif kind[0] == "w":
                    f.wait[int(kind[1:])] = n
        return f

    def add(self, other: Figures) -> None:
        # In place: a week's total adds 168 hours into one dict per histogram.
        for mine, theirs in ((self.run, other.run), (self.wait, other.wait)):
            for k, n in theirs.items():
                mine[k] = mine.get(k, 0) + n
        for name in _COUNTS.values():
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def finished(self) -> int:
        """Attempts that ended (completed, retrying or failed)."""
        return self.completed + self.retried + self.failed


_COUNTS = {
    "rs": "run_ms",
    "ws": "wait_ms",
    "ok": "completed",
    "retry": "retried",
    "fail": "failed",
    "in": "enqueued",
}


@dataclass
class WindowData:
    """A window as read: per bucket (oldest first) the groups' figures, and the
    slowest attempts per group over the window's hours (job id, run ms), slowest first."""

    window: Window
    now: int
    starts: list[int]
    buckets: list[dict[Group, Figures]]
    slowest: dict[Group, list[tuple[str, int]]]

    def groups(self) -> set[Group]:
        return {g for b in self.buckets for g in b}


# Every field kind → where its count goes: ("run" | "wait", bucket) or (attribute, -1).
# One dict lookup per field: a week of 20 types is ~300,000 fields a read.
_KINDS: dict[str, tuple[str, int]] = {
    **{f"r{k}": ("run", k) for k in range(MAX_BUCKET + 1)},
    **{f"w{k}": ("wait", k) for k in range(MAX_BUCKET + 1)},
}


def _fields(raw: dict[str, str]) -> dict[str, Figures]:
    """One bucket hash → its groups' figures by field tail ("<type>\n<company>")."""
    by_tail: dict[str, Figures] = {}
    for f, v in raw.items():
        kind, _, tail = f.partition("\n")
        fig = by_tail.get(tail)
        if fig is None:
            fig = by_tail[tail] = Figures()
        where = _KINDS.get(kind)
        if where is not None:
            (fig.run if where[0] == "run" else fig.wait)[where[1]] = int(v)
        elif (name := _COUNTS.get(kind)) is not None:
            setattr(fig, name, int(v))
    return by_tail


_ORDER = tuple(_COUNTS.values())
# The percentiles a bucket's seal keeps of its run and wait times (the charts' lines).
MARKS = (50, 95, 99)


def _encode(raw: dict[str, str]) -> dict[str, sealed.Encoded]:
    """One bucket hash → its groups as sealed (fleetd.analytics.sealed)."""
    out: dict[str, sealed.Encoded] = {}
    for tail, f in _fields(raw).items():
        run = [x for kv in sorted(f.run.items()) for x in kv]
        wait = [x for kv in sorted(f.wait.items()) for x in kv]
        marks = [*percentiles(f.run, MARKS), *percentiles(f.wait, MARKS)]
        out[tail] = [*(getattr(f, name) for name in _ORDER), run, wait, marks]
    return out


def _decode(groups: dict[str, sealed.Encoded], company: str | None) -> dict[Group, Figures]:
    out: dict[Group, Figures] = {}
    for tail, enc in groups.items():
        jtype, sep, comp = tail.partition("\n")
        if not sep or (company is not None and comp != company):
            continue
        *counts, run, wait, marks = enc
        f = Figures(
            run=dict(zip(run[::2], run[1::2], strict=True)),
            wait=dict(zip(wait[::2], wait[1::2], strict=True)),
            marks=tuple(marks),
        )
        for name, n in zip(_ORDER, counts, strict=True):
            setattr(f, name, n)
        out[(jtype, comp)] = f
    return out


def parse_bucket(raw: dict[str, str]) -> dict[Group, Figures]:
    """One bucket hash (HGETALL) → its groups' figures."""
    out: dict[Group, Figures] = {}
    for tail, fig in _fields(raw).items():
        jtype, sep, comp = tail.partition("\n")
        if sep:
            out[(jtype, comp)] = fig
    return out


def _spaces(keys: Keys | Sequence[Keys]) -> list[Keys]:
    return [keys] if isinstance(keys, Keys) else list(keys)


def merge(spaces: Sequence[dict[Group, Figures]]) -> dict[Group, Figures]:
    """One bucket as several key spaces recorded it: each group's figures summed over
    the spaces that have it. A group of one space keeps its figures as they are (with
    a seal's marks); a sum has none (the answer computes its percentiles from the
    summed histograms)."""
    if len(spaces) == 1:
        return spaces[0]
    found: dict[Group, list[Figures]] = {}
    for bucket in spaces:
        for g, f in bucket.items():
            found.setdefault(g, []).append(f)
    return {g: fs[0] if len(fs) == 1 else total(fs) for g, fs in found.items()}


def buckets(
    client: SyncClient, keys: Keys | Sequence[Keys], step_ms: int, indexes: list[int], now: int
) -> list[dict[Group, Figures]]:
    """The figures of the minute (step MINUTE_MS) or hour buckets `indexes`, oldest
    first, closed ones through their seals (fleetd.analytics.sealed), summed over the
    key spaces `keys` (one Keys: the namespace's alone)."""
    got = sealed.read_spaces(client, _spaces(keys), step_ms, indexes, now, _encode)
    decoded = [[_decode(b.groups, None) for b in space] for space in got]
    return [merge(one) for one in zip(*decoded, strict=True)]


def _hours(window: Window, starts: list[int]) -> list[int]:
    return sorted({s // HOUR_MS for s in starts})


def read(
    client: SyncClient,
    keys: Keys | Sequence[Keys],
    window: Window,
    company: str | None = None,
) -> WindowData:
    """`window` up to Redis's now; only `company`'s groups when given ('' = the jobs of
    no company). `keys`: the namespace's key spaces (fleetd.backend.spaces), whose
    figures are summed and whose slowest attempts are merged (one Keys: that space
    alone); every space is read in the same hops as one."""
    spaces = _spaces(keys)
    sec, usec = client.time()
    now = int(sec) * 1000 + int(usec) // 1000
    last = now // window.step_ms
    indexes = list(range(last - window.steps + 1, last + 1))
    got = sealed.read_spaces(client, spaces, window.step_ms, indexes, now, _encode)
    decoded = [[_decode(b.groups, company) for b in space] for space in got]
    buckets = [merge(one) for one in zip(*decoded, strict=True)]
    starts = [i * window.step_ms for i in indexes]
    data = WindowData(window, now, starts, buckets, {})
    groups = sorted(data.groups())
    found: dict[Group, list[tuple[str, int]]] = {g: [] for g in groups}
    # The slowest of sealed hours are in their seals; the others' are read from the zsets.
    live: list[tuple[Keys, int]] = []
    for space, bs in zip(spaces, got, strict=True):
        if window.step_ms != HOUR_MS:
            live += [(space, h) for h in _hours(window, starts)]
            continue
        for i, b in zip(indexes, bs, strict=True):
            if b.slowest is None:
                live.append((space, i))
                continue
            for tail, kept in b.slowest.items():
                jtype, _, comp = tail.partition("\n")
                if (jtype, comp) in found:
                    found[(jtype, comp)] += [(str(m), int(s)) for m, s in kept]
    if groups and live:
        pipe = client.pipeline(transaction=False)
        for g in groups:
            for space, h in live:
                # The highest scores by negative ranks: ZRANGE is in the ACL of
                # docs/OPERATIONS.md, ZREVRANGE is not; sorted below.
                slow = space.analytics_slowest(h, g[1], g[0])
                pipe.zrange(slow, -SLOWEST, -1, withscores=True)
        replies = iter(pipe.execute())
        for g in groups:
            found[g] += [(_text(m), int(s)) for _h in live for m, s in next(replies)]
    for g in groups:
        data.slowest[g] = sorted(found[g], key=lambda x: -x[1])[:SLOWEST]
    return data


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def total(figures: Iterable[Figures]) -> Figures:
    out = Figures()
    for f in figures:
        out.add(f)
    return out
