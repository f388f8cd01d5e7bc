"""The spool file's rows and schema (fleetd.spool.file owns the file): the table of
spooled jobs with its idempotency-key index, the totals kept by triggers (the whole
spool's, and each company's: `[spool] company_share` reads one row), a spooled job as
read back, its errors, and reading what a damaged file still holds.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "COLUMNS", "COUNT_COMPANIES", "SCHEMA", "SpoolError", "SpoolFull", "SpooledJob",
    "corrupt", "idem_of", "job_of", "salvage", "spooled_for",
]  # fmt: skip

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id TEXT NOT NULL UNIQUE,
  company_id TEXT NOT NULL,
  row TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  spooled_at INTEGER NOT NULL,
  door TEXT NOT NULL,
  subject TEXT NOT NULL,
  idem TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idem ON jobs (idem) WHERE idem IS NOT NULL;
CREATE TABLE IF NOT EXISTS totals (
  id INTEGER PRIMARY KEY CHECK (id = 1), jobs INTEGER NOT NULL, bytes INTEGER NOT NULL
);
INSERT OR IGNORE INTO totals VALUES (1, 0, 0);
CREATE TRIGGER IF NOT EXISTS jobs_in AFTER INSERT ON jobs BEGIN
  UPDATE totals SET jobs = jobs + 1, bytes = bytes + NEW.bytes WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS jobs_out AFTER DELETE ON jobs BEGIN
  UPDATE totals SET jobs = jobs - 1, bytes = bytes - OLD.bytes WHERE id = 1;
END;
CREATE TABLE IF NOT EXISTS company_totals (
  company_id TEXT PRIMARY KEY, jobs INTEGER NOT NULL, bytes INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS company_in AFTER INSERT ON jobs WHEN NEW.company_id != '' BEGIN
  INSERT INTO company_totals VALUES (NEW.company_id, 1, NEW.bytes)
    ON CONFLICT (company_id) DO UPDATE SET jobs = jobs + 1, bytes = bytes + excluded.bytes;
END;
CREATE TRIGGER IF NOT EXISTS company_out AFTER DELETE ON jobs WHEN OLD.company_id != '' BEGIN
  UPDATE company_totals SET jobs = jobs - 1, bytes = bytes - OLD.bytes
    WHERE company_id = OLD.company_id;
  DELETE FROM company_totals WHERE company_id = OLD.company_id AND jobs <= 0;
END;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


# Each company's totals counted anew from its rows: once, when a spool written before
# they were kept is opened (meta `company_totals`); under the write lock, so rows
# another process adds meanwhile are counted once.
COUNT_COMPANIES = (
    "DELETE FROM company_totals",
    "INSERT INTO company_totals SELECT company_id, COUNT(*), SUM(bytes) FROM jobs"
    " WHERE company_id != '' GROUP BY company_id",
    "INSERT INTO meta VALUES ('company_totals', '1')",
)


class SpoolError(Exception):
    """The spool cannot take these jobs: the enqueue is refused (503), as without one.
    The message is the operator's (the CLI's, the log's): it may name the file."""

    # What an API caller is told: nothing of the host, nor of other companies' jobs.
    public = "the spool cannot be written (the daemon's log says why)"


class SpoolFull(SpoolError):
    """Past `[spool] max_jobs` or `max_bytes`, or a company's `company_share` of them."""

    def __init__(self, message: str, public: str = "the spool is full") -> None:
        super().__init__(message)
        self.public = public


@dataclass(frozen=True, slots=True)
class SpooledJob:
    """One spooled enqueue: its place, its encoded row, when and by whom it came."""

    seq: int
    job_id: str
    company_id: str | None
    row: str
    spooled_at_ms: int
    door: str
    subject: str


COLUMNS = "seq, job_id, company_id, row, spooled_at, door, subject"
# SQLite's result codes of a damaged file (a lock or an I/O error is not damage).
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


def corrupt(exc: sqlite3.DatabaseError) -> bool:
    if isinstance(exc, sqlite3.OperationalError):  # locked, busy, read-only, disk full
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    return code is None or code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


def job_of(r: tuple[object, ...]) -> SpooledJob:
    seq, job_id, company, row, at, door, subject = r
    return SpooledJob(
        int(str(seq)), str(job_id), str(company) or None, str(row), int(str(at)), str(door),
        str(subject),
    )  # fmt: skip


def idem_of(row: str) -> str | None:
    """The row's idempotency key scoped by company as enqueue.lua scopes it (a length
    prefix: no company and key can spell another's), or None."""
    raw = json.loads(row)
    key = raw.get("idempotency_key")
    if not key:
        return None
    company = str(raw.get("company_id") or "")
    return f"{len(company)}:{company}:{key}"


def spooled_for(db: sqlite3.Connection, idem: str) -> tuple[str, int] | None:
    q = "SELECT job_id, spooled_at FROM jobs WHERE idem = ?"
    found = db.execute(q, (idem,)).fetchone()
    return None if found is None else (str(found[0]), int(found[1]))


def salvage(path: Path) -> list[SpooledJob]:
    """The rows of a damaged spool that SQLite can still read, in order (none when it
    cannot be opened at all)."""
    out: list[SpooledJob] = []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return out
    try:
        for r in db.execute(f"SELECT {COLUMNS} FROM jobs ORDER BY seq"):
            out.append(job_of(r))
    except sqlite3.Error:
        pass  # what was read before the damage is kept
    finally:
        db.close()
    return out
