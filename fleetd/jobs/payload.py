"""A job's data as stored: its JSON text, within the limits every door holds (sans-IO).

Owns `encode_data()`: the data of an enqueue (HTTP, the CLI, the Python client,
follow-up jobs, schedules) as the JSON text enqueue.lua stores, refused with a
ValidationError naming the field when no reader could take it back — a lone UTF-16
surrogate (Python's json decoder accepts "\\ud800"; no UTF-8 encoder writes it), NaN
or infinities, more than `max_bytes` of JSON, nesting deeper than `max_depth`, an
integer beyond 64 bits. The limits default to those of `[http]` (max_body_size,
max_json_depth); the engine passes the configured values, so a body HTTP accepts is
accepted by every other door and the reverse.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fleetd.jobs.fields import SURROGATE, data_problem
from fleetd.jobs.validation import FieldError, ValidationError

__all__ = ["MAX_DATA_BYTES", "MAX_DATA_DEPTH", "encode_data", "oversized_result"]

# One encoder for every job's data: json.dumps with options builds a new encoder per call.
# Not ASCII-escaped: the UTF-8 encoding of its output is what Redis stores and what the
# size limit counts, and it fails on a lone surrogate, which no reader could answer.
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode
# Largest job data by default, in bytes of JSON: [http] max_body_size's default, so the
# Python client, the CLI, schedules and follow-up jobs hold what HTTP holds (the engine
# passes the configured value).
MAX_DATA_BYTES = 256 * 1024
# Deepest data nesting by default ([http] max_json_depth's default, likewise).
MAX_DATA_DEPTH = 32
# 19 digits in a row: the shortest integer that may lie beyond 64 bits.
_LONG_NUMBER = re.compile(r"[0-9]{19}")


def encode_data(data: dict[str, Any], max_bytes: int, max_depth: int) -> str:
    """`data` as the JSON text stored; raises ValidationError (see the module)."""
    try:
        text = _encode(data)
        size = len(text.encode("utf-8"))
    except RecursionError:
        raise ValidationError("data", "is nested too deeply") from None
    except UnicodeEncodeError:
        where = data_problem(data, max_depth) or FieldError("data", SURROGATE)
        raise ValidationError(where.field, where.message) from None
    except (TypeError, ValueError) as exc:
        raise ValidationError("data", f"is not JSON-serialisable: {exc}") from None
    if size > max_bytes:
        raise ValidationError("data", f"is {size} bytes of JSON, over the limit of {max_bytes}")
    # Walked only when it could matter: nesting d deep takes 2·d characters, and an
    # integer beyond 64 bits at least 19 digits.
    deep = len(text) > 2 * max_depth or _LONG_NUMBER.search(text)
    if deep and (found := data_problem(data, max_depth)):
        raise ValidationError(found.field, found.message)
    return text


def oversized_result(encoded: str, cap: int) -> str | None:
    """Why a handler's result (its JSON text) may not be stored — more than `cap` bytes
    ([worker] max_result_bytes): a job hash must stay small, since every read of the
    job carries it — or None. The worker fails such a job for good (the handler would
    return as much again); fleetd.testing.Harness raises PermanentError."""
    # Four bytes at most per character: most results are measured without encoding.
    if len(encoded) * 4 <= cap or (size := len(encoded.encode())) <= cap:
        return None
    return (
        f"handler result is {size:,} bytes of JSON, over [worker] max_result_bytes "
        f"({cap:,}): return less, or write it as an artifact"
    )
