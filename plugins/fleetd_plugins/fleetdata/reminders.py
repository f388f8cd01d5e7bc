"""`maintenance_reminder`: reminders for vehicles whose service is due, e-mailed once.

Data: `{"vehicle_id": uuid (optional), "maintenance_type": "routine_check" (default) |
"oil_change" | "tire_rotation" | "brake_inspection" | "repair", "within_km": 500,
"within_days": 7}`.
With `vehicle_id`, that vehicle (of the job's company) gets a reminder for its next due
service, due yet or not: someone asked for it. Without one, every active vehicle in
scope whose service is due, or falls due within `within_km` kilometres or `within_days`
days, gets one (see due.py; the weekly default schedule runs this for all companies).

Exactly one reminder per due service: its id is derived from (vehicle, type, due point)
and the table has a unique key on them, so a retry, a second run or a concurrent job
inserts nothing new (`INSERT … ON CONFLICT DO NOTHING`). Each reminder not yet notified
enqueues one `email_notification` job per active fleet manager of the vehicle's company,
with the idempotency key `maintenance-reminder:<reminder id>:<manager id>`, then records
`notified_at`. A crash between the two re-enqueues on the retry with the same keys, and
fleetd returns the existing job instead of a second one: a manager is never mailed twice
for one due service (while that e-mail job is kept, 7 days by default; `notified_at` is
set long before that).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from fleetd import HandlerDefaults, JobContext, JobHandler, PermanentError, ValidationError

from .due import ServiceDue, due_columns, vehicle_due
from .scope import Scope
from .source import Db, FleetData

__all__ = ["MaintenanceReminderHandler"]

MAINTENANCE_TYPES = ("routine_check", "oil_change", "tire_rotation", "brake_inspection", "repair")
# Reminder ids: uuid5 in this namespace of (vehicle, type, due km, due date).
REMINDER_NAMESPACE = uuid.UUID("6f1e6c1e-5d1b-4c57-9a55-8e3c1f0b7a42")
# Reminders listed in a job's result (the count is always complete).
MAX_LISTED = 100
# Reminders per INSERT: 8 parameters each, 4,000 in all, well under SQLite's limit of
# 32,766 bound parameters (and PostgreSQL's 65,535).
INSERT_CHUNK = 500
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "vehicle_id": {"type": "string", "format": "uuid"},
        "maintenance_type": {"enum": list(MAINTENANCE_TYPES)},
        "within_km": {"type": "number", "minimum": 0, "maximum": 100_000},
        "within_days": {"type": "integer", "minimum": 0, "maximum": 365},
    },
    "additionalProperties": False,
}


@dataclass(frozen=True, slots=True)
class Candidate:
    vehicle: dict[str, Any]
    due: ServiceDue
    reason: str  # due.reason, or "requested"

    @property
    def reminder_id(self) -> str:
        v, d = self.vehicle, self.due
        key = f"{v['id']}|{v['mt']}|{d.due_odometer_km}|{d.due_date.isoformat()}"
        return str(uuid.uuid5(REMINDER_NAMESPACE, key))


def _vehicles(db: Db, scope: Scope, mt: str, vehicle_id: str | None) -> list[dict[str, Any]]:
    one = " AND v.id = :vehicle_id" if vehicle_id else " AND v.status = 'active'"
    rows = db.all(
        "SELECT v.id, v.company_id, c.name AS company, v.name, v.plate_number, v.status, "
        f"{due_columns(':mt')} FROM vehicles v JOIN companies c ON c.id = v.company_id "
        f"WHERE 1 = 1{one}{scope.where('v')} ORDER BY v.company_id, v.name, v.id",
        scope.params(mt=mt, vehicle_id=vehicle_id),
    )
    return [{**row, "mt": mt} for row in rows]


def _insert(db: Db, found: list[Candidate], now: str, job_id: str) -> list[dict[str, Any]]:
    """Insert the reminders that do not exist yet; all of them, as stored, with
    `created` telling which this call inserted (the ids its INSERT returned). Two
    statements per INSERT_CHUNK reminders, not one per reminder."""
    out: list[dict[str, Any]] = []
    for first in range(0, len(found), INSERT_CHUNK):
        chunk = found[first : first + INSERT_CHUNK]
        values: list[str] = []
        params: dict[str, Any] = {"now": now, "job_id": job_id}
        for i, c in enumerate(chunk):
            v, d = c.vehicle, c.due
            values.append(f"(:id{i}, :company_id{i}, :vehicle_id{i}, :mt{i}, :due_km{i}, "
                          f":due_date{i}, :reason{i}, :odometer{i}, :now, :job_id)")  # fmt: skip
            params |= {
                f"id{i}": c.reminder_id, f"company_id{i}": v["company_id"],
                f"vehicle_id{i}": v["id"], f"mt{i}": v["mt"], f"due_km{i}": d.due_odometer_km,
                f"due_date{i}": d.due_date.isoformat(), f"reason{i}": c.reason,
                f"odometer{i}": v["odometer_km"],
            }  # fmt: skip
        inserted = db.all(
            "INSERT INTO maintenance_reminders (id, company_id, vehicle_id, maintenance_type, "
            "due_odometer_km, due_date, reason, odometer_km, created_at, job_id) VALUES "
            + ", ".join(values)
            + " ON CONFLICT (vehicle_id, maintenance_type, due_odometer_km, due_date) "
            "DO NOTHING RETURNING id",
            params,
        )
        created = {row["id"] for row in inserted}
        where, ids = db.in_list("r", [c.reminder_id for c in chunk])
        stored = db.all(
            "SELECT id, notified_at, emails FROM maintenance_reminders WHERE id IN " + where, ids
        )
        out += [{**row, "created": row["id"] in created} for row in stored]
    return out


def _managers(db: Db, company_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {cid: [] for cid in company_ids}
    if not company_ids:
        return out
    where, params = db.in_list("c", company_ids)
    for row in db.all(
        "SELECT id, company_id, name, email FROM drivers WHERE role = 'fleet_manager' "
        f"AND status = 'active' AND email IS NOT NULL AND company_id IN {where} "
        "ORDER BY company_id, name, id",
        params,
    ):
        out[row["company_id"]].append(row)
    return out


def _mark(db: Db, reminder_id: str, emails: int, now: str) -> None:
    db.execute(
        "UPDATE maintenance_reminders SET notified_at = :now, emails = :emails "
        "WHERE id = :id AND notified_at IS NULL",
        {"now": now, "emails": emails, "id": reminder_id},
    )


def _mailbox(name: str, address: str) -> str:
    """`"Jane Doe" <jane@example.com>`: the name quoted, so any character is safe."""
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" <{address}>'


def _mail(c: Candidate) -> tuple[str, str]:
    v, d = c.vehicle, c.due
    what = v["mt"].replace("_", " ")
    subject = f"Maintenance due: {v['name']} ({v['plate_number']}), {what}"
    last = (
        f"{d.last_service_date} at {d.last_service_km:,.0f} km"
        if d.last_service_date and d.last_service_km is not None
        else "none on record"
    )
    lines = [
        ("Odometer now", f"{v['odometer_km']:,.0f} km"),
        ("Due at", f"{d.due_odometer_km:,} km or on {d.due_date}, whichever comes first"),
        ("Remaining", f"{d.km_left:,.0f} km, {d.days_left} days (negative: overdue)"),
        (f"Last {what}", last),
        ("Reason", c.reason.replace("_", " ")),
    ]
    body = (
        f"{v['company']}: {v['name']} ({v['plate_number']}) is due for {what}.\n\n"
        + "".join(f"{label + ':':<22}{value}\n" for label, value in lines)
        + "\nPlease book the service. This reminder is sent once per due service.\n"
    )
    return subject, body


class MaintenanceReminderHandler(JobHandler):
    job_type = "maintenance_reminder"
    description = "Remind fleet managers of vehicles due for service (one vehicle or all due)"
    schema = SCHEMA
    defaults = HandlerDefaults(timeout=300.0)

    def __init__(self, source: FleetData) -> None:
        self.source = source

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if "vehicle_id" in data:  # one spelling in the database (uuids are lower case)
            data = {**data, "vehicle_id": str(uuid.UUID(data["vehicle_id"]))}
        return {"maintenance_type": "routine_check", **data}

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        scope = Scope.of(ctx.company_id)
        mt = data.get("maintenance_type", "routine_check")
        vehicle_id = data.get("vehicle_id")
        today = datetime.now(UTC).date()
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        async with self.source.session() as s:
            vehicles = await s.run(_vehicles, scope, mt, vehicle_id)
            if vehicle_id and not vehicles:
                where = f"company {scope.company_id}" if scope.company_id else "the database"
                raise PermanentError(f"vehicle {vehicle_id} not found in {where}")
            if vehicle_id and vehicles[0]["status"] == "retired":
                raise PermanentError(f"vehicle {vehicle_id} is retired: no service is due")
            found = self._due(vehicles, data, today, requested=bool(vehicle_id))
            stored = await s.run(_insert, found, now, ctx.job.id)
            managers = await s.run(_managers, sorted({c.vehicle["company_id"] for c in found}))
            by_id = {c.reminder_id: c for c in found}
            emails = duplicates = skipped = notified = 0
            for row in stored:
                if row["notified_at"] is not None:
                    continue
                c = by_id[row["id"]]
                new, dup, bad = await self._notify(ctx, c, managers[c.vehicle["company_id"]])
                await s.run(_mark, c.reminder_id, new + dup, now)
                emails, duplicates, notified = emails + new, duplicates + dup, notified + 1
                skipped += bad
        created = sum(1 for r in stored if r["created"])
        return {
            "maintenance_type": mt,
            "company_id": scope.company_id,
            "vehicles_checked": len(vehicles),
            "due": len(found),
            "created": created,
            "already_reminded": len(found) - created,
            "notified": notified,
            "emails": emails,
            # E-mails an earlier attempt had enqueued already (same idempotency key).
            "emails_already_enqueued": duplicates,
            # Managers whose address the e-mail job type refused (logged, not retried).
            "skipped_recipients": skipped,
            "reminders": [
                {
                    "id": c.reminder_id,
                    "vehicle_id": c.vehicle["id"],
                    "reason": c.reason,
                    "due_odometer_km": c.due.due_odometer_km,
                    "due_date": c.due.due_date.isoformat(),
                    "km_left": c.due.km_left,
                    "days_left": c.due.days_left,
                }
                for c in found[:MAX_LISTED]
            ],
        }

    @staticmethod
    def _due(
        vehicles: list[dict[str, Any]], data: dict[str, Any], today: date, *, requested: bool
    ) -> list[Candidate]:
        out = []
        for v in vehicles:
            state = vehicle_due(
                v, today, within_km=data.get("within_km", 500),
                within_days=data.get("within_days", 7),
            )  # fmt: skip
            if state.due or requested:
                out.append(Candidate(v, state, state.reason or "requested"))
        return out

    @staticmethod
    async def _notify(
        ctx: JobContext, c: Candidate, managers: list[dict[str, Any]]
    ) -> tuple[int, int, int]:
        """Enqueue the reminder's e-mails: (new jobs, duplicates of earlier attempts,
        managers skipped because the e-mail job refused their address)."""
        subject, body = _mail(c)
        new = dup = bad = 0
        for m in managers:
            try:
                done = await ctx.enqueue(
                    "email_notification",
                    {"to": _mailbox(m["name"], m["email"]), "subject": subject, "body": body},
                    company_id=c.vehicle["company_id"],
                    idempotency_key=f"maintenance-reminder:{c.reminder_id}:{m['id']}",
                    tags=["maintenance_reminder", f"reminder:{c.reminder_id}"],
                )
            except ValidationError as exc:
                # One manager's broken address must not keep the others uninformed.
                ctx.logger.warning("reminder %s: not e-mailing manager %s: %s",
                                   c.reminder_id, m["id"], exc)  # fmt: skip
                bad += 1
                continue
            dup, new = (dup + 1, new) if done.duplicate else (dup, new + 1)
        if not managers:
            ctx.logger.warning(
                "reminder %s: company %s has no active fleet manager with an e-mail address",
                c.reminder_id,
                c.vehicle["company_id"],
            )
        return new, dup, bad
