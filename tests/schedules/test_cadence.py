"""fleetd.schedules.cadence: schedule formats, run times across DST changes, misfire planning.

The DST expectations are Debian cron's: a fixed time in the spring-forward gap fires
once right after the gap, a fixed time in the repeated autumn hour fires once (the
first time); hourly-type schedules (hour field `*`) fire at every real instant whose
wall time matches; intervals count real time. Besides hand-checked transition days in
Europe/Berlin, America/New_York and America/Havana (where midnight itself is skipped
and repeated), a brute-force oracle walks real time minute by minute and says which
instants must fire; hypothesis compares it with next_after around the DST changes of
zones with 1 h, 30 min and 45-minute offsets.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fleetd.jobs.model import ValidationError
from fleetd.schedules.cadence import (
    MISSED_COUNT_CAP,
    Cadence,
    MisfirePolicy,
    from_ms,
    next_run,
    plan_firing,
    to_ms,
)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def runs(expression: str, tz: str, start: str, count: int) -> list[str]:
    """`count` successive run times after `start` (UTC), as 'local wall (zone) = UTC'."""
    cadence = Cadence.parse(expression, tz)
    t, out = utc(start), []
    for _ in range(count):
        t = next_run(cadence, t)
        local = t.astimezone(cadence.tz)
        out.append(f"{local:%m-%d %H:%M}{local:%Z}={t:%H:%M}Z")
    return out


# -- formats -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "cron"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("*/15  9-17 * * mon-fri", "*/15 9-17 * * mon-fri"),
    ],
)
def test_wall_clock_formats(expression: str, cron: str) -> None:
    assert Cadence.parse(expression).cron == cron


@pytest.mark.parametrize(
    ("expression", "ms"),
    [("10s", 10_000), ("30m", 1_800_000), ("1h", 3_600_000), ("1d", 86_400_000),
     ("1w", 604_800_000), ("1h30m", 5_400_000), ("1.5s", 1500)],
)  # fmt: skip
def test_intervals(expression: str, ms: int) -> None:
    assert Cadence.parse(expression).interval_ms == ms


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", "minute field '61': 61 is out of range 0-59"),
        ("0 24 * * *", "hour field '24': 24 is out of range 0-23"),
        ("0 0 0 * *", "day-of-month field '0': 0 is out of range 1-31"),
        ("0 0 * 13 *", "month field '13': 13 is out of range 1-12"),
        ("0 0 * * 8", "day-of-week field '8': 8 is out of range 0-7"),
        ("*/0 * * * *", "minute field '*/0': the step must be a number of at least 1"),
        ("0 0 30 2 *", "never fires"),
        ("* * * *", "a cron expression has 5 fields"),
        ("0 0 * * * *", "a cron expression has 5 fields"),
        ("@reboot", "@reboot is not supported"),
        ("@often", "unknown predefined schedule '@often'"),
        ("0s", "interval '0s' is shorter than 1s"),
        ("500ms", "interval '500ms' is shorter than 1s"),
        ("5", "missing unit after 5"),
        ("5min", "unknown unit 'min'"),
        ("", "is required"),
        ("fish * * * *", "not a valid cron expression"),
    ],
)
def test_clear_errors(expression: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        Cadence.parse(expression)
    assert info.value.field == "schedule"
    assert message in info.value.message


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", "Europe/", "../etc/passwd"])
def test_unknown_time_zone(zone: str) -> None:
    with pytest.raises(ValidationError) as info:
        Cadence.parse("@daily", zone)
    assert info.value.field == "timezone"


def test_next_run_needs_an_aware_datetime() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_run(Cadence.parse("@daily"), datetime(2024, 1, 1))


def test_predefined_times() -> None:
    assert runs("@weekly", "UTC", "2024-05-01T12:00", 2) == [
        "05-05 00:00UTC=00:00Z", "05-12 00:00UTC=00:00Z",  # Sundays
    ]  # fmt: skip
    assert runs("@monthly", "Europe/Berlin", "2024-01-15T00:00", 2) == [
        "02-01 00:00CET=23:00Z", "03-01 00:00CET=23:00Z",
    ]  # fmt: skip
    assert runs("@yearly", "America/New_York", "2024-06-01T00:00", 1) == ["01-01 00:00EST=05:00Z"]


def test_interval_counts_from_its_anchor_in_real_time() -> None:
    anchor = to_ms(utc("2024-01-01T10:07:13.250"))
    c = Cadence.parse("30m", "Europe/Berlin", anchor)
    assert from_ms(c.next_after_ms(anchor)) == utc("2024-01-01T10:37:13.250")
    assert from_ms(c.next_after_ms(anchor + 1)) == utc("2024-01-01T10:37:13.250")
    # Exactly on an occurrence: the next one, strictly after.
    assert from_ms(c.next_after_ms(anchor + 1_800_000)) == utc("2024-01-01T11:07:13.250")
    assert c.next_after_ms(anchor - 1) == anchor


# -- DST: Europe/Berlin (02:00 → 03:00 on 2024-03-31, 03:00 → 02:00 on 2024-10-27) -----


def test_berlin_fixed_time_in_the_gap_fires_once_right_after_it() -> None:
    assert runs("30 2 * * *", "Europe/Berlin", "2024-03-29T12:00", 4) == [
        "03-30 02:30CET=01:30Z",
        "03-31 03:00CEST=01:00Z",  # 02:30 does not exist: at the end of the gap
        "04-01 02:30CEST=00:30Z",
        "04-02 02:30CEST=00:30Z",
    ]
    # Several fixed times inside the gap still fire once.
    assert runs("0,15,30,45 2 * * *", "Europe/Berlin", "2024-03-30T12:00", 2) == [
        "03-31 03:00CEST=01:00Z", "04-01 02:00CEST=00:00Z",
    ]  # fmt: skip


def test_berlin_fixed_time_in_the_repeated_hour_fires_once() -> None:
    assert runs("30 2 * * *", "Europe/Berlin", "2024-10-25T12:00", 3) == [
        "10-26 02:30CEST=00:30Z",
        "10-27 02:30CEST=00:30Z",  # not again at 02:30 CET (01:30Z)
        "10-28 02:30CET=01:30Z",
    ]
    # Asked from inside the repeat (02:40 CET, the second pass): no second 02:30.
    assert runs("30 2 * * *", "Europe/Berlin", "2024-10-27T01:40", 1) == ["10-28 02:30CET=01:30Z"]


def test_berlin_hourly_follows_the_clock_through_both_changes() -> None:
    assert runs("@hourly", "Europe/Berlin", "2024-03-30T23:30", 4) == [
        "03-31 01:00CET=00:00Z", "03-31 03:00CEST=01:00Z", "03-31 04:00CEST=02:00Z",
        "03-31 05:00CEST=03:00Z",
    ]  # fmt: skip
    assert runs("@hourly", "Europe/Berlin", "2024-10-26T22:30", 4) == [
        "10-27 01:00CEST=23:00Z", "10-27 02:00CEST=00:00Z", "10-27 02:00CET=01:00Z",
        "10-27 03:00CET=02:00Z",
    ]  # fmt: skip
    # Every 20 minutes through the repeated hour: both passes, one real hour apart.
    assert runs("*/20 * * * *", "Europe/Berlin", "2024-10-27T00:30", 6) == [
        "10-27 02:40CEST=00:40Z", "10-27 02:00CET=01:00Z", "10-27 02:20CET=01:20Z",
        "10-27 02:40CET=01:40Z", "10-27 03:00CET=02:00Z", "10-27 03:20CET=02:20Z",
    ]  # fmt: skip


def test_berlin_intervals_count_real_time() -> None:
    anchor = to_ms(utc("2024-03-30T22:00"))
    hourly = Cadence.parse("1h", "Europe/Berlin", anchor)
    t, gaps = anchor, []
    for _ in range(6):
        nxt = hourly.next_after_ms(t)
        gaps.append(nxt - t)
        t = nxt
    assert gaps == [3_600_000] * 6
    daily = Cadence.parse("1d", "Europe/Berlin", to_ms(utc("2024-10-26T10:00")))
    first = from_ms(daily.next_after_ms(daily.anchor_ms))
    assert first == utc("2024-10-27T10:00")  # 24 real hours: 11:00 CET, not 12:00
    assert first.astimezone(daily.tz).hour == 11


def test_berlin_daily_is_local_midnight_23_and_25_hours_apart() -> None:
    assert runs("@daily", "Europe/Berlin", "2024-03-30T12:00", 2) == [
        "03-31 00:00CET=23:00Z", "04-01 00:00CEST=22:00Z",
    ]  # fmt: skip
    assert runs("@daily", "Europe/Berlin", "2024-10-26T12:00", 2) == [
        "10-27 00:00CEST=22:00Z", "10-28 00:00CET=23:00Z",
    ]  # fmt: skip


# -- DST: America/New_York (02:00 → 03:00 on 2024-03-10, 02:00 → 01:00 on 2024-11-03) --


def test_new_york_fixed_time() -> None:
    assert runs("30 2 * * *", "America/New_York", "2024-03-09T12:00", 3) == [
        "03-10 03:00EDT=07:00Z", "03-11 02:30EDT=06:30Z", "03-12 02:30EDT=06:30Z",
    ]  # fmt: skip
    assert runs("30 1 * * *", "America/New_York", "2024-11-02T12:00", 2) == [
        "11-03 01:30EDT=05:30Z", "11-04 01:30EST=06:30Z",  # once, not at 01:30 EST too
    ]  # fmt: skip


def test_new_york_hourly() -> None:
    assert runs("0 * * * *", "America/New_York", "2024-03-10T05:30", 3) == [
        "03-10 01:00EST=06:00Z", "03-10 03:00EDT=07:00Z", "03-10 04:00EDT=08:00Z",
    ]  # fmt: skip
    assert runs("30 * * * *", "America/New_York", "2024-11-03T04:00", 4) == [
        "11-03 00:30EDT=04:30Z", "11-03 01:30EDT=05:30Z", "11-03 01:30EST=06:30Z",
        "11-03 02:30EST=07:30Z",
    ]  # fmt: skip


def test_new_york_interval() -> None:
    c = Cadence.parse("90m", "America/New_York", to_ms(utc("2024-11-03T04:00")))
    times = [c.anchor_ms]
    for _ in range(4):
        times.append(c.next_after_ms(times[-1]))
    assert [b - a for a, b in itertools.pairwise(times)] == [5_400_000] * 4


def test_midnight_itself_skipped_and_repeated_havana() -> None:
    # Havana jumps 00:00 → 01:00 on 2024-03-10 and 01:00 → 00:00 on 2024-11-03.
    assert runs("@daily", "America/Havana", "2024-03-09T12:00", 3) == [
        "03-10 01:00CDT=05:00Z", "03-11 00:00CDT=04:00Z", "03-12 00:00CDT=04:00Z",
    ]  # fmt: skip
    assert runs("@daily", "America/Havana", "2024-11-02T12:00", 2) == [
        "11-03 00:00CDT=04:00Z", "11-04 00:00CST=05:00Z",
    ]  # fmt: skip


# -- property tests ------------------------------------------------------------------

ZONES = [
    "UTC", "Europe/Berlin", "America/New_York", "America/Havana", "Australia/Lord_Howe",
    "Pacific/Chatham", "America/St_Johns", "America/Santiago", "Asia/Kolkata",
]  # fmt: skip


@cache
def transitions(zone: str) -> list[datetime]:
    """The instants (UTC) at which `zone` changed its offset in 2024 and 2025."""
    tz, out = ZoneInfo(zone), []
    t = datetime(2024, 1, 1, tzinfo=UTC)
    previous = t.astimezone(tz).utcoffset()
    while t < datetime(2026, 1, 1, tzinfo=UTC):
        t += timedelta(minutes=15)
        offset = t.astimezone(tz).utcoffset()
        if offset != previous:
            out.append(t)
            previous = offset
    return out


# Biased towards what DST changes touch: the hours around 00:00-03:00 local and every
# day, so that most examples cross a gap or a repeat with a matching schedule.
minute_field = st.one_of(
    st.integers(0, 59).map(str),
    st.sampled_from(["0", "30", "*/15", "*/20", "*/30", "0,30", "15,45", "5-10", "50-59/3"]),
)
hour_field = st.one_of(
    st.sampled_from(["*", "*", "0", "1", "2", "3", "1,2", "0-3", "*/2", "2-3", "*/6"]),
    st.integers(0, 23).map(str),
)
day_field = st.one_of(st.just("*"), st.just("*"), st.integers(1, 28).map(str))
dow_field = st.one_of(st.just("*"), st.just("*"), st.integers(0, 7).map(str), st.just("mon-fri"))
crons = st.builds(
    lambda m, h, d, w: f"{m} {h} {d} * {w}", minute_field, hour_field, day_field, dow_field
)
intervals = st.sampled_from(["1s", "7s", "10m", "45m", "1h", "90m", "1d", "1w"])
predefined = st.sampled_from(["@hourly", "@daily", "@weekly", "@monthly", "@yearly"])


@st.composite
def starts(draw: st.DrawFn, zone: str) -> datetime:
    """An instant near one of the zone's DST changes (or anywhere, for UTC)."""
    near = transitions(zone) or [datetime(2024, 6, 1, tzinfo=UTC)]
    base = draw(st.sampled_from(near))
    seconds = draw(st.integers(-36 * 3600, 36 * 3600))
    return base + timedelta(seconds=seconds, milliseconds=draw(st.integers(0, 999)))


@st.composite
def cadences(draw: st.DrawFn) -> tuple[Cadence, datetime]:
    zone = draw(st.sampled_from(ZONES))
    start = draw(starts(zone))
    expression = draw(st.one_of(crons, intervals, predefined))
    anchor = to_ms(start) - draw(st.integers(0, 10**9))
    return Cadence.parse(expression, zone, anchor), start


@settings(max_examples=200, deadline=None, database=None)
@given(cadences())
def test_successive_run_times_strictly_increase(case: tuple[Cadence, datetime]) -> None:
    cadence, t = case
    for _ in range(25):
        following = next_run(cadence, t)
        assert following > t, (cadence.expression, cadence.timezone, t)
        # Nothing lies between t and following: asking from just before it finds it.
        assert next_run(cadence, following - timedelta(milliseconds=1)) == following
        t = following


def _matcher(cron: str) -> Callable[[datetime], bool]:
    minute, hour, dom, month, dow = croniter(cron).expanded

    def allowed(values: Sequence[object], value: int) -> bool:
        return values == ["*"] or value in values

    day_restricted = dom != ["*"] and dow != ["*"]

    def match(wall: datetime) -> bool:
        if not (allowed(minute, wall.minute) and allowed(hour, wall.hour)):
            return False
        if not allowed(month, wall.month):
            return False
        cron_dow = (wall.weekday() + 1) % 7
        in_dom, in_dow = allowed(dom, wall.day), allowed(dow, cron_dow)
        # Vixie cron (and croniter): both day fields restricted means either matches.
        return (in_dom or in_dow) if day_restricted else (in_dom and in_dow)

    return match


def oracle(cadence: Cadence, start: datetime, end: datetime) -> list[datetime]:
    """The fire instants in (start, end) by the rules, walking real time by the minute."""
    assert cadence.cron is not None
    match = _matcher(cadence.cron)
    tz, fires = cadence.tz, set()
    m = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while m < end:
        local = m.astimezone(tz)
        wall = local.replace(tzinfo=None)
        if match(wall) and (cadence.hourly or local.fold == 0):
            fires.add(m)
        before = (m - timedelta(minutes=1)).astimezone(tz)
        jump = local.utcoffset() - before.utcoffset()  # type: ignore[operator]
        if jump > timedelta(0) and not cadence.hourly:
            # Spring forward at m: the wall minutes [before + 1 min, local) never happen;
            # a fixed-time schedule matching one of them fires at m.
            gap = before.replace(tzinfo=None) + timedelta(minutes=1)
            while gap < wall:
                if match(gap):
                    fires.add(m)
                gap += timedelta(minutes=1)
        m += timedelta(minutes=1)
    return sorted(fires)


DST_ZONES = [z for z in ZONES if transitions(z)]


@st.composite
def windows(draw: st.DrawFn) -> tuple[str, datetime]:
    """A zone with DST and the start of a 30 h window that holds one of its changes."""
    zone = draw(st.sampled_from(DST_ZONES))
    change = draw(st.sampled_from(transitions(zone)))
    return zone, change - timedelta(seconds=draw(st.integers(60, 28 * 3600)))


@settings(max_examples=250, deadline=None, database=None)
@given(windows(), st.one_of(crons, predefined))
@example(("Europe/Berlin", utc("2024-10-26T20:00")), "30 2 * * *")
@example(("Europe/Berlin", utc("2024-03-30T20:00")), "30 * * * *")
@example(("Australia/Lord_Howe", utc("2024-10-05T10:00")), "0 * * * *")
@example(("America/Havana", utc("2024-11-02T12:00")), "*/20 0 * * *")
def test_run_times_equal_the_minute_by_minute_oracle(
    zone_start: tuple[str, datetime], expression: str
) -> None:
    zone, start = zone_start
    cadence = Cadence.parse(expression, zone)
    end = start + timedelta(hours=30)
    got, t = [], start
    while (t := next_run(cadence, t)) < end:
        got.append(t)
    assert got == oracle(cadence, start, end), (expression, zone, start.isoformat())


# -- misfire planning ----------------------------------------------------------------

GRACE = 60_000


def test_on_time_and_late_within_the_grace_fire_that_occurrence() -> None:
    c = Cadence.parse("10s", "UTC", 0)
    f = plan_firing(c, 100_000, 100_003, GRACE, MisfirePolicy.SKIP)
    assert (f.action, f.occurrence_ms, f.next_ms, f.missed) == ("fire", 100_000, 110_000, 0)
    # 35 s late (within the grace): this one fires; the next is due already and fires
    # on the next pass (catch-up), so nothing is lost to a short hiccup.
    f = plan_firing(c, 100_000, 135_000, GRACE, MisfirePolicy.SKIP)
    assert (f.action, f.occurrence_ms, f.next_ms, f.missed) == ("fire", 100_000, 110_000, 0)


@pytest.mark.parametrize(
    ("policy", "action", "occurrence", "missed"),
    [(MisfirePolicy.RUN_ONCE, "fire", 290_000, 19), (MisfirePolicy.SKIP, "skip", None, 20)],
)
def test_misfire_beyond_the_grace(
    policy: MisfirePolicy, action: str, occurrence: int | None, missed: int
) -> None:
    c = Cadence.parse("10s", "UTC", 0)
    # Due at 100 s, seen at 295 s: 100, 110, … 290 are 20 missed occurrences.
    f = plan_firing(c, 100_000, 295_000, GRACE, policy)
    assert (f.action, f.occurrence_ms, f.next_ms, f.missed) == (action, occurrence, 300_000, missed)


def test_misfire_of_a_cron_schedule_counts_wall_clock_occurrences() -> None:
    c = Cadence.parse("@hourly", "Europe/Berlin")
    due = to_ms(utc("2024-10-26T22:00"))  # 00:00 CEST; then 01, 02 CEST, 02 CET, 03 CET
    now = to_ms(utc("2024-10-27T02:30"))
    f = plan_firing(c, due, now, GRACE, MisfirePolicy.RUN_ONCE)
    assert f.missed == 4 and from_ms(f.occurrence_ms or 0) == utc("2024-10-27T02:00")
    assert from_ms(f.next_ms) == utc("2024-10-27T03:00")


def test_a_huge_misfire_is_counted_up_to_a_cap_and_still_lands_on_the_latest() -> None:
    c = Cadence.parse("* * * * *", "UTC")
    due = to_ms(utc("2024-01-01T00:00"))
    now = to_ms(utc("2024-01-20T12:34:56"))
    f = plan_firing(c, due, now, GRACE, MisfirePolicy.RUN_ONCE)
    assert f.missed == MISSED_COUNT_CAP - 1
    assert from_ms(f.occurrence_ms or 0) == utc("2024-01-20T12:34")
    assert from_ms(f.next_ms) == utc("2024-01-20T12:35")
