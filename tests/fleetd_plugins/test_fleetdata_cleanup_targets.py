"""data_cleanup through the platform's own table (`[data] cleanup_<type> =
"[schema.]relation.timestamp_column"`), on seeded SQLite and PostgreSQL fleets: rows go
from the configured relation by its configured column (named `when`, a reserved word:
it only works quoted), the contract's view is untouched; names that are not plain
identifiers are refused when the config loads; `fleetd data check` checks the
configured relation (columns, types, the DELETE privilege) instead of asking DELETE
on the view."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import fleetd_env
from daemons import run_cli
from fleetd_plugins.fleetdata.targets import Target, parse_target
from fleetdata_db import BACKENDS, PG_SERVER, Raw, company_ids, data_config, drop, fresh_url
from fleetdata_db import handlers as fleet_handlers

from fleetd.config import Config, ConfigError, load_config
from fleetd.testing import Harness

# GPS points as the platform keeps them: its own table, its own time column name.
PLATFORM_PG = [
    "CREATE SCHEMA telemetry",
    'CREATE TABLE telemetry.positions AS SELECT id, company_id, recorded_at AS "when", '
    "latitude, longitude FROM gps_tracks",
]
PLATFORM_SQLITE = [
    'CREATE TABLE positions AS SELECT id, company_id, recorded_at AS "when", latitude, '
    "longitude FROM gps_tracks",
]


@pytest.fixture(params=BACKENDS)
def platform(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A seeded fleet database with the platform's own positions table, and the
    [data] cleanup_gps_tracks value naming it."""
    url = fresh_url(request.param, tmp_path)
    pg = request.param == "postgresql"
    for statement in PLATFORM_PG if pg else PLATFORM_SQLITE:
        Raw(url).execute(statement)
    try:
        yield url, "telemetry.positions.when" if pg else "positions.when"
    finally:
        drop(url)


async def test_cleanup_deletes_from_the_configured_table_and_column(
    config: Config, platform: tuple[str, str], tmp_path: Path
) -> None:
    url, target = platform
    raw = Raw(url)
    table = target.rsplit(".", 1)[0]
    company, other = company_ids(url)
    points = raw.value(f"SELECT COUNT(*) FROM {table}")
    views = raw.value("SELECT COUNT(*) FROM gps_tracks")
    theirs = raw.value(f"SELECT COUNT(*) FROM {table} WHERE company_id = ?", other)
    cfg = data_config(config, url, cleanup_gps_tracks=target, cleanup_batch=100)
    with Harness(fleet_handlers(cfg), tmp_path=tmp_path, config=cfg) as h:
        data = {"cleanup_type": "gps_tracks", "older_than_days": 20}
        result = await h.run("data_cleanup", data, company_id=company)
    left = raw.value(
        f'SELECT COUNT(*) FROM {table} WHERE company_id = ? AND "when" < ?',
        company,
        result["cutoff"],
    )
    assert result["target"] == target
    assert result["deleted"] > 100 and left == 0
    assert raw.value(f"SELECT COUNT(*) FROM {table}") == points - result["deleted"]
    assert raw.value(f"SELECT COUNT(*) FROM {table} WHERE company_id = ?", other) == theirs
    assert raw.value("SELECT COUNT(*) FROM gps_tracks") == views  # the view's table: untouched


def test_names_must_be_plain_identifiers(tmp_path: Path) -> None:
    assert parse_target("telemetry.positions.when") == Target("telemetry", "positions", "when")
    assert parse_target("positions.recorded_at") == Target(None, "positions", "recorded_at")
    path = tmp_path / "fleetd.toml"
    path.write_text(
        "[data]\n"
        'cleanup_gps_tracks = "gps_tracks; DROP TABLE trips; --.recorded_at"\n'
        'cleanup_audit_logs = "audit_logs"\n'
        'cleanup_driver_events = "x.1events.occurred_at"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    errors = info.value.errors
    assert len(errors) == 3, errors
    assert errors[0].startswith(
        "data.cleanup_gps_tracks: 'gps_tracks; DROP TABLE trips; --' is not a plain identifier"
    )
    assert errors[1].startswith("data.cleanup_audit_logs: must be 'relation.timestamp_column'")
    assert errors[2].startswith("data.cleanup_driver_events: '1events' is not a plain identifier")
    env = {"FLEETD_DATA_CLEANUP_GPS_TRACKS": "a" * 64 + ".t"}
    path.write_text("")
    with pytest.raises(ConfigError, match="at most 63 characters"):
        load_config(path, env=env)


def _check(config: Config, url: str, target: str) -> tuple[int, list[str]]:
    """`fleetd data check`'s exit code and problem lines (none when it fits)."""
    env = fleetd_env(config) | {"FLEETD_DATA_URL": url, "FLEETD_DATA_CLEANUP_GPS_TRACKS": target}
    done = run_cli(env, "data", "check")
    lines = done.stdout.splitlines()
    if done.returncode == 0:
        assert lines == [f"{url} fits the fleet-data contract"], lines
        return 0, []
    return done.returncode, lines


def test_data_check_covers_the_configured_table(config: Config, tmp_path: Path) -> None:
    url = fresh_url("postgresql", tmp_path)
    role = f"fleetd_ck_{uuid.uuid4().hex[:8]}"
    try:
        for statement in PLATFORM_PG:
            Raw(url).execute(statement)
        assert _check(config, url, "telemetry.positions.when") == (0, [])
        assert _check(config, url, "telemetry.points.when") == (
            2,
            [
                "telemetry.points: missing (no table or view of that name; [data] "
                "cleanup_* names it)"
            ],
        )
        assert _check(config, url, "telemetry.positions.latitude") == (
            2,
            ["telemetry.positions.latitude: type double precision, expected timestamp"],
        )
        Raw(url).execute('ALTER TABLE telemetry.positions RENAME COLUMN "when" TO at')
        assert _check(config, url, "telemetry.positions.when") == (
            2,
            ["telemetry.positions.when: missing column (timestamp)"],
        )
        Raw(url).execute("ALTER TABLE telemetry.positions DROP COLUMN company_id")
        assert _check(config, url, "telemetry.positions.at") == (
            2,
            ["telemetry.positions.company_id: missing column (id)"],
        )

        # A role that may read everything and delete only where the contract says.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {role} LOGIN")
            conn.execute(f"GRANT USAGE ON SCHEMA telemetry TO {role}")
            conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public, telemetry TO {role}")
            conn.execute(f"GRANT DELETE ON audit_logs, driver_events TO {role}")
            conn.execute(f"GRANT INSERT, UPDATE ON maintenance_reminders TO {role}")
            conn.execute("ALTER TABLE telemetry.positions ADD COLUMN company_id uuid")
        as_role = url.replace("postgresql://postgres@", f"postgresql://{role}@")
        # DELETE is asked on the configured table, and no longer on the gps_tracks view.
        assert _check(config, as_role, "telemetry.positions.at") == (
            2,
            ["telemetry.positions: no DELETE privilege for this role"],
        )
        Raw(url).execute(f"GRANT DELETE ON telemetry.positions TO {role}")
        assert _check(config, as_role, "telemetry.positions.at") == (0, [])
        assert _check(config, as_role, "gps_tracks.recorded_at") == (
            2,
            ["gps_tracks: no DELETE privilege for this role"],
        )
    finally:
        drop(url)
        with psycopg.connect(f"{PG_SERVER}/test", autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {role}")
