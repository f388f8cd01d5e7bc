"""fleetd.config.durations: the accepted forms, every rejection, formatting and the round trip."""

from __future__ import annotations

import math
import random

import pytest

from fleetd.config.durations import DURATION_EXAMPLES, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10.0),
        ("30m", 1800.0),
        ("1h", 3600.0),
        ("1d", 86_400.0),
        ("1w", 604_800.0),
        ("1.5h", 5400.0),
        ("1h30m", 5400.0),
        ("2d12h", 216_000.0),
        ("0s", 0.0),
        ("0.5ms", 0.0005),
        ("90s", 90.0),  # a part need not be below the next unit
        ("1w2d3h4m5s6ms", 604_800 + 2 * 86_400 + 3 * 3600 + 4 * 60 + 5.006),
        ("  10s\n", 10.0),  # surrounding blanks, as pasted into a TOML string
    ],
)
def test_parse_accepts(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_parse_compound_is_exact() -> None:
    # Summed as fractions: no float drift between "1h30m15.123s" and 5415.123.
    assert parse_duration("1h30m15.123s") == 5415.123


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("-5s", "must not be negative"),
        ("-1h30m", "must not be negative"),
        ("30", "missing unit after 30"),
        ("1.5", "missing unit"),
        ("1h30", "missing unit after 30"),
        ("5x", "unknown unit 'x'"),
        ("5min", "unknown unit 'min'"),
        ("5S", "unknown unit 'S'"),
        ("1e3s", "unknown unit 'e'"),
        ("1m1h", "largest to smallest"),
        ("1h1h", "largest to smallest"),
        ("500ms1s", "largest to smallest"),
        ("9" * 400 + "w", "too large"),
    ],
)
def test_parse_rejects_with_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match="invalid duration") as info:
        parse_duration(text)
    message = str(info.value)
    assert reason in message
    assert repr(text) in message
    assert f"(use e.g. {DURATION_EXAMPLES})" in message


@pytest.mark.parametrize(
    "text",
    [
        "five minutes",
        "1h 30m",
        ".5s",
        "1.s",
        "+5s",
        "s",
        "ms",
        "inf",
        "nan",
        "10s!",
        "1,5s",
        "\u0661\u0660s",
    ],  # the last: Arabic-Indic digits "10s"
)
def test_parse_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert str(info.value) == f"invalid duration {text!r} (use e.g. {DURATION_EXAMPLES})"


def test_error_lists_every_unit() -> None:
    with pytest.raises(ValueError) as info:
        parse_duration("soon")
    for example in ("500ms", "10s", "30m", "1h", "1d", "1w"):
        assert example in str(info.value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.0, "0s"),
        (2.5, "2.5s"),
        (0.25, "250ms"),
        (0.001, "1ms"),
        (0.0005, "0.5ms"),  # under a millisecond: up to 3 decimals of ms
        (1, "1s"),
        (59.999, "59.999s"),
        (90, "1m30s"),
        (5400, "1h30m"),
        (86_400, "24h"),  # never d or w, like Go
        (604_800, "168h"),
        (2500, "41m40s"),
        (3661, "1h1m1s"),
        (3600.5, "1h0.5s"),
        (90.5, "1m30.5s"),  # a millisecond fraction is kept so it round-trips
    ],
)
def test_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (1e-7, "0s"),  # below a microsecond rounds to nothing
        (0.0012344, "1.234ms"),
        (2.00049, "2s"),  # from a second on, rounded to the millisecond
        (2.0005001, "2.001s"),
        (0.9999996, "1s"),  # rounding up crosses into seconds
        (59.9996, "1m"),  # and into minutes: never "60s"
        (3599.9999, "1h"),
        (41 * 60 + 40.0004, "41m40s"),
    ],
)
def test_format_rounds(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("bad", [-1.0, -0.001, math.inf, math.nan])
def test_format_rejects(bad: float) -> None:
    with pytest.raises(ValueError, match="cannot format duration"):
        format_duration(bad)


def test_round_trip_on_millisecond_grid() -> None:
    rng = random.Random(20_240_601)  # fixed seed: a failure reproduces
    # Every scale from milliseconds to years, plus the unit boundaries.
    values = [k / 1000 for k in (0, 1, 999, 1000, 59_999, 60_000, 3_599_999, 3_600_000)]
    for digits in range(1, 13):
        values += [rng.randrange(10**digits) / 1000 for _ in range(500)]
    for seconds in values:
        assert parse_duration(format_duration(seconds)) == seconds, seconds


@pytest.mark.parametrize("text", ["500ms", "10s", "30m", "1h", "1h30m", "2.5s", "41m40s"])
def test_format_of_parse_is_canonical(text: str) -> None:
    assert format_duration(parse_duration(text)) == text
