"""The spool file: enqueues made while Redis was away, durable on local disk.

Owns `<state_dir>/enqueue-spool.db`, an SQLite database in WAL mode with
`synchronous = FULL` (a commit is fsync'd before `add` returns, so a 202 survives a
SIGKILL or a power cut), created 0600 (rows hold job data). One table of jobs in
arrival order (`seq`, never reused: AUTOINCREMENT), each with its row as the codec
encodes it for enqueue.lua (fleetd.backend.codec), so a replay sends exactly what the
first attempt would have; a one-row `totals` table kept by triggers, so the caps
(`[spool] max_jobs`, `max_bytes`) are checked in the inserting transaction without a
scan, and each company's share of them (`[spool] company_share`, from per-company
totals): no company fills the spool the others need in the same outage; and a
`meta` table holding the spool's `epoch` (the audit writer epoch of its replay entries,
fleetd.spool.replay).

Every process using a state directory — the daemon's children, the CLI, clients —
shares the file; SQLite's locks order their writes (BEGIN IMMEDIATE, busy timeout
BUSY_TIMEOUT_MS). Every method blocks: trio callers run them in a thread.

A file SQLite cannot read (`quick_check` fails, "file is not a database") is never
dropped: it is renamed `enqueue-spool.db.corrupt-<UTC time>` (with its -wal and -shm),
reported in the log, in `set_aside()` and by `fleetd spool status`, the rows that can
still be read are copied into a new spool, and the file stays for the operator.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fleetd.audit.entry import new_entry_id
from fleetd.backend.codec import JobRow, encode_row
from fleetd.spool.rows import (
    COLUMNS,
    COUNT_COMPANIES,
    SCHEMA,
    SpooledJob,
    SpoolError,
    SpoolFull,
    corrupt,
    idem_of,
    job_of,
    salvage,
    spooled_for,
)

__all__ = ["SPOOL_FILE", "JobSpool", "SpoolError", "SpoolFull", "SpooledJob"]

log = logging.getLogger("fleetd.spool")

SPOOL_FILE = "enqueue-spool.db"
CORRUPT_SUFFIX = ".corrupt-"
# Rows hold job data and who enqueued it: readable by the service user only.
FILE_MODE = 0o600
# Another process holding the write lock (a replay deleting a batch, ~ms) is waited
# for this long before an add gives up: far above any real hold, far below a client's
# patience.
BUSY_TIMEOUT_MS = 5000


class JobSpool:
    def __init__(
        self, path: Path, *, max_jobs: int, max_bytes: int, company_share: float = 1.0
    ) -> None:
        """`company_share`: the most of each cap one company's jobs may hold (1.0: all)."""
        self.path = path
        self.max_jobs = max_jobs
        self.max_bytes = max_bytes
        self.company_share = company_share
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._epoch = ""

    # -- opening ---------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE))
        db = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
            check_same_thread=False,
        )  # fmt: skip
        try:
            if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("quick_check failed")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.executescript(SCHEMA)
            db.execute("BEGIN IMMEDIATE")
            if db.execute("SELECT 1 FROM meta WHERE name = 'company_totals'").fetchone() is None:
                for statement in COUNT_COMPANIES:
                    db.execute(statement)
            db.execute("COMMIT")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('epoch', ?)", (new_entry_id(),))
            self._epoch = str(
                db.execute("SELECT value FROM meta WHERE name = 'epoch'").fetchone()[0]
            )
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        """The open database (opened on first use; set aside and made anew when SQLite
        finds it damaged — then the call that found it fails, the next one works)."""
        with self._lock:
            if self._db is None:
                try:
                    self._db = self._connect()
                except sqlite3.DatabaseError as exc:
                    if not corrupt(exc):
                        raise
                    self._renew(exc)
            assert self._db is not None
            try:
                yield self._db
            except sqlite3.DatabaseError as exc:
                if corrupt(exc):
                    self._db.close()
                    self._renew(exc)
                raise

    def _renew(self, exc: Exception) -> None:
        self._db = None
        salvaged = self._set_aside(exc)
        self._db = self._connect()
        if salvaged:  # held before: kept past the caps rather than lost
            self._insert(self._db, salvaged, capped=False)

    def _set_aside(self, exc: Exception) -> list[SpooledJob]:
        """Rename the unreadable file (and its WAL) aside; the rows still readable."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.path.with_name(f"{self.path.name}{CORRUPT_SUFFIX}{stamp}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                src.rename(f"{target}{suffix}")
        salvaged = salvage(target)
        log.error(
            "spool %s cannot be read (%s): set aside as %s, %d jobs recovered from it; "
            "the rest stay in that file for an operator (docs/OPERATIONS.md)",
            self.path, exc, target, len(salvaged),
        )  # fmt: skip
        return salvaged

    def set_aside(self) -> list[Path]:
        """Spool files set aside as unreadable, oldest first."""
        pattern = f"{self.path.name}{CORRUPT_SUFFIX}*"
        return sorted(
            p for p in self.path.parent.glob(pattern) if not p.name.endswith(("-wal", "-shm"))
        )

    @property
    def epoch(self) -> str:
        with self._conn():
            return self._epoch

    @contextmanager
    def replaying(self) -> Iterator[bool]:
        """An exclusive, non-blocking lock for one replay pass: True when taken, False
        when another process of the host is replaying this spool now."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- writing ---------------------------------------------------------------------

    def add(
        self, rows: Sequence[JobRow], *, door: str, subject: str,
        encode: Callable[[JobRow], str] = encode_row,
    ) -> tuple[int, dict[int, tuple[str, int]]]:  # fmt: skip
        """Spool `rows` in order, all or none, durably. Returns the spooling time in ms
        (the host's clock) and, by position, the rows whose company and idempotency key
        a spooled job has already: that job's id and spooling time (nothing is added for
        them, as enqueue.lua does). `encode`: a row's text (fleetd.spool.finished for a
        job that ran already). Raises SpoolFull past a cap, SpoolError when the
        file cannot be written."""
        now = int(time.time() * 1000)
        items = [SpooledJob(0, r.id, r.company_id, encode(r), now, door, subject) for r in rows]
        try:
            with self._conn() as db:
                return now, self._insert(db, items)
        except (sqlite3.Error, OSError) as exc:  # a full disk, a read-only state dir
            raise SpoolError(f"the spool {self.path} cannot be written: {exc}") from exc

    def _insert(
        self, db: sqlite3.Connection, items: Sequence[SpooledJob], *, capped: bool = True
    ) -> dict[int, tuple[str, int]]:
        db.execute("BEGIN IMMEDIATE")
        try:
            dups: dict[int, tuple[str, int]] = {}
            seen: dict[str, tuple[str, int]] = {}
            values = []
            for n, i in enumerate(items):
                idem = idem_of(i.row)
                if idem is not None:
                    found = seen.get(idem) or spooled_for(db, idem)
                    if found is not None:
                        dups[n] = found
                        continue
                    seen[idem] = (i.job_id, i.spooled_at_ms)
                values.append((i.job_id, i.company_id or "", i.row, len(i.row.encode()),
                               i.spooled_at_ms, i.door, i.subject, idem))  # fmt: skip
            size = sum(v[3] for v in values)
            jobs, nbytes = db.execute("SELECT jobs, bytes FROM totals").fetchone()
            over = jobs + len(values) > self.max_jobs or nbytes + size > self.max_bytes
            if capped and over:
                raise SpoolFull(
                    f"the spool holds {jobs} jobs, {nbytes} bytes "
                    f"(caps: {self.max_jobs} jobs, {self.max_bytes} bytes)"
                )
            if capped and self.company_share < 1:
                self._check_shares(db, values)
            db.executemany(
                "INSERT OR IGNORE INTO jobs (job_id, company_id, row, bytes, spooled_at, door,"
                " subject, idem) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
            db.execute("COMMIT")
            return dups
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _check_shares(self, db: sqlite3.Connection, values: Sequence[tuple[Any, ...]]) -> None:
        """SpoolFull when a company of `values` (company_id, bytes at 1, 3) would hold
        more than its share of the job or byte cap (jobs without a company are exempt)."""
        adding: dict[str, list[int]] = {}
        for v in values:
            if v[1]:
                sums = adding.setdefault(v[1], [0, 0])
                sums[0] += 1
                sums[1] += v[3]
        most_jobs = int(self.max_jobs * self.company_share)
        most_bytes = int(self.max_bytes * self.company_share)
        for company, (n, size) in adding.items():
            held, held_bytes = db.execute(
                "SELECT jobs, bytes FROM company_totals WHERE company_id = ?", (company,)
            ).fetchone() or (0, 0)
            if held + n > most_jobs or held_bytes + size > most_bytes:
                raise SpoolFull(
                    f"company {company!r} holds {held} jobs, {held_bytes} bytes of the spool "
                    f"(its share: {most_jobs} jobs, {most_bytes} bytes; [spool] company_share "
                    f"{self.company_share:g})",
                    f"company {company!r} holds its whole share of the spool",
                )

    def remove(self, seqs: Sequence[int]) -> int:
        """Forget replayed (or dropped) jobs; returns how many were still there."""
        if not seqs:
            return 0
        with self._conn() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                cur = db.executemany("DELETE FROM jobs WHERE seq = ?", [(s,) for s in seqs])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return cur.rowcount

    def drop(self, job_ids: Sequence[str] | None) -> int:
        """Delete the named jobs (every job when None) before they reach Redis: an
        operator's decision (`fleetd spool drop`, audited). Returns how many."""
        with self._conn() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                if job_ids is None:
                    cur = db.execute("DELETE FROM jobs")
                else:
                    cur = db.executemany(
                        "DELETE FROM jobs WHERE job_id = ?", [(j,) for j in job_ids]
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return cur.rowcount

    # -- reading ---------------------------------------------------------------------

    def depth(self) -> tuple[int, int]:
        """(jobs, bytes) held."""
        with self._conn() as db:
            jobs, nbytes = db.execute("SELECT jobs, bytes FROM totals").fetchone()
            return int(jobs), int(nbytes)

    def head(self, n: int) -> list[SpooledJob]:
        """The `n` oldest jobs, oldest first."""
        with self._conn() as db:
            cur = db.execute(f"SELECT {COLUMNS} FROM jobs ORDER BY seq LIMIT ?", (n,))
            return [job_of(r) for r in cur.fetchall()]

    def get(self, job_id: str) -> SpooledJob | None:
        with self._conn() as db:
            found = db.execute(f"SELECT {COLUMNS} FROM jobs WHERE job_id = ?", (job_id,))
            row = found.fetchone()
            return None if row is None else job_of(row)

    def oldest_ms(self) -> int | None:
        with self._conn() as db:
            row = db.execute("SELECT spooled_at FROM jobs ORDER BY seq LIMIT 1").fetchone()
            return None if row is None else int(row[0])
