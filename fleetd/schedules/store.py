"""Schedules in Redis: the Python API of the CLI, the HTTP layer and the scheduler.

Owns every read and write of schedules: add (optionally upserting a caller-chosen id),
update, pause, resume, remove, run now, get, list (by company), stats, and seeding a
default once. Each write is one Lua script (schedule_save, schedule_remove,
schedule_fire for a run now); run times are computed here (fleetd.schedules.cadence)
from Redis time, never from this host's clock. The scheduler's part is in
fleetd.schedules.firing. [limits] company_max_schedules caps a company's schedules.

A schedule is checked against the handler registry like a job at enqueue when its job is
defined or changed; pausing, resuming and renaming work without the job type installed.
Its data is sealed at rest like a job's (fleetd.schedules.payload decides how). A save
never seals less than was sealed, whichever process makes it: new data is sealed at the
paths sealed before as well as the handler's; unchanged data is sealed again with the
active key when this process can open it, else kept exactly as stored. A sealed value
sent back as its redaction placeholder ("***") is refused rather than stored over it.

`ScheduleOps` holds the logic as synchronous methods taking the Redis client, each one
RedisLink hop (CLI: `link.run_sync`); `Schedules` is the async (trio) facade.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import RedisLink, SyncClient
from fleetd.backend.replication import replicated
from fleetd.backend.scripts import Scripts
from fleetd.jobs.errors import QuotaExceeded
from fleetd.jobs.model import EnqueueRequest, ValidationError, format_ts, new_job_id
from fleetd.jobs.queue import EnqueueResult, QueueOps
from fleetd.schedules import scripts as schedule_scripts
from fleetd.schedules.fire_call import schedule_fire
from fleetd.schedules.model import ScheduledJob, ScheduleSpec, default_id, name_key
from fleetd.schedules.payload import at_rest, job_row, open_schedule_data, refuse_redacted
from fleetd.schedules.templated import check_templated, templated_runs, workflow_args
from fleetd.schedules.update import plan_update

if TYPE_CHECKING:
    from fleetd.audit.backlog import AuditSink
    from fleetd.engine import Engine

__all__ = [
    "ScheduleConflict",
    "ScheduleNotFound",
    "ScheduleOps",
    "Schedules",
    "new_schedule_id",
]

# An update re-reads and retries when the schedule changed between its read and its
# write (a firing bumps the rev every occurrence): a handful of tries always suffices.
SAVE_ATTEMPTS = 5

_encode = json.JSONEncoder(separators=(",", ":")).encode


class ScheduleNotFound(LookupError):
    """No schedule has this id (HTTP 404)."""


class ScheduleConflict(Exception):
    """The id or the name is taken, or the schedule kept changing (HTTP 409)."""


def new_schedule_id() -> str:
    """`sch_` + a ULID, like job ids: sortable by creation time."""
    return "sch_" + new_job_id()[4:]


class ScheduleOps:
    """The schedules' logic; every method taking `client` runs inside one Redis hop."""

    def __init__(
        self,
        keys: Keys,
        scripts: Scripts,
        queue_ops: QueueOps,
        *,
        default_timezone: str = "UTC",
        audit: AuditSink | None = None,
        max_schedules: int = 0,
    ) -> None:
        """`audit`: where the scheduler records what it does on its own (the jobs it
        fires, the defaults it seeds); the methods here record nothing — the door that
        calls them (HTTP, CLI) does. `max_schedules`: [limits] company_max_schedules."""
        self.keys = keys
        self.scripts = scripts
        self.queue_ops = queue_ops
        self.default_timezone = default_timezone
        self.audit = audit
        self.max_schedules = max_schedules

    @classmethod
    def from_engine(cls, engine: Engine) -> ScheduleOps:
        """The schedule operations of an engine's namespace, registry and config."""
        tz, cap = engine.config.scheduler.timezone, engine.config.limits.company_max_schedules
        return cls(engine.keys, engine.scripts, engine.ops, default_timezone=tz,
                   audit=engine.audit, max_schedules=cap)  # fmt: skip

    @staticmethod
    def now_ms(client: SyncClient) -> int:
        """Redis's clock: the one clock every daemon and CLI agrees on."""
        sec, usec = client.time()
        return int(sec) * 1000 + int(usec) // 1000

    # -- checking --------------------------------------------------------------------

    def check(self, spec: ScheduleSpec) -> ScheduleSpec:
        """The spec with its data as the job type's handler normalises it and its
        priority defaulted, exactly as an enqueue would (QueueOps.prepare). A template's
        runs are checked with Redis (fleetd.schedules.templated.check_templated)."""
        if spec.template is not None or spec.job_type is None:
            return spec
        request = EnqueueRequest(type=spec.job_type, data=dict(spec.data), priority=spec.priority)
        try:
            row = self.queue_ops.prepare(request, seal=False)
        except ValidationError as exc:
            if exc.field == "type":
                raise ValidationError("job_type", exc.message) from None
            raise
        return replace(spec, data=json.loads(row.data), priority=row.priority)

    def spec_of(self, job: ScheduledJob) -> ScheduleSpec:
        """The stored definition with its data opened (a sealed schedule's `data` is
        redacted). Raises ValidationError on `data` when it cannot be opened."""
        spec = job.spec()
        if not job.sealed:
            return spec
        try:
            plain = open_schedule_data(self.queue_ops, job)
        except ValidationError as exc:
            raise ValidationError("data", f"{exc.message} (send the data again)") from None
        return replace(spec, data=plain)

    def parse(self, body: Mapping[str, Any] | ScheduleSpec) -> ScheduleSpec:
        if isinstance(body, ScheduleSpec):
            return body
        return ScheduleSpec.from_dict(body, default_timezone=self.default_timezone)

    # -- reads -----------------------------------------------------------------------

    def get(self, client: SyncClient, schedule_id: str) -> ScheduledJob | None:
        h = client.hgetall(self.keys.schedule(schedule_id))
        return ScheduledJob.readable(h) if h else None

    def require(self, client: SyncClient, schedule_id: str) -> ScheduledJob:
        job = self.get(client, schedule_id)
        if job is None:
            raise ScheduleNotFound(f"no schedule {schedule_id!r}")
        return job

    def find(self, client: SyncClient, ref: str) -> ScheduledJob:
        """A schedule by id, else by name (the CLI's convenience: read from the names
        index, not every schedule); raises ScheduleNotFound, or ScheduleConflict when
        several companies use the name."""
        if (job := self.get(client, ref)) is not None:
            return job
        match = re.sub(r"([\\*?\[\]])", r"\\\1", ref) + "\n*"  # a name ends at the newline
        ids = sorted({i for _, i in client.hscan_iter(self.keys.schedules_names, match, 1000)})
        named = [j for j in map(functools.partial(self.get, client), ids) if j and j.name == ref]
        if len(named) > 1:
            both = ", ".join(j.id for j in named)
            raise ScheduleConflict(f"{len(named)} schedules are named {ref!r} ({both}); use an id")
        if not named:
            raise ScheduleNotFound(f"no schedule with id or name {ref!r}")
        return named[0]

    def list_schedules(
        self, client: SyncClient, company_id: str | None = None
    ) -> list[ScheduledJob]:
        """Every schedule, oldest first; only one company's when `company_id` is set
        (read from its own index: another company's schedules cost it nothing)."""
        k = self.keys
        index = k.schedules_all if company_id is None else k.schedules_of(company_id)
        pipe = client.pipeline(transaction=False)
        for schedule_id in client.zrange(index, 0, -1):
            pipe.hgetall(k.schedule(schedule_id))
        jobs = [ScheduledJob.readable(h) for h in pipe.execute() if h]
        return [j for j in jobs if company_id is None or j.company_id == company_id]

    def stats(self, client: SyncClient, company_id: str | None = None) -> dict[str, Any]:
        """The spec's scheduler stats plus missed_executions (all time, all schedules;
        a company's schedules' own `missed` summed when `company_id` is set)."""
        if company_id is not None:
            jobs = self.list_schedules(client, company_id)
            active = [j.next_run_ms for j in jobs if j.is_active and j.next_run_ms is not None]
            return {"total_scheduled_jobs": len(jobs), "active_jobs": len(active),
                    "inactive_jobs": len(jobs) - len(active),
                    "next_run": format_ts(min(active)) if active else None,
                    "missed_executions": sum(j.missed for j in jobs)}  # fmt: skip
        k = self.keys
        pipe = client.pipeline(transaction=False)
        pipe.zcard(k.schedules_all).zcard(k.schedules_due)
        pipe.zrange(k.schedules_due, 0, 0, withscores=True).hget(k.schedules_stats, "missed")
        total, active, first, missed = pipe.execute()
        return {
            "total_scheduled_jobs": int(total),
            "active_jobs": int(active),
            "inactive_jobs": int(total) - int(active),
            "next_run": format_ts(int(first[0][1])) if first else None,
            "missed_executions": int(missed or 0),
        }

    # -- writes ----------------------------------------------------------------------

    def _save(
        self,
        client: SyncClient,
        mode: str,
        spec: ScheduleSpec,
        *,
        rev: int | None,
        anchor_ms: int,
        next_due_ms: int | None,
        current: ScheduledJob | None = None,
        keep_data: bool = False,
    ) -> tuple[str, str]:
        assert spec.id is not None
        event = _encode({"schedule_id": spec.id, "name": spec.name})
        data, marker = at_rest(self.queue_ops, spec, current, keep_data)
        fields = [
            *((k, _encode(data) if k == "data" else v) for k, v in spec.hash_fields()),
            ("sealed", marker),
            ("anchor", anchor_ms),
        ]
        code, detail, _now = schedule_scripts.save(
            self.scripts, client, mode, spec.id, rev, name_key(spec.name, spec.company_id),
            next_due_ms, event, fields, self.max_schedules,
        )  # fmt: skip
        if code == "quota":
            raise QuotaExceeded(spec.company_id or "", "schedules", int(detail), 60.0)
        if code == "name_taken":
            company = f" for company {spec.company_id!r}" if spec.company_id else ""
            raise ScheduleConflict(
                f"schedule {detail!r} is already named {spec.name!r}{company}; names are unique"
            )
        return code, detail

    def add(
        self, client: SyncClient, body: Mapping[str, Any] | ScheduleSpec, *, upsert: bool = False
    ) -> ScheduledJob:
        """Create a schedule (the spec's create body; `id` optional). With `upsert`, a
        schedule of that id is updated instead, keeping its counters: re-running a
        deployment's `add --upsert` never duplicates anything."""
        spec = self.check(self.parse(body))
        check_templated(client, self.queue_ops, spec)
        if spec.id is None:
            spec = replace(spec, id=new_schedule_id())
        assert spec.id is not None
        for _ in range(SAVE_ATTEMPTS):
            if upsert and (current := self.get(client, spec.id)) is not None:
                refuse_redacted(spec.data, current)
                done = self._update(client, current, spec)
                if done is not None:
                    return done
                continue
            now = self.now_ms(client)
            next_due = spec.cadence(now).next_after_ms(now) if spec.is_active else None
            code, _ = self._save(
                client, "create", spec, rev=None, anchor_ms=now, next_due_ms=next_due
            )
            if code == "created":
                return self.require(client, spec.id)
            if not upsert:
                raise ScheduleConflict(f"a schedule with id {spec.id!r} exists")
        raise ScheduleConflict(f"schedule {spec.id!r} kept changing; try again")

    def _update(
        self,
        client: SyncClient,
        current: ScheduledJob,
        spec: ScheduleSpec,
        *,
        keep_data: bool = False,
    ) -> ScheduledJob | None:
        """Write `spec` over `current` unless it changed since read (then None);
        `keep_data`: current's stored data as it is (see `_at_rest`)."""
        now = self.now_ms(client)
        retimed = spec.timing_differs(current.spec())  # timing only: data not needed
        # A new expression starts its intervals now; otherwise the grid is kept.
        anchor = now if retimed else current.anchor_ms
        next_due: int | None
        if not spec.is_active:
            next_due = None
        elif retimed or not current.is_active or current.next_run_ms is None:
            # Changed or resumed: the next occurrence after now; a pause is not a misfire.
            next_due = spec.cadence(anchor).next_after_ms(now)
        else:
            next_due = current.next_run_ms
        code, _ = self._save(
            client, "update", spec, rev=current.rev, anchor_ms=anchor, next_due_ms=next_due,
            current=current, keep_data=keep_data,
        )  # fmt: skip
        if code == "missing":
            raise ScheduleNotFound(f"no schedule {spec.id!r}")
        return self.require(client, current.id) if code == "updated" else None

    def update(
        self, client: SyncClient, schedule_id: str, changes: Mapping[str, Any]
    ) -> ScheduledJob:
        """Change some fields (PUT /jobs/scheduled/{id}); the rest stay. Run times are
        recomputed from now when the schedule, its time zone or is_active change.

        The data is checked against the handler only when data, job type, priority or
        `encrypt` change: pausing, resuming or renaming (the dashboard sends the other
        fields unchanged) works where the handler is not installed, and without keys
        (sealed data this process cannot open is kept as stored). Turning `encrypt`
        off needs the data sent again (fleetd.schedules.update has the rules)."""
        for _ in range(SAVE_ATTEMPTS):
            current = self.require(client, schedule_id)
            stored, spec, keep_data = plan_update(self, current, changes)
            if spec == stored:
                return current
            check_templated(client, self.queue_ops, spec)
            done = self._update(client, current, spec, keep_data=keep_data)
            if done is not None:
                return done
        raise ScheduleConflict(f"schedule {schedule_id!r} kept changing; try again")

    def pause(self, client: SyncClient, schedule_id: str) -> ScheduledJob:
        return self.update(client, schedule_id, {"is_active": False})

    def resume(self, client: SyncClient, schedule_id: str) -> ScheduledJob:
        return self.update(client, schedule_id, {"is_active": True})

    def remove(self, client: SyncClient, schedule_id: str) -> None:
        """Delete a schedule (its jobs already enqueued stay)."""
        event = _encode({"schedule_id": schedule_id})
        if not schedule_scripts.remove(self.scripts, client, schedule_id, event):
            raise ScheduleNotFound(f"no schedule {schedule_id!r}")

    def run_now(self, client: SyncClient, schedule_id: str) -> EnqueueResult:
        """Enqueue the schedule's job now, tagged `schedule:<id>` and `run-now`; the
        cadence (next_run) is left alone. Works for paused schedules too. The companies'
        quotas apply: over one raises QuotaExceeded (nothing stored)."""
        current = self.require(client, schedule_id)
        rows, plans = (templated_runs(client, self.queue_ops, current, None) if current.template
                       else ([job_row(self.queue_ops, current, None)], []))  # fmt: skip
        fire = functools.partial(schedule_fire, self.scripts, schedule_id=schedule_id,
            action="manual", event_data=_encode({"schedule_id": schedule_id}), rows=rows,
            workflows=workflow_args(plans), quota=self.queue_ops.quota)  # fmt: skip
        code, now, job_id, dup, _ = replicated(client, self.keys, self.queue_ops.wait, fire)
        if code != 1:
            raise ScheduleNotFound(f"no schedule {schedule_id!r}")
        return EnqueueResult(job_id, "pending", now, dup)

    def seed(self, client: SyncClient, definition: Mapping[str, Any]) -> tuple[str, str]:
        """Create a default schedule unless it was ever created (deleted stays deleted).
        Its id is derived from its name. Returns (outcome, id): outcome created, seen
        (created before), exists (the id is taken) or name_taken."""
        spec = self.check(self.parse({**definition, "id": default_id(definition["name"])}))
        assert spec.id is not None
        now = self.now_ms(client)
        due = spec.cadence(now).next_after_ms(now)
        try:
            code, _ = self._save(client, "seed", spec, rev=None, anchor_ms=now, next_due_ms=due)
        except ScheduleConflict:
            code = "name_taken"
        return code, spec.id


class Schedules:
    """The async facade: validation on the trio thread where possible, one hop each."""

    def __init__(self, link: RedisLink, ops: ScheduleOps) -> None:
        self.link = link
        self.ops = ops

    async def add(
        self, body: Mapping[str, Any] | ScheduleSpec, *, upsert: bool = False
    ) -> ScheduledJob:
        return await self.link.call(lambda c: self.ops.add(c, body, upsert=upsert))

    async def update(self, schedule_id: str, changes: Mapping[str, Any]) -> ScheduledJob:
        return await self.link.call(self.ops.update, schedule_id, changes)

    async def pause(self, schedule_id: str) -> ScheduledJob:
        return await self.link.call(self.ops.pause, schedule_id)

    async def resume(self, schedule_id: str) -> ScheduledJob:
        return await self.link.call(self.ops.resume, schedule_id)

    async def remove(self, schedule_id: str) -> None:
        await self.link.call(self.ops.remove, schedule_id)

    async def run_now(self, schedule_id: str) -> EnqueueResult:
        return await self.link.call(self.ops.run_now, schedule_id)

    async def get(self, schedule_id: str) -> ScheduledJob | None:
        return await self.link.call(self.ops.get, schedule_id)

    async def stats(self, company_id: str | None = None) -> dict[str, Any]:
        return await self.link.call(self.ops.stats, company_id)
