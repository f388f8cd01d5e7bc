"""Field rules shared by every request body: declared once, used by each declaration.

Owns the limits of what a caller may send (type names, tags, ids, idempotency keys,
retries), the four named priorities and how a priority or a time is read, and the
annotated pydantic types that carry these rules with their messages:
`JobTypeName`, `JobData`, `PriorityValue`, `MaxRetries`, `Timeout`, `Tags`, `RunAt`,
`OptionalId`, `IdempotencyKey`, `OptionalFlag`, `Flag`. EnqueueRequest
(fleetd.jobs.model) and ScheduleSpec (fleetd.schedules.model) are built from them; the
OpenAPI document describes what they accept (`json_schema_input_type`).

Pure logic, no I/O.
"""

from __future__ import annotations

import enum
import math
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Le, MaxLen, MinLen
from pydantic import AwareDatetime, BeforeValidator, Strict, StringConstraints

from fleetd.jobs.validation import ValidationError, explained, rule

__all__ = [
    "MAX_IDEMPOTENCY_KEY_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_PRIORITY",
    "MAX_RETRIES_LIMIT",
    "MAX_TAGS",
    "MAX_TAG_LENGTH",
    "MAX_TYPE_LENGTH",
    "MIN_PRIORITY",
    "Flag",
    "IdempotencyKey",
    "JobData",
    "JobTypeName",
    "MaxRetries",
    "OptionalFlag",
    "OptionalId",
    "Priority",
    "PriorityValue",
    "RunAt",
    "Tags",
    "Timeout",
    "parse_priority",
    "parse_ts",
]


class Priority(enum.IntEnum):
    """Named priorities of the spec; any integer from 1 to 20 is accepted too."""

    LOW = 1
    NORMAL = 5
    HIGH = 10
    CRITICAL = 20


MIN_PRIORITY = 1
MAX_PRIORITY = 20

# Caps that keep one job hash and one enqueue bounded; the HTTP layer has its own
# body limit on top. 64 tags of 128 characters cover every tagging scheme we know of.
MAX_TAGS = 64
MAX_TAG_LENGTH = 128
MAX_TYPE_LENGTH = 128
MAX_IDEMPOTENCY_KEY_LENGTH = 256
MAX_RETRIES_LIMIT = 100
# Ids are kept short enough to sit in URLs and log lines.
MAX_ID_LENGTH = 128

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_ts(text: str, field: str = "run_at") -> int:
    """ISO 8601 → milliseconds since the epoch. A time without an offset is an error:
    guessing a zone for a job's start time is how jobs run an hour off."""
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, AttributeError):
        raise ValidationError(field, f"not an ISO 8601 time: {text!r}") from None
    if dt.tzinfo is None:
        raise ValidationError(field, f"needs a UTC offset or Z: {text!r}")
    # Integer arithmetic: int(timestamp() * 1000) loses a millisecond to float rounding.
    return (dt - _EPOCH) // timedelta(milliseconds=1)


def parse_priority(value: object, field: str = "priority") -> int:
    """An integer 1–20 or one of the names low/normal/high/critical."""
    if isinstance(value, str):
        try:
            return int(Priority[value.strip().upper()])
        except KeyError:
            if value.strip().lstrip("-").isdigit():
                value = int(value.strip())
            else:
                raise ValidationError(
                    field, f"unknown priority {value!r} (use low, normal, high, critical or 1-20)"
                ) from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, "must be an integer from 1 to 20 or a priority name")
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise ValidationError(field, f"must be from {MIN_PRIORITY} to {MAX_PRIORITY}, got {value}")
    return value


def _run_at(value: object) -> int:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return (value - _EPOCH) // timedelta(milliseconds=1)
    if not isinstance(value, str):
        raise ValidationError("run_at", "must be an ISO 8601 time string")
    return parse_ts(value)


def _timeout(value: object) -> float:
    if isinstance(value, str):
        from fleetd.config.durations import parse_duration

        try:
            value = parse_duration(value)
        except ValueError as exc:
            raise ValidationError("timeout", str(exc)) from None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValidationError("timeout", "must be a positive duration such as 30s or 5m")
    return float(value)


def _data(value: object) -> dict[str, Any]:
    # Checked, not copied: a job's data may be large, and the handler's schema walks it.
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError("data", "must be a JSON object")
    return value


def _blank_is_none(value: object) -> object:
    return None if value == "" else value


def _none_is_empty(value: object) -> object:
    return () if value is None else value


def _none_is_false(value: object) -> object:
    return False if value is None else value


_PRIORITY_NAMES = tuple(p.name.lower() for p in Priority)

# A job type as sent; surrounding blanks are dropped.
JobTypeName = Annotated[
    str,
    Strict(),
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TYPE_LENGTH),
]
# A job's data: a JSON object; null is the empty object.
JobData = Annotated[dict[str, Any], rule(_data, dict[str, Any])]
# An integer 1-20 or a name (case and blanks ignored).
PriorityValue = Annotated[
    int,
    rule(
        parse_priority,
        Annotated[int, Ge(MIN_PRIORITY), Le(MAX_PRIORITY)] | Literal[_PRIORITY_NAMES],
    ),
]
MaxRetries = Annotated[
    int,
    Strict(),
    Ge(0),
    Le(MAX_RETRIES_LIMIT),
    explained(f"must be an integer from 0 to {MAX_RETRIES_LIMIT}"),
]
# Seconds, or a duration such as 30s, 5m, 1m30s.
Timeout = Annotated[float, rule(_timeout, Annotated[float, Gt(0)] | str)]
Tags = Annotated[
    tuple[Annotated[str, Strict(), MinLen(1), MaxLen(MAX_TAG_LENGTH)], ...],
    MaxLen(MAX_TAGS),
    explained(
        f"must be a list of at most {MAX_TAGS} non-empty strings "
        f"of at most {MAX_TAG_LENGTH} characters"
    ),
    BeforeValidator(_none_is_empty),
]
# An ISO 8601 time with an offset, held as milliseconds since the epoch.
RunAt = Annotated[int, rule(_run_at, AwareDatetime)]
# An optional id (company, user): "" is absent.
OptionalId = Annotated[
    Annotated[str, Strict(), MaxLen(MAX_ID_LENGTH)] | None, BeforeValidator(_blank_is_none)
]
IdempotencyKey = Annotated[
    Annotated[str, Strict(), MaxLen(MAX_IDEMPOTENCY_KEY_LENGTH)] | None,
    BeforeValidator(_blank_is_none),
]
Flag = Annotated[bool, Strict()]
# A flag where null means false.
OptionalFlag = Annotated[bool, Strict(), BeforeValidator(_none_is_false)]
