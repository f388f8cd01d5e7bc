"""The fleet-data contract: fleetd runs no DDL on the platform's database (every job
type runs as a PostgreSQL role that may not create anything), and `fleetd data check`
passes a complete mapping (views over differently named tables) and names each missing
column, type or relation, one line each, exit code 2."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import fleetd_env
from daemons import run_cli
from fleetd_plugins.fleetdata.contract import CONTRACT, check
from fleetd_plugins.fleetdata.source import FleetData
from fleetdata_db import (
    PG_SERVER,
    Raw,
    company_ids,
    data_config,
    drop,
    empty_url,
    fresh_url,
    handlers,
)

from fleetd.config import Config
from fleetd.testing import Harness


@pytest.fixture
def restricted(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A seeded PostgreSQL database and the URL of a role that may read it, delete old
    log rows and record reminders, but create nothing (no CREATE on its schema or the
    database, owns no table): any DDL fleetd tried would fail the job."""
    url = fresh_url("postgresql", tmp_path)
    role = f"fleetd_ro_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        conn.execute(f"REVOKE CREATE, TEMPORARY ON DATABASE {url.rsplit('/', 1)[1]} FROM PUBLIC")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        conn.execute(f"GRANT DELETE ON gps_tracks, audit_logs, driver_events TO {role}")
        conn.execute(f"GRANT INSERT, UPDATE ON maintenance_reminders TO {role}")
    try:
        yield url, url.replace("postgresql://postgres@", f"postgresql://{role}@")
    finally:
        drop(url)
        with psycopg.connect(f"{PG_SERVER}/test", autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {role}")


def _tables(url: str) -> set[str]:
    rows = Raw(url).rows(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )
    return {r[0] for r in rows}


async def test_every_job_type_runs_as_a_role_that_cannot_create(
    config: Config, restricted: tuple[str, str], tmp_path: Path
) -> None:
    owner_url, url = restricted
    before = _tables(owner_url)
    # The role really cannot: IF NOT EXISTS does not help either.
    with pytest.raises(psycopg.errors.InsufficientPrivilege), psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS vehicles (id int)")
    company = company_ids(owner_url)[0]
    cfg = data_config(config, url)
    with Harness(handlers(cfg), tmp_path=tmp_path, config=cfg) as h:
        report = await h.run("report_generation", {"report_type": "fleet_summary"},
                             company_id=company)  # fmt: skip
        export = await h.run("data_export", {"export_type": "vehicles", "format": "json"},
                             company_id=company)  # fmt: skip
        reminder = await h.run("maintenance_reminder", {"maintenance_type": "routine_check"},
                               company_id=company)  # fmt: skip
        cleanup = await h.run("data_cleanup", {"cleanup_type": "gps_tracks",
                                               "older_than_days": 30})  # fmt: skip
    assert report["summary"] is not None
    assert export["rows"] > 0
    assert reminder["vehicles_checked"] > 0
    assert cleanup["deleted"] > 0
    assert _tables(owner_url) == before


def _check_cli(config: Config, url: str) -> tuple[int, list[str], str]:
    done = run_cli(fleetd_env(config) | {"FLEETD_DATA_URL": url}, "data", "check")
    return done.returncode, done.stdout.splitlines(), done.stderr


# The platform's own tables, named its way; views map them onto the contract.
PLATFORM = """
CREATE SCHEMA platform;
CREATE TABLE platform.fleet_units AS SELECT id AS unit_id, company_id AS tenant_id, name,
    plate_number AS plate, make, model, year, fuel_type, status, odometer_km,
    service_interval_km, service_interval_days, in_service_date, created_at
    FROM public.vehicles;
CREATE SCHEMA fleet;
CREATE VIEW fleet.vehicles AS SELECT unit_id AS id, tenant_id AS company_id, name,
    plate AS plate_number, make, model, year, fuel_type, status, odometer_km,
    service_interval_km, service_interval_days, in_service_date, created_at
    FROM platform.fleet_units;
"""


def test_data_check_passes_a_complete_mapping_and_names_a_missing_column(
    config: Config, tmp_path: Path
) -> None:
    url = fresh_url("postgresql", tmp_path)
    try:
        code, lines, err = _check_cli(config, url)
        assert (code, lines) == (0, [f"{url} fits the fleet-data contract"]), err
        # vehicles through a view over a differently named table, in a schema of its own
        for statement in filter(str.strip, PLATFORM.split(";")):
            Raw(url).execute(statement)
        mapped = f"{url}?options=-csearch_path%3Dfleet,public"
        code, lines, err = _check_cli(config, mapped)
        assert code == 0, (lines, err)
        Raw(url).execute("DROP VIEW fleet.vehicles")
        Raw(url).execute(
            "CREATE VIEW fleet.vehicles AS SELECT unit_id AS id, tenant_id AS "
            "company_id, name, plate AS plate_number, make, model, year, fuel_type, status, "
            "odometer_km, service_interval_km, service_interval_days, in_service_date, "
            "created_at::date AS created_at FROM platform.fleet_units"
        )
        Raw(url).execute("ALTER TABLE public.trips DROP COLUMN fuel_used_l")
        code, lines, err = _check_cli(config, mapped)
        assert code == 2
        assert lines == [
            "vehicles.created_at: type date, expected timestamp",
            "trips.fuel_used_l: missing column (number)",
        ]
        assert "2 problem(s) with the fleet-data contract" in err
    finally:
        drop(url)


def test_data_check_on_sqlite_and_an_empty_database(config: Config, tmp_path: Path) -> None:
    sqlite = fresh_url("sqlite", tmp_path)
    assert _check_cli(config, sqlite)[0] == 0
    Raw(sqlite).execute("DROP TABLE maintenance_reminders")
    code, lines, _ = _check_cli(config, sqlite)
    assert (code, lines) == (2, ["maintenance_reminders: missing (no table or view of that name)"])
    empty = empty_url("postgresql", tmp_path)
    try:
        db = FleetData(empty).connect()
        try:
            assert len(check(db)) == len(CONTRACT)  # one line per relation
        finally:
            db.close()
        assert _tables(empty) == set()  # checking creates nothing
    finally:
        drop(empty)
