"""Queue upkeep that every daemon with the worker role runs (each step is one atomic
script, so many daemons doing it at once is safe and cheap):

- promote: due delayed jobs (run_at reached, retry backoff over) move to the queue and
  wake idle fetchers; it sleeps until the next due time, at most `interval`;
- reap: jobs whose lease expired (their daemon died or hung) go back to pending, or
  fail after max_stalls; each such stall counts towards its job type and company's
  quarantine (`[isolation] quarantine_after`, fleetd.jobs.quarantine);
- prune: finished jobs older than their retention (completed_ttl, failed_ttl,
  cancelled_ttl; 0 keeps them) are deleted in bounded batches, once a minute;
- sweep: this host's artifact folders (`<artifacts dir>/<job id>/`) whose job no longer
  exists in Redis (pruned or cleaned up), and those older than `[artifacts] retention`
  whatever their job, are deleted, once a minute (fleetd.jobs.artifacts.sweep). Each
  host sweeps its own disk, since a job's files live where it ran.
- back-fill, once per namespace (`Keys.quota_backfilled`): pending jobs of a company in
  no part (delayed, or waiting workflow nodes) stored by a version that did not keep
  `quota:later:<company>` are added to it, so `company_max_pending` counts them.

Lifecycle: run() → started → loops until cancelled. Redis errors are waited out with
capped backoff; nothing here ever stops the daemon.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import trio

from fleetd.backend.redis_link import Backoff, RedisCommandError, RedisLink, RedisUnavailable
from fleetd.backend.scripts import Scripts
from fleetd.config.isolation_section import IsolationConfig
from fleetd.jobs import artifacts
from fleetd.jobs.model import JobStatus
from fleetd.jobs.quarantine import STALL, Strikes
from fleetd.jobs.queue import QueueOps

__all__ = ["Maintenance", "MaintenanceSettings"]

log = logging.getLogger("fleetd.maintenance")

# Leases examined per reap call: bounds one script's run time on a huge backlog.
REAP_LIMIT = 1000
# Retention is enforced once a minute: finished jobs are not urgent, and each prune
# pass scans three indexes.
PRUNE_EVERY = 60.0
# Pending jobs looked at per step of the quota:later back-fill (one script, ~1 ms).
BACKFILL_STEP = 1000
# A folder is swept only once it is this old: a job that is being enqueued or has just
# written its first file is never mistaken for a gone one.
SWEEP_MIN_AGE = 3600.0


@dataclass(frozen=True, slots=True)
class MaintenanceSettings:
    interval: float
    max_stalls: int
    completed_ttl: float
    failed_ttl: float
    cancelled_ttl: float
    reconnect_max_backoff: float
    artifacts_dir: Path | None = None
    # [artifacts] retention: folders older than this go whatever their job; 0 = kept
    # as long as their job.
    artifacts_retention: float = 0.0
    # [isolation]: its quarantine_after / quarantine_window count stalled leases too
    # (None: the defaults).
    isolation: IsolationConfig | None = None


class Maintenance:
    def __init__(
        self,
        link: RedisLink,
        scripts: Scripts,
        ops: QueueOps,
        settings: MaintenanceSettings,
        *,
        whole: bool = True,
    ) -> None:
        """`scripts`: of the key space whose delayed jobs and leases this keeps (one
        Maintenance per space a daemon serves, fleetd.backend.spaces); `whole`: also the
        namespace-wide work, retention and the artifact sweep, which span every space."""
        self.whole = whole
        self.link = link
        self.scripts = scripts
        self.ops = ops
        self.settings = settings
        strikes = Strikes.of(settings.isolation)
        self._strikes = (0, 0)  # the reaper counts stalls only when they are named
        if strikes is not None and STALL in strikes.kinds:
            self._strikes = (strikes.after, strikes.window_ms)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._promote_loop)
            nursery.start_soon(self._reap_loop)
            if self.whole:
                nursery.start_soon(self._prune_loop)
            nursery.start_soon(self._backfill)
            task_status.started()

    async def backfill_once(self) -> int | None:
        """The back-fill of the `quota:later` sets (later_fill.lua), unless it was done:
        jobs stored by a version that did not keep them count toward `company_max_pending`
        from now on. Steps of BACKFILL_STEP jobs, one script each. Returns the jobs
        added, None when it was done already."""
        done = await self.link.call(lambda c: c.exists(self.scripts.keys.quota_backfilled))
        if done:
            return None
        cursor, added = "-inf:0", 0
        while True:
            cursor, n = await self.link.call(self.scripts.later_fill, cursor, BACKFILL_STEP)
            added += n
            if cursor == "0":
                return added

    async def _backfill(self) -> None:
        backoff = Backoff(self.settings.reconnect_max_backoff)
        while True:
            try:
                added = await self.backfill_once()
            except RedisUnavailable:
                await backoff.sleep()
                continue
            except RedisCommandError as exc:  # refused (an ACL, say): never stop the daemon
                log.error("quotas: the back-fill of quota:later was refused: %s", exc)
                return
            if added:
                log.info("quotas: %d pending job(s) stored before quota:later now count", added)
            return

    async def _promote_loop(self) -> None:
        backoff = Backoff(self.settings.reconnect_max_backoff)
        while True:
            try:
                _moved, next_due, now = await self.link.call(self.scripts.promote)
            except RedisUnavailable:
                await backoff.sleep()
                continue
            backoff.reset()
            wait = self.settings.interval
            if next_due is not None:
                wait = min(wait, max(0.0, (next_due - now) / 1000))
            await trio.sleep(wait)

    async def _reap_loop(self) -> None:
        backoff = Backoff(self.settings.reconnect_max_backoff)
        while True:
            try:
                requeued, failed, cancelled, held = await self.link.call(
                    self.scripts.reap, self.settings.max_stalls, REAP_LIMIT, self._strikes
                )
            except RedisUnavailable:
                await backoff.sleep()
                continue
            backoff.reset()
            if requeued or failed or cancelled:
                log.warning(
                    "recovered jobs with expired leases: %d back to pending, "
                    "%d failed (stalled too often), %d cancelled",
                    requeued,
                    failed,
                    cancelled,
                )
            if held:
                log.warning("quarantined %d job type(s) whose jobs keep stalling daemons", held)
            if requeued + failed + cancelled < REAP_LIMIT:
                await trio.sleep(self.settings.interval)

    async def prune_once(self) -> dict[str, int]:
        s = self.settings
        ttls = {
            JobStatus.COMPLETED: s.completed_ttl,
            JobStatus.FAILED: s.failed_ttl,
            JobStatus.CANCELLED: s.cancelled_ttl,
        }
        counts: dict[str, int] = {}
        for status, ttl in ttls.items():
            if ttl > 0:
                done = await self.link.call(self.ops.cleanup, ttl, (status,))
                counts[status.value] = done[status.value]
                counts["workflows"] = counts.get("workflows", 0) + done["workflows"]
        return counts

    async def _prune_loop(self) -> None:
        while True:
            try:
                counts = await self.prune_once()
                if any(counts.values()):
                    log.info("retention: deleted %s", counts)
                if swept := await self.sweep_artifacts():
                    log.info("artifacts: deleted the folders of %d gone or expired job(s)", swept)
            except RedisUnavailable:
                pass
            await trio.sleep(PRUNE_EVERY)

    async def sweep_artifacts(self, min_age: float = SWEEP_MIN_AGE) -> int:
        """Delete the artifact folders of gone jobs and expired ones; returns how many."""
        root = self.settings.artifacts_dir
        if root is None:
            return 0
        return await artifacts.sweep_async(
            root,
            lambda ids: self.link.call(self.ops.exist, ids),
            min_age=min_age,
            retention=self.settings.artifacts_retention,
        )
