"""The job model: statuses, priorities, ids, and the Job record with its JSON shape.

Owns the spec's `Job` struct exactly (field names and meaning), the six statuses, the
four named priorities, and validation of what a caller may ask for at enqueue. Pure
data and validation, no I/O: the queue turns these into Redis writes.
"""

from __future__ import annotations

import enum
import json
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "ACTIVE_STATUSES",
    "MAX_PRIORITY",
    "MIN_PRIORITY",
    "TERMINAL_STATUSES",
    "EnqueueRequest",
    "FieldError",
    "Job",
    "JobStatus",
    "Priority",
    "ValidationError",
    "format_ts",
    "new_job_id",
    "parse_priority",
    "parse_ts",
]


class JobStatus(enum.StrEnum):
    """The spec's six statuses. A future `run_at` job is `pending` with a `run_at`."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    RETRYING = "retrying"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
ACTIVE_STATUSES = frozenset({JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.RETRYING})


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
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
_PAIR_SHIFTS = range(120, -10, -10)


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem of a request: `field` is its path (`data.to`, `data.cc[1]`)."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ValidationError(ValueError):
    """Bad enqueue input. `field` and `message` describe the first problem; `errors`
    lists every problem found (a data schema reports all of them at once), for the CLI
    to print and the HTTP layer to return as a 422."""

    def __init__(
        self, field: str, message: str, errors: Sequence[FieldError] | None = None
    ) -> None:
        self.errors: list[FieldError] = list(errors) if errors else [FieldError(field, message)]
        super().__init__("; ".join(map(str, self.errors)))
        self.field = field
        self.message = message

    @classmethod
    def of(cls, errors: Sequence[FieldError]) -> ValidationError:
        """One error for many field errors (at least one)."""
        return cls(errors[0].field, errors[0].message, errors)

    def prefixed(self, prefix: str) -> ValidationError:
        """The same errors with each field path under `prefix` (e.g. `jobs[3].`)."""
        return ValidationError.of([FieldError(prefix + e.field, e.message) for e in self.errors])


def new_job_id(now_ms: int | None = None) -> str:
    """`job_` + a ULID: 48-bit millisecond time then 80 random bits, Crockford base32.

    Ids sort by creation time (to the millisecond) as plain strings, so listings and
    log greps line up with time without a lookup. The random part comes from the
    `random` module (reseeded after fork), not os.urandom: ids need to be unique, not
    secret, and a system call per id halves bulk-enqueue speed.
    """
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | random.getrandbits(80)
    # 130 bits as 13 pairs of base32 digits, most significant first.
    return "job_" + "".join([_PAIRS[(value >> shift) & 1023] for shift in _PAIR_SHIFTS])


def format_ts(ms: int | None) -> str | None:
    """Milliseconds since the epoch → RFC 3339 UTC (`2024-01-15T10:30:00.123Z`)."""
    if ms is None:
        return None
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


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


def _opt_str(raw: Mapping[str, Any], name: str, limit: int = MAX_ID_LENGTH) -> str | None:
    value = raw.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValidationError(name, "must be a string")
    if len(value) > limit:
        raise ValidationError(name, f"must be at most {limit} characters")
    return value


@dataclass(slots=True)
class EnqueueRequest:
    """What a caller asks for: the spec's enqueue body plus fleetd's extensions.

    `priority`, `max_retries` and `timeout` left as None take the handler's or the
    config's defaults when the queue stamps the job.
    """

    type: str
    data: dict[str, Any] = field(default_factory=dict)
    priority: int | None = None
    max_retries: int | None = None
    timeout: float | None = None
    company_id: str | None = None
    user_id: str | None = None
    tags: tuple[str, ...] = ()
    run_at_ms: int | None = None
    idempotency_key: str | None = None
    # Seal the whole data at rest (fleetd.jobs.sealing); fields the handler marks sensitive
    # are sealed either way.
    encrypt: bool = False

    KNOWN_FIELDS = frozenset(
        {
            "type", "data", "priority", "max_retries", "timeout", "company_id", "user_id",
            "tags", "run_at", "idempotency_key", "encrypt",
        }
    )  # fmt: skip

    @classmethod
    def from_dict(cls, raw: object) -> EnqueueRequest:
        """Validate a JSON-shaped request; raises ValidationError naming the field."""
        if not isinstance(raw, Mapping):
            raise ValidationError("body", "must be a JSON object")
        if unknown := raw.keys() - cls.KNOWN_FIELDS:
            raise ValidationError(min(unknown), "unknown field")
        job_type = raw.get("type")
        if not isinstance(job_type, str) or not job_type.strip():
            raise ValidationError("type", "is required and must be a non-empty string")
        if len(job_type) > MAX_TYPE_LENGTH:
            raise ValidationError("type", f"must be at most {MAX_TYPE_LENGTH} characters")
        data = raw.get("data", {})
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ValidationError("data", "must be a JSON object")
        priority = None if raw.get("priority") is None else parse_priority(raw["priority"])
        max_retries = raw.get("max_retries")
        if max_retries is not None and (
            isinstance(max_retries, bool)
            or not isinstance(max_retries, int)
            or not 0 <= max_retries <= MAX_RETRIES_LIMIT
        ):
            raise ValidationError(
                "max_retries", f"must be an integer from 0 to {MAX_RETRIES_LIMIT}"
            )
        timeout = raw.get("timeout")
        if timeout is not None:
            if isinstance(timeout, str):
                from fleetd.config.durations import parse_duration

                try:
                    timeout = parse_duration(timeout)
                except ValueError as exc:
                    raise ValidationError("timeout", str(exc)) from None
            if (
                isinstance(timeout, bool)
                or not isinstance(timeout, int | float)
                or not math.isfinite(timeout)
                or timeout <= 0
            ):
                raise ValidationError("timeout", "must be a positive duration such as 30s or 5m")
            timeout = float(timeout)
        tags = raw.get("tags")
        if tags is None:
            tags = []
        if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
            raise ValidationError("tags", "must be a list of non-empty strings")
        if len(tags) > MAX_TAGS or any(len(t) > MAX_TAG_LENGTH for t in tags):
            raise ValidationError(
                "tags", f"at most {MAX_TAGS} tags of at most {MAX_TAG_LENGTH} characters"
            )
        run_at = raw.get("run_at")
        if run_at is not None and not isinstance(run_at, str):
            raise ValidationError("run_at", "must be an ISO 8601 time string")
        encrypt = raw.get("encrypt")
        if encrypt is not None and not isinstance(encrypt, bool):
            raise ValidationError("encrypt", "must be true or false")
        return cls(
            type=job_type.strip(),
            data=data,
            priority=priority,
            max_retries=max_retries,
            timeout=timeout,
            company_id=_opt_str(raw, "company_id"),
            user_id=_opt_str(raw, "user_id"),
            tags=tuple(tags),
            run_at_ms=None if run_at is None else parse_ts(run_at),
            idempotency_key=_opt_str(raw, "idempotency_key", MAX_IDEMPOTENCY_KEY_LENGTH),
            encrypt=bool(encrypt),
        )


def _loads(raw: str | None) -> Any:
    return None if raw in (None, "") else json.loads(raw)


def _int(raw: str | None) -> int | None:
    return None if raw in (None, "") else int(raw)


@dataclass(frozen=True, slots=True)
class Job:
    """A job as stored: the spec's fields, then fleetd's extensions."""

    id: str
    type: str
    data: dict[str, Any]
    priority: int
    status: JobStatus
    created_at_ms: int
    started_at_ms: int | None = None
    completed_at_ms: int | None = None
    retry_count: int = 0
    max_retries: int = 3
    error: str | None = None
    result: dict[str, Any] | None = None
    company_id: str | None = None
    user_id: str | None = None
    tags: tuple[str, ...] = ()
    # Extensions.
    run_at_ms: int | None = None
    timeout: float | None = None
    attempts: int = 0
    stalls: int = 0
    idempotency_key: str | None = None
    worker: str | None = None
    progress: dict[str, Any] | None = None
    traceback: str | None = None
    cancel_requested: bool = False
    updated_at_ms: int | None = None
    # Some or all of `data` is sealed at rest; `data` then shows it redacted.
    encrypted: bool = False

    @classmethod
    def from_hash(cls, h: Mapping[str, str]) -> Job:
        """Build from the job hash (field names as the Lua scripts write them). Sealed
        data (hash field `sealed`) comes out redacted: a Job never holds ciphertext."""
        timeout = h.get("timeout")
        data = _loads(h.get("data")) or {}
        if sealed := h.get("sealed"):
            from fleetd.jobs.sealing import redact

            data = redact(data, sealed)
        return cls(
            id=h["id"],
            type=h["type"],
            data=data,
            priority=int(h["priority"]),
            status=JobStatus(h["status"]),
            created_at_ms=int(h["created_at"]),
            started_at_ms=_int(h.get("started_at")),
            completed_at_ms=_int(h.get("completed_at")),
            retry_count=int(h.get("retry_count") or 0),
            max_retries=int(h.get("max_retries") or 0),
            error=h.get("error") or None,
            result=_loads(h.get("result")),
            company_id=h.get("company_id") or None,
            user_id=h.get("user_id") or None,
            tags=tuple(_loads(h.get("tags")) or ()),
            run_at_ms=_int(h.get("run_at")),
            timeout=float(timeout) if timeout else None,
            attempts=int(h.get("attempts") or 0),
            stalls=int(h.get("stalls") or 0),
            idempotency_key=h.get("idempotency_key") or None,
            worker=h.get("worker") or None,
            progress=_loads(h.get("progress")),
            traceback=h.get("traceback") or None,
            cancel_requested=h.get("cancel_requested") == "1",
            updated_at_ms=_int(h.get("updated_at")),
            encrypted=bool(sealed),
        )

    def to_dict(self) -> dict[str, Any]:
        """The spec's JSON shape (omitempty fields left out when empty), plus extensions."""
        out: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "data": self.data,
            "priority": self.priority,
            "status": self.status.value,
            "created_at": format_ts(self.created_at_ms),
        }
        optional: Sequence[tuple[str, Any]] = (
            ("started_at", format_ts(self.started_at_ms)),
            ("completed_at", format_ts(self.completed_at_ms)),
        )
        out.update((k, v) for k, v in optional if v is not None)
        out["retry_count"] = self.retry_count
        out["max_retries"] = self.max_retries
        extras: Sequence[tuple[str, Any]] = (
            ("error", self.error),
            ("result", self.result),
            ("company_id", self.company_id),
            ("user_id", self.user_id),
            ("tags", list(self.tags) or None),
            ("run_at", format_ts(self.run_at_ms)),
            ("timeout", self.timeout),
            ("idempotency_key", self.idempotency_key),
            ("worker", self.worker),
            ("progress", self.progress),
            ("traceback", self.traceback),
            ("updated_at", format_ts(self.updated_at_ms)),
        )
        out.update((k, v) for k, v in extras if v is not None)
        out["attempts"] = self.attempts
        if self.stalls:
            out["stalls"] = self.stalls
        if self.cancel_requested and self.status is JobStatus.PROCESSING:
            out["cancel_requested"] = True
        if self.encrypted:
            out["encrypted"] = True
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Job:
        """Inverse of to_dict (JSON round trip)."""

        def ms(name: str) -> int | None:
            v = d.get(name)
            return None if v is None else parse_ts(v, name)

        created = ms("created_at")
        if created is None:
            raise ValidationError("created_at", "is required")
        return cls(
            id=d["id"],
            type=d["type"],
            data=dict(d.get("data") or {}),
            priority=int(d["priority"]),
            status=JobStatus(d["status"]),
            created_at_ms=created,
            started_at_ms=ms("started_at"),
            completed_at_ms=ms("completed_at"),
            retry_count=int(d.get("retry_count", 0)),
            max_retries=int(d.get("max_retries", 0)),
            error=d.get("error"),
            result=d.get("result"),
            company_id=d.get("company_id"),
            user_id=d.get("user_id"),
            tags=tuple(d.get("tags") or ()),
            run_at_ms=ms("run_at"),
            timeout=d.get("timeout"),
            attempts=int(d.get("attempts", 0)),
            stalls=int(d.get("stalls", 0)),
            idempotency_key=d.get("idempotency_key"),
            worker=d.get("worker"),
            progress=d.get("progress"),
            traceback=d.get("traceback"),
            cancel_requested=bool(d.get("cancel_requested", False)),
            updated_at_ms=ms("updated_at"),
            encrypted=bool(d.get("encrypted", False)),
        )
