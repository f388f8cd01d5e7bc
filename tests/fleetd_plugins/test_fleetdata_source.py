"""The fleet data source on SQLite and the real PostgreSQL server: schema and indexes,
values that read back the same from both, streaming in batches (a server-side cursor on
PostgreSQL), the seeded demo generator (same seed, same data, on both databases), the
embedded default's first-run demo fleet, and the `[data] url` setting."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fleetd_plugins.fleetdata.config import DataConfig
from fleetd_plugins.fleetdata.db import Db, _pyformat
from fleetd_plugins.fleetdata.demo import DemoSpec, company_ids, delete_companies, write_demo
from fleetd_plugins.fleetdata.plugin import open_source
from fleetd_plugins.fleetdata.source import FleetData, mask_url
from fleetdata_db import BACKENDS, Raw, drop, empty_url, shared_url

from fleetd import PermanentError
from fleetd.config import Config, ConfigError, load_config

TABLES = {
    "companies", "vehicles", "drivers", "trips", "gps_tracks", "fuel_logs", "maintenance_logs",
    "driver_events", "audit_logs", "maintenance_reminders",
}  # fmt: skip
# The indexes the handlers' queries rely on (company + time range scans, the last
# service per vehicle, the reminders' unique due point).
INDEXES = {
    "trips_company_time", "trips_time", "gps_tracks_company_time", "gps_tracks_time",
    "fuel_logs_company_time", "maintenance_logs_company_date", "maintenance_logs_vehicle_type",
    "driver_events_company_time", "driver_events_time", "audit_logs_company_time",
    "audit_logs_time", "vehicles_company", "drivers_company",
}  # fmt: skip
SMALL = DemoSpec(
    companies=1, vehicles=2, days=5, seed=5, until=date(2024, 3, 8), gps_interval_s=120
)


@pytest.fixture(params=BACKENDS)
def empty(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    url = empty_url(request.param, tmp_path)
    yield url
    drop(url)


def _catalog(raw: Raw) -> tuple[set[str], set[str]]:
    if raw.pg:
        tables = {
            r[0] for r in raw.rows("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        indexes = {
            r[0] for r in raw.rows("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")
        }
    else:
        tables = {r[0] for r in raw.rows("SELECT name FROM sqlite_master WHERE type = 'table'")}
        indexes = {r[0] for r in raw.rows("SELECT name FROM sqlite_master WHERE type = 'index'")}
    return tables, indexes


def test_schema_is_created_once_with_its_indexes(empty: str) -> None:
    source = FleetData(empty)
    for _ in range(2):  # idempotent: a second run changes nothing, fails on nothing
        db = source.connect()
        try:
            source.create_schema(db)
        finally:
            db.close()
    tables, indexes = _catalog(Raw(empty))
    assert tables >= TABLES
    assert indexes >= INDEXES


def _first(url: str, sql: str) -> list[dict[str, Any]]:
    db = FleetData(url).connect()
    try:
        return db.all(sql)
    finally:
        db.close()


@pytest.mark.parametrize(
    "table", ["vehicles", "drivers", "trips", "fuel_logs", "maintenance_logs", "gps_tracks"]
)
def test_both_databases_hold_and_return_the_same_values(table: str) -> None:
    """The same seed written to SQLite and PostgreSQL reads back identically through the
    source: ids and dates as text, timestamps as ...Z in UTC, money as float."""
    order = "id" if table != "gps_tracks" else "recorded_at, vehicle_id"
    sql = f"SELECT * FROM {table} ORDER BY {order} LIMIT 200"
    lite, pg = (_first(shared_url(b), sql) for b in BACKENDS)
    assert len(lite) == len(pg) > 0
    assert lite == pg
    row = lite[0]
    for key, value in row.items():
        if key.endswith("_at") and value is not None:
            assert isinstance(value, str) and value.endswith("Z") and value[10] == "T", key
        if key in ("cost", "total_cost", "price_per_liter"):
            assert isinstance(value, float)


# What the stream's own connection last sent, seen from the job's other connection.
FETCHING = (
    "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
    "AND pid <> pg_backend_pid() AND query LIKE 'FETCH%'"
)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_stream_comes_in_batches_from_a_server_side_cursor(backend: str) -> None:
    url = shared_url(backend)
    total = int(Raw(url).value("SELECT COUNT(*) FROM gps_tracks"))
    source = FleetData(url)
    sizes: list[int] = []
    cursors: list[Any] = []
    async with source.session() as s:
        async with s.stream("SELECT id, recorded_at FROM gps_tracks ORDER BY id", {}, 1000) as (
            columns,
            batches,
        ):
            assert columns == ["id", "recorded_at"]
            async for batch in batches:
                sizes.append(len(batch))
                if len(sizes) == 2 and backend == "postgresql":
                    cursors = await s.run(lambda db: db.all(FETCHING))
        assert await s.run(lambda db: db.value("SELECT COUNT(*) FROM companies")) == 2
    assert sum(sizes) == total and max(sizes) == 1000 and len(sizes) == -(-total // 1000)
    if backend == "postgresql":  # only 1,000 rows at a time crossed the wire
        assert [c["query"] for c in cursors] == ['FETCH FORWARD 1000 FROM "fleetd_stream_1"']


def test_named_parameters_for_psycopg() -> None:
    assert _pyformat("a = :a AND b::text = :b_2") == "a = %(a)s AND b::text = %(b_2)s"
    assert _pyformat("x LIKE '5%' AND y = :y") == "x LIKE '5%%' AND y = %(y)s"
    assert mask_url("postgresql://fleet:s3cret@db:5432/x") == "postgresql://fleet:***@db:5432/x"
    assert mask_url("sqlite:////var/lib/fleet.db") == "sqlite:////var/lib/fleet.db"


# -- the demo generator -------------------------------------------------------------------


def _dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    raw = Raw(url)
    out = {}
    for table in sorted(TABLES - {"maintenance_reminders"}):
        cols = [r[1] for r in raw.rows(f"PRAGMA table_info({table})")]
        out[table] = raw.rows(f"SELECT {', '.join(cols)} FROM {table} ORDER BY 1")
    return out


def _write(url: str, spec: DemoSpec) -> dict[str, int]:
    source = FleetData(url)
    db: Db = source.connect()
    try:
        source.create_schema(db)
        return write_demo(db, spec)
    finally:
        db.close()


def test_the_same_seed_gives_the_same_fleet(tmp_path: Path) -> None:
    a, b, c = (f"sqlite:///{tmp_path / n}.db" for n in "abc")
    counts = _write(a, SMALL)
    assert _write(b, SMALL) == counts
    assert _dump(a) == _dump(b)
    _write(c, dataclasses.replace(SMALL, seed=6))
    assert _dump(c)["trips"] != _dump(a)["trips"]
    assert counts["companies"] == 1 and counts["vehicles"] == 2 and counts["drivers"] == 5
    assert counts["trips"] > 5 and counts["gps_tracks"] > 100 and counts["audit_logs"] > 5
    raw = Raw(a)
    days = {d for (d,) in raw.rows("SELECT substr(started_at, 1, 10) FROM trips")}
    assert min(days) >= "2024-03-04" and max(days) <= "2024-03-08"  # the five days asked for
    assert raw.value("SELECT COUNT(*) FROM drivers WHERE role = 'fleet_manager'") == 2


def test_a_fleet_is_realistic() -> None:
    raw = Raw(shared_url("sqlite"))
    speed = raw.value("SELECT SUM(distance_km) / (SUM(duration_s) / 3600.0) FROM trips")
    assert 30 < speed < 80  # km/h, stops and traffic included
    per_trip = raw.value("SELECT 1.0 * COUNT(*) / (SELECT COUNT(*) FROM trips) FROM gps_tracks")
    assert 20 < per_trip < 400  # a point a minute on trips of half an hour to a few hours
    l100 = raw.value("SELECT SUM(fuel_used_l) * 100 / SUM(distance_km) FROM trips")
    assert 5 < l100 < 35
    odometer_grew = raw.value(
        "SELECT COUNT(*) FROM vehicles v WHERE odometer_km > "
        "(SELECT MAX(odometer_km) FROM maintenance_logs m WHERE m.vehicle_id = v.id)"
    )
    assert odometer_grew >= 4
    assert raw.value("SELECT COUNT(DISTINCT event_type) FROM driver_events") == 4


def test_delete_companies_removes_only_theirs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'two.db'}"
    _write(url, SMALL)
    _write(url, dataclasses.replace(SMALL, seed=9))
    db = FleetData(url).connect()
    try:
        gone = delete_companies(db, company_ids(SMALL))
    finally:
        db.close()
    raw = Raw(url)
    assert gone > 100
    assert [r[0] for r in raw.rows("SELECT id FROM companies")] == company_ids(
        dataclasses.replace(SMALL, seed=9)
    )
    assert raw.value("SELECT COUNT(DISTINCT company_id) FROM gps_tracks") == 1


# -- the embedded default -------------------------------------------------------------------


def _embedded(tmp_path: Path, **data: Any) -> Config:
    cfg = Config.default()
    return dataclasses.replace(
        cfg,
        daemon=dataclasses.replace(cfg.daemon, state_dir=str(tmp_path / "state")),
    ).with_section(dataclasses.replace(cfg.section(DataConfig), **data))


async def test_the_embedded_default_starts_with_a_demo_fleet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fleetd_plugins.fleetdata import demo

    assert (demo.FIRST_RUN.companies, demo.FIRST_RUN.vehicles) == (1, 5)
    assert demo.FIRST_RUN.days >= 62  # last calendar month, whatever today is
    # Smaller here (test_fleetdata_daemon.py runs the real one through `fleetd run`).
    monkeypatch.setattr(demo, "FIRST_RUN", dataclasses.replace(SMALL, until=None))
    source = open_source(_embedded(tmp_path))
    assert source.url == f"sqlite:///{tmp_path / 'state' / 'fleet.db'}"
    await source.prepare()
    raw = Raw(source.url)
    assert raw.value("SELECT COUNT(*) FROM companies") == 1
    assert raw.value("SELECT COUNT(*) FROM vehicles") == 2
    trips = raw.value("SELECT COUNT(*) FROM trips")
    # A new process (a restart) finds the file and adds nothing.
    await open_source(_embedded(tmp_path)).prepare()
    assert raw.value("SELECT COUNT(*) FROM trips") == trips > 0


async def test_no_demo_fleet_when_turned_off_or_for_a_configured_url(tmp_path: Path) -> None:
    off = open_source(_embedded(tmp_path / "off", demo_fleet=False))
    await off.prepare()
    assert Raw(off.url).value("SELECT COUNT(*) FROM companies") == 0
    url = f"sqlite:///{tmp_path / 'mine.db'}"
    configured = open_source(_embedded(tmp_path / "mine", url=url))
    await configured.prepare()
    # The platform's database: nothing is created in it, not even a table.
    assert Raw(url).rows("SELECT name FROM sqlite_master") == []


def _real_redis(cfg: Config) -> Config:
    return dataclasses.replace(
        cfg, redis=dataclasses.replace(cfg.redis, url="redis://127.0.0.1:6379/0")
    )


async def test_no_data_url_on_a_real_redis_refuses_every_job(tmp_path: Path) -> None:
    cfg = _real_redis(_embedded(tmp_path))
    source = open_source(cfg)
    with pytest.raises(PermanentError) as info:
        await source.prepare()
    assert str(info.value) == (
        "no fleet database: set [data] url (or FLEETD_DATA_URL) to the platform's "
        "database, or [data] demo = true to run on the demo fleet"
    )
    with pytest.raises(PermanentError):
        async with source.session():
            pass
    assert not (tmp_path / "state" / "fleet.db").exists()  # no demo fleet made


async def test_demo_true_uses_the_demo_fleet_on_a_real_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fleetd_plugins.fleetdata import demo

    monkeypatch.setattr(demo, "FIRST_RUN", dataclasses.replace(SMALL, until=None))
    cfg = _real_redis(_embedded(tmp_path))
    cfg = cfg.with_section(dataclasses.replace(cfg.section(DataConfig), demo=True))
    source = open_source(cfg)
    assert source.refusal is None
    await source.prepare()
    assert Raw(source.url).value("SELECT COUNT(*) FROM companies") == 1


def test_a_refusing_source_is_announced_at_start_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from fleetd_plugins.fleetdata import plugin

    with caplog.at_level(logging.WARNING, logger="fleetd.fleetdata"):
        plugin.fleetd_handlers(_embedded(tmp_path / "trial"))  # memory://: no warning
        assert caplog.messages == []
        plugin.fleetd_handlers(_real_redis(_embedded(tmp_path)))
    assert caplog.messages == [
        "the fleet-data job types will fail: no fleet database: set [data] url (or "
        "FLEETD_DATA_URL) to the platform's database, or [data] demo = true to run on "
        "the demo fleet"
    ]


def test_the_data_url_setting(tmp_path: Path) -> None:
    path = tmp_path / "fleetd.toml"
    path.write_text('[data]\nurl = "mysql://fleet@db/fleet"\ncleanup_floor_days = 0\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.errors == [
        "data.url: must be '' (SQLite under the state directory), sqlite:///PATH or "
        "postgresql://user@host/db, got 'mysql://fleet@db/fleet'",
        "data.cleanup_floor_days: must be an integer from 1 to 3650, got 0",
    ]
    path.write_text("")
    env = {"FLEETD_DATA_URL": "postgresql://fleet:pw@db/fleet"}
    assert load_config(path, env=env).section(DataConfig).url == env["FLEETD_DATA_URL"]
