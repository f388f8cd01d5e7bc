"""Replaying the spool into Redis: in order, each job exactly once, each replay audited.

Owns `replay_pass`, one synchronous pass run inside one RedisLink hop (so by a thread,
never the trio thread): under the spool's replay lock, the oldest `batch` jobs are
sent to enqueue.lua as they were spooled, their audit entries are written, and only
then are they removed from the spool.

Exactly once, whatever crashes where:
- a job's id is fixed when it is spooled, and enqueue.lua answers a row whose id is
  stored already as a duplicate of itself: a batch sent again after a crash between
  Redis and the removal changes nothing in Redis;
- the audit entries are numbered by the spool's own seq under the spool's writer
  epoch (fleetd.audit.store keeps the highest number written per epoch), so an entry
  sent twice is written once;
- the lock makes a pass of one process wait for none and skip if another process of
  the host is replaying (a second daemon child, `fleetd spool replay`).
A job that ran inline while Redis was away (its row has a `finished` member:
fleetd.spool.finished) goes through land.lua instead: stored completed or failed, never
pending, and a second landing of its id is a no-op as above.
Quotas: a spooled job was accepted already, so a replay applies no company quota
(fleetd.jobs.queue.QueueOps.enqueue_rows): one company over its quota would otherwise
hold the whole spool, and every company's enqueues waiting on it, until its backlog drains.
Order: a batch is the spool's head in seq order and enqueue.lua stores a call's jobs in
its order (FIFO within a priority, as if they had been enqueued then).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from fleetd.audit.entry import Action, AuditEntry, Door
from fleetd.audit.spool import Stamped
from fleetd.audit.store import AuditStore
from fleetd.backend.codec import JobRow, decode_row
from fleetd.backend.redis_link import SyncClient
from fleetd.jobs.queue import QueueOps
from fleetd.spool.file import JobSpool, SpooledJob
from fleetd.spool.finished import finished_of, land_finished

__all__ = ["ReplayPass", "replay_all", "replay_pass"]

log = logging.getLogger("fleetd.spool")


@dataclass(frozen=True, slots=True)
class ReplayPass:
    """One pass: jobs that reached Redis now, those already there (a pass repeated
    after a crash, or an idempotency key's job), and False when another process held
    the lock."""

    landed: int = 0
    duplicates: int = 0
    unreadable: int = 0
    ran: bool = True

    @property
    def sent(self) -> int:
        return self.landed + self.duplicates


def _door(value: str) -> Door:
    try:
        return Door(value)
    except ValueError:
        return Door.CLIENT


def _entry(job: SpooledJob, outcome: str, detail: dict[str, object]) -> AuditEntry:
    return AuditEntry(
        Action.JOB_REPLAY, job.subject, _door(job.door), outcome,
        company_id=job.company_id, target=job.job_id,
        detail={"spooled_at": job.spooled_at_ms, **detail},
    )  # fmt: skip


def replay_pass(
    client: SyncClient, spool: JobSpool, ops: QueueOps, audit: AuditStore, batch: int
) -> ReplayPass:
    """Send the spool's oldest `batch` jobs to Redis (see the module's docstring)."""
    with spool.replaying() as mine:
        jobs = spool.head(batch) if mine else []
        if not jobs:
            # Nothing to send (another process of the host holds the lock, or has just
            # sent them), yet the caller's link takes this call's outcome for Redis's
            # state, and an enqueue waiting for the spool to empty asks that state
            # (fleetd.spool.service.wait_clear): one PING makes the answer true.
            client.ping()
            return ReplayPass(ran=mine)
        sendable: list[tuple[SpooledJob, JobRow]] = []
        entries: list[Stamped] = []
        ran = 0  # jobs that ran inline (fleetd.spool.finished): stored finished
        for job in jobs:
            if (done := finished_of(job.row)) is not None:
                stored, job_id = land_finished(
                    client, ops.scripts, job.row, job.spooled_at_ms, done
                )
                detail: dict[str, object] = {"duplicate": not stored, "finished": done.status}
                if job_id != job.job_id:
                    detail["existing_job"] = job_id
                entries.append(Stamped(spool.epoch, job.seq, _entry(job, "ok", detail)))
                ran += stored
                continue
            try:
                sendable.append((job, decode_row(job.row)))
            except (ValueError, KeyError, TypeError) as exc:
                # Not a row this version can send: kept in the audit log and the log
                # whole, never dropped silently.
                log.error("spool: job %s cannot be replayed (%s): %s", job.job_id, exc, job.row)
                entries.append(Stamped(spool.epoch, job.seq, _entry(job, "unreadable", {
                    "row": job.row[:4000]})))  # fmt: skip
        results = ops.enqueue_rows(client, [row for _, row in sendable], at_door=False)
        landed = 0
        for (job, _), result in zip(sendable, results, strict=True):
            detail = {"duplicate": result.duplicate}
            if result.job_id != job.job_id:
                detail["existing_job"] = result.job_id  # its idempotency key's job
            landed += not result.duplicate
            entries.append(Stamped(spool.epoch, job.seq, _entry(job, "ok", detail)))
        entries.sort(key=lambda s: s.seq)
        audit.write(client, spool.epoch, entries)
        spool.remove([job.seq for job in jobs])
        finished = sum(finished_of(job.row) is not None for job in jobs)
        dups = len(sendable) - landed + finished - ran
        return ReplayPass(landed + ran, dups, len(jobs) - len(sendable) - finished)


def replay_all(
    client: SyncClient, spool: JobSpool, ops: QueueOps, audit: AuditStore, batch: int
) -> tuple[int, float]:
    """Replay until the spool is empty (the CLI's `fleetd spool replay`): jobs sent and
    seconds taken. Stops early when another process holds the lock."""
    start, sent = time.monotonic(), 0
    while True:
        done = replay_pass(client, spool, ops, audit, batch)
        sent += done.sent
        if not done.ran or done.sent + done.unreadable == 0:
            return sent, time.monotonic() - start
