"""Fleet databases for the fleet-data tests: seeded SQLite files and real PostgreSQL
databases, plus an independent way to query them.

Owns:
- the test fleet (`SPEC`: two companies, seeded, ending yesterday so "due" means
  something), generated once per test process per backend into a template: an SQLite
  file in a temporary folder, a PostgreSQL database `fleetd_t<pid>_<hex>_tpl` on the
  server at `PG_URL` (127.0.0.1:5432, trust auth, the machine's and CI's);
- `fresh_url(backend, tmp_path)`: a private copy for a test that changes data (a file
  copy; `CREATE DATABASE … TEMPLATE`, dropped by `drop(url)`), and `shared_url(backend)`
  for read-only tests (one copy per process);
- `Raw`: plain sqlite3/psycopg access with no fleetd code in between, for computing
  expected figures independently (`?` parameters on both databases).

Nothing else on the server is touched: every database these tests create has the
`fleetd_t<pid>_` prefix and is dropped at the end of the test or of the process.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import sqlite3
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
from fleetd_plugins.fleetdata.config import DataConfig
from fleetd_plugins.fleetdata.demo import DemoSpec, write_demo
from fleetd_plugins.fleetdata.source import FleetData

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
PG_ADMIN = f"{PG_SERVER}/test"
BACKENDS = ("sqlite", "postgresql")
# Two companies of four vehicles over 45 days, a GPS point a minute: ~40k points,
# enough for every figure, seeded in ~1 s per backend.
SPEC = DemoSpec(
    companies=2,
    vehicles=4,
    days=45,
    seed=11,
    until=datetime.now(UTC).date() - timedelta(days=1),
    gps_interval_s=60,
)
_PREFIX = f"fleetd_t{uuid.uuid4().hex[:8]}_"
_created: list[str] = []


def _admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql)


def _seed(url: str) -> None:
    source = FleetData(url)
    db = source.connect()
    try:
        source.create_schema(db)
        write_demo(db, SPEC)
    finally:
        db.close()


@cache
def _sqlite_template() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="fleetd-fleetdata-"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / "template.db"
    _seed(f"sqlite:///{path}")
    with contextlib.closing(sqlite3.connect(path)) as conn:  # fold the WAL into the file
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@cache
def _pg_template() -> str:
    name = f"{_PREFIX}tpl"
    _admin(f"CREATE DATABASE {name}")
    _created.append(name)
    _seed(f"{PG_SERVER}/{name}")
    return name


def fresh_url(backend: str, tmp_path: Path) -> str:
    """A private, seeded database for one test (PostgreSQL: `drop()` it afterwards)."""
    if backend == "sqlite":
        path = tmp_path / f"fleet-{uuid.uuid4().hex[:6]}.db"
        shutil.copyfile(_sqlite_template(), path)
        return f"sqlite:///{path}"
    name = f"{_PREFIX}{uuid.uuid4().hex[:8]}"
    _admin(f"CREATE DATABASE {name} TEMPLATE {_pg_template()}")
    _created.append(name)
    return f"{PG_SERVER}/{name}"


def empty_url(backend: str, tmp_path: Path) -> str:
    """A new, empty database (no tables)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / f'empty-{uuid.uuid4().hex[:6]}.db'}"
    name = f"{_PREFIX}{uuid.uuid4().hex[:8]}"
    _admin(f"CREATE DATABASE {name}")
    _created.append(name)
    return f"{PG_SERVER}/{name}"


@cache
def shared_url(backend: str) -> str:
    """A seeded database that tests only read (one per process and backend)."""
    folder = Path(tempfile.mkdtemp(prefix="fleetd-fleetdata-shared-"))
    atexit.register(shutil.rmtree, folder, True)
    return fresh_url(backend, folder)


def drop(url: str) -> None:
    if url.startswith("postgresql://"):
        name = url.rsplit("/", 1)[1]
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if name in _created:
            _created.remove(name)


@atexit.register
def _drop_all() -> None:
    for name in list(_created):
        with contextlib.suppress(psycopg.Error):
            _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def company_ids(url: str) -> list[str]:
    raw = Raw(url)
    return [r[0] for r in raw.rows(f"SELECT {raw.text('id')} FROM companies ORDER BY id")]


class Raw:
    """Plain DB-API access to a fleet database: `?` parameters, values as the driver
    gives them (psycopg: Decimal, datetime, UUID — cast in SQL where it matters)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pg = url.startswith("postgresql://")

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        if self.pg:
            with psycopg.connect(self.url) as conn:
                return list(conn.execute(sql.replace("?", "%s"), params).fetchall())
        with contextlib.closing(sqlite3.connect(self.url.removeprefix("sqlite:///"))) as conn:
            return list(conn.execute(sql, params).fetchall())

    def value(self, sql: str, *params: Any) -> Any:
        return self.rows(sql, *params)[0][0]

    def execute(self, sql: str, *params: Any) -> int:
        if self.pg:
            with psycopg.connect(self.url) as conn:
                return conn.execute(sql.replace("?", "%s"), params).rowcount
        with contextlib.closing(sqlite3.connect(self.url.removeprefix("sqlite:///"))) as conn:
            n = conn.execute(sql, params).rowcount
            conn.commit()
            return n

    def text(self, column: str) -> str:
        """`column` as text comparable across backends (ids, dates)."""
        return f"CAST({column} AS TEXT)" if self.pg else column


# -- fleetd wiring ---------------------------------------------------------------------


def data_config(cfg: Any, url: str, **data: Any) -> Any:
    """`cfg` (a fleetd Config) pointed at the fleet database `url`, with [data] changes."""
    import dataclasses

    return cfg.with_section(dataclasses.replace(cfg.section(DataConfig), url=url, **data))


def handlers(cfg: Any) -> list[Any]:
    """The fleetdata plugin's handlers for `cfg`, and the e-mail one (reminders enqueue
    e-mails, which must validate)."""
    from fleetd_plugins import email
    from fleetd_plugins.fleetdata import plugin

    return [*plugin.fleetd_handlers(cfg), *email.fleetd_handlers(cfg)]


async def assert_refused_at_enqueue(
    engine: Any, job_type: str, data: dict[str, Any], error: str
) -> None:
    """Enqueueing `data` raises ValidationError with an error starting with `error`,
    and nothing is queued."""
    import pytest

    from fleetd.jobs.model import ValidationError

    with pytest.raises(ValidationError) as info:
        await engine.queue.enqueue({"type": job_type, "data": data})
    assert any(str(e).startswith(error) for e in info.value.errors), info.value.errors
    assert (await engine.queue.stats())["total"] == 0


def period_inside() -> tuple[str, str]:
    """A range well inside the seeded days, ending on a weekday with trips."""
    end = SPEC.last_day() - timedelta(days=3)
    while end.weekday() >= 5:
        end -= timedelta(days=1)
    return (SPEC.first_day() + timedelta(days=6)).isoformat(), end.isoformat()


def bounds(start: str, end: str) -> tuple[str, str]:
    """The timestamps a date range covers: [start 00:00, the day after end 00:00)."""
    after = (datetime.fromisoformat(end) + timedelta(days=1)).date().isoformat()
    return f"{start}T00:00:00Z", f"{after}T00:00:00Z"
