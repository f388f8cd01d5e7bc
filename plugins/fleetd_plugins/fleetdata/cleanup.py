"""`data_cleanup`: delete GPS points, audit log entries or driver events older than N days.

Data: `{"cleanup_type": "gps_tracks"|"audit_logs"|"driver_events", "older_than_days": 90,
"dry_run": false}`. `older_than_days` below `[data] cleanup_floor_days` (7 by default) is
refused at enqueue, so a slip of the finger cannot wipe last week's tracks. Scoped to the
job's company when it has one; otherwise every company's rows (the daily default).

Where: the relation and timestamp column of `[data] cleanup_<type>` (targets.py): the
contract's view by default, or the platform's own table; the names are validated at
config load and quoted by the database library (`Db.ident`), never pasted as text.

Deleted in bounded batches, oldest first: each batch of `[data] cleanup_batch` rows
(5,000) is one short transaction, followed by a pause of `[data] cleanup_pause` (50 ms),
so other users of the database never wait long behind it and a huge backlog drains
without one giant transaction. Progress is reported per batch (of the count taken at the
start). Cancelled or crashed part-way, what was deleted stays deleted and a retry carries
on: running it twice is harmless. `dry_run` only counts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import trio

from fleetd import Config, HandlerDefaults, JobContext, JobHandler, ValidationError

from .config import DataConfig
from .progress import Progress
from .scope import Scope
from .source import Db, FleetData
from .targets import DEFAULTS, Target

__all__ = ["CLEANUP_TYPES", "DataCleanupHandler"]

CLEANUP_TYPES = tuple(DEFAULTS)
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "cleanup_type": {"enum": list(CLEANUP_TYPES)},
        "older_than_days": {"type": "integer", "minimum": 1, "maximum": 36_500},
        "dry_run": {"type": "boolean"},
    },
    "required": ["cleanup_type", "older_than_days"],
    "additionalProperties": False,
}


def _count(db: Db, target: Target, scope: Scope, cutoff: str) -> int:
    table, column = db.ident(*target.parts), db.ident(target.column)
    return int(
        db.value(
            f"SELECT COUNT(*) FROM {table} x WHERE x.{column} < :cutoff{scope.where('x')}",
            scope.params(cutoff=cutoff),
        )
        or 0
    )


def _delete_batch(db: Db, target: Target, scope: Scope, cutoff: str, size: int) -> int:
    """One batch, oldest first, in the caller's transaction (committed by Session.run)."""
    table, column = db.ident(*target.parts), db.ident(target.column)
    return db.execute(
        f"DELETE FROM {table} WHERE id IN (SELECT x.id FROM {table} x WHERE x.{column} < "
        f":cutoff{scope.where('x')} ORDER BY x.{column} LIMIT :size)",
        scope.params(cutoff=cutoff, size=size),
    )


class DataCleanupHandler(JobHandler):
    job_type = "data_cleanup"
    description = "Delete GPS tracks, audit logs or driver events older than N days, in batches"
    schema = SCHEMA
    # Spec: clean-up is background work (low, 1). An hour drains ~50 million rows.
    defaults = HandlerDefaults(priority=1, timeout=3600.0)

    def __init__(self, source: FleetData, config: Config) -> None:
        self.source = source
        data = config.section(DataConfig)
        self.floor = data.cleanup_floor_days
        self.batch = data.cleanup_batch
        self.pause = data.cleanup_pause
        self.targets = data.cleanup_targets()

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        days = data["older_than_days"]
        if days < self.floor:
            raise ValidationError(
                "data.older_than_days",
                f"must be at least {self.floor} days ([data] cleanup_floor_days), got {days}",
            )
        return data

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        kind, days = data["cleanup_type"], data["older_than_days"]
        target = self.targets[kind]
        scope = Scope.of(ctx.company_id)
        cutoff = (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
        result: dict[str, Any] = {
            "cleanup_type": kind,
            "older_than_days": days,
            "cutoff": cutoff,
            "company_id": scope.company_id,
            "target": str(target),
        }
        deleted = batches = 0
        async with self.source.session() as s:
            total = await s.run(_count, target, scope, cutoff)
            if data.get("dry_run"):
                return {**result, "dry_run": True, "would_delete": total, "deleted": 0}
            progress = Progress(ctx, total)
            while True:
                n = await s.run(_delete_batch, target, scope, cutoff, self.batch)
                deleted += n
                batches += 1
                await progress.update(deleted, f"deleted {deleted:,} of {total:,} {kind} rows")
                if n < self.batch:
                    break
                await trio.sleep(self.pause)
        await progress.update(deleted, f"deleted {deleted:,} {kind} rows", final=True)
        return {**result, "deleted": deleted, "batches": batches, "batch_size": self.batch}
