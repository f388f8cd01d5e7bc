"""The fleet-data contract: the relations (views or tables), columns and types the
fleetdata job types read and write, declared once, and `check(db)`, which compares a
database with it.

The platform owns its database: fleetd never creates or alters anything in it (only
`fleetd demo-data --create` makes the demo schema, in a database of its own). A platform
maps its real tables onto these names with views — simple ones (one table, plain
columns) are auto-updatable on PostgreSQL, so clean-up deletes through them — and
`fleetd data check` lists every missing relation, column or type, one line each, and
checks where clean-up deletes (`[data] cleanup_*`, targets.py) the same way: a relation
with `id`, `company_id` and the timestamp column, and the DELETE privilege.

Types are kinds, not exact names, because a view may widen or narrow a column: `id`
(uuid, text or an integer), `text`, `int`, `number` (any numeric type: money is read as
float), `date`, and `timestamp` (PostgreSQL: timestamptz only, which fleetd reads in
UTC; a `timestamp without time zone` is ambiguous and refused). SQLite declares types
loosely: a column with no declared type (a view's expression) passes any kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .db import Db
from .targets import DEFAULTS, Target

__all__ = ["CONTRACT", "WRITES", "Problem", "check"]

_ENTITY = {"id": "id", "company_id": "id"}
CONTRACT: dict[str, dict[str, str]] = {
    "companies": {"id": "id", "name": "text", "created_at": "timestamp"},
    "vehicles": {
        **_ENTITY, "name": "text", "plate_number": "text", "make": "text",
        "model": "text", "year": "int", "fuel_type": "text", "status": "text",
        "odometer_km": "number", "service_interval_km": "int",
        "service_interval_days": "int", "in_service_date": "date", "created_at": "timestamp",
    },
    "drivers": {
        **_ENTITY, "name": "text", "email": "text", "phone": "text", "role": "text",
        "license_number": "text", "status": "text", "hired_on": "date",
        "created_at": "timestamp",
    },
    "trips": {
        **_ENTITY, "vehicle_id": "id", "driver_id": "id", "started_at": "timestamp",
        "ended_at": "timestamp", "distance_km": "number", "duration_s": "int",
        "fuel_used_l": "number",
    },
    "gps_tracks": {
        **_ENTITY, "vehicle_id": "id", "trip_id": "id", "recorded_at": "timestamp",
        "latitude": "number", "longitude": "number", "speed_kmh": "number", "heading": "int",
    },
    "fuel_logs": {
        **_ENTITY, "vehicle_id": "id", "driver_id": "id", "filled_at": "timestamp",
        "liters": "number", "price_per_liter": "number", "total_cost": "number",
        "odometer_km": "number", "station": "text",
    },
    "maintenance_logs": {
        **_ENTITY, "vehicle_id": "id", "maintenance_type": "text", "description": "text",
        "service_date": "date", "odometer_km": "number", "cost": "number", "vendor": "text",
    },
    "driver_events": {
        **_ENTITY, "driver_id": "id", "vehicle_id": "id", "trip_id": "id",
        "event_type": "text", "severity": "text", "occurred_at": "timestamp",
        "latitude": "number", "longitude": "number", "speed_kmh": "number",
    },
    "audit_logs": {
        **_ENTITY, "user_id": "text", "action": "text", "entity_type": "text",
        "entity_id": "text", "details": "text", "created_at": "timestamp",
    },
    "maintenance_reminders": {
        **_ENTITY, "vehicle_id": "id", "maintenance_type": "text", "due_odometer_km": "int",
        "due_date": "date", "reason": "text", "odometer_km": "number",
        "created_at": "timestamp", "job_id": "text", "notified_at": "timestamp",
        "emails": "int",
    },
}  # fmt: skip
# What fleetd changes besides reading: clean-up deletes old log rows, reminders record
# each due service once (and when its e-mails went out).
WRITES: dict[str, tuple[str, ...]] = {
    "gps_tracks": ("DELETE",),
    "audit_logs": ("DELETE",),
    "driver_events": ("DELETE",),
    "maintenance_reminders": ("INSERT", "UPDATE"),
}

_PG_TYPES = {
    "id": {"uuid", "text", "character varying", "bigint", "integer"},
    "text": {"text", "character varying", "character"},
    "int": {"integer", "bigint", "smallint"},
    "number": {"numeric", "double precision", "real", "integer", "bigint", "smallint"},
    "date": {"date"},
    "timestamp": {"timestamp with time zone"},
}
# SQLite's type affinity of a declared type (its rules, section 3.1 of "Datatypes").
_SQLITE_AFFINITY = {
    "id": {"TEXT", "INTEGER"},
    "text": {"TEXT"},
    "int": {"INTEGER"},
    "number": {"REAL", "NUMERIC", "INTEGER"},
    "date": {"TEXT"},
    "timestamp": {"TEXT"},
}


@dataclass(frozen=True)
class Problem:
    relation: str
    column: str | None
    message: str

    def __str__(self) -> str:
        where = self.relation if self.column is None else f"{self.relation}.{self.column}"
        return f"{where}: {self.message}"


def _affinity(declared: str) -> str:
    t = declared.upper()
    if "INT" in t:
        return "INTEGER"
    if any(s in t for s in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if any(s in t for s in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def _pg_columns(db: Db) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """relation → column → data_type, for the first schema of the search_path holding
    it (as an unqualified name resolves); and relation → its schema."""
    rows = db.all(
        "SELECT table_schema, table_name, column_name, data_type "
        "FROM information_schema.columns "
        "WHERE table_schema = ANY(current_schemas(false)) "
        "ORDER BY array_position(current_schemas(false), table_schema::name), "
        "ordinal_position"
    )
    schema_of: dict[str, str] = {}
    found: dict[str, dict[str, str]] = {}
    for r in rows:
        rel = r["table_name"]
        if rel not in CONTRACT or schema_of.setdefault(rel, r["table_schema"]) != r["table_schema"]:
            continue
        found.setdefault(rel, {})[r["column_name"]] = r["data_type"]
    return found, schema_of


def _sqlite_columns(db: Db) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for rel in CONTRACT:
        rows = db.all(f"PRAGMA table_info({rel})")
        if rows:
            found[rel] = {r["name"]: r["type"] or "" for r in rows}
    return found


def _type_ok(dialect: str, kind: str, actual: str) -> bool:
    if dialect == "postgresql":
        return actual in _PG_TYPES[kind]
    return actual == "" or _affinity(actual) in _SQLITE_AFFINITY[kind]


def check(db: Db, cleanup: Mapping[str, Target] | None = None) -> list[Problem]:
    """Every way the database falls short of the contract (empty: it fits), with
    clean-up deleting where `cleanup` says (cleanup_type → Target; default: the
    contract's views). Reads the catalog only."""
    cleanup = {**DEFAULTS, **(cleanup or {})}
    # A view clean-up does not delete through needs SELECT only.
    elsewhere = {kind for kind, target in cleanup.items() if target != DEFAULTS[kind]}
    schema_of: dict[str, str] = {}
    if db.dialect == "postgresql":
        found, schema_of = _pg_columns(db)
    else:
        found = _sqlite_columns(db)
    problems: list[Problem] = []
    for rel, columns in CONTRACT.items():
        have = found.get(rel)
        if have is None:
            problems.append(Problem(rel, None, "missing (no table or view of that name)"))
            continue
        for column, kind in columns.items():
            actual = have.get(column)
            if actual is None:
                problems.append(Problem(rel, column, f"missing column ({kind})"))
            elif not _type_ok(db.dialect, kind, actual):
                problems.append(Problem(rel, column, f"type {actual}, expected {kind}"))
        if db.dialect == "postgresql":
            writes = () if rel in elsewhere else WRITES.get(rel, ())
            problems += _pg_privileges(db, rel, schema_of[rel], writes)
    for kind in sorted(elsewhere):
        problems += _check_target(db, cleanup[kind])
    return problems


# The columns clean-up reads besides the configured timestamp column (cleanup.py).
_TARGET_COLUMNS = {"id": "id", "company_id": "id"}


def _target_columns(db: Db, target: Target) -> tuple[dict[str, str], str | None]:
    """column → declared type of the target relation, and its schema (PostgreSQL)."""
    if db.dialect == "postgresql":
        rows = db.all(
            "SELECT table_schema, column_name, data_type FROM information_schema.columns "
            "WHERE table_name = :rel AND (table_schema = :schema OR (CAST(:schema AS text) "
            "IS NULL AND table_schema = ANY(current_schemas(false)))) "
            "ORDER BY array_position(current_schemas(false), table_schema::name), "
            "ordinal_position",
            {"rel": target.relation, "schema": target.schema},
        )
        schema = rows[0]["table_schema"] if rows else None
        return {r["column_name"]: r["data_type"] for r in rows
                if r["table_schema"] == schema}, schema  # fmt: skip
    pragma = "PRAGMA " + (f"{db.ident(target.schema)}." if target.schema else "")
    rows = db.all(f"{pragma}table_info({db.ident(target.relation)})")
    return {r["name"]: r["type"] or "" for r in rows}, None


def _check_target(db: Db, target: Target) -> list[Problem]:
    """A configured clean-up relation: present, with id, company_id and the timestamp
    column, and deletable by this role (PostgreSQL)."""
    relation = ".".join(target.parts)
    have, schema = _target_columns(db, target)
    if not have:
        return [Problem(relation, None, "missing (no table or view of that name; "
                                        "[data] cleanup_* names it)")]  # fmt: skip
    problems = []
    for column, kind in {**_TARGET_COLUMNS, target.column: "timestamp"}.items():
        actual = have.get(column)
        if actual is None:
            problems.append(Problem(relation, column, f"missing column ({kind})"))
        elif not _type_ok(db.dialect, kind, actual):
            problems.append(Problem(relation, column, f"type {actual}, expected {kind}"))
    if db.dialect == "postgresql" and schema is not None:
        problems += _pg_privileges(db, relation, schema, ("DELETE",), name=target.relation)
    return problems


def _pg_privileges(
    db: Db, rel: str, schema: str, writes: tuple[str, ...], *, name: str | None = None
) -> list[Problem]:
    """`rel` as problems name it; `name` the relation's own name (default: `rel`)."""
    needed: tuple[str, ...] = ("SELECT", *writes)
    name = db.ident(schema, name or rel)
    problems = []
    for privilege in needed:
        granted: Any = db.value(
            "SELECT has_table_privilege(:rel, :p)", {"rel": name, "p": privilege}
        )
        if not granted:
            problems.append(Problem(rel, None, f"no {privilege} privilege for this role"))
    return problems
