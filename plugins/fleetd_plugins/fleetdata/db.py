"""One open fleet-database connection, the same on SQLite and PostgreSQL: `Db`.

Owns the dialect differences below the fleet data source (fleetd_plugins.fleetdata.
source, which chooses the database and holds the connections): opening a connection
(`connect_sqlite`, `connect_postgres`: WAL and a busy timeout on SQLite; UTC, ISO dates
and loaders that read ids and dates as text and money as float on PostgreSQL), `:name`
parameters on both (rewritten to `%(name)s` for psycopg), bulk inserts (COPY on
PostgreSQL, chunked executemany on SQLite) and streaming reads (`Cursor`: a server-side
cursor on PostgreSQL). Every call blocks: use a Db in a worker thread only.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

__all__ = ["INSERT_CHUNK", "Cursor", "Db", "Params", "connect_postgres", "connect_sqlite"]

Params = Mapping[str, Any]

# SQLite waits this long for another writer (a clean-up batch) before failing: far
# longer than one batch (~50 ms for 5,000 rows).
SQLITE_BUSY_MS = 30_000
# Rows per executemany/COPY chunk when bulk-inserting (the demo generator).
INSERT_CHUNK = 10_000
# libpq waits for a TCP connect without limit by default; a dead host would hold a job
# (and a thread) until the job's own time-out. A URL may set its own connect_timeout.
CONNECT_TIMEOUT_S = 10
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


# -- dialects ----------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _pyformat(sql: str) -> str:
    """`:name` → `%(name)s` (and a literal % doubled), for psycopg."""
    return _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))


@lru_cache(maxsize=1)
def _loaders() -> tuple[tuple[str, type[Any]], ...]:
    """psycopg's loaders for the types fleetd reads as text or float (psycopg is
    imported on first use only: the CLI builds the plugin registry on every command)."""
    from psycopg.adapt import Loader
    from psycopg.types.numeric import FloatLoader
    from psycopg.types.string import TextLoader

    class UtcTimestamp(Loader):
        """timestamptz → '2024-01-05T08:00:00Z' (the session's TimeZone is UTC, so the
        server's text is '2024-01-05 08:00:00+00')."""

        def load(self, data: Any) -> str:
            text = bytes(data).decode()
            return f"{text[:10]}T{text[11:-3]}Z"

    return (
        ("uuid", TextLoader),
        ("date", TextLoader),
        ("numeric", FloatLoader),
        ("timestamptz", UtcTimestamp),
    )


def connect_postgres(url: str) -> psycopg.Connection[Any]:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    given = conninfo_to_dict(url)
    defaults: dict[str, str | int] = {
        "connect_timeout": CONNECT_TIMEOUT_S,
        "application_name": "fleetd",
    }
    extra = {k: v for k, v in defaults.items() if k not in given}
    conn = psycopg.connect(make_conninfo(url, **extra))
    for type_name, loader in _loaders():
        conn.adapters.register_loader(type_name, loader)
    # Text dates as YYYY-MM-DD and timestamps in UTC, whatever the server's defaults.
    conn.execute("SET TIME ZONE 'UTC'")
    conn.execute("SET DateStyle = 'ISO, YMD'")
    conn.commit()
    return conn


def connect_sqlite(path: Path) -> sqlite3.Connection:
    # check_same_thread=False: a job's connection is used from one worker thread at a
    # time, but not always the same one (trio's thread cache).
    conn = sqlite3.connect(path, check_same_thread=False, timeout=SQLITE_BUSY_MS / 1000)
    conn.execute("PRAGMA journal_mode = WAL")  # readers never wait for a clean-up batch
    conn.execute("PRAGMA synchronous = NORMAL")  # WAL makes this durable enough
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


class Db:
    """One open connection (blocking; use it in a worker thread). SQL uses `:name`
    parameters on both databases."""

    def __init__(self, conn: Any, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect  # "sqlite" | "postgresql"
        self._pg = dialect == "postgresql"

    def _sql(self, sql: str) -> str:
        return _pyformat(sql) if self._pg else sql

    def ident(self, *parts: str) -> str:
        """A (qualified) name quoted as an identifier, for names that come from the
        config: psycopg's `sql.Identifier` on PostgreSQL (libpq's escaping); on SQLite,
        which has no such call, its documented rule (double quotes, a quote doubled).
        Callers also validate the names (targets.py): no quoting is the only defence."""
        if self._pg:
            from psycopg import sql

            return sql.Identifier(*parts).as_string(self.conn)
        return ".".join('"' + part.replace('"', '""') + '"' for part in parts)

    def execute(self, sql: str, params: Params | None = None) -> int:
        """Run one statement; the number of rows it changed."""
        cur = self.conn.execute(self._sql(sql), params or {})
        return int(cur.rowcount)

    def all(self, sql: str, params: Params | None = None) -> list[dict[str, Any]]:
        cur = self.conn.execute(self._sql(sql), params or {})
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def one(self, sql: str, params: Params | None = None) -> dict[str, Any] | None:
        rows = self.all(sql, params)
        return rows[0] if rows else None

    def value(self, sql: str, params: Params | None = None) -> Any:
        row = self.conn.execute(self._sql(sql), params or {}).fetchone()
        return None if row is None else row[0]

    def in_list(self, prefix: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
        """`(:p0, :p1, …)` and its parameters, for `col IN (…)` (at least one value)."""
        names = {f"{prefix}{i}": v for i, v in enumerate(values)}
        return "(" + ", ".join(f":{n}" for n in names) + ")", names

    def insert_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """Bulk insert (COPY on PostgreSQL); rows may be a generator. Returns the count."""
        count = 0
        if self._pg:
            cols = ", ".join(columns)
            with self.conn.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as cp:
                for row in rows:
                    cp.write_row(row)
                    count += 1
            return count
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        chunk: list[Sequence[Any]] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) >= INSERT_CHUNK:
                self.conn.executemany(sql, chunk)
                count += len(chunk)
                chunk.clear()
        if chunk:
            self.conn.executemany(sql, chunk)
            count += len(chunk)
        return count

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()

    def close(self) -> None:
        self.conn.close()


class Cursor:
    """A streaming read: batches of tuples, fetched one batch per call."""

    def __init__(self, db: Db, sql: str, params: Params, name: str) -> None:
        if db.dialect == "postgresql":
            # A named cursor lives on the server: only `size` rows cross per fetch.
            self.cur = db.conn.cursor(name=name)
        else:
            self.cur = db.conn.cursor()
        self.cur.execute(db._sql(sql), params)
        self.columns = [d[0] for d in self.cur.description]

    def fetch(self, size: int) -> list[tuple[Any, ...]]:
        return list(self.cur.fetchmany(size))

    def close(self) -> None:
        self.cur.close()
