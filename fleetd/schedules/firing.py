"""Firing schedules: the scheduler's Redis side, apart from its loop.

Owns:
- what is due by Redis time (`due`, `due_head`);
- handling one due occurrence (`fire_due`): plan it with fleetd.schedules.cadence (fire, skip as
  a misfire, or record an error) and carry the plan out with schedule_fire.lua, which
  compares the due time and revision this scheduler read with the stored ones, so of
  many schedulers racing for one occurrence exactly one acts (the job itself is built by
  fleetd.schedules.payload.job_row, as for a manual run; a template's runs by
  fleetd.schedules.templated: its jobs enqueued, or its workflows stored, by the same
  script call, so an occurrence makes them once or not at all);
- registering a running scheduler, so schedule changes wake it.

Every method taking `client` runs inside one RedisLink hop (the scheduler's tick).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fleetd.backend.codec import JobRow
from fleetd.backend.redis_link import SyncClient
from fleetd.jobs.model import ValidationError, format_ts
from fleetd.schedules.cadence import plan_firing
from fleetd.schedules.fire_call import schedule_fire
from fleetd.schedules.model import ScheduledJob
from fleetd.schedules.payload import job_row
from fleetd.schedules.store import ScheduleOps
from fleetd.schedules.templated import templated_runs, workflow_args
from fleetd.workflows.plan import Plan

__all__ = ["ERROR_RETRY_MS", "FireResult", "FiringOps"]

# A schedule whose run times cannot be computed any more (its time zone vanished from
# tzdata) is retried this long after the error, not in a busy loop.
ERROR_RETRY_MS = 60_000

_encode = json.JSONEncoder(separators=(",", ":")).encode


@dataclass(frozen=True, slots=True)
class FireResult:
    """One occurrence handled by a scheduler (action fire, skip or error)."""

    schedule_id: str
    name: str
    action: str
    due_ms: int
    occurrence_ms: int | None
    next_ms: int
    missed: int
    job_id: str
    duplicate: bool
    now_ms: int
    error: str = ""
    company_id: str | None = None


class FiringOps:
    def __init__(self, store: ScheduleOps) -> None:
        self.store = store
        self.keys = store.keys
        self.scripts = store.scripts
        self.queue_ops = store.queue_ops

    def due(self, client: SyncClient, now_ms: int, limit: int) -> list[tuple[str, int]]:
        """Active schedules due at now_ms, earliest first: (id, due ms)."""
        entries = client.zrangebyscore(
            self.keys.schedules_due, "-inf", now_ms, start=0, num=limit, withscores=True
        )
        return [(schedule_id, int(score)) for schedule_id, score in entries]

    def due_head(self, client: SyncClient, count: int) -> list[tuple[str, int]]:
        """The `count` earliest due schedules, due or not: (id, due ms)."""
        first = client.zrange(self.keys.schedules_due, 0, count - 1, withscores=True)
        return [(schedule_id, int(score)) for schedule_id, score in first]

    def load(self, client: SyncClient, schedule_ids: Sequence[str]) -> list[dict[str, str]]:
        """The hashes of several schedules in one round trip ({} for a deleted one)."""
        pipe = client.pipeline(transaction=False)
        for schedule_id in schedule_ids:
            pipe.hgetall(self.keys.schedule(schedule_id))
        return list(pipe.execute())

    def fire_due(
        self,
        client: SyncClient,
        schedule_id: str,
        due_ms: int,
        now_ms: int,
        grace_ms: int,
        h: Mapping[str, str] | None = None,
    ) -> FireResult | None:
        """Handle the occurrence of `schedule_id` due at due_ms: fire it, skip it as a
        misfire, or record why its job cannot be built. None when another scheduler
        (or an edit) got there first. `h`: its hash, if already read."""
        if h is None:
            h = client.hgetall(self.keys.schedule(schedule_id))
        if not h:  # deleted between the two reads
            return None
        job = ScheduledJob.from_hash(h)
        action, error = "fire", ""
        row: JobRow | None = None
        occurrence: int | None = None
        try:
            plan = plan_firing(job.cadence(), due_ms, now_ms, grace_ms, job.misfire_policy)
            action, occurrence, next_ms, missed = (
                plan.action, plan.occurrence_ms, plan.next_ms, plan.missed
            )  # fmt: skip
        except (ValidationError, RuntimeError) as exc:
            action, error = "error", f"cannot compute run times: {exc}"
            next_ms, missed = now_ms + ERROR_RETRY_MS, 0
        made: tuple[list[JobRow], list[Plan]] | None = None
        if action == "fire":
            try:
                if job.template:
                    made = templated_runs(client, self.queue_ops, job, occurrence)
                else:
                    row = job_row(self.queue_ops, job, occurrence)
            except ValidationError as exc:
                action, error = "error", f"job not enqueued: {exc}"
        event = _encode(
            {
                "schedule_id": schedule_id,
                "due": format_ts(due_ms),
                "occurrence": format_ts(occurrence),
                "missed": missed,
                "error": error or None,
            }
        )
        code, now, job_id, dup, refused = schedule_fire(
            self.scripts, client, schedule_id, action, due_ms=due_ms, rev=job.rev,
            next_due_ms=next_ms, missed=missed, occurrence_ms=occurrence, error=error,
            event_data=event, row=row, rows=made[0] if made else None,
            workflows=workflow_args(made[1]) if made else (), quota=self.queue_ops.quota,
        )  # fmt: skip
        if code != 1:
            return None
        if refused:  # the companies' quotas held the occurrence back: recorded as an error
            action, error = "error", refused
        return FireResult(
            schedule_id, job.name, action, due_ms, occurrence, next_ms, missed, job_id, dup,
            now, error, job.company_id,
        )  # fmt: skip

    def register(self, client: SyncClient, daemon_id: str, now_ms: int, ttl_ms: int) -> None:
        """Announce a running scheduler (schedule changes wake it) and forget expired ones."""
        pipe = client.pipeline(transaction=False)
        pipe.zadd(self.keys.schedulers, {daemon_id: now_ms + ttl_ms})
        pipe.zremrangebyscore(self.keys.schedulers, "-inf", now_ms)
        pipe.execute()
