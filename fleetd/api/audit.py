"""The audit log: every mutating call of the admin API, in a capped Redis stream.

Owns writing one entry per call of an `@audited` view — enqueue, bulk enqueue, cancel,
reset, cleanup, schedule create / update / delete — whatever the outcome, refusals
(401, 403, 422…) included: who (token subject, or "anonymous"), company, action,
target (job or schedule id), outcome ("ok" or the error code), HTTP status, when
(Redis time, the stream id), and the caller's address; and reading it back newest
first with filters (`GET /api/v1/admin/jobs/audit`).

The stream is trimmed to about `[http] audit_maxlen` entries (XADD MAXLEN ~), so it
stays bounded. A call's entry is handed to a writer task when its answer is decided and
written within milliseconds, batched with the others in one round trip: the answer
never waits for the audit log (an enqueue costs no second round trip, and a Redis
outage answers 503 without a second timeout). Entries still queued when the API stops
are flushed; those that cannot be written (Redis unreachable) are logged and dropped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import trio

from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import RedisLink, RedisUnavailable, SyncClient
from fleetd.jobs.model import ValidationError, format_ts

__all__ = ["FILTERS", "AuditEntry", "AuditLog"]

log = logging.getLogger("fleetd.api.audit")

# Filters of the listing, each matched exactly against the entry's field.
FILTERS = ("action", "subject", "company_id", "target", "outcome")
# A filtered listing reads at most this many entries per requested one before it
# returns a shorter page with a cursor (bounds the work of a rare filter).
SCAN_FACTOR = 20
# Entries waiting for the writer; past this (Redis slow for a long time) new ones are
# dropped with a warning rather than holding memory or requests.
QUEUE_SIZE = 10_000
# Entries written per round trip.
WRITE_BATCH = 500
# How long a stop waits for queued entries to be written.
FLUSH_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class AuditEntry:
    action: str
    subject: str
    company_id: str | None
    target: str | None
    outcome: str
    status: int
    method: str
    path: str
    remote: str | None
    detail: Mapping[str, Any]

    def fields(self) -> dict[str, str]:
        return {
            "action": self.action,
            "subject": self.subject,
            "company_id": self.company_id or "",
            "target": self.target or "",
            "outcome": self.outcome,
            "status": str(self.status),
            "method": self.method,
            "path": self.path,
            "remote": self.remote or "",
            "detail": json.dumps(self.detail, separators=(",", ":")),
        }


def _decode(entry_id: str, f: Mapping[str, str]) -> dict[str, Any]:
    ms = int(entry_id.partition("-")[0])
    return {
        "id": entry_id,
        "at": format_ts(ms),
        "action": f.get("action", ""),
        "subject": f.get("subject", ""),
        "company_id": f.get("company_id") or None,
        "target": f.get("target") or None,
        "outcome": f.get("outcome", ""),
        "status": int(f.get("status") or 0),
        "method": f.get("method", ""),
        "path": f.get("path", ""),
        "remote": f.get("remote") or None,
        "detail": json.loads(f.get("detail") or "{}"),
    }


def _stream_id(text: str, field: str) -> str:
    ms, dash, seq = text.partition("-")
    if not ms.isdigit() or (dash and not seq.isdigit()):
        raise ValidationError(field, f"malformed {field} {text!r}")
    return text


class AuditLog:
    def __init__(self, keys: Keys, maxlen: int) -> None:
        self.key = keys.audit
        self.maxlen = maxlen
        self._send, self._receive = trio.open_memory_channel[AuditEntry](QUEUE_SIZE)
        self._pending = 0
        self._idle = trio.Event()
        self._idle.set()
        self.dropped = 0

    def submit(self, entry: AuditEntry) -> None:
        """Queue an entry for the writer (never blocks)."""
        try:
            self._send.send_nowait(entry)
        except trio.WouldBlock:
            self.dropped += 1
            log.warning("audit queue full: dropped the entry of %s %s", entry.action, entry.target)
            return
        self._pending += 1
        self._idle = trio.Event() if self._idle.is_set() else self._idle

    async def run_writer(self, link: RedisLink) -> None:
        """Write queued entries in batches until cancelled."""
        while True:
            batch = [await self._receive.receive()]
            while len(batch) < WRITE_BATCH:
                try:
                    batch.append(self._receive.receive_nowait())
                except trio.WouldBlock:
                    break
            try:
                await link.call(self.write_many, batch)
            except RedisUnavailable as exc:
                log.error("audit: %d entries not written, Redis unreachable: %s", len(batch), exc)
            except Exception:
                log.exception("audit: %d entries not written", len(batch))
            self._pending -= len(batch)
            if self._pending == 0:
                self._idle.set()

    async def flush(self) -> None:
        """Wait (bounded) until every queued entry was written or given up."""
        with trio.move_on_after(FLUSH_TIMEOUT):
            await self._idle.wait()

    def write_many(self, client: SyncClient, entries: list[AuditEntry]) -> None:
        pipe = client.pipeline(transaction=False)
        for entry in entries:
            pipe.xadd(self.key, entry.fields(), maxlen=self.maxlen, approximate=True)
        pipe.execute()

    def write(self, client: SyncClient, entry: AuditEntry) -> str:
        return str(client.xadd(self.key, entry.fields(), maxlen=self.maxlen, approximate=True))

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
        filters = {k: v for k, v in (filters or {}).items() if v is not None}
        top = "+" if until_ms is None else str(until_ms)
        if cursor is not None:
            top = "(" + _stream_id(cursor, "cursor")
        bottom = "-" if since_ms is None else str(since_ms)
        window = limit * SCAN_FACTOR if filters else limit
        raw = client.xrevrange(self.key, top, bottom, count=window + 1)
        has_more = len(raw) > window
        raw = raw[:window]
        out: list[dict[str, Any]] = []
        last_id: str | None = None
        for entry_id, f in raw:
            last_id = entry_id
            if any(f.get(k, "") != v for k, v in filters.items()):
                continue
            out.append(_decode(entry_id, f))
            if len(out) == limit:
                has_more = has_more or entry_id != raw[-1][0]
                break
        return out, (last_id if has_more else None)
