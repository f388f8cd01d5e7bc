"""The job model: ids, the Job record (its JSON answer declared in fleetd.jobs.answer),
and the enqueue request.

Owns the spec's `Job` struct exactly (field names and meaning), job ids, and
`EnqueueRequest`: what a caller may ask for at enqueue,
declared once (pydantic) from the field rules of fleetd.jobs.fields and validated from
that declaration — every problem at once, unknown fields included — by the HTTP API,
the CLI, the Python client, follow-up jobs and the scheduler alike. Pure data and
validation, no I/O: the queue turns these into Redis writes.

The names of fleetd.jobs.fields, fleetd.jobs.validation, fleetd.jobs.status and
fleetd.jobs.answer that callers used to import from here (Priority, ValidationError,
parse_ts, JobStatus, format_ts …) are re-exported.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from fleetd.jobs import answer
from fleetd.jobs.answer import format_ts
from fleetd.jobs.fields import (
    MAX_ID_LENGTH,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    MAX_PRIORITY,
    MAX_RETRIES_LIMIT,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    MAX_TYPE_LENGTH,
    MIN_PRIORITY,
    SURROGATE,
    IdempotencyKey,
    JobData,
    JobTypeName,
    MaxRetries,
    OptionalFlag,
    OptionalId,
    Priority,
    PriorityValue,
    QueueName,
    RunAt,
    Tags,
    Timeout,
    data_problem,
    parse_priority,
    parse_ts,
)
from fleetd.jobs.model_salvage import report, salvage
from fleetd.jobs.status import ACTIVE_STATUSES, TERMINAL_STATUSES, JobStatus
from fleetd.jobs.validation import FieldError, ValidationError, from_pydantic

__all__ = [
    "ACTIVE_STATUSES",
    "MAX_IDEMPOTENCY_KEY_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_PRIORITY",
    "MAX_RETRIES_LIMIT",
    "MAX_TAGS",
    "MAX_TAG_LENGTH",
    "MAX_TYPE_LENGTH",
    "MIN_PRIORITY",
    "SURROGATE",
    "TERMINAL_STATUSES",
    "EnqueueRequest",
    "FieldError",
    "Job",
    "JobStatus",
    "Priority",
    "ValidationError",
    "data_problem",
    "format_ts",
    "new_job_id",
    "parse_priority",
    "parse_ts",
]


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
_PAIR_SHIFTS = range(120, -10, -10)


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


class EnqueueRequest(BaseModel):
    """A job to enqueue: the spec's body plus fleetd's extensions. Fields left out take
    the job type's defaults, then the server's."""

    # `priority`, `max_retries` and `timeout` left as None take the handler's or the
    # config's defaults when the queue stamps the job. The body's `run_at` is held as
    # `run_at_ms`. Built directly (EnqueueRequest(type=…)), a bad field raises
    # pydantic's ValidationError (a ValueError); from_dict raises fleetd's.

    # Only the wire names (`run_at`, not `run_at_ms`), for Python callers too.
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    type: JobTypeName
    """The job type (GET /jobs/types lists them)."""
    data: JobData = Field(default_factory=dict)
    """The handler's input, checked against its data schema."""
    priority: PriorityValue | None = None
    """1 (low) to 20 (critical), or low, normal, high, critical."""
    max_retries: MaxRetries | None = None
    timeout: Timeout | None = None
    """Seconds, or a duration such as 30s or 5m."""
    company_id: OptionalId = None
    user_id: OptionalId = None
    tags: Tags = ()
    run_at_ms: RunAt | None = Field(default=None, alias="run_at")
    """Run no earlier than this time (RFC 3339 with an offset)."""
    idempotency_key: IdempotencyKey = None
    """At most one job per key (per company)."""
    queue: QueueName = None
    """The named queue; left out: the job type's route ([queues] routes), else
    `default`."""
    encrypt: OptionalFlag = False
    """Seal the whole data at rest (AES-GCM); the handler sees plaintext. Fields the
    handler marks sensitive are sealed either way."""

    @classmethod
    def from_dict(cls, raw: object) -> EnqueueRequest:
        """Validate a JSON-shaped request; raises ValidationError listing every
        problem."""
        try:
            return cls.model_validate(raw)
        except pydantic.ValidationError as exc:
            raise from_pydantic(exc) from None


def _loads(raw: str | None) -> Any:
    return None if raw in (None, "") else json.loads(raw)


def _int(raw: str | None) -> int | None:
    return None if raw in (None, "") else int(raw)


def _data(h: Mapping[str, str]) -> dict[str, Any]:
    data = _loads(h.get("data")) or {}
    if not isinstance(data, dict):
        raise ValueError("data is not an object")
    if sealed := h.get("sealed"):
        from fleetd.jobs.sealing import redact

        data = redact(data, sealed)
    return data


def _object(name: str) -> Callable[[Mapping[str, str]], dict[str, Any] | None]:
    def read(h: Mapping[str, str]) -> dict[str, Any] | None:
        value = _loads(h.get(name))
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"{name} is not an object")
        return value

    return read


def _tags(h: Mapping[str, str]) -> tuple[str, ...]:
    tags = _loads(h.get("tags")) or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ValueError("tags is not a list of strings")
    return tuple(tags)


def _finite(h: Mapping[str, str]) -> float | None:
    timeout = h.get("timeout")
    if not timeout:
        return None
    value = float(timeout)
    if not math.isfinite(value):
        raise ValueError("timeout is not finite")
    return value


# How Job.from_hash reads each field of a job hash: (attribute, reader, default when the
# stored value cannot be read). Names as the Lua scripts write them.
_HASH_FIELDS: list[tuple[str, Callable[[Mapping[str, str]], Any], Any]] = [
    ("id", lambda h: h["id"], "?"),
    ("type", lambda h: h["type"], "?"),
    ("data", _data, {}),
    ("priority", lambda h: int(h["priority"]), 0),
    ("status", lambda h: JobStatus(h["status"]), JobStatus.FAILED),
    ("created_at_ms", lambda h: int(h["created_at"]), 0),
    ("started_at_ms", lambda h: _int(h.get("started_at")), None),
    ("completed_at_ms", lambda h: _int(h.get("completed_at")), None),
    ("retry_count", lambda h: int(h.get("retry_count") or 0), 0),
    ("max_retries", lambda h: int(h.get("max_retries") or 0), 0),
    ("error", lambda h: h.get("error") or None, None),
    ("result", _object("result"), None),
    ("company_id", lambda h: h.get("company_id") or None, None),
    ("user_id", lambda h: h.get("user_id") or None, None),
    ("tags", _tags, ()),
    ("run_at_ms", lambda h: _int(h.get("run_at")), None),
    ("timeout", _finite, None),
    ("attempts", lambda h: int(h.get("attempts") or 0), 0),
    ("stalls", lambda h: int(h.get("stalls") or 0), 0),
    ("idempotency_key", lambda h: h.get("idempotency_key") or None, None),
    ("worker", lambda h: h.get("worker") or None, None),
    ("progress", _object("progress"), None),
    ("traceback", lambda h: h.get("traceback") or None, None),
    ("cancel_requested", lambda h: h.get("cancel_requested") == "1", False),
    ("updated_at_ms", lambda h: _int(h.get("updated_at")), None),
    ("encrypted", lambda h: bool(h.get("sealed")), False),
    ("queue", lambda h: h.get("queue") or "default", "default"),
]


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
    # The named queue (fleetd.jobs.queues); jobs from before queues are `default`.
    queue: str = "default"

    # Stored fields that could not be read (fleetd.jobs.model_salvage): the row is
    # shown degraded, with those fields left out or at their defaults.
    unreadable: tuple[str, ...] = ()

    @classmethod
    def from_hash(cls, h: Mapping[str, str]) -> Job:
        """Build from the job hash (field names as the Lua scripts write them). Sealed
        data (hash field `sealed`) comes out redacted: a Job never holds ciphertext.
        Never raises: a field that cannot be read takes its default and is named in
        `unreadable` (one poison value degrades its row, not the listing)."""
        try:
            return cls(**{name: read(h) for name, read, _ in _HASH_FIELDS})
        except Exception:  # a reader's error: read again field by field
            found = salvage(h)
            values = {name: found.read(name, read, default) for name, read, default in _HASH_FIELDS}
            report("job", values["id"], found.failed)
            return cls(**values, unreadable=tuple(found.failed))

    def to_dict(self) -> dict[str, Any]:
        """The job's JSON answer (fleetd.jobs.answer.Job: the spec's shape, empty
        fields left out, then fleetd's extensions; a time that cannot be shown degrades
        the row). The same object the HTTP API sends and the CLI's `--json` prints."""
        return answer.Job.of(self).jsonable()

    def to_json(self) -> str:
        """to_dict() as compact JSON, non-ASCII escaped (a lone surrogate too)."""
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
            queue=d.get("queue") or "default",
        )
