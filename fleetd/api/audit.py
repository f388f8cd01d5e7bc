"""The HTTP door of the audit log (fleetd.audit): one entry per call of an `@audited` view.

Owns `AuditLog`, the API's handle on the daemon's audit writer and reader — `submit`
(never waits for Redis; while it is away, for the entry's fsync), `flush` (the API's
stop), `read` (`GET /api/v1/admin/jobs/audit`) — and `http_entry`, the entry of one answered call:
enqueue, bulk enqueue, cancel, reset, cleanup, schedule create / update / delete,
whatever the outcome, refusals (401, 403, 422…) included: who (token subject, or
"anonymous" — kept in a stream of its own, fleetd.audit.store), company, action,
target (job or schedule id), outcome ("ok" or the
error code), HTTP status, method, path and the caller's address.

Entries are written in batches by the daemon's writer (fleetd.audit.writer); while
Redis is away, an entry is in the spool of the state directory (fsync'd) before its
call is answered, and written once Redis is back — never dropped (the other doors,
and the details, are in fleetd.audit).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleetd.audit.entry import ANONYMOUS, Action, AuditEntry, Door
from fleetd.audit.reader import FILTERS, AuditReader
from fleetd.audit.writer import AuditWriter
from fleetd.backend.redis_link import RedisLink, SyncClient

__all__ = ["FILTERS", "AuditEntry", "AuditLog", "http_entry"]


def http_entry(
    action: str,
    *,
    subject: str | None,
    company_id: str | None,
    target: str | None,
    outcome: str,
    status: int,
    method: str,
    path: str,
    remote: str | None,
    detail: Mapping[str, Any],
) -> AuditEntry:
    return AuditEntry(
        action=Action(action),
        subject=subject or ANONYMOUS,
        door=Door.HTTP,
        outcome=outcome,
        company_id=company_id,
        target=target,
        status=status,
        method=method,
        path=path,
        remote=remote,
        detail=detail,
        anonymous=subject is None,
    )


class AuditLog:
    def __init__(self, writer: AuditWriter, reader: AuditReader, link: RedisLink) -> None:
        self.writer = writer
        self.reader = reader
        self.link = link  # the API's own: its calls learn first that Redis went away

    async def submit(self, entry: AuditEntry) -> None:
        """Queue the entry; while Redis is away (as the API's link or the writer knows
        it), return once it is durable (the spool file, fsync'd): the answer goes out
        after this."""
        self.writer.submit(entry)
        await self.writer.secure(away=not self.link.ready or entry.met_outage())

    async def flush(self) -> None:
        await self.writer.flush()

    def read(self, client: SyncClient, **query: Any) -> tuple[list[dict[str, Any]], str | None]:
        return self.reader.read(client, **query)
