"""Writing audit entries to the Redis streams, each exactly once.

Owns `AuditStore.write`: the entries of one writer epoch, in order, in one
audit_write.lua call (one round trip per batch, whatever its size), which appends those
above the epoch's mark and raises the mark (fleetd.audit.backlog explains the
numbering), and `route()`: which streams an entry goes to, so that no caller's volume
evicts another's entries:

- the shared `audit` stream (XADD MAXLEN ~ `[http] audit_maxlen`): every entry but the
  anonymous ones;
- `audit:company:<company>` (`[http] audit_company_maxlen`): an entry with a company,
  also, under the same id — a company's reads use it (fleetd.audit.reader);
- `audit:anonymous` (`[http] audit_anonymous_maxlen`): the refusal of a call without a
  valid token, only there — anyone who can reach the API can send those, as many as
  they like, and they must not push an authenticated caller's entry out.

Synchronous: callers run it inside one RedisLink hop.

The marks are small strings under `audit:writer:<epoch>` that expire MARK_TTL after
their last write: one per process (and per spill) that wrote an entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import SyncClient
from fleetd.backend.scripts import Scripts

if TYPE_CHECKING:
    from fleetd.audit.entry import AuditEntry
    from fleetd.audit.spool import Stamped

__all__ = ["MARK_TTL_S", "WRITE_BATCH", "AuditCaps", "AuditStore", "route"]

# A mark must outlive every copy of its entries that may still be sent: a spool left
# on a host that cannot reach Redis for longer than this writes its entries twice.
# 90 days covers any outage anyone would wait out; ~100 bytes per writer epoch.
MARK_TTL_S = 90 * 86400
# Entries per script call: ~1 KB of arguments each, so a call stays well under the
# 512 MB bulk limit and runs ~1 ms (XADD ≈ 2 µs) without holding Redis up.
WRITE_BATCH = 500


class AuditCaps(NamedTuple):
    """Approximate maxlens (XADD MAXLEN ~) of the three streams ([http] audit_*maxlen)."""

    shared: int
    company: int
    anonymous: int


def route(entry: AuditEntry) -> str:
    """audit_write.lua's route of an entry: 'a' anonymous, 'c<company>' the shared
    stream and the company's, 's' the shared stream only."""
    if entry.anonymous:
        return "a"
    return "s" if entry.company_id is None else "c" + entry.company_id


class AuditStore:
    def __init__(self, keys: Keys, scripts: Scripts, caps: AuditCaps) -> None:
        self.keys = keys
        self.scripts = scripts
        self.caps = caps

    def write(self, client: SyncClient, epoch: str, items: Sequence[Stamped]) -> int:
        """Write one epoch's entries (in seq order); returns how many were new."""
        added = 0
        for start in range(0, len(items), WRITE_BATCH):
            chunk = items[start : start + WRITE_BATCH]
            entries = [(s.seq, route(s.entry), s.entry.fields()) for s in chunk]
            added += self.scripts.audit_write(client, epoch, self.caps, MARK_TTL_S, entries)
        return added

    def write_stamped(self, client: SyncClient, items: Sequence[Stamped]) -> int:
        """Entries of possibly several epochs, each epoch's in order."""
        added, start = 0, 0
        for i in range(1, len(items) + 1):
            if i == len(items) or items[i].epoch != items[start].epoch:
                added += self.write(client, items[start].epoch, items[start:i])
                start = i
        return added
