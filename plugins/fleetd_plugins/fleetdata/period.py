"""Date ranges of reports and exports: ISO dates, both ends included, in UTC.

Owns the JSON Schema of `start_date`/`end_date`, the checks a schema cannot express
(start ≤ end, a bounded span, both or neither, each date from FIRST_DATE to LAST_DATE)
as enqueue-time `ValidationError`s naming the field, and the timestamps a query
compares with (`start_ts` inclusive, `end_ts` exclusive: midnight after the end date).
A report without dates covers the previous calendar month of the day its job was
created (what the monthly default schedule wants, the same on every retry). Pure logic, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fleetd import FieldError, ValidationError

__all__ = ["DATE", "Period", "parse_period", "previous_month"]

DATE: dict[str, Any] = {"type": "string", "format": "date"}
# The dates a period may name. The job's own times end before 9000-01-01 (fleetd's
# MAX_TIME); a date near 9999-12-31 passes the schema but raises at run time (the end
# timestamp is the midnight after the end date) and would be retried in vain. Fleet
# data starts long after 1970.
FIRST_DATE = date(1970, 1, 1)
LAST_DATE = date(8999, 12, 31)


@dataclass(frozen=True, slots=True)
class Period:
    start: date | None  # None: open-ended (exports only)
    end: date | None

    @property
    def start_ts(self) -> str | None:
        return None if self.start is None else f"{self.start.isoformat()}T00:00:00Z"

    @property
    def end_ts(self) -> str | None:
        """Exclusive: the midnight after the end date."""
        return (
            None if self.end is None else f"{(self.end + timedelta(days=1)).isoformat()}T00:00:00Z"
        )

    @property
    def days(self) -> int:
        assert self.start is not None and self.end is not None
        return (self.end - self.start).days + 1

    def to_dict(self) -> dict[str, str | None]:
        return {
            "start_date": None if self.start is None else self.start.isoformat(),
            "end_date": None if self.end is None else self.end.isoformat(),
        }

    def label(self) -> str:
        """For file names: 2024-01-01_2024-01-31, or "all" with neither end."""
        if self.start is None and self.end is None:
            return "all"
        return f"{self.start or 'start'}_{self.end or 'end'}"


def previous_month(created_at_ms: int) -> Period:
    today = datetime.fromtimestamp(created_at_ms / 1000, UTC).date()
    end = today.replace(day=1) - timedelta(days=1)
    return Period(end.replace(day=1), end)


def parse_period(
    data: dict[str, Any], *, both_or_neither: bool, max_days: int | None = None
) -> Period:
    """The period of validated data (the schema already checked each date's format);
    raises ValidationError naming the field."""
    start_text, end_text = data.get("start_date"), data.get("end_date")
    start = None if start_text is None else date.fromisoformat(start_text)
    end = None if end_text is None else date.fromisoformat(end_text)
    errors: list[FieldError] = [
        FieldError(f"data.{name}", f"must be from {FIRST_DATE} to {LAST_DATE}")
        for name, day in (("start_date", start), ("end_date", end))
        if day is not None and not FIRST_DATE <= day <= LAST_DATE
    ]
    if errors:
        raise ValidationError.of(errors)
    if both_or_neither and (start is None) != (end is None):
        missing = "data.start_date" if start is None else "data.end_date"
        other = "end_date" if start is None else "start_date"
        errors.append(FieldError(missing, f"is required with {other} (give both or neither)"))
    if start is not None and end is not None:
        if end < start:
            errors.append(FieldError("data.end_date", f"must not be before start_date ({start})"))
        elif max_days is not None and (end - start).days + 1 > max_days:
            errors.append(
                FieldError(
                    "data.end_date",
                    f"the range covers {(end - start).days + 1} days; at most {max_days} "
                    "([data] report_max_days)",
                )
            )
    if errors:
        raise ValidationError.of(errors)
    return Period(start, end)
