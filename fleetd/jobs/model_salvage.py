"""Rows that cannot be read: a stored job or schedule shown degraded, never a failed listing.

Owns what happens when a hash in Redis holds a value that its reader or its renderer
refuses — written by an older version (which accepted year-10000 times and lone
surrogates), by hand, or by a bug:

- `salvage()`: read a hash field by field, each reader on its own; a field that
  raises takes its default and is named, so one bad field costs that field only;
- `Timestamps`: the RFC 3339 formatter of a row being rendered, which records instead
  of raising when a stored time is beyond what a datetime holds;
- `unreadable_body()`: the `unreadable` object a degraded row carries in its JSON
  (`{"code": "unreadable", "message", "fields"}`), so readers see which fields are
  missing and why, while every other row of the listing renders as usual.

Each degraded row is logged (warning, with its id and the fields) when it is read or
rendered: the operator finds it in the log and can repair or delete it. Pure logic, no
I/O (the caller's logger does the logging).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

__all__ = ["EPOCH_TEXT", "UNREADABLE", "Timestamps", "report", "salvage", "unreadable_body"]

log = logging.getLogger("fleetd.jobs.model")

T = TypeVar("T")

# The `code` of the `unreadable` object of a degraded row.
UNREADABLE = "unreadable"
# Shown in place of a required time that cannot be rendered: the epoch, which no real
# row has, so a reader sorting by it sees the degraded row first or last, never mixed in.
EPOCH_TEXT = "1970-01-01T00:00:00.000Z"


class Salvage:
    """Reads one hash field by field, keeping the names of the fields that failed."""

    def __init__(self, h: Mapping[str, str]) -> None:
        self.h = h
        self.failed: list[str] = []

    def read(self, name: str, reader: Callable[[Mapping[str, str]], T], default: T) -> T:
        try:
            return reader(self.h)
        except Exception:  # any reader's error: the field is what cannot be read
            self.failed.append(name)
            return default


def salvage(h: Mapping[str, str]) -> Salvage:
    """A field-by-field reader of the hash `h` (see Salvage.read)."""
    return Salvage(h)


class Timestamps:
    """Formats the times of one row; a time that cannot be formatted becomes None (the
    field is left out) and its field name is recorded."""

    def __init__(self, fmt: Callable[[int | None], str | None]) -> None:
        self.fmt = fmt
        self.failed: list[str] = []

    def __call__(self, ms: int | None, name: str) -> str | None:
        try:
            return self.fmt(ms)
        except (ValueError, OverflowError, OSError):
            self.failed.append(name)
            return None


def unreadable_body(fields: list[str]) -> dict[str, Any]:
    """The `unreadable` object of a degraded row."""
    return {
        "code": UNREADABLE,
        "message": "stored value(s) that cannot be read or shown were left out: "
        + ", ".join(fields),
        "fields": list(fields),
    }


def report(kind: str, row_id: object, fields: list[str]) -> None:
    """Log one degraded row (a stored value fleetd can no longer read or show)."""
    log.warning(
        "%s %s: stored field(s) %s cannot be read or shown; shown degraded",
        kind,
        row_id,
        ", ".join(fields),
    )
