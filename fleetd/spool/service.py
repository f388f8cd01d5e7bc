"""The daemon's spool: enqueues diverted while Redis is away, and their replay.

Owns `DaemonSpool`, shared by the daemon's API and its replayer:
- `clear_now()` / `wait_clear()`: whether an enqueue goes to Redis. Not while the Redis
  link knows Redis is unreachable (its last call failed: the enqueue is spooled at
  once, no 1.5 s timeout per request during an outage). Otherwise wait (bounded by the
  caller) until the link has reached Redis and the spool is empty. A daemon's jobs
  reach Redis in the order they were acknowledged, and the spool empties under load:
  a new job waits for the replay (passes back to back, many jobs each) instead of
  joining the spool behind the others, which would keep it from ever emptying while
  requests keep coming (each then paying an fsync and a replay). Past the bound, or as
  soon as the link knows Redis is away, the job is spooled after all;
- `add()`: spool rows from trio (the SQLite commit and its fsync run in a thread) and
  answer them `spooled`;
- `lookup()`: a spooled job by id (`GET /jobs/{id}` answers `spooled` until it lands);
- `run()`, the replayer (start → ready at once → replay → stop): while the spool holds
  jobs, replay passes (fleetd.spool.replay) one Redis hop each, back to back; when
  Redis is away, retry with capped backoff; when empty, or while another process of
  the host holds the replay lock, look again every `[spool] replay_interval` (a CLI or
  client of the host may have spooled) or at once when this daemon spools or an
  enqueue waits on the spool. It starts once the daemon reached Redis, so a spool left
  by a daemon that died is replayed by the next one started on that state directory.
The depth, the totals and the age of the oldest job feed `/metrics`, `worker/health`
and the dashboard.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence

import trio

from fleetd.audit.store import AuditStore
from fleetd.backend.codec import JobRow, encode_row
from fleetd.backend.redis_link import Backoff, RedisCommandError, RedisLink, RedisUnavailable
from fleetd.jobs.queue import EnqueueResult, QueueOps
from fleetd.spool.file import JobSpool, SpooledJob
from fleetd.spool.outage import spooled_results
from fleetd.spool.replay import replay_pass

__all__ = ["DaemonSpool"]

log = logging.getLogger("fleetd.spool")

# The replayer's backoff cap while Redis is away: it notices Redis is back within ~2 s.
RETRY_CAP = 2.0
# How often an enqueue waiting for the spool to empty looks at the link's state again.
LINK_POLL = 0.05


class DaemonSpool:
    def __init__(
        self,
        spool: JobSpool,
        link: RedisLink,
        ops: QueueOps,
        audit: AuditStore,
        *,
        batch: int,
        interval: float,
    ) -> None:
        self.spool = spool
        self.link = link
        self.ops = ops
        self.audit = audit
        self.batch = batch
        self.interval = interval
        self.jobs = 0  # held now, as last read or changed by this process
        self.bytes = 0
        self.oldest_ms: int | None = None
        self.set_aside: list[str] = []  # unreadable spool files kept for an operator
        self.spooled_total = 0  # by this process
        self.replayed_total = 0  # landed in Redis by this process's passes
        self._wake = trio.Event()
        self._changed = trio.Event()  # set (and replaced) when `jobs` or a replay's fate changes
        # One thread at a time: SQLite serialises writers anyway, and a burst of
        # requests must not take every thread of trio's pool.
        self._limiter = trio.CapacityLimiter(1)

    def clear_now(self) -> bool:
        """The link has reached Redis and the spool is empty."""
        return self.link.ready and not self.jobs

    async def wait_clear(self) -> bool:
        """Until `clear_now()` (True), or until the link knows Redis is away (False: the
        caller spools at once). The caller bounds the wait, then spools behind the jobs
        still there."""
        while not self.link.down:
            if self.clear_now():
                return True
            changed = self._changed
            self._wake.set()  # the replayer may be waiting out its interval
            # The link's own state (a first connection, a call failing elsewhere)
            # changes without an event: looked at again every LINK_POLL.
            with trio.move_on_after(LINK_POLL):
                await changed.wait()
        return False

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _count(self, jobs: int) -> None:
        self.jobs = jobs
        self._notify()

    async def add(
        self, rows: Sequence[JobRow], *, door: str, subject: str,
        encode: Callable[[JobRow], str] = encode_row,
    ) -> list[EnqueueResult]:  # fmt: skip
        """Spool rows durably (raises SpoolError: full, or the file cannot be written);
        `encode` as for JobSpool.add."""
        add = functools.partial(self.spool.add, rows, door=door, subject=subject, encode=encode)
        at, duplicates = await trio.to_thread.run_sync(add, limiter=self._limiter)
        if self.jobs == 0:
            self.oldest_ms = at
        self._count(self.jobs + len(rows) - len(duplicates))
        self.spooled_total += len(rows) - len(duplicates)
        self._wake.set()
        return spooled_results(rows, at, duplicates)

    async def lookup(self, job_id: str) -> SpooledJob | None:
        return await trio.to_thread.run_sync(self.spool.get, job_id, limiter=self._limiter)

    async def refresh(self) -> None:
        def read() -> tuple[tuple[int, int], int | None, list[str]]:
            aside = [str(p) for p in self.spool.set_aside()]
            return self.spool.depth(), self.spool.oldest_ms(), aside

        (jobs, self.bytes), self.oldest_ms, self.set_aside = await trio.to_thread.run_sync(
            read, limiter=self._limiter
        )
        self._count(jobs)

    def age(self) -> float:
        """Seconds the oldest spooled job has waited (0 when empty)."""
        if not self.jobs or self.oldest_ms is None:
            return 0.0
        return max(0.0, time.time() - self.oldest_ms / 1000)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        backoff = Backoff(RETRY_CAP)
        replay = functools.partial(
            replay_pass, spool=self.spool, ops=self.ops, audit=self.audit, batch=self.batch
        )
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # the file cannot be read: logged, tried again
                log.error("spool: cannot read %s: %s", self.spool.path, exc)
            if not self.jobs:
                await self._rest()
                continue
            try:
                done = await self.link.call(replay)
            except (RedisUnavailable, RedisCommandError) as exc:
                log.debug("spool: %d jobs wait for Redis: %s", self.jobs, exc)
                self._notify()  # the link knows Redis is away: enqueues waiting spool now
                await backoff.sleep()
                continue
            except Exception as exc:  # the file: logged (set aside if damaged), tried again
                log.error("spool: replay of %s failed: %s", self.spool.path, exc)
                await backoff.sleep()
                continue
            backoff.reset()
            if not done.ran:  # another process of the host replays it
                # Its pass asked Redis (fleetd.spool.replay): woken by an enqueue waiting
                # on the spool, the next one lets the link learn that Redis went away.
                await self._rest()
                continue
            self.replayed_total += done.landed
            if done.sent:
                log.info(
                    "spool: %d jobs replayed into Redis (%d already there)",
                    done.sent, done.duplicates,
                )  # fmt: skip

    async def _rest(self) -> None:
        """The replayer's pause: `[spool] replay_interval`, or until this daemon spools
        or an enqueue waits on the spool (`_wake`)."""
        self._wake = trio.Event()
        with trio.move_on_after(self.interval):
            await self._wake.wait()

    def status(self) -> dict[str, object]:
        """The spool's figures for worker/health and the dashboard."""
        return {
            "jobs": self.jobs,
            "bytes": self.bytes,
            "oldest_age_seconds": round(self.age(), 3),
            "path": str(self.spool.path),
            "set_aside": self.set_aside,
        }
