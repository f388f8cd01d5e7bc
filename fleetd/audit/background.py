"""The audit writer of synchronous callers: the CLI and fleetd.client.Client.

Owns `BackgroundWriter`: `submit` queues an entry (thread-safe, no Redis call on the
caller's path); with `background` a daemon thread writes the backlog in batches every
FLUSH_INTERVAL — one round trip per batch, so the client's one-at-a-time enqueue
(~6,000/s) keeps its single round trip per job — and `close` (the engine's close, or
the interpreter's exit) writes what is left, replays the host's spool, and spools
whatever Redis would not take. A CLI command's engine closes on its way out, success or
not. Without `background` nothing is written before `close`.

The spill rule and the exactly-once numbering are fleetd.audit.backlog's.
"""

from __future__ import annotations

import atexit
import logging
import threading

from fleetd.audit.backlog import AuditTrail, Backlog
from fleetd.audit.entry import AuditEntry
from fleetd.audit.store import WRITE_BATCH
from fleetd.backend.redis_link import RedisLink

__all__ = ["FLUSH_INTERVAL", "BackgroundWriter"]

log = logging.getLogger("fleetd.audit")

# A client's entries reach Redis within this long (×2 while it is away): 20 batches
# a second at most, so at 6,000 enqueues/s a batch holds ~300 entries.
FLUSH_INTERVAL = 0.05
# How long close() waits for the thread's write in flight.
JOIN_TIMEOUT = 5.0


class BackgroundWriter:
    def __init__(self, trail: AuditTrail, link: RedisLink, *, background: bool = True) -> None:
        self.trail = trail
        self.link = link
        self.background = background
        self.backlog = Backlog()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, entry: AuditEntry) -> None:
        with self._lock:
            self.backlog.add(entry)
            if self.background and self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="fleetd-audit", daemon=True)
                self._thread.start()
                atexit.register(self.close)

    def _write_some(self) -> bool:
        """One batch from the head; False when Redis would not take it."""
        with self._lock:
            batch = self.backlog.head(WRITE_BATCH)
        if not batch:
            return True
        try:
            self.link.run_sync(self.trail.store.write_stamped, batch)
        except Exception as exc:  # Redis away or refusing: kept for the next try
            log.debug("audit: %d entries not written yet: %s", len(batch), exc)
            return False
        with self._lock:
            self.backlog.drop(len(batch))
        return True

    def _run(self) -> None:
        delay = FLUSH_INTERVAL
        while not self._stop.wait(delay):
            ok = self._write_some()
            delay = FLUSH_INTERVAL if ok else min(delay * 2, 2.0)
            if not ok:
                with self._lock:
                    if self.backlog.should_spill():
                        self._spill()

    def _spill(self) -> None:
        items = self.backlog.take_all()
        if not items:
            return
        try:
            self.trail.spool.append(items)
        except OSError as exc:
            for s in items:
                log.error("audit: entry neither written nor spooled (%s): %s", exc, s.entry)

    def close(self) -> None:
        """Write what is left and the host's spool; spool what cannot be written."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._stop.set()
            thread.join(JOIN_TIMEOUT)
            atexit.unregister(self.close)
        ok = True
        while ok and len(self.backlog):
            ok = self._write_some()
        with self._lock:
            self._spill()
        if ok and self.trail.spool.has_entries():
            self._replay()

    def _replay(self) -> None:
        store, spool = self.trail.store, self.trail.spool
        try:
            self.link.run_sync(lambda c: spool.replay(lambda e, s: store.write(c, e, s)))
        except Exception as exc:  # kept in the spool for the next process
            log.debug("audit: spool not replayed: %s", exc)
