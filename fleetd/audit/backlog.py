"""The in-memory backlog of a writer: entries not yet written, numbered for dedupe.

Owns `Stamped` (an entry with its writer epoch and number), `Backlog` (FIFO, numbering,
the spill rule), the `AuditSink` protocol every door submits to, and `AuditTrail` — the
Redis side (fleetd.audit.store) and the durable side (fleetd.audit.spool) of one
configuration, which both writers (fleetd.audit.writer for trio, fleetd.audit.background
for synchronous callers) share.

Exactly once: an epoch's entries are numbered 1, 2, 3… and written strictly in order
(a batch is removed from the head only once written); audit_write.lua keeps the highest
number written per epoch and skips anything at or below it. A spill moves the whole
backlog to the spool and starts a new epoch, so an epoch's remaining entries are either
all in memory or all in the spool — never written by two processes in two orders. A
spill while a batch of the old epoch is being written leaves that batch in both places;
the marks write it once, and `drop` (given the batch's epoch) leaves the new epoch be.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from fleetd.audit.entry import AuditEntry, new_entry_id
from fleetd.audit.spool import AuditSpool, Stamped
from fleetd.audit.store import AuditStore

__all__ = ["BACKLOG_LIMIT", "SPILL_AFTER", "AuditSink", "AuditTrail", "Backlog", "Stamped"]

log = logging.getLogger("fleetd.audit")

# Past this many unwritten entries (Redis away at ~1,100 audited requests/s: ~9 s) the
# backlog goes to the spool instead of growing: ~1 KB each, so at most ~10 MB held.
BACKLOG_LIMIT = 10_000
# An entry unwritten for this long goes to the spool even below the limit. The entries
# of calls answered while Redis is away do not wait for it: the doors make them
# durable before answering (AuditWriter.secure, BackgroundWriter.submit). This bounds
# what a SIGKILL loses of the rest: entries of calls answered just before Redis went
# away, and the scheduler's and handlers' own.
SPILL_AFTER = 5.0


class AuditSink(Protocol):
    """Where a door hands its entries: never blocks, never raises for Redis."""

    def submit(self, entry: AuditEntry) -> None: ...


@dataclass(frozen=True, slots=True)
class AuditTrail:
    """The audit log of one configuration: its Redis stream and its local spool."""

    store: AuditStore
    spool: AuditSpool

    def spill(self, backlog: Backlog) -> int:
        """Move the whole backlog to the spool (a new epoch follows); the count spooled.
        When even the spool cannot be written, the entries go to the log whole — the
        last resort, rather than nowhere."""
        return self.spill_items(backlog.take_all())

    def spill_items(self, items: list[Stamped]) -> int:
        """Append entries taken from a backlog to the spool (fsync'd); as `spill`."""
        if not items:
            return 0
        try:
            self.spool.append(items)
        except OSError as exc:
            for s in items:
                log.error("audit: entry neither written nor spooled (%s): %s", exc, s.entry)
            return 0
        return len(items)


class Backlog:
    """Unwritten entries in submission order (not thread-safe: callers lock)."""

    def __init__(self) -> None:
        self._items: deque[tuple[float, Stamped]] = deque()
        self.epoch = new_entry_id()
        self._seq = 0

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Stamped]:
        return (s for _, s in self._items)

    def add(self, entry: AuditEntry) -> None:
        self._seq += 1
        self._items.append((time.monotonic(), Stamped(self.epoch, self._seq, entry)))

    def head(self, n: int) -> tuple[str, list[Stamped]]:
        """The epoch and the first `n` entries (hand the epoch back to `drop`)."""
        return self.epoch, [s for _, s in itertools.islice(self._items, n)]

    def drop(self, n: int, epoch: str) -> None:
        """Remove `n` written entries from the head — unless the backlog was spilled
        (a new epoch) while they were being written: the head is then newer entries,
        and the written ones are in the spool too (written once: their marks)."""
        if epoch != self.epoch:
            return
        for _ in range(min(n, len(self._items))):
            self._items.popleft()

    def should_spill(self) -> bool:
        if len(self._items) > BACKLOG_LIMIT:
            return True
        return bool(self._items) and time.monotonic() - self._items[0][0] > SPILL_AFTER

    def take_all(self) -> list[Stamped]:
        """Everything, emptied, and a new epoch for what comes next."""
        out = [s for _, s in self._items]
        self._items.clear()
        self.epoch, self._seq = new_entry_id(), 0
        return out
