"""The scheduler service: enqueues each occurrence of each schedule exactly once, on
time, however many daemons run it.

Every daemon with the scheduler role runs one; there is no leader. Schedules live in
Redis (fleetd.schedules.store) with their next due time in the `schedules:due` zset.
Each pass ("tick", one RedisLink hop) reads Redis TIME, fires what is due by that
clock, and reads the next due time. Firing one occurrence is one script that compares
the due time and the schedule's revision with what this daemon read and sets both, and
enqueues the job in the same script: of several daemons racing for an occurrence one
wins and the others change nothing. The job's idempotency key (schedule id +
occurrence) is a second lock on the same door. Host clocks decide nothing, so daemons
whose clocks are 30 s apart neither fire early nor twice.

Between due times the service sleeps on its own wake list (BLPOP with a server-side
timeout, never a blocking pop of anything that matters), which a schedule change
pushes to, so a new or edited schedule due sooner is picked up at once. The last
LOCAL_SLEEP before a due time is slept locally, since BLPOP times out only at Redis's
`hz` resolution.

Lifecycle: run() → default schedules created (once per namespace, for the job types
installed here) → started → ticks and sleeps until cancelled; on cancel a shielded
step ends its own BLPOP at once and unregisters. Redis errors are waited out with
capped backoff; nothing here stops the daemon.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from fleetd.audit.entry import Action, AuditEntry, Door, scheduler_subject
from fleetd.backend.redis_link import (
    Backoff,
    RedisCommandError,
    RedisLink,
    RedisUnavailable,
    SyncClient,
)
from fleetd.jobs.model import ValidationError, format_ts
from fleetd.schedules.firing import FireResult, FiringOps
from fleetd.schedules.store import ScheduleOps

__all__ = ["Scheduler", "SchedulerSettings"]

log = logging.getLogger("fleetd.scheduler")

# Due occurrences handled per tick: bounds one hop; a larger backlog takes more ticks
# back to back (no sleep while the batch comes back full).
BATCH = 100
# Longest sleep between ticks. Schedule changes wake the sleeper, so this only bounds
# how stale the registration may get and how long a lost wake-up could delay a change.
MAX_SLEEP = 5.0
# A scheduler's registration (who gets wake-ups) outlives three of its longest sleeps.
REGISTRATION_TTL_MS = int(3 * MAX_SLEEP * 1000)
# BLPOP times out only when Redis's serverCron runs (hz 10 by default: measured 67 ms
# for a 13 ms timeout, 201 ms for 123 ms), so the last 250 ms before a due time are
# slept with trio.sleep instead: fires land within milliseconds of their due time.
LOCAL_SLEEP = 0.25
# After an unexpected error with one schedule, leave it alone this long (the others go
# on); it is logged with its traceback.
BROKEN_RETRY = 60.0
# Pause after a pass that found work due but could do none of it (lost every race):
# the winner's write lands within a round trip.
RACE_PAUSE = 0.005
# Recent fire delays (fire time − due time, ms) kept for state dumps and tests.
DELAY_SAMPLES = 1000


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    misfire_grace: float
    create_defaults: bool = True
    reconnect_max_backoff: float = 10.0
    command_timeout: float = 10.0


@dataclass(slots=True)
class _Tick:
    now_ms: int
    next_due_ms: int | None
    results: list[FireResult] = field(default_factory=list)
    full: bool = False


class Scheduler:
    def __init__(
        self,
        link: RedisLink,
        ops: ScheduleOps,
        daemon_id: str,
        settings: SchedulerSettings,
        defaults: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """`defaults`: the default schedules the loaded plugins ship (name, job_type,
        data, schedule, priority, timezone; the spec's three come with the fleetdata
        plugin, which owns their job types)."""
        self.link = link
        self.ops = ops
        self.firing = FiringOps(ops)
        self.daemon_id = daemon_id
        self.settings = settings
        self.defaults = list(defaults)
        self._grace_ms = int(settings.misfire_grace * 1000)
        self._wake_key = ops.keys.schedule_wake(daemon_id)
        # The BLPOP must end well before the socket timeout of the connection.
        self._max_sleep = min(MAX_SLEEP, settings.command_timeout / 2)
        # Schedule id → time.monotonic() to retry it (written in the tick's thread).
        self._broken: dict[str, float] = {}
        self.fired = 0
        self.delays_ms: deque[int] = deque(maxlen=DELAY_SAMPLES)

    # -- lifecycle -------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self.settings.create_defaults:
            await self._create_defaults()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._leave_on_cancel)
            task_status.started()
            await self._loop()

    async def _leave_on_cancel(self) -> None:
        """On cancel: end our own BLPOP now (its thread cannot be abandoned) and
        unregister, so a stopping daemon never waits out a sleep."""
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + 1.0
                with contextlib.suppress(RedisUnavailable, RedisCommandError):
                    await self.link.call(self._poke_and_leave)

    def _poke_and_leave(self, client: SyncClient) -> None:
        pipe = client.pipeline(transaction=False)
        pipe.rpush(self._wake_key, "1").pexpire(self._wake_key, REGISTRATION_TTL_MS)
        pipe.zrem(self.ops.keys.schedulers, self.daemon_id)
        pipe.execute()

    async def _create_defaults(self) -> None:
        registry = self.ops.queue_ops.registry
        names: set[str] = set()
        for definition in self.defaults:
            name, job_type = definition["name"], definition["job_type"]
            if name in names:  # plugins.default_schedules refuses this; kept as a guard
                continue
            names.add(name)
            if job_type not in registry:
                log.info(
                    "default schedule %r not created: job type %r is not installed here "
                    "(it is created on the first start with a plugin that provides it)",
                    name,
                    job_type,
                )
                continue
            backoff = Backoff(self.settings.reconnect_max_backoff)
            while True:
                try:
                    outcome, schedule_id = await self.link.call(self.ops.seed, definition)
                    break
                except RedisUnavailable:
                    await backoff.sleep()
                except ValidationError as exc:
                    log.error("default schedule %r is invalid, not created: %s", name, exc)
                    outcome = "invalid"
                    break
            if outcome == "created":
                self._audit(Action.SCHEDULE_CREATE, schedule_id, None, schedule_id, {
                    "name": name, "job_type": job_type, "schedule": definition["schedule"],
                    "default": True})  # fmt: skip
                log.info(
                    "created default schedule %r (id %s, %s %s)",
                    name, schedule_id, job_type, definition["schedule"],
                )  # fmt: skip
            elif outcome in ("exists", "name_taken"):
                log.info(
                    "default schedule %r not created: a schedule with its id or name exists", name
                )

    # -- the loop --------------------------------------------------------------------

    async def _loop(self) -> None:
        backoff = Backoff(self.settings.reconnect_max_backoff)
        while True:
            try:
                tick = await self.link.call(self._tick)
            except RedisUnavailable:
                await backoff.sleep()
                continue
            except RedisCommandError as exc:  # e.g. OOM: Redis refuses writes for now
                log.error("scheduler pass failed: %s", exc)
                await backoff.sleep()
                continue
            backoff.reset()
            self._account(tick.results)
            if tick.full:
                continue
            wait = self._max_sleep
            if tick.next_due_ms is not None:
                wait = min(wait, (tick.next_due_ms - tick.now_ms) / 1000)
            if wait <= 0:
                # Still due: this scheduler lost the race for it (the winner's write is
                # landing). Broken schedules are not counted here (see _next_due).
                await trio.sleep(RACE_PAUSE)
            elif wait <= LOCAL_SLEEP:
                await trio.sleep(wait)
            else:
                try:
                    await self.link.call(self._sleep, wait - LOCAL_SLEEP)
                except RedisUnavailable:
                    await backoff.sleep()

    def _sleep(self, client: SyncClient, seconds: float) -> None:
        client.blpop([self._wake_key], timeout=max(0.01, seconds))

    def _tick(self, client: SyncClient) -> _Tick:
        """In the worker thread: Redis time, registration, due occurrences, next due."""
        ops = self.firing
        now = self.ops.now_ms(client)
        ops.register(client, self.daemon_id, now, REGISTRATION_TTL_MS)
        due = ops.due(client, now, BATCH + len(self._broken))
        due = [
            (schedule_id, due_ms) for schedule_id, due_ms in due if schedule_id not in self._broken
        ]
        # Many schedulers wake for the same due times: each works through them in its
        # own order, so they mostly fire different schedules instead of racing.
        random.shuffle(due)
        hashes = ops.load(client, [schedule_id for schedule_id, _ in due]) if due else []
        results = []
        for (schedule_id, due_ms), h in zip(due, hashes, strict=True):
            try:
                result = ops.fire_due(client, schedule_id, due_ms, now, self._grace_ms, h)
            except (RedisUnavailable, RedisCommandError):
                raise
            except Exception:
                log.exception(
                    "schedule %s: cannot fire; retrying in %ds", schedule_id, BROKEN_RETRY
                )
                self._broken[schedule_id] = time.monotonic() + BROKEN_RETRY
                continue
            if result is not None:
                results.append(result)
        return _Tick(now, self._next_due(client), results, full=len(due) >= BATCH)

    def _next_due(self, client: SyncClient) -> int | None:
        """The earliest due time not set aside as broken."""
        if self._broken:
            self._broken = {k: t for k, t in self._broken.items() if t > time.monotonic()}
        first = self.firing.due_head(client, len(self._broken) + 1)
        for schedule_id, due_ms in first:
            if schedule_id not in self._broken:
                return due_ms
        return None

    def _audit(
        self,
        action: Action,
        schedule_id: str,
        company_id: str | None,
        target: str | None,
        detail: Mapping[str, Any],
        outcome: str = "ok",
    ) -> None:
        if self.ops.audit is not None:
            self.ops.audit.submit(AuditEntry(
                action, scheduler_subject(schedule_id), Door.SCHEDULER, outcome,
                company_id=company_id, target=target, detail=detail,
            ))  # fmt: skip

    def _account(self, results: Sequence[FireResult]) -> None:
        for r in results:
            if r.action in ("fire", "error"):  # a job enqueued, or one that could not be
                detail: dict[str, Any] = {
                    "schedule_id": r.schedule_id,
                    "occurrence": format_ts(r.occurrence_ms),
                }
                if r.action == "fire":
                    detail["duplicate"] = r.duplicate
                else:
                    detail["error"] = r.error
                outcome = "ok" if r.action == "fire" else "error"
                self._audit(Action.JOB_ENQUEUE, r.schedule_id, r.company_id, r.job_id or None,
                    detail, outcome)  # fmt: skip
            if r.action == "fire" and r.occurrence_ms is not None:
                self.fired += 1
                if r.missed == 0:
                    self.delays_ms.append(r.now_ms - r.occurrence_ms)
                else:
                    log.warning(
                        "schedule %r (%s): %d occurrence(s) missed; ran once for %s (run_once)",
                        r.name, r.schedule_id, r.missed + 1, format_ts(r.occurrence_ms),
                    )  # fmt: skip
                log.debug(
                    "schedule %r (%s): enqueued %s for %s%s",
                    r.name, r.schedule_id, r.job_id, format_ts(r.occurrence_ms),
                    " (duplicate)" if r.duplicate else "",
                )  # fmt: skip
            elif r.action == "skip":
                log.warning(
                    "schedule %r (%s): %d occurrence(s) missed, skipped (misfire_policy skip); "
                    "next run %s",
                    r.name, r.schedule_id, r.missed, format_ts(r.next_ms),
                )  # fmt: skip
            else:
                log.error("schedule %r (%s): %s", r.name, r.schedule_id, r.error)
