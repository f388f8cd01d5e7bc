"""The four reports' figures: one SQL pass per table, arithmetic in Python.

Each builder runs in a worker thread on one connection (`FleetData.run`) and returns a
`Report`: summary figures (the job's result), the main table (one row per vehicle or
driver of the scope, including those without activity) and extra sections. Activity is
what falls in the period: trips by start time, fuel fill-ups by fill time, events by
time, maintenance by service date (UTC, both dates included). Every query is scoped to
the job's company when it has one. Each table is aggregated in its own sub-query that
filters by time (and company) first, so the (company_id, time) indexes do the work.

Definitions (docs/FLEETDATA.md has them for users):
- l_per_100km = trip fuel / trip distance × 100; cost_per_km = cost / trip distance;
- driver score = 100 − 10 × (harsh braking + harsh acceleration + sharp cornering +
  2 × speeding) per 100 km, at least 0; none for a driver without distance;
- a vehicle is due when its next routine_check falls due by now (see due.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from .due import due_columns, vehicle_due
from .formats import Column, parse_columns
from .period import Period
from .scope import Scope
from .source import Db

__all__ = ["BUILDERS", "Report"]

EVENT_TYPES = ("harsh_braking", "harsh_acceleration", "sharp_cornering", "speeding")
# Speeding weighs double in the driver score: it is the one event a driver chooses.
EVENT_WEIGHTS = {"harsh_braking": 1, "harsh_acceleration": 1, "sharp_cornering": 1, "speeding": 2}
SCORE_PER_WEIGHTED_EVENT_PER_100KM = 10.0
# The maintenance report's due point is the next routine check (as the reminders' default).
ROUTINE_DUE_COLUMNS = due_columns("'routine_check'")


@dataclass
class Report:
    summary: dict[str, Any]
    title: str  # of the main table (an XLSX sheet)
    columns: list[Column]
    rows: list[tuple[Any, ...]]
    sections: dict[str, tuple[list[Column], list[tuple[Any, ...]]]] = field(default_factory=dict)


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _ratio(num: float, den: float, scale: float = 1.0, digits: int = 2) -> float | None:
    return round(num / den * scale, digits) if den else None


def _params(scope: Scope, period: Period) -> dict[str, Any]:
    return scope.params(start_ts=period.start_ts, end_ts=period.end_ts,
                        start_date=str(period.start), end_date=str(period.end))  # fmt: skip


def _trips(scope: Scope, key: str) -> str:
    return (
        f"SELECT {key} AS k, COUNT(*) AS trips, SUM(distance_km) AS distance_km, "
        "SUM(duration_s) AS duration_s, SUM(fuel_used_l) AS fuel_used_l FROM trips t "
        f"WHERE t.started_at >= :start_ts AND t.started_at < :end_ts{scope.where('t')} "
        f"GROUP BY {key}"
    )


def _fuel(scope: Scope) -> str:
    return (
        "SELECT vehicle_id AS k, COUNT(*) AS fill_ups, SUM(liters) AS liters, "
        "SUM(total_cost) AS cost FROM fuel_logs f "
        f"WHERE f.filled_at >= :start_ts AND f.filled_at < :end_ts{scope.where('f')} "
        "GROUP BY vehicle_id"
    )


def _maint(scope: Scope) -> str:
    return (
        "SELECT vehicle_id AS k, COUNT(*) AS services, SUM(cost) AS cost, "
        "SUM(CASE WHEN maintenance_type = 'routine_check' THEN 1 ELSE 0 END) AS routine "
        "FROM maintenance_logs m WHERE m.service_date >= :start_date "
        f"AND m.service_date <= :end_date{scope.where('m')} GROUP BY vehicle_id"
    )


def fleet_summary(db: Db, scope: Scope, period: Period, today: date) -> Report:
    rows = db.all(
        "SELECT v.id, v.company_id, v.name, v.plate_number, v.status, v.odometer_km, "
        "t.trips, t.distance_km, t.duration_s, t.fuel_used_l, f.cost AS fuel_cost, "
        "m.cost AS maintenance_cost FROM vehicles v "
        f"LEFT JOIN ({_trips(scope, 'vehicle_id')}) t ON t.k = v.id "
        f"LEFT JOIN ({_fuel(scope)}) f ON f.k = v.id "
        f"LEFT JOIN ({_maint(scope)}) m ON m.k = v.id "
        f"WHERE 1 = 1{scope.where('v')} ORDER BY v.company_id, v.name, v.id",
        _params(scope, period),
    )
    out = []
    total = dict.fromkeys(("trips", "distance", "duration", "fuel", "fuel_cost", "maint"), 0.0)
    for r in rows:
        trips, km = r["trips"] or 0, r["distance_km"] or 0.0
        dur, fuel = r["duration_s"] or 0, r["fuel_used_l"] or 0.0
        fcost, mcost = r["fuel_cost"] or 0.0, r["maintenance_cost"] or 0.0
        for key, value in zip(total, (trips, km, dur, fuel, fcost, mcost), strict=True):
            total[key] += value
        out.append((
            r["id"], r["company_id"], r["name"], r["plate_number"], r["status"],
            _r(r["odometer_km"], 1), trips, _r(km), _r(dur / 3600), _r(fuel),
            _ratio(fuel, km, 100), _r(fcost), _r(mcost),
        ))  # fmt: skip
    active = sum(1 for r in rows if r["status"] == "active")
    used = sum(1 for r in rows if r["trips"])
    km = total["distance"]
    summary = {
        "vehicles": len(rows),
        "active_vehicles": active,
        "vehicles_used": used,
        "utilization_pct": _ratio(used, active, 100, 1),
        "trips": int(total["trips"]),
        "distance_km": _r(km),
        "driving_hours": _r(total["duration"] / 3600),
        "fuel_used_l": _r(total["fuel"]),
        "avg_trip_km": _ratio(km, total["trips"]),
        "l_per_100km": _ratio(total["fuel"], km, 100),
        "fuel_cost": _r(total["fuel_cost"]),
        "maintenance_cost": _r(total["maint"]),
        "cost_per_km": _ratio(total["fuel_cost"] + total["maint"], km, 1, 3),
    }
    columns = parse_columns(
        "vehicle_id", "company_id", "name", "plate_number", "status", "odometer_km:float",
        "trips:int", "distance_km:float", "driving_hours:float", "fuel_used_l:float",
        "l_per_100km:float", "fuel_cost:float", "maintenance_cost:float",
    )  # fmt: skip
    return Report(summary, "Vehicles", columns, out)


def driver_performance(db: Db, scope: Scope, period: Period, today: date) -> Report:
    counts = ", ".join(
        f"SUM(CASE WHEN event_type = '{e}' THEN 1 ELSE 0 END) AS {e}" for e in EVENT_TYPES
    )
    rows = db.all(
        "SELECT d.id, d.company_id, d.name, d.status, t.trips, t.distance_km, t.duration_s, "
        f"{', '.join('e.' + e for e in EVENT_TYPES)} FROM drivers d "
        f"LEFT JOIN ({_trips(scope, 'driver_id')}) t ON t.k = d.id "
        f"LEFT JOIN (SELECT driver_id AS k, {counts} FROM driver_events e "
        f"WHERE e.occurred_at >= :start_ts AND e.occurred_at < :end_ts{scope.where('e')} "
        "GROUP BY driver_id) e ON e.k = d.id "
        f"WHERE d.role = 'driver'{scope.where('d')} ORDER BY d.company_id, d.name, d.id",
        _params(scope, period),
    )
    out, scored = [], []
    by_type = dict.fromkeys(EVENT_TYPES, 0)
    trips = km_all = hours = 0.0
    for r in rows:
        km = r["distance_km"] or 0.0
        events = {e: int(r[e] or 0) for e in EVENT_TYPES}
        for e, n in events.items():
            by_type[e] += n
        weighted = sum(EVENT_WEIGHTS[e] * n for e, n in events.items())
        score = (
            round(max(0.0, 100 - SCORE_PER_WEIGHTED_EVENT_PER_100KM * weighted / km * 100), 1)
            if km else None
        )  # fmt: skip
        if score is not None:
            scored.append((score, r["id"], r["name"]))
        trips += r["trips"] or 0
        km_all += km
        hours += (r["duration_s"] or 0) / 3600
        out.append((
            r["id"], r["company_id"], r["name"], r["status"], r["trips"] or 0, _r(km),
            _r((r["duration_s"] or 0) / 3600), *events.values(), sum(events.values()),
            _ratio(sum(events.values()), km, 100), score,
        ))  # fmt: skip
    best = max(scored, default=None)
    worst = min(scored, default=None)
    summary = {
        "drivers": len(rows),
        "active_drivers": len(scored),
        "trips": int(trips),
        "distance_km": _r(km_all),
        "driving_hours": _r(hours),
        "events": sum(by_type.values()),
        "events_by_type": by_type,
        "events_per_100km": _ratio(sum(by_type.values()), km_all, 100),
        "avg_score": _ratio(sum(s for s, _, _ in scored), len(scored), 1, 1),
        "best_driver": best and {"driver_id": best[1], "name": best[2], "score": best[0]},
        "worst_driver": worst and {"driver_id": worst[1], "name": worst[2], "score": worst[0]},
    }
    columns = parse_columns(
        "driver_id", "company_id", "name", "status", "trips:int", "distance_km:float",
        "driving_hours:float", *(f"{e}:int" for e in EVENT_TYPES), "events:int",
        "events_per_100km:float", "score:float",
    )  # fmt: skip
    return Report(summary, "Drivers", columns, out)


def fuel_consumption(db: Db, scope: Scope, period: Period, today: date) -> Report:
    rows = db.all(
        "SELECT v.id, v.company_id, v.name, v.plate_number, v.fuel_type, f.fill_ups, "
        "f.liters, f.cost, t.distance_km, t.fuel_used_l FROM vehicles v "
        f"LEFT JOIN ({_fuel(scope)}) f ON f.k = v.id "
        f"LEFT JOIN ({_trips(scope, 'vehicle_id')}) t ON t.k = v.id "
        f"WHERE 1 = 1{scope.where('v')} ORDER BY v.company_id, v.name, v.id",
        _params(scope, period),
    )
    out = []
    fills = liters = cost = km = fuel = 0.0
    for r in rows:
        rl, rc = r["liters"] or 0.0, r["cost"] or 0.0
        rkm, rfuel = r["distance_km"] or 0.0, r["fuel_used_l"] or 0.0
        fills += r["fill_ups"] or 0
        liters, cost, km, fuel = liters + rl, cost + rc, km + rkm, fuel + rfuel
        out.append((
            r["id"], r["company_id"], r["name"], r["plate_number"], r["fuel_type"],
            r["fill_ups"] or 0, _r(rl), _r(rc), _ratio(rc, rl, 1, 3), _r(rkm), _r(rfuel),
            _ratio(rfuel, rkm, 100), _ratio(rc, rkm, 1, 3),
        ))  # fmt: skip
    summary = {
        "vehicles": len(rows),
        "fill_ups": int(fills),
        "liters": _r(liters),
        "fuel_cost": _r(cost),
        "avg_price_per_liter": _ratio(cost, liters, 1, 3),
        "distance_km": _r(km),
        "fuel_used_l": _r(fuel),
        "l_per_100km": _ratio(fuel, km, 100),
        "cost_per_km": _ratio(cost, km, 1, 3),
    }
    columns = parse_columns(
        "vehicle_id", "company_id", "name", "plate_number", "fuel_type", "fill_ups:int",
        "liters:float", "fuel_cost:float", "avg_price_per_liter:float", "distance_km:float",
        "fuel_used_l:float", "l_per_100km:float", "cost_per_km:float",
    )  # fmt: skip
    return Report(summary, "Vehicles", columns, out)


def maintenance(db: Db, scope: Scope, period: Period, today: date) -> Report:
    params = _params(scope, period)
    rows = db.all(
        "SELECT v.id, v.company_id, v.name, v.plate_number, v.status, m.services, m.cost, "
        f"m.routine, {ROUTINE_DUE_COLUMNS} "
        f"FROM vehicles v LEFT JOIN ({_maint(scope)}) m ON m.k = v.id "
        f"WHERE 1 = 1{scope.where('v')} ORDER BY v.company_id, v.name, v.id",
        params,
    )
    out = []
    services = cost = 0.0
    serviced = due = 0
    for r in rows:
        state = vehicle_due(r, today)
        services += r["services"] or 0
        cost += r["cost"] or 0.0
        serviced += 1 if r["services"] else 0
        due += 1 if state.due and r["status"] == "active" else 0
        out.append((
            r["id"], r["company_id"], r["name"], r["plate_number"], r["status"],
            _r(r["odometer_km"], 1), r["services"] or 0, int(r["routine"] or 0),
            _r(r["cost"] or 0.0), r["last_date"], _r(r["last_km"], 1), state.due_odometer_km,
            state.due_date.isoformat(), state.km_left, state.days_left, state.due,
        ))  # fmt: skip
    types = db.all(
        "SELECT maintenance_type, COUNT(*) AS services, SUM(cost) AS cost "
        "FROM maintenance_logs m WHERE m.service_date >= :start_date "
        f"AND m.service_date <= :end_date{scope.where('m')} "
        "GROUP BY maintenance_type ORDER BY maintenance_type",
        params,
    )
    summary = {
        "vehicles": len(rows),
        "services": int(services),
        "cost": _r(cost),
        "avg_cost_per_service": _ratio(cost, services),
        "vehicles_serviced": serviced,
        "vehicles_due": due,
        "by_type": {
            t["maintenance_type"]: {"services": t["services"], "cost": _r(t["cost"])} for t in types
        },
    }
    columns = parse_columns(
        "vehicle_id", "company_id", "name", "plate_number", "status", "odometer_km:float",
        "services:int", "routine_checks:int", "cost:float", "last_service_date:date",
        "last_service_km:float", "next_due_km:int", "next_due_date:date", "km_to_due:float",
        "days_to_due:int", "due",
    )  # fmt: skip
    by_type = [(t["maintenance_type"], t["services"], _r(t["cost"])) for t in types]
    by_type_columns = parse_columns("maintenance_type", "services:int", "cost:float")
    sections = {"By type": (by_type_columns, by_type)}
    return Report(summary, "Vehicles", columns, out, sections)


BUILDERS = {
    "fleet_summary": fleet_summary,
    "driver_performance": driver_performance,
    "fuel_consumption": fuel_consumption,
    "maintenance": maintenance,
}
