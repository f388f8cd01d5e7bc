"""Field rules shared by every request body: declared once, used by each declaration.

Owns the limits of what a caller may send (type names, tags, ids, idempotency keys,
retries, times, durations), the four named priorities and how a priority or a time is
read, and the annotated pydantic types that carry these rules with their messages:
`JobTypeName`, `JobData`, `PriorityValue`, `MaxRetries`, `Timeout`, `Tags`, `RunAt`,
`OptionalId`, `IdempotencyKey`, `OptionalFlag`, `Flag`, `Line`.

Every value accepted here can be stored and read back: text is valid Unicode (no lone
UTF-16 surrogates, which JSON decoders accept but no UTF-8 encoder can write), names,
ids and keys hold no control characters, times lie between 1970 and `MAX_TIME` (well
inside what a datetime, a Redis score and RFC 3339 can hold after any offset), and
durations are at most `MAX_DURATION`. EnqueueRequest
(fleetd.jobs.model) and ScheduleSpec (fleetd.schedules.model) are built from them; the
OpenAPI document describes what they accept (`json_schema_input_type`).

Pure logic, no I/O.
"""

from __future__ import annotations

import enum
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Le, MaxLen, MinLen
from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Strict, StringConstraints

from fleetd.config.queue_section import QUEUE_NAME_PATTERN
from fleetd.jobs.validation import FieldError, ValidationError, explained, invalid, rule

__all__ = [
    "MAX_DURATION",
    "MAX_IDEMPOTENCY_KEY_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_PRIORITY",
    "MAX_RETRIES_LIMIT",
    "MAX_TAGS",
    "MAX_TAG_LENGTH",
    "MAX_TIME_MS",
    "MAX_TYPE_LENGTH",
    "MIN_PRIORITY",
    "QUEUE_NAME_PATTERN",
    "SURROGATE",
    "Flag",
    "IdempotencyKey",
    "JobData",
    "JobTypeName",
    "Line",
    "MaxRetries",
    "OptionalFlag",
    "OptionalId",
    "Priority",
    "PriorityValue",
    "QueueName",
    "RunAt",
    "Tags",
    "Timeout",
    "check_duration",
    "data_problem",
    "in_time_range",
    "parse_duration_text",
    "parse_priority",
    "parse_ts",
    "shown",
    "text_problem",
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
# A progress message is cut to this many characters (ctx.progress, any isolation): it
# is stored on the job and sent in an event, and a sandboxed child's progress line must
# stay under PIPE_BUF (4096 bytes) at 4 bytes a character.
MAX_PROGRESS_MESSAGE = 900
# The longest text read as a time or a duration: "2024-01-15T10:30:00.123456+05:30" is
# 32 characters, "1w6d23h59m59.999s" 17; a longer one is refused before it is parsed
# (int() of a 5,000-digit number is slow and raises its own error).
MAX_TIME_TEXT = 64
MAX_DURATION_TEXT_LENGTH = 64

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The latest time a caller may give (run_at, audit ranges), exclusive. Year 9999 is the
# last a datetime and RFC 3339 hold; a time given with an offset of up to -23:59 moves
# by a day when converted to UTC, and a schedule's next run lies up to MAX_DURATION
# after now — so accepted times stop a millennium short, where no arithmetic on them
# reaches year 10000. In ms it is ~2.2e14, far below 2^53: exact as a Redis score.
MAX_TIME = datetime(9000, 1, 1, tzinfo=UTC)
MAX_TIME_MS = (MAX_TIME - _EPOCH) // timedelta(milliseconds=1)
# The longest duration accepted (job timeouts, schedule intervals, clean-up ages):
# ten years of 365 days. A longer one is a typo, and its sum with any accepted time
# stays before year 9999.
MAX_DURATION = 10 * 365 * 86_400
_MAX_DURATION_TEXT = "10 years (3650d)"

# A priority given as text: one to three ASCII digits, with an optional minus (so -5
# is refused as out of range, not as garbage). `str.isdigit` also accepts "²" and
# other scripts' digits, which int() then refuses.
_PRIORITY_DIGITS = re.compile(r"-?[0-9]{1,3}")
# C0 and C1 control characters and DEL: they break log lines, terminals and the
# separators of composite keys (fleetd.schedules.model.name_key splits on "\n").
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Lone UTF-16 surrogates: Python's json decoder turns "\ud800" into one; no UTF-8
# encoder (HTTP answers, Redis, logs) can write it back.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def shown(text: str, limit: int = 40) -> str:
    """`text` quoted for an error message, cut to `limit` characters (a 10,000-character
    value is not echoed back) and with surrogates escaped (the message must encode)."""
    cut = text if len(text) <= limit else text[:limit] + "…"
    return repr(cut.encode("utf-8", "backslashreplace").decode("utf-8"))


def text_problem(value: str, limit: int, *, line: bool = True) -> str | None:
    """What is wrong with `value` as stored text, or None: too long, a lone surrogate,
    or (a `line`: a name, id or key) a control character."""
    if len(value) > limit:
        return f"must be at most {limit} characters"
    if _SURROGATE.search(value):
        return SURROGATE
    if line and _CONTROL.search(value):
        return "must not contain control characters"
    return None


def in_time_range(ms: int, field: str = "run_at") -> int:
    """`ms` if it lies in [1970-01-01, MAX_TIME); else ValidationError."""
    if not 0 <= ms < MAX_TIME_MS:
        raise ValidationError(
            field, "must be from 1970-01-01T00:00:00Z to before 9000-01-01T00:00:00Z (UTC)"
        )
    return ms


def parse_ts(text: str, field: str = "run_at") -> int:
    """ISO 8601 → milliseconds since the epoch, within [1970, MAX_TIME) in UTC. A time
    without an offset is an error: guessing a zone for a job's start time is how jobs
    run an hour off."""
    if not isinstance(text, str) or len(text) > MAX_TIME_TEXT:
        raise ValidationError(field, "must be an ISO 8601 time string")
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, AttributeError):
        raise ValidationError(field, f"not an ISO 8601 time: {shown(text)}") from None
    if dt.tzinfo is None:
        raise ValidationError(field, f"needs a UTC offset or Z: {shown(text)}")
    # Integer arithmetic: int(timestamp() * 1000) loses a millisecond to float rounding.
    return in_time_range((dt - _EPOCH) // timedelta(milliseconds=1), field)


SURROGATE = "must be valid Unicode text (it holds a lone UTF-16 surrogate)"
INT64 = (-(2**63), 2**63 - 1)


def data_problem(data: object, max_depth: int, root: str = "data") -> FieldError | None:
    """The first thing in a job's data that cannot be stored and read back, or None:
    nesting deeper than `max_depth`, an integer beyond 64 bits (Go's int64 and JS
    numbers cannot hold it), a non-finite float, a lone surrogate in a key or a string.
    Iterative: deep data costs no recursion."""
    stack: list[tuple[object, str, int]] = [(data, root, 0)]
    while stack:
        node, where, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth >= max_depth:
                return FieldError(where, f"is nested deeper than {max_depth} levels")
            if isinstance(node, dict):
                for key, value in node.items():
                    if isinstance(key, str) and _SURROGATE.search(key):
                        return FieldError(where, "has a key holding a lone UTF-16 surrogate")
                    stack.append((value, f"{where}.{key}", depth + 1))
            else:
                stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(node))
        elif isinstance(node, str):
            if _SURROGATE.search(node):
                return FieldError(where, SURROGATE)
        elif isinstance(node, float):
            if not math.isfinite(node):
                return FieldError(where, "must be a finite number")
        elif isinstance(node, int) and not INT64[0] <= node <= INT64[1]:
            return FieldError(where, "integer out of 64-bit range")
    return None


def check_duration(seconds: float, field: str, *, zero: bool = False) -> float:
    """`seconds` if finite, positive (or 0 with `zero`) and at most MAX_DURATION; else
    ValidationError."""
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not zero):
        raise ValidationError(field, "must be a positive duration such as 30s or 5m")
    if seconds > MAX_DURATION:
        raise ValidationError(field, f"must be at most {_MAX_DURATION_TEXT}")
    return seconds


def parse_priority(value: object, field: str = "priority") -> int:
    """An integer 1–20 or one of the names low/normal/high/critical."""
    if isinstance(value, str):
        name = value.strip()
        if name.upper() in Priority.__members__:
            return int(Priority[name.upper()])
        if not _PRIORITY_DIGITS.fullmatch(name):
            raise ValidationError(
                field, f"unknown priority {shown(value)} (use low, normal, high, critical or 1-20)"
            )
        value = int(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, "must be an integer from 1 to 20 or a priority name")
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise ValidationError(field, f"must be from {MIN_PRIORITY} to {MAX_PRIORITY}, got {value}")
    return value


def _run_at(value: object) -> int:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return in_time_range((value - _EPOCH) // timedelta(milliseconds=1))
    if not isinstance(value, str):
        raise ValidationError("run_at", "must be an ISO 8601 time string")
    return parse_ts(value)


def _timeout(value: object) -> float:
    if isinstance(value, str):
        value = parse_duration_text(value, "timeout")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError("timeout", "must be a positive duration such as 30s or 5m")
    try:
        return check_duration(float(value), "timeout")
    except OverflowError:  # an integer beyond a float's range
        raise ValidationError("timeout", f"must be at most {_MAX_DURATION_TEXT}") from None


def parse_duration_text(text: str, field: str, *, zero: bool = False) -> float:
    """A duration such as 30s, 1h30m or 7d (fleetd.config.durations), checked by
    `check_duration`; ValidationError on `field` quoting at most the text's start."""
    from fleetd.config.durations import parse_duration

    if len(text) > MAX_DURATION_TEXT_LENGTH:
        raise ValidationError(field, f"is not a duration: {shown(text)}")
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        message = str(exc) if len(text) <= 40 else f"invalid duration {shown(text)}"
        raise ValidationError(field, message) from None
    return check_duration(seconds, field, zero=zero)


def _data(value: object) -> dict[str, Any]:
    # Checked, not copied: a job's data may be large, and the handler's schema walks it.
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError("data", "must be a JSON object")
    return value


def _blank_is_none(value: object) -> object:
    return None if value == "" else value


def _one_line(value: str) -> str:
    # Lone surrogates never get here: pydantic refuses them in a str ("string_unicode").
    if _CONTROL.search(value):
        raise invalid("must not contain control characters")
    return value


# After a str's own checks: a name, id, key or tag holds no control characters.
Line = AfterValidator(_one_line)


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
    Line,
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
    tuple[Annotated[str, Strict(), MinLen(1), MaxLen(MAX_TAG_LENGTH), Line], ...],
    MaxLen(MAX_TAGS),
    explained(
        f"must be a list of at most {MAX_TAGS} non-empty strings "
        f"of at most {MAX_TAG_LENGTH} characters, without control characters"
    ),
    BeforeValidator(_none_is_empty),
]
# An ISO 8601 time with an offset, held as milliseconds since the epoch.
RunAt = Annotated[int, rule(_run_at, AwareDatetime)]
# An optional id (company, user): "" is absent.
OptionalId = Annotated[
    Annotated[str, Strict(), MaxLen(MAX_ID_LENGTH), Line] | None, BeforeValidator(_blank_is_none)
]
IdempotencyKey = Annotated[
    Annotated[str, Strict(), MaxLen(MAX_IDEMPOTENCY_KEY_LENGTH), Line] | None,
    BeforeValidator(_blank_is_none),
]
Flag = Annotated[bool, Strict()]
# A flag where null means false.
OptionalFlag = Annotated[bool, Strict(), BeforeValidator(_none_is_false)]

# A named queue (fleetd.jobs.queues; QUEUE_NAME_PATTERN). None = the route of the
# job's type.
QueueName = Annotated[
    Annotated[str, Strict(), StringConstraints(pattern=QUEUE_NAME_PATTERN)] | None,
    BeforeValidator(_blank_is_none),
    explained(
        "must be a queue name: up to 32 lower-case letters, digits, '_' or '-', "
        "starting with a letter or digit"
    ),
]
