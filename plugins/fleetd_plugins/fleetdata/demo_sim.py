"""The demo fleet's day-by-day simulation (see demo.py): what each vehicle does.

Per working day (Monday to Saturday; half the Saturdays off) each active vehicle leaves
its depot between 06:00 and 09:00 and makes a few trips adding up to about its daily
distance, with breaks in between. Each trip drives a random walk from where the last
one ended, sampled every `gps_interval_s` seconds; its fuel use follows the model's
consumption and the driver's style; harsh-driving events come at a rate that grows with
the driver's aggression. The tank is refilled when it falls below a quarter. A routine
service is done (three times in four) the morning after the vehicle reaches its
interval in kilometres or days; repairs happen now and then.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

__all__ = ["COLUMNS", "Company", "Driver", "Rows", "Vehicle", "new_uuid", "simulate_company"]

Rows = Callable[[str, tuple[Any, ...]], None]

COLUMNS: dict[str, tuple[str, ...]] = {
    "companies": ("id", "name", "created_at"),
    "vehicles": (
        "id", "company_id", "name", "plate_number", "make", "model", "year", "fuel_type",
        "status", "odometer_km", "service_interval_km", "service_interval_days",
        "in_service_date", "created_at",
    ),
    "drivers": (
        "id", "company_id", "name", "email", "phone", "role", "license_number", "status",
        "hired_on", "created_at",
    ),
    "trips": (
        "id", "company_id", "vehicle_id", "driver_id", "started_at", "ended_at",
        "distance_km", "duration_s", "fuel_used_l",
    ),
    "gps_tracks": (
        "company_id", "vehicle_id", "trip_id", "recorded_at", "latitude", "longitude",
        "speed_kmh", "heading",
    ),
    "fuel_logs": (
        "id", "company_id", "vehicle_id", "driver_id", "filled_at", "liters",
        "price_per_liter", "total_cost", "odometer_km", "station",
    ),
    "maintenance_logs": (
        "id", "company_id", "vehicle_id", "maintenance_type", "description", "service_date",
        "odometer_km", "cost", "vendor",
    ),
    "driver_events": (
        "company_id", "driver_id", "vehicle_id", "trip_id", "event_type", "severity",
        "occurred_at", "latitude", "longitude", "speed_kmh",
    ),
    "audit_logs": (
        "company_id", "user_id", "action", "entity_type", "entity_id", "details", "created_at",
    ),
}  # fmt: skip

EVENT_TYPES = ("harsh_braking", "harsh_acceleration", "sharp_cornering", "speeding")
EVENT_WEIGHTS = (0.35, 0.25, 0.2, 0.2)
# Events per 100 km for a driver of aggression 1.0.
EVENT_RATE = 1.2
SEVERITIES, SEVERITY_WEIGHTS = ("low", "medium", "high"), (0.6, 0.3, 0.1)
# A routine service is skipped (the vehicle stays overdue) one time in four.
SERVICE_DONE = 0.75
# Repairs and other work: chance per vehicle and working day.
REPAIR_CHANCE = 0.004
REPAIRS = (
    ("tire_rotation", "Tyres rotated and balanced", 60, 140),
    ("brake_inspection", "Brake pads and discs checked", 80, 260),
    ("oil_change", "Engine oil and filter changed", 90, 220),
    ("repair", "Mirror and light assembly replaced", 150, 900),
)
VENDORS = ("ATU", "Bosch Car Service", "Euromaster", "Dekra", "Vergölst", "own workshop")
STATIONS = ("Aral", "Shell", "Esso", "TotalEnergies", "JET", "Star", "HEM")
AUDIT_ACTIONS = (
    ("user.login", "user"), ("vehicle.updated", "vehicle"), ("driver.updated", "driver"),
    ("trip.viewed", "trip"), ("report.downloaded", "report"), ("geofence.updated", "geofence"),
)  # fmt: skip
KM_PER_DEG_LAT = 111.32


@dataclass
class Vehicle:
    id: str
    name: str
    plate: str
    make: str
    model: str
    kind: str
    fuel_type: str
    l_per_100km: float
    tank_l: float
    service_km: int
    service_days: int
    speed_kmh: float
    daily_km: float
    year: int
    odometer: float
    status: str
    in_service: date
    tank: float = 0.0
    last_service_km: float = 0.0
    last_service_day: date = date.min
    skip_service_until_km: float = 0.0


@dataclass
class Driver:
    id: str
    name: str
    email: str
    phone: str
    role: str
    license: str
    status: str
    hired_on: date
    aggression: float


@dataclass
class Company:
    id: str
    name: str
    city: str
    lat: float
    lon: float
    domain: str
    created_at: str = ""
    vehicles: list[Vehicle] = field(default_factory=list)
    drivers: list[Driver] = field(default_factory=list)


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def new_uuid(rng: random.Random) -> str:
    """A version-4 UUID drawn from `rng` (so from the seed)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _poisson(rng: random.Random, mean: float) -> int:
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _price(fuel_type: str, day: date, rng: random.Random) -> float:
    base = 1.69 if fuel_type == "diesel" else 1.79
    drift = 0.06 * math.sin(day.toordinal() / 9.0)
    return round(base + drift + rng.uniform(-0.03, 0.03), 3)


def _service(
    rng: random.Random, company: Company, v: Vehicle, day: date, odometer: float, rows: Rows
) -> None:
    cost = rng.uniform(600, 1200) if v.kind == "truck" else rng.uniform(220, 480)
    rows("maintenance_logs", (
        new_uuid(rng), company.id, v.id, "routine_check", "Scheduled service: inspection, "
        "fluids, filters", day.isoformat(), round(odometer, 1), round(cost, 2),
        rng.choice(VENDORS),
    ))  # fmt: skip
    v.last_service_km, v.last_service_day = odometer, day


def _trip(
    rng: random.Random, company: Company, v: Vehicle, d: Driver, start: datetime,
    km: float, interval: int, pos: list[float], rows: Rows,
) -> datetime:  # fmt: skip
    """One trip from `pos` (updated in place); returns its end time."""
    trip_id = new_uuid(rng)
    speed = v.speed_kmh * rng.uniform(0.8, 1.2)
    duration = max(int(km / speed * 3600), interval)
    n = duration // interval + 1
    weights = [max(0.0, rng.gauss(1.0, 0.35)) for _ in range(n - 1)]
    total = sum(weights) or 1.0
    heading = rng.uniform(0, 360)
    lat, lon = pos
    points = [(start, lat, lon, 0.0, int(heading))]
    for i, w in enumerate(weights, 1):
        step = km * w / total
        heading = (heading + rng.gauss(0, 18)) % 360
        lat += step * math.cos(math.radians(heading)) / KM_PER_DEG_LAT
        lon += (
            step * math.sin(math.radians(heading)) / (KM_PER_DEG_LAT * math.cos(math.radians(lat)))
        )
        points.append((start + timedelta(seconds=i * interval), lat, lon,
                       step / interval * 3600, int(heading)))  # fmt: skip
    end = start + timedelta(seconds=duration)
    fuel = km * v.l_per_100km / 100 * rng.uniform(0.92, 1.08) * (1 + 0.06 * d.aggression)
    rows("trips", (trip_id, company.id, v.id, d.id, _ts(start), _ts(end), round(km, 2),
                   duration, round(fuel, 2)))  # fmt: skip
    for at, plat, plon, kmh, hdg in points:
        rows("gps_tracks", (company.id, v.id, trip_id, _ts(at), round(plat, 6), round(plon, 6),
                            round(kmh, 1), hdg))  # fmt: skip
    for _ in range(_poisson(rng, km / 100 * EVENT_RATE * d.aggression)):
        at, plat, plon, kmh, _hdg = points[rng.randrange(len(points))]
        kind = rng.choices(EVENT_TYPES, EVENT_WEIGHTS)[0]
        rows("driver_events", (
            company.id, d.id, v.id, trip_id, kind, rng.choices(SEVERITIES, SEVERITY_WEIGHTS)[0],
            _ts(at), round(plat, 6), round(plon, 6),
            round(kmh + (rng.uniform(15, 35) if kind == "speeding" else 0), 1),
        ))  # fmt: skip
    v.odometer += km
    v.tank -= fuel
    pos[:] = [lat, lon]
    if v.tank < v.tank_l / 4:
        liters = round(v.tank_l - max(v.tank, 0.0), 2)
        price = _price(v.fuel_type, start.date(), rng)
        rows("fuel_logs", (
            new_uuid(rng), company.id, v.id, d.id, _ts(end + timedelta(minutes=rng.randint(5, 20))),
            liters, price, round(liters * price, 2), round(v.odometer, 1), rng.choice(STATIONS),
        ))  # fmt: skip
        v.tank = v.tank_l
    return end


def _vehicle_day(
    rng: random.Random, company: Company, v: Vehicle, day: date, interval: int,
    drivers: list[Driver], primary: Driver, rows: Rows,
) -> None:  # fmt: skip
    due_km = v.odometer - v.last_service_km >= v.service_km * rng.uniform(0.95, 1.0)
    due_days = (day - v.last_service_day).days >= v.service_days
    if (due_km or due_days) and v.odometer >= v.skip_service_until_km:
        if rng.random() < SERVICE_DONE:
            _service(rng, company, v, day, v.odometer, rows)
        else:  # skipped: the vehicle stays overdue for the rest of the run
            v.skip_service_until_km = math.inf
    if rng.random() < REPAIR_CHANCE:
        kind, text, low, high = rng.choice(REPAIRS)
        rows("maintenance_logs", (new_uuid(rng), company.id, v.id, kind, text, day.isoformat(),
                                  round(v.odometer, 1), round(rng.uniform(low, high), 2),
                                  rng.choice(VENDORS)))  # fmt: skip
    trips = max(1, round(rng.uniform(1, 2) if v.kind == "truck" else rng.uniform(2, 4.5)))
    km_today = v.daily_km * rng.uniform(0.7, 1.3)
    moment = datetime.combine(day, time(6)) + timedelta(minutes=rng.randint(0, 180))
    pos = [company.lat + rng.uniform(-0.02, 0.02), company.lon + rng.uniform(-0.03, 0.03)]
    for _ in range(trips):
        driver = primary if rng.random() < 0.85 else rng.choice(drivers)
        km = km_today / trips * rng.uniform(0.6, 1.4)
        end = _trip(rng, company, v, driver, moment, km, interval, pos, rows)
        moment = end + timedelta(minutes=rng.randint(15, 75))


def simulate_company(
    rng: random.Random, first: date, last: date, interval: int, company: Company, rows: Rows
) -> None:
    drivers = [d for d in company.drivers if d.role == "driver" and d.status == "active"]
    if not drivers:
        drivers = [d for d in company.drivers if d.role == "driver"]
    for i, v in enumerate(company.vehicles):
        # Where the vehicle stands in its service cycle when the run starts.
        km = max(0.0, v.odometer - rng.uniform(0, 1.05) * v.service_km)
        day = first - timedelta(days=rng.randint(10, int(v.service_days * 1.05)))
        _service(rng, company, v, day, km, rows)
        v.tank = v.tank_l * rng.uniform(0.4, 1.0)
        primary = drivers[i % len(drivers)]
        day = first
        while day <= last:
            weekday = day.weekday()
            working = weekday < 5 or (weekday == 5 and rng.random() < 0.5)
            if working and v.status == "active":
                _vehicle_day(rng, company, v, day, interval, drivers, primary, rows)
            day += timedelta(days=1)
    managers = [d for d in company.drivers if d.role == "fleet_manager"] or company.drivers
    day = first
    while day <= last:
        for _ in range(_poisson(rng, 6.0)):
            action, entity = rng.choice(AUDIT_ACTIONS)
            target = rng.choice(company.vehicles).id if entity == "vehicle" else new_uuid(rng)
            at = datetime.combine(day, time(7)) + timedelta(seconds=rng.randint(0, 12 * 3600))
            rows("audit_logs", (company.id, rng.choice(managers).id, action, entity, target,
                                f'{{"source": "web", "ip": "10.0.{rng.randint(0, 255)}.'
                                f'{rng.randint(1, 254)}"}}', _ts(at)))  # fmt: skip
        day += timedelta(days=1)
