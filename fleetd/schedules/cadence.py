"""When a schedule fires: parsing schedule expressions and computing run times (sans-IO).

Owns the three schedule formats and their time arithmetic, with no I/O and no clock of
its own (callers pass "now", which is Redis time):

- predefined: `@hourly`, `@daily` (`@midnight`), `@weekly` (Sunday), `@monthly` (the
  1st), `@yearly` (`@annually`), all at minute 0 of hour 0 in the schedule's time zone;
- intervals: a duration of at least one second (`10s`, `30m`, `1h`, `1d`, `1w`,
  `1h30m`), counted in real elapsed time from an anchor (the time the schedule got its
  current expression): occurrences are anchor + k·interval, whatever the time zone;
- cron: five fields (minute hour day-of-month month day-of-week), croniter's syntax.

Wall-clock schedules (predefined and cron) follow the schedule's IANA time zone, with
Debian cron's convention around daylight-saving changes:

- A fixed-time schedule (its hour field names hours: `30 2 * * *`, `0 */6 * * *`,
  `@daily`) fires once for a wall time that does not exist (the spring-forward gap):
  at the first instant after the gap (02:30 in Berlin's gap fires at 03:00 CEST). For
  a wall time that happens twice (the autumn repeat) it fires once, at the first.
- An hourly-type schedule (hour field `*`: `@hourly`, `*/15 * * * *`) fires at every
  real instant whose wall time matches: in the repeated hour it fires in both passes
  (they are an hour of real time apart), wall times in the gap never happen so nothing
  is skipped, and no real instant ever fires twice.

Misfires: `plan_firing` decides, for a due occurrence seen at `now`, whether to fire
it (late by at most the grace), or — when it is older than that (every scheduler was
down or Redis was unreachable) — to fire once for the latest missed occurrence
(`run_once`) or none (`skip`); both continue with the first occurrence after now.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property, lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, CroniterError, croniter

from fleetd.config.durations import parse_duration
from fleetd.jobs.fields import MAX_DURATION, shown, text_problem
from fleetd.jobs.model import ValidationError
from fleetd.schedules.timezones import load_timezone

__all__ = [
    "PREDEFINED",
    "Cadence",
    "Firing",
    "MisfirePolicy",
    "from_ms",
    "load_timezone",
    "next_run",
    "plan_firing",
    "to_ms",
]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

PREDEFINED = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Field names and numeric ranges, for error messages that say which field is wrong.
_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
)
# Shortest interval: the scheduler's precision is milliseconds, but a schedule firing
# more often than once a second is a queue, not a schedule.
MIN_INTERVAL_MS = 1000
# Longest interval: fleetd.jobs.fields.MAX_DURATION (ten years), so that the next run
# of any schedule stays a time that datetimes, Redis scores and RFC 3339 can hold.
MAX_INTERVAL_MS = MAX_DURATION * 1000
# Longest expression: five cron fields listing every minute, hour, day and month
# ("0,1,…,59 0,1,…,23 …") take ~330 characters; 400 leaves room for ranges and steps.
MAX_EXPRESSION_LENGTH = 400
# Wall times examined in one next-run search before giving up. A search visits a few
# matching wall times (a few dozen around a DST change for "* * * * *"); croniter
# itself jumps straight to the next match, so even `0 0 29 2 *` takes one step.
_MAX_STEPS = 10_000
# Occurrences a misfire counts one by one before it stops counting (a cron schedule
# every minute with the scheduler down for a week is 10 080 of them, ~1 s of work).
MISSED_COUNT_CAP = 10_000
# Parsed expressions kept (by expression and time zone): parsing and checking a cron
# expression costs ~0.2 ms, and most schedules share a handful of expressions.
PARSE_CACHE = 4096


class MisfirePolicy(enum.StrEnum):
    """What a schedule does about occurrences missed by more than the grace period."""

    RUN_ONCE = "run_once"
    SKIP = "skip"

    def __str__(self) -> str:
        return self.value


def to_ms(dt: datetime) -> int:
    """An aware datetime → milliseconds since the epoch (integer arithmetic, exact)."""
    return (dt - _EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    """Milliseconds since the epoch → an aware UTC datetime."""
    return _EPOCH + timedelta(milliseconds=ms)


def _cron_error(expression: str, fields: list[str]) -> str:
    """The first field that is out of range or malformed, named; or a generic hint."""
    for (name, low, high), text in zip(_FIELDS, fields, strict=True):
        for item in text.split(","):
            base, _, step = item.partition("/")
            if step and (not step.isdigit() or int(step) == 0):
                return f"{name} field {text!r}: the step must be a number of at least 1"
            for number in re.findall(r"[0-9]+", base.split("#")[0]):
                if not low <= int(number) <= high:
                    return f"{name} field {text!r}: {number} is out of range {low}-{high}"
    return "not a valid cron expression (fields: minute hour day-of-month month day-of-week)"


@dataclass(frozen=True, slots=True)
class Firing:
    """What to do about a due occurrence (see plan_firing)."""

    action: Literal["fire", "skip"]
    occurrence_ms: int | None  # the occurrence the job is for (None when skipped)
    next_ms: int  # the schedule's next due time
    missed: int  # occurrences not run (counted in the schedule's `missed`)


@dataclass(frozen=True)
class Cadence:
    """A validated schedule expression in a time zone; `anchor_ms` places intervals."""

    expression: str
    tz: ZoneInfo
    cron: str | None = None
    interval_ms: int | None = None
    anchor_ms: int = 0

    @classmethod
    def parse(cls, expression: str, timezone: str = "UTC", anchor_ms: int = 0) -> Cadence:
        """Validate `expression` (predefined, interval or cron) in `timezone`; raises
        ValidationError with field "schedule" or "timezone"."""
        if not isinstance(timezone, str):
            load_timezone(timezone)  # raises
        if not isinstance(expression, str) or not expression.strip():
            raise ValidationError("schedule", "is required (e.g. @daily, 30m, '0 9 * * 1-5')")
        if problem := text_problem(expression, MAX_EXPRESSION_LENGTH, line=False):
            raise ValidationError("schedule", problem)
        cadence = _parse(" ".join(expression.split()), timezone)
        if cadence.interval_ms is None or cadence.anchor_ms == anchor_ms:
            return cadence
        return dataclasses.replace(cadence, anchor_ms=anchor_ms)

    @classmethod
    def _parse(cls, text: str, timezone: str) -> Cadence:
        tz = load_timezone(timezone)
        if text.startswith("@"):
            if text == "@reboot":
                raise ValidationError(
                    "schedule", "@reboot is not supported: schedules fire at times, not at start"
                )
            if text not in PREDEFINED:
                raise ValidationError(
                    "schedule",
                    f"unknown predefined schedule {text!r} "
                    "(use @hourly, @daily, @weekly, @monthly or @yearly)",
                )
            return cls(text, tz, cron=PREDEFINED[text])
        if " " not in text:
            return cls._interval(text, tz)
        fields = text.split(" ")
        if len(fields) != len(_FIELDS):
            raise ValidationError(
                "schedule",
                f"a cron expression has 5 fields (minute hour day-of-month month "
                f"day-of-week), {text!r} has {len(fields)}",
            )
        try:
            croniter(text, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
        except CroniterBadDateError:
            raise ValidationError("schedule", f"{text!r} never fires (no such date)") from None
        except (CroniterError, ValueError, KeyError):
            raise ValidationError("schedule", f"{text!r}: {_cron_error(text, fields)}") from None
        return cls(text, tz, cron=text)

    @classmethod
    def _interval(cls, text: str, tz: ZoneInfo) -> Cadence:
        if len(text) > MAX_EXPRESSION_LENGTH:
            raise ValidationError("schedule", f"is not a schedule: {shown(text)}")
        try:
            seconds = parse_duration(text)
        except ValueError as exc:
            raise ValidationError(
                "schedule",
                f"{exc}; a schedule is @hourly/@daily/@weekly/@monthly/@yearly, an interval "
                "such as 30m, or a 5-field cron expression",
            ) from None
        interval_ms = round(seconds * 1000)
        if interval_ms < MIN_INTERVAL_MS:
            raise ValidationError("schedule", f"interval {text!r} is shorter than 1s")
        if interval_ms > MAX_INTERVAL_MS:
            raise ValidationError("schedule", f"interval {text!r} is longer than 10 years")
        return cls(text, tz, interval_ms=interval_ms)

    @cached_property
    def _walker(self) -> tuple[croniter, threading.Lock]:
        """One croniter per expression (building one costs ~0.1 ms), reset for each
        search under a lock: a cached Cadence may be used by several threads."""
        assert self.cron is not None
        return croniter(self.cron, datetime(2000, 1, 1, tzinfo=UTC)), threading.Lock()

    @cached_property
    def hourly(self) -> bool:
        """Hourly-type (hour field matches every hour): follows the wall clock through
        DST changes instead of the fixed-time gap and repeat rules."""
        return self.cron is not None and self._walker[0].expanded[1] == ["*"]

    @property
    def timezone(self) -> str:
        return self.tz.key

    # -- next run ----------------------------------------------------------------------

    def next_after_ms(self, after_ms: int) -> int:
        """The first occurrence strictly after `after_ms` (ms since the epoch)."""
        if self.interval_ms is not None:
            k = (after_ms - self.anchor_ms) // self.interval_ms + 1
            return self.anchor_ms + k * self.interval_ms
        return to_ms(self._cron_next(from_ms(after_ms)))

    def next_after(self, after: datetime) -> datetime:
        """The first occurrence strictly after the aware datetime `after` (in UTC)."""
        if after.tzinfo is None:
            raise ValueError("next_after needs an aware datetime")
        return from_ms(self.next_after_ms(to_ms(after)))

    def _instants(self, wall: datetime) -> list[datetime]:
        """The real instants (UTC) at which the naive wall time `wall` fires."""
        first = wall.replace(tzinfo=self.tz, fold=0).astimezone(UTC)
        second = wall.replace(tzinfo=self.tz, fold=1).astimezone(UTC)
        if first == second:
            return [first]
        if first < second:  # the repeated (autumn) hour: `wall` happens twice
            return [first, second] if self.hourly else [first]
        # The gap (spring forward): `wall` never happens. PEP 495 maps it with the
        # offset before the change (fold 0, later) and after it (fold 1, earlier); the
        # change itself lies between the two.
        return [] if self.hourly else [self._gap_end(second, first)]

    def _gap_end(self, before: datetime, after: datetime) -> datetime:
        """The instant the clocks jumped, found by bisection to the second between an
        instant with the old offset and one with the new."""
        lo, hi = int(before.timestamp()), int(after.timestamp())
        new_offset = after.astimezone(self.tz).utcoffset()
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if datetime.fromtimestamp(mid, self.tz).utcoffset() == new_offset:
                hi = mid
            else:
                lo = mid
        return datetime.fromtimestamp(hi, UTC)

    def _cron_next(self, after: datetime) -> datetime:
        assert self.cron is not None
        local = after.astimezone(self.tz)
        wall = local.replace(tzinfo=None, fold=0)
        start = wall
        # Inside a repeated hour, earlier wall times have a second instant later than
        # `after`: start the search one repeat-length earlier.
        first = wall.replace(tzinfo=self.tz, fold=0).astimezone(UTC)
        second = wall.replace(tzinfo=self.tz, fold=1).astimezone(UTC)
        if second > first:
            start = wall - (second - first)
        walker, lock = self._walker
        with lock:
            return self._search(walker, start, after)

    def _search(self, walker: croniter, start: datetime, after: datetime) -> datetime:
        # Naive wall times walked as if they were UTC: croniter then does plain
        # calendar arithmetic, with no DST of its own (its DST handling fires twice).
        walker.set_current(start.replace(tzinfo=UTC), force=True)
        best: datetime | None = None
        for _ in range(_MAX_STEPS):
            candidate = walker.get_next(datetime).replace(tzinfo=None)
            instants = self._instants(candidate)
            for instant in instants:
                if instant > after and (best is None or instant < best):
                    best = instant
            # First instants never decrease along wall time and second ones fall
            # between the repeated hour and the wall times after it, so once a wall
            # time's first instant is past `after`, nothing later can beat `best`.
            if instants and instants[0] > after:
                assert best is not None
                return best
        raise RuntimeError(f"no run time found for {self.cron!r} after {after.isoformat()}")

    # -- misfires ----------------------------------------------------------------------

    def until(self, due_ms: int, now_ms: int) -> tuple[int, int, int]:
        """For the occurrences in [due_ms, now_ms] (due_ms one of them): (how many, the
        latest, the first after now_ms). Counted one by one up to MISSED_COUNT_CAP."""
        if self.interval_ms is not None:
            count = (now_ms - due_ms) // self.interval_ms + 1
            latest = due_ms + (count - 1) * self.interval_ms
            return count, latest, latest + self.interval_ms
        count, latest = 1, due_ms
        following = self.next_after_ms(due_ms)
        while following <= now_ms and count < MISSED_COUNT_CAP:
            count, latest = count + 1, following
            following = self.next_after_ms(following)
        if following <= now_ms:  # too many to count: jump to the end
            following = self.next_after_ms(now_ms)
            latest = self._latest_before(following, now_ms)
        return count, latest, following

    def _latest_before(self, following: int, now_ms: int) -> int:
        """The last occurrence at or before now_ms, searching back in growing steps."""
        step = 3_600_000
        while True:
            probe = self.next_after_ms(now_ms - step)
            if probe <= now_ms:
                latest = probe
                while (nxt := self.next_after_ms(latest)) < following:
                    latest = nxt
                return latest
            step *= 4


@lru_cache(maxsize=PARSE_CACHE)
def _parse(text: str, timezone: str) -> Cadence:
    """Parsed once per expression and time zone (errors are not cached: they raise)."""
    return Cadence._parse(text, timezone)


def next_run(cadence: Cadence, after: datetime) -> datetime:
    """The first occurrence of `cadence` strictly after `after` (aware; UTC result)."""
    return cadence.next_after(after)


def plan_firing(
    cadence: Cadence, due_ms: int, now_ms: int, grace_ms: int, policy: MisfirePolicy
) -> Firing:
    """What to do about the occurrence due at `due_ms`, seen due at `now_ms` (Redis
    time, due_ms <= now_ms). Within the grace it fires and the schedule moves to its
    next occurrence, even if that is due already (it then fires on the next pass: a
    short hiccup catches up occurrence by occurrence). Beyond the grace every
    occurrence up to now is a misfire: run_once fires the latest of them, skip none."""
    if now_ms - due_ms <= grace_ms:
        return Firing("fire", due_ms, cadence.next_after_ms(due_ms), 0)
    count, latest, following = cadence.until(due_ms, now_ms)
    if policy is MisfirePolicy.RUN_ONCE:
        return Firing("fire", latest, following, count - 1)
    return Firing("skip", None, following, count)
