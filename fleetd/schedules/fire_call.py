"""schedule_fire.lua's typed call; its argument order is defined here only.

One occurrence of a schedule, fired by the scheduler or run now by an admin: the
occurrence's jobs (or a template's jobs and workflows) stored and the schedule advanced
in one script call (the script's header has the contract). The companies' quotas at the
door apply to an occurrence as to any enqueue: a fire they refuse is recorded as the
schedule's error and the schedule advances; a run now they refuse raises QuotaExceeded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from fleetd.backend.codec import JobRow, encode_row
from fleetd.backend.redis_link import SyncClient
from fleetd.backend.scripts import WAKE_TOKEN_CAP, Scripts, quota_refusal
from fleetd.jobs.status import JobStatus

__all__ = ["Fired", "schedule_fire"]


class Fired(NamedTuple):
    """code 1 done, 0 lost (the due score or rev moved, or the schedule is gone or
    paused), -1 not due yet by Redis time; `error`: a fire the quotas refused, as
    recorded on the schedule ('' otherwise)."""

    code: int
    now_ms: int
    job_id: str
    duplicate: bool
    error: str = ""


def schedule_fire(
    scripts: Scripts,
    client: SyncClient,
    schedule_id: str,
    action: str,
    *,
    due_ms: int = 0,
    rev: int = 0,
    next_due_ms: int = 0,
    missed: int = 0,
    occurrence_ms: int | None = None,
    error: str = "",
    event_data: str = "{}",
    row: JobRow | None = None,
    rows: Sequence[JobRow] | None = None,
    workflows: Sequence[Any] = (),
    quota: str = "",
) -> Fired:
    """action fire | skip | error | manual; `row` is the job for fire and manual;
    `rows` instead: a template's jobs; `workflows`: a template's workflows, as
    fleetd.workflows.scripts.plan_args encodes them, stored by the same call; `quota`:
    the companies' quotas (Limits.encode_quota; '' = none)."""
    k = scripts.keys
    keys = [
        k.schedule(schedule_id), k.schedules_due, k.schedules_stats, k.queue, k.delayed,
        k.seq, k.status(JobStatus.PENDING), k.events, k.wake, k.workflows,
    ]  # fmt: skip
    args: list[Any] = [
        WAKE_TOKEN_CAP, schedule_id, action, due_ms, rev, next_due_ms, missed,
        "" if occurrence_ms is None else occurrence_ms, error, event_data, quota,
        len(workflows), *workflows,
    ]  # fmt: skip
    if rows is not None:
        args.extend(encode_row(r) for r in rows)
    else:
        args.append("" if row is None else encode_row(row))
    reply = scripts.call(client, "schedule_fire", keys, args)
    if int(reply[0]) == -2:
        raise quota_refusal(reply[2:])
    refused = str(reply[4]) if len(reply) > 4 else ""
    return Fired(int(reply[0]), int(reply[1]), str(reply[2]), int(reply[3]) == 1, refused)
