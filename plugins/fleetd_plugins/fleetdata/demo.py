"""The demo fleet: a realistic, seeded, deterministic data set for any fleet database.

Owns `DemoSpec` (how big, which seed, which days) and `write_demo(db, spec)`, which
simulates each company day by day and bulk-inserts what happened: vehicles with
odometers and service intervals, drivers and fleet managers (with e-mail addresses),
trips (distance, duration, fuel), GPS points every `gps_interval_s` seconds along each
trip, fill-ups when a tank runs low, routine services when a vehicle reaches its
interval (a quarter of them skipped, so some vehicles are overdue), occasional repairs,
harsh-driving events (more for aggressive drivers), and the managers' audit trail.

Deterministic: one `random.Random(seed)` drives everything in a fixed order and every
UUID comes from it, so the same spec (seed and days, `until` included) writes the same
rows into SQLite and PostgreSQL alike. Log tables (GPS points, events, audit) get their
integer ids from the database. Memory stays flat: rows are written in chunks as the
simulation goes (`demo_sim` holds the per-day logic).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from .db import INSERT_CHUNK, Db
from .demo_sim import COLUMNS, Company, Driver, Rows, Vehicle, new_uuid, simulate_company

__all__ = ["FIRST_RUN", "DemoSpec", "company_ids", "delete_companies", "write_demo"]

# Tables in insertion order (parents first); deletion runs in reverse.
TABLES = (
    "companies", "vehicles", "drivers", "trips", "gps_tracks", "fuel_logs",
    "maintenance_logs", "driver_events", "audit_logs", "maintenance_reminders",
)  # fmt: skip

COMPANY_NAMES = (
    "Nordwind Logistics", "Bluebird Couriers", "Rheinland Transporte", "Alpine Freight",
    "Hanse Express", "Spree Delivery", "Elbe Haulage", "Isar Mobility",
)  # fmt: skip
# Depots: (city, latitude, longitude).
CITIES = (
    ("Hamburg", 53.5511, 9.9937), ("Berlin", 52.5200, 13.4050), ("Cologne", 50.9375, 6.9603),
    ("Munich", 48.1351, 11.5820), ("Frankfurt", 50.1109, 8.6821), ("Stuttgart", 48.7758, 9.1829),
    ("Leipzig", 51.3397, 12.3731), ("Dresden", 51.0504, 13.7373),
)  # fmt: skip
# make, model, kind, fuel type, litres/100 km, tank litres, service km, service days,
# average speed km/h, km per working day.
MODELS = (
    ("Ford", "Transit", "van", "diesel", 9.5, 80, 30_000, 365, 42, 160),
    ("Mercedes-Benz", "Sprinter", "van", "diesel", 10.5, 93, 40_000, 365, 44, 180),
    ("Volkswagen", "Crafter", "van", "diesel", 10.0, 75, 30_000, 365, 42, 150),
    ("Renault", "Master", "van", "diesel", 10.2, 80, 30_000, 365, 40, 140),
    ("Volvo", "FH 460", "truck", "diesel", 31.0, 600, 100_000, 365, 62, 480),
    ("Scania", "R 450", "truck", "diesel", 30.0, 700, 100_000, 365, 63, 520),
    ("Toyota", "Hilux", "pickup", "diesel", 8.5, 80, 15_000, 365, 48, 120),
    ("Skoda", "Octavia", "car", "petrol", 6.5, 50, 15_000, 365, 52, 110),
)
FIRST_NAMES = (
    "Anna", "Ben", "Clara", "David", "Elif", "Felix", "Greta", "Hannes", "Ida", "Jonas",
    "Katrin", "Lukas", "Mara", "Niklas", "Olga", "Paul", "Rosa", "Stefan", "Tara", "Uwe",
    "Vera", "Yusuf", "Zoe", "Marek", "Leila", "Tomasz", "Sofia", "Emil",
)  # fmt: skip
LAST_NAMES = (
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
    "Hoffmann", "Schulz", "Koch", "Richter", "Klein", "Wolf", "Neumann", "Schwarz",
    "Yilmaz", "Nowak", "Kowalski", "Braun", "Krüger", "Hartmann", "Lange", "Werner",
)  # fmt: skip
PLATE_PREFIX = {"Hamburg": "HH", "Berlin": "B", "Cologne": "K", "Munich": "M",
                "Frankfurt": "F", "Stuttgart": "S", "Leipzig": "L", "Dresden": "DD"}  # fmt: skip


@dataclass(frozen=True)
class DemoSpec:
    companies: int = 2
    vehicles: int = 10  # per company
    days: int = 30
    seed: int = 1
    # The last simulated day; None = yesterday (UTC), the last complete day.
    until: date | None = None
    # One GPS point per this many seconds while driving (telematics units send every
    # 10–60 s; 30 s gives ~120 points for an hour's trip).
    gps_interval_s: int = 30
    # Fleet managers per company (they receive maintenance reminders).
    managers: int = 2
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def last_day(self) -> date:
        return self.until or (datetime.now(UTC).date() - timedelta(days=1))

    def first_day(self) -> date:
        return self.last_day() - timedelta(days=self.days - 1)


# The embedded default's first run: one company, enough days for last month's report.
FIRST_RUN = DemoSpec(companies=1, vehicles=5, days=62, seed=1)


def company_ids(spec: DemoSpec) -> list[str]:
    """The ids `write_demo` gives the spec's companies (drawn first from the seed)."""
    rng = random.Random(spec.seed)
    return [new_uuid(rng) for _ in range(spec.companies)]


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _build_company(rng: random.Random, spec: DemoSpec, n: int, company_id: str) -> Company:
    name = COMPANY_NAMES[n % len(COMPANY_NAMES)]
    if n >= len(COMPANY_NAMES):
        name += f" {n // len(COMPANY_NAMES) + 1}"
    city, lat, lon = CITIES[(spec.seed + n) % len(CITIES)]
    domain = name.lower().replace(" ", "-") + ".example.com"
    start = spec.first_day()
    company = Company(company_id, name, city, lat, lon, domain)
    company.created_at = _ts(datetime(start.year, 1, 1) - timedelta(days=rng.randint(400, 1500)))
    used: set[str] = set()

    def person_name() -> str:
        while True:
            full = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
            if full not in used:
                used.add(full)
                return full

    for i in range(spec.vehicles):
        model = MODELS[rng.randrange(len(MODELS))]
        make, mdl, kind, fuel, l100, tank, svc_km, svc_days, speed, daily = model
        year = rng.randint(start.year - 9, start.year)
        age_km = (start.year - year + rng.random()) * daily * 230
        vehicle = Vehicle(
            id=new_uuid(rng), name=f"{kind.title()} {i + 1:02d}",
            plate=f"{PLATE_PREFIX[city]}-{rng.choice('ABCDEFGHKLMNPRSTVWXZ')}"
                  f"{rng.choice('ABCDEFGHKLMNPRSTVWXZ')} {rng.randint(100, 9999)}",
            make=make, model=mdl, kind=kind, fuel_type=fuel, l_per_100km=l100, tank_l=tank,
            service_km=svc_km, service_days=svc_days, speed_kmh=speed, daily_km=daily,
            year=year, odometer=round(max(age_km, 500.0), 1),
            status="active" if i == 0 or rng.random() < 0.9 else rng.choice(
                ("maintenance", "retired")),
            in_service=date(year, rng.randint(1, 12), rng.randint(1, 28)),
        )  # fmt: skip
        vehicle.in_service = min(vehicle.in_service, start - timedelta(days=30))
        company.vehicles.append(vehicle)
    roles = ["fleet_manager"] * spec.managers + ["driver"] * (spec.vehicles + 1)
    for role in roles:
        full = person_name()
        first, last = full.lower().split(" ", 1)
        local = f"{first}.{last}".replace("ü", "ue").replace("ö", "oe").replace("ä", "ae")
        company.drivers.append(
            Driver(
                id=new_uuid(rng), name=full, email=f"{local}@{domain}",
                phone=f"+49 15{rng.randint(1, 9)} {rng.randint(1_000_000, 9_999_999)}",
                role=role, license=f"{PLATE_PREFIX[city]}{rng.randint(10**7, 10**8 - 1)}",
                status="active" if role == "fleet_manager" or rng.random() < 0.95 else "inactive",
                hired_on=start - timedelta(days=rng.randint(60, 3000)),
                aggression=round(rng.uniform(0.3, 2.2), 2),
            )
        )  # fmt: skip
    return company


def _entity_rows(company: Company) -> Iterator[tuple[str, tuple[Any, ...]]]:
    yield "companies", (company.id, company.name, company.created_at)
    for v in company.vehicles:
        yield "vehicles", (
            v.id, company.id, v.name, v.plate, v.make, v.model, v.year, v.fuel_type, v.status,
            v.odometer, v.service_km, v.service_days, v.in_service.isoformat(),
            company.created_at,
        )  # fmt: skip
    for d in company.drivers:
        yield "drivers", (
            d.id, company.id, d.name, d.email, d.phone, d.role, d.license, d.status,
            d.hired_on.isoformat(), company.created_at,
        )  # fmt: skip


class _Writer:
    """Buffers rows per table and writes them in chunks, parents before children."""

    def __init__(self, db: Db) -> None:
        self.db = db
        self.buffers: dict[str, list[tuple[Any, ...]]] = {t: [] for t in COLUMNS}
        self.counts: dict[str, int] = dict.fromkeys(COLUMNS, 0)

    def add(self, table: str, row: tuple[Any, ...]) -> None:
        buf = self.buffers[table]
        buf.append(row)
        if len(buf) >= INSERT_CHUNK:
            self.flush()

    def flush(self) -> None:
        for table in TABLES:  # order matters: trips reference vehicles and drivers
            if buf := self.buffers.get(table):
                self.counts[table] += self.db.insert_rows(table, COLUMNS[table], buf)
                buf.clear()


def write_demo(db: Db, spec: DemoSpec) -> dict[str, int]:
    """Simulate and insert the spec's fleet in one transaction; rows written per table.
    The caller checks that the companies do not exist yet (`company_ids`)."""
    if spec.companies < 1 or spec.vehicles < 1 or spec.days < 1:
        raise ValueError("companies, vehicles and days must be at least 1")
    rng = random.Random(spec.seed)
    ids = [new_uuid(rng) for _ in range(spec.companies)]
    writer = _Writer(db)
    companies = [_build_company(rng, spec, n, cid) for n, cid in enumerate(ids)]
    for company in companies:
        for table, row in _entity_rows(company):
            writer.add(table, row)
    writer.flush()
    rows: Rows = writer.add
    for company in companies:
        simulate_company(rng, spec.first_day(), spec.last_day(), spec.gps_interval_s, company, rows)
        writer.flush()
        for v in company.vehicles:
            db.execute(
                "UPDATE vehicles SET odometer_km = :km WHERE id = :id",
                {"km": round(v.odometer, 1), "id": v.id},
            )
    db.commit()
    return {t: n for t, n in writer.counts.items() if n}


def delete_companies(db: Db, ids: list[str]) -> int:
    """Delete every row of these companies, children first; rows deleted."""
    if not ids:
        return 0
    where, params = db.in_list("c", ids)
    deleted = 0
    for table in reversed(TABLES):
        column = "id" if table == "companies" else "company_id"
        deleted += db.execute(f"DELETE FROM {table} WHERE {column} IN {where}", params)
    db.commit()
    return deleted
