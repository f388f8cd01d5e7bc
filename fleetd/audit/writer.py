"""The daemon's audit writer: one trio service every door of the daemon submits to.

Owns, for the HTTP API, the scheduler and handlers' `ctx.enqueue`:
- `submit`: queue an entry (never blocks, never waits for Redis: an enqueue costs no
  second round trip, a Redis outage answers 503 without a second timeout);
- `run` (start → ready at once → write → stop): write the backlog in batches, one
  round trip each, within milliseconds; when Redis is away keep the entries and retry
  with capped backoff, and past the spill rule (fleetd.audit.backlog: 10,000 entries or
  one unwritten for 5 s) move them to the spool; replay the host's spool when started
  and every REPLAY_INTERVAL — every RETRY_CAP while it holds entries Redis did not
  take yet, so they land within ~2 s of Redis's return;
- `secure` (the HTTP door calls it after `submit`, before the answer goes out): while
  Redis is away (the link knows it, or the last write failed), move the backlog — the
  call's own entry with it — to the spool, fsync'd, before returning: an answer given
  during an outage is never lost by a SIGKILL that follows. Concurrent calls share one
  fsync (group commit); with Redis up it returns at once, no checkpoint;
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
# The retry backoff's cap while Redis is away (and the spool's replay retry): short
# enough to notice it is back within a couple of seconds, long enough not to spin.
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
        self._failing = False  # the last write did not go through
        self._submitted = 0  # entries submitted so far
        self._secured = 0  # of those, how many are written or spooled for sure
        self._securing = trio.Lock()
        self._spilled = False  # spooled by this process since the last replay attempt

    def submit(self, entry: AuditEntry) -> None:
        self.backlog.add(entry)
        self._submitted += 1
        self._wake.set()
        if self._idle.is_set():
            self._idle = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        backoff = Backoff(RETRY_CAP)
        replay_due = 0.0
        try:
            while True:
                if self._spilled:  # entries of this process wait in the spool: soon, but
                    # while Redis is away at the retry pace, not once per spill (each
                    # replay reads the spool under its file lock, which appends wait on)
                    # nor at the next REPLAY_INTERVAL (they would land up to 10 s after
                    # Redis came back)
                    self._spilled = False
                    if not self.redis_away():
                        replay_due = 0.0
                    else:
                        replay_due = min(replay_due, trio.current_time() + RETRY_CAP)
                if trio.current_time() >= replay_due:
                    replay_due = trio.current_time() + REPLAY_INTERVAL
                    if not await self._replay():  # Redis away: sooner than the interval
                        replay_due = trio.current_time() + RETRY_CAP
                if not self.backlog:
                    self._idle.set()
                    self._wake = trio.Event()
                    with trio.move_on_at(replay_due):
                        await self._wake.wait()
                    continue
                epoch, batch = self.backlog.head(WRITE_BATCH)
                try:
                    await self.link.call(self.trail.store.write_stamped, batch)
                except Exception as exc:  # Redis away, or refusing: keep them, retry
                    log.warning("audit: %d entries wait for Redis: %s", len(self.backlog), exc)
                    self._failing = True
                    if self.backlog.should_spill():
                        self.close()
                    await backoff.sleep()
                    continue
                self.backlog.drop(len(batch), epoch)
                self.written += len(batch)
                if self._failing:  # Redis is back: what was spooled meanwhile, now
                    self._failing = False
                    replay_due = 0.0
                backoff.reset()
        finally:
            self.close()

    async def _replay(self) -> bool:
        """Write the host's spool; False when Redis did not take it (this process
        spooled entries, or another did: tried again within RETRY_CAP)."""
        spool, store = self.trail.spool, self.trail.store
        if not spool.has_entries():
            return True
        try:
            added = await self.link.call(lambda c: spool.replay(lambda e, s: store.write(c, e, s)))
        except (RedisUnavailable, RedisCommandError):
            return False
        except OSError as exc:
            log.error("audit: cannot read the spool %s: %s", spool.path, exc)
            return True  # the next interval tries again
        if added:
            log.info("audit: wrote %d spooled entries from %s", added, spool.path)
        return True

    def redis_away(self) -> bool:
        return not self.link.ready or self._failing

    async def secure(self, *, away: bool = False) -> None:
        """While Redis is away (`away`: as the caller's own link knows it), return only
        once every entry submitted before this call is written or in the spool, fsync'd
        (see the module's docstring)."""
        if not (away or self.redis_away()):
            return
        wanted = self._submitted
        async with self._securing:
            if self._secured >= wanted:  # the fsync of a call before ours covered it
                return
            upto = self._submitted
            items = self.backlog.take_all()  # a write in flight keeps its own copy
            if items:
                spooled = await trio.to_thread.run_sync(self.trail.spill_items, items)
                self.spooled += spooled
                self._spilled = True
                self._wake.set()
            self._secured = upto

    async def flush(self) -> None:
        """Wait until the backlog is written, at most FLUSH_TIMEOUT."""
        with trio.move_on_after(FLUSH_TIMEOUT):
            await self._idle.wait()

    def close(self) -> None:
        """Move the unwritten entries to the spool (idempotent, synchronous)."""
        if spooled := self.trail.spill(self.backlog):
            self.spooled += spooled
            self._spilled = True
            log.warning(
                "audit: %d entries spooled to %s until Redis is back",
                spooled, self.trail.spool.path,
            )  # fmt: skip
