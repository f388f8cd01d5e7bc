"""When a vehicle's next service falls due (sans-IO; reminders and the maintenance report).

A vehicle is serviced every `service_interval_km` kilometres or `service_interval_days`
days, whichever comes first, counted from its last service of that maintenance type
(the latest maintenance log; with none on record, from the day it entered service at 0
km). The due point, (odometer reading, date), identifies one due service: reminders are
unique per vehicle, type and due point. `within_km`/`within_days` flag a vehicle a
little early, so a weekly check does not remind a week late.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

__all__ = ["ServiceDue", "due_columns", "service_due", "vehicle_due"]


@dataclass(frozen=True, slots=True)
class ServiceDue:
    last_service_date: date | None
    last_service_km: float | None
    due_odometer_km: int
    due_date: date
    km_left: float  # negative: overdue by that much
    days_left: int
    reason: str | None  # "distance", "days", "distance_and_days" or None (not due)

    @property
    def due(self) -> bool:
        return self.reason is not None


def service_due(
    *,
    odometer_km: float,
    interval_km: int,
    interval_days: int,
    last_date: date | None,
    last_km: float | None,
    in_service: date,
    today: date,
    within_km: float = 0,
    within_days: int = 0,
) -> ServiceDue:
    base_date = last_date or in_service
    base_km = 0.0 if last_km is None else last_km
    due_km = round(base_km + interval_km)
    due_date = base_date + timedelta(days=interval_days)
    km_left = round(due_km - odometer_km, 1)
    days_left = (due_date - today).days
    by_km, by_days = km_left <= within_km, days_left <= within_days
    reason = (
        "distance_and_days" if by_km and by_days
        else "distance" if by_km
        else "days" if by_days
        else None
    )  # fmt: skip
    return ServiceDue(last_date, last_km, due_km, due_date, km_left, days_left, reason)


def due_columns(maintenance_type: str) -> str:
    """The SELECT columns `vehicle_due` reads, for a vehicle aliased `v`: its interval and
    odometer, and its last service of `maintenance_type` (a bind parameter such as
    `:mt`, or an SQL literal), found through the maintenance_logs_vehicle_type index."""
    return (
        "v.odometer_km, v.service_interval_km, v.service_interval_days, v.in_service_date, "
        "(SELECT MAX(l.service_date) FROM maintenance_logs l WHERE l.vehicle_id = v.id "
        f" AND l.maintenance_type = {maintenance_type}) AS last_date, "
        "(SELECT MAX(l.odometer_km) FROM maintenance_logs l WHERE l.vehicle_id = v.id "
        f" AND l.maintenance_type = {maintenance_type}) AS last_km"
    )


def vehicle_due(
    row: Mapping[str, Any], today: date, *, within_km: float = 0, within_days: int = 0
) -> ServiceDue:
    """`service_due` of a row selected with `due_columns`."""
    return service_due(
        odometer_km=row["odometer_km"],
        interval_km=row["service_interval_km"],
        interval_days=row["service_interval_days"],
        last_date=date.fromisoformat(row["last_date"]) if row["last_date"] else None,
        last_km=row["last_km"],
        in_service=date.fromisoformat(row["in_service_date"]),
        today=today,
        within_km=within_km,
        within_days=within_days,
    )
