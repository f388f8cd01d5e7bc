"""Human durations: parse "1h30m" into seconds and format seconds back (sans-IO).

Owns the one duration syntax of fleetd, used by the config file, environment overrides,
job options and the CLI:

- `parse_duration(text)` -> float seconds. A duration is one or more `<number><unit>`
  parts, largest unit first, each unit at most once: `500ms`, `10s`, `1.5h`, `1h30m`,
  `2d12h`. Units: ms, s, m, h, d (24h), w (7d). No sign, no spaces, no bare numbers
  (is `30` seconds or minutes? the reader of a config file cannot tell).
- `format_duration(seconds)` -> the compact Go-like form without zero parts: `1m30s`,
  `1h30m`, `250ms`, `24h` (never d or w, like Go, so no calendar is implied).

Values on a millisecond grid round-trip: `parse_duration(format_duration(x)) == x`.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

__all__ = ["DURATION_EXAMPLES", "UNITS", "format_duration", "parse_duration"]

# Seconds per unit, largest first: the order parts must appear in.
UNITS: dict[str, int | Fraction] = {
    "w": 7 * 86_400,
    "d": 86_400,
    "h": 3_600,
    "m": 60,
    "s": 1,
    "ms": Fraction(1, 1_000),
}

# Quoted in every error so the reader sees all six units without opening the docs.
DURATION_EXAMPLES = "500ms, 10s, 30m, 1h, 1d, 1w"

# One part: digits with an optional fraction, then letters. The letters are read
# greedily and checked against UNITS afterwards, so "5min" is reported as the unknown
# unit 'min' rather than as garbage. [0-9], not \d: \d also matches other scripts' digits.
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)")
_WHOLE = re.compile(rf"(?:{_PART.pattern})+")
_UNIT_RANK = {unit: rank for rank, unit in enumerate(UNITS)}

_MS_PER_HOUR = 3_600_000
_MS_PER_MINUTE = 60_000
_US_PER_SECOND = 1_000_000


def _invalid(text: str, reason: str = "") -> ValueError:
    detail = f": {reason}" if reason else ""
    return ValueError(f"invalid duration {text!r}{detail} (use e.g. {DURATION_EXAMPLES})")


def parse_duration(text: str) -> float:
    """Seconds in `text`; raises ValueError quoting `text` and the accepted units."""
    stripped = text.strip()
    if not stripped:
        raise _invalid(text, "empty")
    if stripped.startswith("-"):
        raise _invalid(text, "must not be negative")
    if not _WHOLE.fullmatch(stripped):
        raise _invalid(text)
    # Sum exact fractions and convert once: "1h30m15.123s" then equals 5415.123 to the
    # last bit, which a float sum of 3600.0 + 1800.0 + 15.123 does not promise.
    total = Fraction(0)
    previous_rank = -1
    for match in _PART.finditer(stripped):
        number, unit = match.groups()
        if not unit:
            raise _invalid(text, f"missing unit after {number}")
        if unit not in UNITS:
            raise _invalid(text, f"unknown unit {unit!r}")
        if _UNIT_RANK[unit] <= previous_rank:
            raise _invalid(text, "units must go from largest to smallest, each at most once")
        previous_rank = _UNIT_RANK[unit]
        total += Fraction(number) * UNITS[unit]
    try:
        return float(total)
    except OverflowError:
        raise _invalid(text, "too large") from None


def _decimal(whole: int, thousandths: int) -> str:
    """`whole.thousandths` without trailing zeros, from integers (no float noise)."""
    if not thousandths:
        return str(whole)
    return f"{whole}.{thousandths:03d}".rstrip("0")


def format_duration(seconds: float) -> str:
    """Compact form of `seconds` (>= 0): "0s", "250ms", "2.5s", "1m30s", "1h30m", "24h".

    Under a second the value is shown in ms with up to 3 decimals (microseconds); from a
    second on it is rounded to the millisecond, so whole seconds show whole ("41m40s")
    and a millisecond-grid value keeps its fraction ("1m30.5s") and round-trips.
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot format duration {seconds!r}: must be finite and >= 0")
    micros = round(seconds * _US_PER_SECOND)
    if micros == 0:
        return "0s"
    if micros < _US_PER_SECOND:
        return _decimal(*divmod(micros, 1_000)) + "ms"
    millis = round(seconds * 1_000)
    hours, rest = divmod(millis, _MS_PER_HOUR)
    minutes, rest = divmod(rest, _MS_PER_MINUTE)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    if rest:
        parts.append(_decimal(*divmod(rest, 1_000)) + "s")
    return "".join(parts)
