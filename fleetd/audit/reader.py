"""Reading the audit log back: newest first, filtered, in pages.

Owns `AuditReader.read` (the body of `GET /api/v1/admin/jobs/audit`), the filters it
takes (`FILTERS`, each matched exactly against the entry's field; `action` and `door`
only accept their documented values, fleetd.audit.entry, so a typo is a 422 naming the
filter rather than an empty page) and the decoding of a stream entry. Entries written
before the other doors were audited have no `door`, `uid` or `ts`: they read as door
"http", uid null, and `at` from the stream id. `at` is when the outcome was decided;
`since`, `until` and the order are the stream's (when it was written — the same
but for entries written late from a spool).

Which streams a read takes (fleetd.audit.store writes them): with a `company_id`
filter (a company-bound token always has one), that company's own stream, continued
in the shared one below `audit:split` (what the previous version wrote, there alone);
otherwise the shared stream and the anonymous one, merged by id (ids are unique across
the two). Either way one id per entry, so a cursor is an id, as before.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from fleetd.audit.entry import Action, Door
from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import SyncClient
from fleetd.jobs.model import ValidationError, format_ts

__all__ = ["FILTERS", "AuditReader", "check_filters"]

FILTERS = ("action", "subject", "company_id", "target", "outcome", "door")
# A filtered listing reads at most this many entries per requested one before it
# returns a shorter page with a cursor (bounds the work of a rare filter).
SCAN_FACTOR = 20
_CLOSED = {"action": frozenset(a.value for a in Action), "door": frozenset(d.value for d in Door)}
# Entries written before `door` was recorded all came through the HTTP API.
_DEFAULTS = {"door": Door.HTTP.value}

Raw = list[tuple[str, dict[str, str]]]
# (top, bottom, count) → up to `count` entries in that range, newest first.
Fetch = Callable[[str, str, int], Raw]


def check_filters(filters: Mapping[str, str | None]) -> dict[str, str]:
    """The filters that are set; ValidationError naming a closed filter given an
    unknown value."""
    out = {k: v for k, v in filters.items() if v is not None}
    for name, allowed in _CLOSED.items():
        if name in out and out[name] not in allowed:
            raise ValidationError(
                name, f"unknown {name} {out[name]!r}; one of: {', '.join(sorted(allowed))}"
            )
    return out


def _decode(entry_id: str, f: Mapping[str, str]) -> dict[str, Any]:
    ms = int(f.get("ts") or entry_id.partition("-")[0])
    return {
        "id": entry_id,
        "at": format_ts(ms),
        "action": f.get("action", ""),
        "door": f.get("door") or _DEFAULTS["door"],
        "subject": f.get("subject", ""),
        "company_id": f.get("company_id") or None,
        "target": f.get("target") or None,
        "outcome": f.get("outcome", ""),
        "status": int(f.get("status") or 0),
        "method": f.get("method", ""),
        "path": f.get("path", ""),
        "remote": f.get("remote") or None,
        "detail": json.loads(f.get("detail") or "{}"),
        "uid": f.get("uid") or None,
    }


def _below(cursor: str) -> str | None:
    """XREVRANGE's exclusive top for the page after `cursor`; None when no entry can be
    older (0-0: Redis refuses it as an exclusive end). The HTTP door's StreamCursor
    keeps each part to 19 digits, within the 64 bits Redis takes."""
    ms, dash, seq = cursor.partition("-")
    if not ms.isdigit() or (dash and not seq.isdigit()):
        raise ValidationError("cursor", f"malformed cursor {cursor!r}")
    return None if dash and int(ms) == int(seq) == 0 else "(" + cursor


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _upper(top: str) -> tuple[int, int] | None:
    """The ids a range's top lets through are those below this; None: every id."""
    if top == "+":
        return None
    ms, dash, seq = top.lstrip("(").partition("-")
    if not dash:  # `until`, a time: every id of that ms
        return int(ms) + 1, 0
    return (int(ms), int(seq)) if top.startswith("(") else (int(ms), int(seq) + 1)


class AuditReader:
    def __init__(self, keys: Keys) -> None:
        self.keys = keys

    def _everything(self, client: SyncClient) -> Fetch:
        def fetch(top: str, bottom: str, count: int) -> Raw:
            shared = client.xrevrange(self.keys.audit, top, bottom, count=count)
            anonymous = client.xrevrange(self.keys.audit_anonymous, top, bottom, count=count)
            if not anonymous:
                return list(shared)
            both = sorted([*shared, *anonymous], key=lambda e: _id(e[0]), reverse=True)
            return both[:count]

        return fetch

    def _company(self, client: SyncClient, company_id: str) -> Fetch:
        def fetch(top: str, bottom: str, count: int) -> Raw:
            own = list(client.xrevrange(self.keys.audit_company(company_id), top, bottom,
                count=count))  # fmt: skip
            if len(own) == count:
                return own
            # The company's stream holds nothing older in range: what the previous
            # version wrote is in the shared stream alone, below the split.
            split = client.get(self.keys.audit_split)
            if split is not None:
                upper = _upper(top)
                if upper is None or _id(split) < upper:
                    if _id(split) == (0, 0):
                        return own
                    top = "(" + split
            legacy = client.xrevrange(self.keys.audit, top, bottom, count=count - len(own))
            return own + list(legacy)

        return fetch

    def read(
        self,
        client: SyncClient,
        *,
        limit: int,
        cursor: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        filters: Mapping[str, str | None] | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first. The cursor is the id of the last entry returned; the next page
        starts below it. A filter of None matches every entry."""
        wanted = check_filters(filters or {})
        top = "+" if until_ms is None else str(until_ms)
        if cursor is not None:
            below = _below(cursor)
            if below is None:
                return [], None
            top = below
        bottom = "-" if since_ms is None else str(since_ms)
        company = wanted.get("company_id")
        # A company's stream holds its entries only: that filter alone scans no more.
        window = limit * SCAN_FACTOR if set(wanted) - {"company_id"} else limit
        fetch = self._everything(client) if company is None else self._company(client, company)
        raw = fetch(top, bottom, window + 1)
        has_more = len(raw) > window
        raw = raw[:window]
        out: list[dict[str, Any]] = []
        last_id: str | None = None
        for entry_id, f in raw:
            last_id = entry_id
            if any((f.get(k) or _DEFAULTS.get(k, "")) != v for k, v in wanted.items()):
                continue
            out.append(_decode(entry_id, f))
            if len(out) == limit:
                has_more = has_more or entry_id != raw[-1][0]
                break
        return out, (last_id if has_more else None)
