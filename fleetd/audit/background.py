"""The audit writer of synchronous callers: the CLI and fleetd.client.Client.

Owns `BackgroundWriter`: `submit` queues an entry (thread-safe) — or, when the call it
records met an outage (AuditEntry.met_outage: refused for Redis, or spooled), moves
the backlog with it to the spool, fsync'd, before returning — the caller answers after
`submit`, so nothing acknowledged during an outage is lost by a SIGKILL that follows
(the outage cost that call a timeout or a spool commit already); every WRITE_BATCH
entries the caller's thread writes the batch itself (one round trip per 500 calls:
~0.2% of a one-at-a-time enqueue's), and with `background` a daemon thread writes what
waited longer than FLUSH_INTERVAL (a caller that enqueues now and then). A thread that
wrote every 50 ms instead cost the client's one-at-a-time enqueue far more than the
~6 µs per entry of building and queueing it (it took the GIL from the caller at every
batch). `close` (the engine's close, or the interpreter's exit) writes what is left,
replays the host's spool, and spools whatever Redis would not take. A CLI command's
engine closes on its way out, success or not. Without `background`, nothing is written
before the batch fills or `close`.

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

# A quiet client's entries reach Redis within this long (a busy one's every
# WRITE_BATCH calls); the thread wakes this often, which costs nothing measurable.
FLUSH_INTERVAL = 1.0
# While Redis is away the thread retries at most this far apart.
RETRY_CAP = 2.0
# How long close() waits for the thread's write in flight.
JOIN_TIMEOUT = 5.0


class BackgroundWriter:
    def __init__(self, trail: AuditTrail, link: RedisLink, *, background: bool = True) -> None:
        self.trail = trail
        self.link = link
        self.background = background
        self.backlog = Backlog()
        self._lock = threading.Lock()  # the backlog
        self._writing = threading.Lock()  # one writer at a time: the thread or a caller
        self._healthy = True  # the last write went through
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, entry: AuditEntry) -> None:
        with self._lock:
            self.backlog.add(entry)
            if entry.met_outage():
                self._spill()  # durable now; a write in flight keeps its own copy
                return
            full = len(self.backlog) >= WRITE_BATCH
            if self.background and self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="fleetd-audit", daemon=True)
                self._thread.start()
                atexit.register(self.close)
        # Not while Redis is away: the caller's own call failed already, a second
        # timeout here would only double its wait (the thread retries).
        if full and self._healthy and self._writing.acquire(blocking=False):
            try:
                self._write_some()
            finally:
                self._writing.release()

    def _write_some(self) -> bool:
        """One batch from the head; False when Redis would not take it."""
        with self._lock:
            epoch, batch = self.backlog.head(WRITE_BATCH)
        if not batch:
            return True
        try:
            self.link.run_sync(self.trail.store.write_stamped, batch)
        except Exception as exc:  # Redis away or refusing: kept for the next try
            log.debug("audit: %d entries not written yet: %s", len(batch), exc)
            self._healthy = False
            return False
        self._healthy = True
        with self._lock:
            self.backlog.drop(len(batch), epoch)
        return True

    def _run(self) -> None:
        delay = FLUSH_INTERVAL
        while not self._stop.wait(delay):
            with self._writing:
                ok = self._write_some()
                while ok and len(self.backlog) >= WRITE_BATCH:
                    ok = self._write_some()
            delay = FLUSH_INTERVAL if ok else min(delay * 2, RETRY_CAP)
            if not ok:
                with self._lock:
                    if self.backlog.should_spill():
                        self._spill()

    def _spill(self) -> None:
        self.trail.spill(self.backlog)

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
        with self._writing:
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
