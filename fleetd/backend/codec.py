"""The codec of job rows between Python and the Lua scripts: named fields, one string each.

Owns the two shapes a job takes on its way through Redis, each with its fields named
once on this side (the `codec` section of lua/_lib.lua names them on the other):

- `JobRow`, what enqueue.lua and schedule_fire.lua take for a new job: built by
  `row_from_request` (fields the caller's EnqueueRequest has under the same name are
  copied as given; the queue computes the rest), encoded by `encode_row` into one JSON
  object per job (and back by `decode_row`, for a spooled row sent again). The
  scripts store its fields in the job hash under the same names (`run_at_ms` is the
  hash's `run_at`), so a field added to EnqueueRequest, here and to the Lua list is
  carried and stored without touching anything else;
- `ClaimedJob`, what claim.lua hands back: one JSON object per claimed job, named as
  in the job hash, all of one claim in one JSON array (one parse per claim: ~4x cheaper
  per job than one parse each), their data beside it in a second array (spliced raw,
  not escaped into a string and parsed twice), decoded by `decode_claim` into a
  `ClaimResult`.

Every value travels as a JSON *string*, never a JSON number: Lua numbers are doubles
that print with 14 significant digits, so 2^53 + 1 sent as a number would be stored as
"9.007199254741e+15". Absent optional fields are left out (never JSON null: Lua's cjson
turns null into `cjson.null`, a truthy value). Text is sent as UTF-8, not \\u escapes.
The job hash keeps its field names and value formats, so jobs written before this codec
read the same.

cjson rather than cmsgpack: measured in redis-server 7.0 on a 9-field row, cjson
decodes in 0.88 µs and encodes in 0.62 µs, cmsgpack 0.77 µs and 0.87 µs — a wash —
while fakeredis (the embedded `memory://` store) has cjson but no cmsgpack, and the
Python side needs no extra package.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleetd.jobs.model import EnqueueRequest

__all__ = [
    "COMPUTED_FIELDS",
    "ROW_FIELDS",
    "ClaimResult",
    "ClaimedJob",
    "JobRow",
    "decode_claim",
    "decode_claimed",
    "decode_row",
    "encode_row",
    "row_from_request",
]


def _float_text(value: float) -> str:
    return repr(float(value))


def _tags_text(tags: Sequence[str]) -> str:
    # json.dumps's default separators: the job hash has always stored tags this way.
    return json.dumps(list(tags))


@dataclass(frozen=True, slots=True)
class JobRow:
    """One job as enqueue.lua stores it: validated, defaulted, data encoded (and sealed).

    A field's `wire` metadata names it in the row and the job hash when the name differs;
    `text` turns its value into the string sent (default `str`). None, "" and () are
    absent: not sent, not stored."""

    id: str
    type: str
    data: str  # JSON text as stored; sealed parts already sealed
    priority: int
    max_retries: int
    timeout: float | None = field(default=None, metadata={"text": _float_text})
    company_id: str | None = None
    user_id: str | None = None
    tags: tuple[str, ...] = field(default=(), metadata={"text": _tags_text})
    run_at_ms: int | None = field(default=None, metadata={"wire": "run_at"})
    idempotency_key: str | None = None
    # fleetd.jobs.sealing's marker: "" for plain data.
    sealed: str = ""
    # Named queue (fleetd.jobs.queues); None = the default queue.
    queue: str | None = None


# (attribute, name in the row and the job hash, to text): the one list of a row's fields.
ROW_FIELDS: tuple[tuple[str, str, Callable[[Any], str]], ...] = tuple(
    (f.name, f.metadata.get("wire", f.name), f.metadata.get("text", str)) for f in fields(JobRow)
)
# Fields the queue computes (fleetd.jobs.queue.QueueOps.build_row); every other field is
# the request's own, copied by name.
COMPUTED_FIELDS = ("id", "data", "priority", "max_retries", "timeout", "sealed", "queue")
_FROM_REQUEST = tuple(f.name for f in fields(JobRow) if f.name not in COMPUTED_FIELDS)
_ABSENT = (None, "", ())
# One encoder for every row: json.dumps with options builds a new encoder per call.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def row_from_request(
    req: EnqueueRequest,
    *,
    id: str,
    data: str,
    priority: int,
    max_retries: int,
    timeout: float | None,
    sealed: str,
    queue: str | None = None,
) -> JobRow:
    """The row of `req` with the values the queue computed (defaults, encoding, sealing)."""
    return JobRow(
        id=id, data=data, priority=priority, max_retries=max_retries, timeout=timeout,
        sealed=sealed, queue=queue, **{name: getattr(req, name) for name in _FROM_REQUEST},
    )  # fmt: skip


def encode_row(row: JobRow) -> str:
    """The row as one JSON object of strings, absent fields left out."""
    out: dict[str, str] = {}
    for attr, wire, text in ROW_FIELDS:
        value = getattr(row, attr)
        if value not in _ABSENT:
            out[wire] = text(value)
    return _encode(out)


# Text → value of the row's fields that are not strings (the inverse of their `text`).
_PARSE: dict[str, Callable[[str], Any]] = {
    "priority": int, "max_retries": int, "timeout": float, "run_at_ms": int,
    "tags": lambda text: tuple(json.loads(text)),
}  # fmt: skip


def decode_row(text: str) -> JobRow:
    """The row `encode_row` turned into `text` (a spooled enqueue, fleetd.spool, sent
    again). Raises ValueError, KeyError or TypeError when `text` is not such a row."""
    raw = json.loads(text)
    values: dict[str, Any] = {}
    for attr, wire, _ in ROW_FIELDS:
        if wire in raw:
            value = raw[wire]
            values[attr] = _PARSE[attr](value) if attr in _PARSE else str(value)
    return JobRow(**values)


@dataclass(slots=True)
class ClaimedJob:
    """A job this daemon holds a lease on, as claim.lua returns it."""

    id: str
    type: str
    data: dict[str, Any]
    priority: int
    attempts: int
    retry_count: int
    max_retries: int
    timeout: float | None
    company_id: str | None
    user_id: str | None
    tags: tuple[str, ...]
    created_at_ms: int
    token: str
    # fleetd.jobs.sealing's marker: "" for plain data; else `data` is sealed as stored
    # (the worker opens it for the handler and leaves `data` redacted).
    sealed: str = ""
    # "1" for a workflow node that reads its parents when it starts (a condition, a
    # `$from` reference, `with_parents`): fleetd.workflows.start; "" for any other job.
    wf_in: str = ""


@dataclass(slots=True)
class ClaimResult:
    now_ms: int
    next_due_ms: int | None
    jobs: list[ClaimedJob]


def decode_claimed(d: Mapping[str, str], data: dict[str, Any], token: str) -> ClaimedJob:
    """One claimed job from claim.lua's object (job hash names; absent = not stored)."""
    timeout, tags = d.get("timeout"), d.get("tags")
    return ClaimedJob(
        id=d["id"],
        type=d["type"],
        data=data,
        priority=int(d["priority"]),
        attempts=int(d["attempts"]),
        retry_count=int(d["retry_count"]),
        max_retries=int(d["max_retries"]),
        timeout=float(timeout) if timeout else None,
        company_id=d.get("company_id") or None,
        user_id=d.get("user_id") or None,
        tags=tuple(json.loads(tags)) if tags else (),
        created_at_ms=int(d["created_at"]),
        token=token,
        sealed=d.get("sealed", ""),
        wf_in=d.get("wf_in", ""),
    )


def decode_claim(reply: Sequence[Any], token: str) -> ClaimResult:
    """claim.lua's reply {now ms, next due ms or -1, JSON array of job objects, JSON
    array of their data}."""
    due = int(reply[1])
    pairs = zip(json.loads(reply[2]), json.loads(reply[3]), strict=True)
    jobs = [decode_claimed(d, data, token) for d, data in pairs]
    return ClaimResult(int(reply[0]), None if due < 0 else due, jobs)
