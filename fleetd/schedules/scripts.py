"""Typed calls of the schedule scripts (lua/schedule_save.lua, schedule_remove.lua);
argument order defined here only. Synchronous: callers run them inside one RedisLink hop.
(Firing a schedule is fleetd.schedules.fire_call.)"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fleetd.backend.redis_link import SyncClient
from fleetd.backend.scripts import Scripts

__all__ = ["remove", "save"]


def save(
    scripts: Scripts,
    client: SyncClient,
    mode: str,
    schedule_id: str,
    rev: int | None,
    name_field: str,
    next_due_ms: int | None,
    event_data: str,
    fields: Sequence[tuple[str, Any]],
    max_schedules: int = 0,
) -> tuple[str, str, int]:
    """mode create | update | seed; `max_schedules`: a company's cap (0 = none).
    Returns (code, detail, Redis now ms); see schedule_save.lua for the codes."""
    k = scripts.keys
    keys = [
        k.schedule(schedule_id), k.schedules_due, k.schedules_all, k.schedules_names,
        k.schedules_defaults, k.schedulers, k.events,
    ]  # fmt: skip
    args: list[Any] = [
        mode, schedule_id, "" if rev is None else rev, name_field,
        "" if next_due_ms is None else next_due_ms, event_data, max_schedules,
    ]  # fmt: skip
    for name, value in fields:
        args.extend((name, value))
    code, detail, now = scripts.call(client, "schedule_save", keys, args)
    return str(code), str(detail), int(now)


def remove(scripts: Scripts, client: SyncClient, schedule_id: str, event_data: str) -> bool:
    k = scripts.keys
    keys = [
        k.schedule(schedule_id), k.schedules_due, k.schedules_all, k.schedules_names,
        k.events,
    ]  # fmt: skip
    return bool(scripts.call(client, "schedule_remove", keys, [schedule_id, event_data]))
