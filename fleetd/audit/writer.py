"""The daemon's audit writer: one trio service every door of the daemon submits to.

Owns, for the HTTP API, the scheduler and handlers' `ctx.enqueue`:
- `submit`: queue an entry (never blocks, never waits for Redis: an enqueue costs no
  second round trip, a Redis outage answers 503 without a second timeout);
- `run` (start → ready at once → write → stop): write the backlog in batches, one
  round trip each, within milliseconds; when Redis is away keep the entries and retry
  with capped backoff, and past the spill rule (fleetd.audit.backlog: 10,000 entries or
  one unwritten for 5 s) move them to the spool; replay the host's spool when started
  and every REPLAY_INTERVAL while it has entries;
- `flush`: wait (bounded) until the backlog is written — the API's stop calls it;
- `close`: spill what is left to the spool (the engine closes it last, so entries of
  calls answered while Redis never came back are kept, not dropped).

Submitting from another thread is not supported: every door of the daemon runs on the
trio thread.
"""

from __future__ import annotations

import logging

import trio

from fleetd.audit.backlog import AuditTrail, Backlog
from fleetd.audit.entry import AuditEntry
from fleetd.audit.store import WRITE_BATCH
from fleetd.backend.redis_link import Backoff, RedisCommandError, RedisLink, RedisUnavailable

__all__ = ["FLUSH_TIMEOUT", "REPLAY_INTERVAL", "AuditWriter"]

log = logging.getLogger("fleetd.audit.writer")

# How long a stop waits for the backlog to be written before it is spooled.
FLUSH_TIMEOUT = 2.0
# A spool left by a CLI command (or a daemon) while Redis was away is written within
# this long by any daemon of the host; a stat() per interval when there is none.
REPLAY_INTERVAL = 10.0
# The retry backoff's cap while Redis is away: short enough to notice it is back
# within a couple of seconds, long enough not to spin.
RETRY_CAP = 2.0


class AuditWriter:
    def __init__(self, trail: AuditTrail, link: RedisLink) -> None:
        self.trail = trail
        self.link = link
        self.backlog = Backlog()
        self._wake = trio.Event()
        self._idle = trio.Event()
        self._idle.set()
        self.written = 0
        self.spooled = 0

    def submit(self, entry: AuditEntry) -> None:
        self.backlog.add(entry)
        self._wake.set()
        if self._idle.is_set():
            self._idle = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        backoff = Backoff(RETRY_CAP)
        replay_due = 0.0
        try:
            while True:
                if trio.current_time() >= replay_due:
                    replay_due = trio.current_time() + REPLAY_INTERVAL
                    await self._replay()
                if not self.backlog:
                    self._idle.set()
                    self._wake = trio.Event()
                    with trio.move_on_after(REPLAY_INTERVAL):
                        await self._wake.wait()
                    continue
                batch = self.backlog.head(WRITE_BATCH)
                try:
                    await self.link.call(self.trail.store.write_stamped, batch)
                except Exception as exc:  # Redis away, or refusing: keep them, retry
                    log.warning("audit: %d entries wait for Redis: %s", len(self.backlog), exc)
                    if self.backlog.should_spill():
                        self.close()
                    await backoff.sleep()
                    continue
                self.backlog.drop(len(batch))
                self.written += len(batch)
                backoff.reset()
        finally:
            self.close()

    async def _replay(self) -> None:
        spool, store = self.trail.spool, self.trail.store
        if not spool.has_entries():
            return
        try:
            added = await self.link.call(lambda c: spool.replay(lambda e, s: store.write(c, e, s)))
        except (RedisUnavailable, RedisCommandError):
            return  # the next interval tries again
        except OSError as exc:
            log.error("audit: cannot read the spool %s: %s", spool.path, exc)
            return
        if added:
            log.info("audit: wrote %d spooled entries from %s", added, spool.path)

    async def flush(self) -> None:
        """Wait until the backlog is written, at most FLUSH_TIMEOUT."""
        with trio.move_on_after(FLUSH_TIMEOUT):
            await self._idle.wait()

    def close(self) -> None:
        """Move the unwritten entries to the spool (idempotent, synchronous)."""
        if spooled := self.trail.spill(self.backlog):
            self.spooled += spooled
            log.warning(
                "audit: %d entries spooled to %s until Redis is back",
                spooled, self.trail.spool.path,
            )  # fmt: skip
