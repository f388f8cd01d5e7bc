"""The fleet data source: one interface over SQLite and PostgreSQL, chosen by `[data] url`.

Owns:
- the URL (`sqlite:///PATH`, `postgresql://…`, "" = `<state_dir>/fleet.db`) and the
  connections it opens: blocking DB-API calls, made only in worker threads
  (`trio.to_thread`, at most `MAX_THREADS` at once per source);
- the demo database's schema (schema_sqlite.sql / schema_postgresql.sql) and first-run
  demo fleet (`[data] demo_fleet`), for the embedded demo file only: fleetd never runs
  DDL on a database it did not create (the platform's database meets the declared
  contract, contract.py, instead);
- the refusal of a source that must not be used (no `[data] url` on a real Redis):
  every job fails at once with a PermanentError naming the fix;
- the differences handlers must not see (implemented by `Db`, fleetdata.db): SQL is
  written once with `:name` parameters, and every value reads back the same from both
  databases: ids and dates as text, timestamps as 'YYYY-MM-DDTHH:MM:SSZ' (UTC), money
  as float;
- transactions (one per `run` call) and streaming reads in batches: a server-side
  cursor on PostgreSQL, `fetchmany` on SQLite, so memory stays flat however many rows.

Lifecycle: FleetData(url) (no I/O) → `prepare()` on the first job (once per process:
the refusal, or the demo database's schema and fleet) → per job
`async with source.session() as s`: one connection held
for the job, each `await s.run(fn, …)` one thread hop and one transaction; a streaming
read (`s.stream`) gets a connection of its own for its one long transaction → closed
when the job ends (shielded, also on cancellation).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import trio

from fleetd import PermanentError

from .db import Cursor, Db, Params, connect_postgres, connect_sqlite

# Db is re-exported: the fleetdata modules that run queries take it from here.
__all__ = ["Db", "FleetData", "Session", "default_url", "mask_url"]

log = logging.getLogger("fleetd.fleetdata")

P = ParamSpec("P")
T = TypeVar("T")

# Connections (threads) one source uses at once: the daemon's concurrency is 5 by
# default; 8 leaves room for a CLI or a burst without letting 100 jobs open 100.
MAX_THREADS = 8


def default_url(state_dir: Path) -> str:
    return f"sqlite:///{state_dir.absolute() / 'fleet.db'}"


def mask_url(url: str) -> str:
    """The URL with its password hidden, for logs and errors."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


# -- the source ----------------------------------------------------------------------------


class FleetData:
    """The fleet database of one process. Cheap to build: nothing is opened until the
    first `prepare()` / `session()`."""

    def __init__(
        self,
        url: str,
        *,
        embedded_default: bool = False,
        demo_fleet: bool = False,
        refusal: str | None = None,
    ):
        self.url = url
        # The embedded default is fleetd's own demo file: the only database it runs DDL on.
        self.embedded_default = embedded_default
        self.refusal = refusal
        self.demo_fleet = demo_fleet and embedded_default
        if url.startswith("sqlite:///"):
            self.dialect = "sqlite"
            self.path: Path | None = Path(url[len("sqlite:///") :]).expanduser()
        elif url.startswith(("postgresql://", "postgres://")):
            self.dialect = "postgresql"
            self.path = None
        else:
            raise ValueError(f"[data] url must be sqlite:///PATH or postgresql://…, got {url!r}")
        self.limiter = trio.CapacityLimiter(MAX_THREADS)
        self._prepared = False
        self._lock: trio.Lock | None = None
        self._streams = 0  # names server-side cursors

    def __repr__(self) -> str:
        return f"FleetData({mask_url(self.url)!r})"

    # -- blocking side (worker threads, the CLI) -------------------------------------

    def connect(self) -> Db:
        """Open a connection (blocking)."""
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return Db(connect_sqlite(self.path), "sqlite")
        return Db(connect_postgres(self.url), "postgresql")

    def schema_sql(self) -> str:
        name = f"schema_{self.dialect}.sql"
        return resources.files(__package__).joinpath(name).read_text("utf-8")

    def create_schema(self, db: Db) -> None:
        """Create missing tables and indexes (idempotent), in one transaction."""
        statements = [s.strip() for s in _strip_comments(self.schema_sql()).split(";")]
        for statement in filter(None, statements):
            db.execute(statement)
        db.commit()

    def prepare_sync(self) -> bool:
        """The refusal (PermanentError); for the embedded demo file only, its schema and
        first-run demo fleet. True when the demo fleet was made. Any other database is
        the platform's: nothing is created in it."""
        if self.refusal is not None:
            raise PermanentError(self.refusal)
        if not self.embedded_default:
            return False
        if self.demo_fleet and self.path is not None and not self.path.exists():
            return self._first_run(self.path)
        db = self.connect()
        try:
            self.create_schema(db)
        finally:
            db.close()
        return False

    def _first_run(self, path: Path) -> bool:
        """The embedded default's new database, with a demo fleet: built under a
        temporary name and renamed into place, so a crash half-way leaves no database
        (the next start tries again) rather than an empty one."""
        from .demo import FIRST_RUN, write_demo

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
        db = Db(connect_sqlite(tmp), "sqlite")
        try:
            self.create_schema(db)
            counts = write_demo(db, FIRST_RUN)
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the main file
        finally:
            db.close()
        for suffix in ("-wal", "-shm"):
            Path(f"{tmp}{suffix}").unlink(missing_ok=True)
        if path.exists():  # another process made it meanwhile: theirs stands
            tmp.unlink()
            return False
        os.replace(tmp, path)
        log.info(
            "new fleet database %s: created a demo fleet (%s); "
            "set [data] demo_fleet = false to start empty",
            path,
            ", ".join(f"{n} {t}" for t, n in counts.items()),
        )
        return True

    # -- async side (handlers) ---------------------------------------------------------

    async def prepare(self) -> None:
        """Once per process, before the first query: the refusal, or the embedded demo
        database's schema (and demo fleet when it is new)."""
        if self.refusal is not None:
            raise PermanentError(self.refusal)
        if self._prepared:
            return
        if self._lock is None:
            self._lock = trio.Lock()
        async with self._lock:
            if not self._prepared:
                await trio.to_thread.run_sync(self.prepare_sync, limiter=self.limiter)
                self._prepared = True

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Session]:
        await self.prepare()
        db = await trio.to_thread.run_sync(self.connect, limiter=self.limiter)
        try:
            yield Session(self, db)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(db.close)

    @asynccontextmanager
    async def stream(
        self, sql: str, params: Params, batch_size: int
    ) -> AsyncIterator[tuple[list[str], AsyncIterator[list[tuple[Any, ...]]]]]:
        """`async with source.stream(sql, params, n) as (columns, batches)`: rows in
        batches of up to n, each fetched in a worker thread, all in one read-only
        transaction on a connection of its own (so a job's other queries, which commit,
        cannot close its server-side cursor)."""
        await self.prepare()
        self._streams += 1
        name = f"fleetd_stream_{self._streams}"
        db = await trio.to_thread.run_sync(self.connect, limiter=self.limiter)
        cursor: Cursor | None = None
        try:
            cursor = await trio.to_thread.run_sync(
                Cursor, db, sql, params, name, limiter=self.limiter
            )

            async def batches() -> AsyncIterator[list[tuple[Any, ...]]]:
                fetch = cursor.fetch
                while rows := await trio.to_thread.run_sync(
                    fetch, batch_size, limiter=self.limiter
                ):
                    yield rows

            yield cursor.columns, batches()
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(_close_read, db, cursor)

    async def run(self, fn: Callable[Concatenate[Db, P], T], *args: P.args, **kw: P.kwargs) -> T:
        """`fn(db, …)` in a worker thread on a connection of its own, in one transaction."""
        async with self.session() as s:
            return await s.run(fn, *args, **kw)


class Session:
    """A job's connection. Each `run` is one thread hop and one transaction."""

    def __init__(self, source: FleetData, db: Db) -> None:
        self.source = source
        self.db = db

    async def run(self, fn: Callable[Concatenate[Db, P], T], *args: P.args, **kw: P.kwargs) -> T:
        def call() -> T:
            try:
                result = fn(self.db, *args, **kw)
            except BaseException:
                self.db.rollback()
                raise
            self.db.commit()
            return result

        return await trio.to_thread.run_sync(call, limiter=self.source.limiter)

    def stream(
        self, sql: str, params: Params, batch_size: int
    ) -> AbstractAsyncContextManager[tuple[list[str], AsyncIterator[list[tuple[Any, ...]]]]]:
        """`async with s.stream(sql, params, n) as (columns, batches)`: rows in batches
        of up to n (see FleetData.stream); `run` stays usable meanwhile."""
        return self.source.stream(sql, params, batch_size)


def _close_read(db: Db, cursor: Cursor | None) -> None:
    try:
        if cursor is not None:
            cursor.close()
        db.rollback()  # a read: nothing to keep, and the snapshot is released
    finally:
        db.close()


def _strip_comments(sql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines())
