"""The notification outbox: deliveries waiting to be made, on local disk.

Owns `Outbox`, one SQLite file (WAL, synchronous=FULL) in the state directory,
`notify-outbox.db`: a delivery is written here before anything is sent and removed
only after its webhook answered 2xx or its e-mail job was enqueued, so a delivery
survives a daemon's restart and a Redis outage (a `redis.lost` notification is made
while Redis is down). Each row is one (event, rule, channel) and its id is derived
from them, so an event seen twice adds nothing. `claimed` is 0 until this outbox won
the event's claim in Redis (fleetd.notify.service); `instance` is this file's own id,
the value of its claims, so that after a restart the claims it made are still its own.
Processes sharing a state directory (`[daemon] processes`) share the file: `take()`
hands each due delivery to one of them at a time.
Synchronous; the service calls it from a thread.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["OUTBOX_FILE", "Delivery", "Outbox"]

OUTBOX_FILE = "notify-outbox.db"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY, event_id TEXT NOT NULL, rule TEXT NOT NULL, channel TEXT NOT NULL,
    body TEXT NOT NULL, claimed INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL, created_at REAL NOT NULL, last_error TEXT NOT NULL DEFAULT ''
);
"""


@dataclass(frozen=True)
class Delivery:
    id: str
    event_id: str
    rule: str
    channel: str  # "webhook" or "email"
    body: dict[str, Any]
    claimed: bool
    attempts: int = 0
    created_at: float = 0.0


class Outbox:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(_SCHEMA)
        self.db.execute("INSERT OR IGNORE INTO meta VALUES ('instance', ?)", (uuid.uuid4().hex,))
        self.instance: str = self.db.execute(
            "SELECT value FROM meta WHERE key = 'instance'"
        ).fetchone()[0]

    def close(self) -> None:
        self.db.close()

    def add(self, deliveries: list[Delivery]) -> int:
        """Store new deliveries, due now; returns how many were new."""
        now = time.time()
        with self.db:
            cur = self.db.executemany(
                "INSERT OR IGNORE INTO deliveries (id, event_id, rule, channel, body, claimed,"
                " next_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(d.id, d.event_id, d.rule, d.channel, json.dumps(d.body), int(d.claimed),
                  now, now) for d in deliveries],
            )  # fmt: skip
            return cur.rowcount

    def _rows(self, where: str, args: tuple[Any, ...], limit: int = -1) -> list[Delivery]:
        rows = self.db.execute(
            "SELECT id, event_id, rule, channel, body, claimed, attempts, created_at"
            f" FROM deliveries WHERE {where} ORDER BY created_at, id LIMIT ?",
            (*args, limit),
        ).fetchall()
        return [Delivery(r[0], r[1], r[2], r[3], json.loads(r[4]), bool(r[5]), r[6], r[7])
                for r in rows]  # fmt: skip

    def unclaimed(self) -> list[Delivery]:
        return self._rows("claimed = 0", ())

    def due(self, now: float, limit: int = 100) -> list[Delivery]:
        return self._rows("claimed = 1 AND next_at <= ?", (now,), limit)

    def next_due(self) -> float | None:
        row = self.db.execute("SELECT MIN(next_at) FROM deliveries WHERE claimed = 1").fetchone()
        return float(row[0]) if row[0] is not None else None

    def mark_claimed(self, event_id: str, rule: str, won: bool) -> None:
        with self.db:
            if won:
                self.db.execute("UPDATE deliveries SET claimed = 1 WHERE event_id = ? AND rule = ?",
                                (event_id, rule))  # fmt: skip
            else:
                self.db.execute("DELETE FROM deliveries WHERE event_id = ? AND rule = ?",
                                (event_id, rule))  # fmt: skip

    def take(self, delivery_id: str, now: float, lease: float) -> bool:
        """Take a due delivery for `lease` seconds: False when another process sharing
        this state directory took it first (SQLite serialises the writes)."""
        with self.db:
            cur = self.db.execute(
                "UPDATE deliveries SET next_at = ? WHERE id = ? AND claimed = 1 AND next_at <= ?",
                (now + lease, delivery_id, now),
            )
            return cur.rowcount == 1

    def done(self, delivery_id: str) -> None:
        with self.db:
            self.db.execute("DELETE FROM deliveries WHERE id = ?", (delivery_id,))

    def failed(self, delivery_id: str, error: str, next_at: float) -> None:
        with self.db:
            self.db.execute(
                "UPDATE deliveries SET attempts = attempts + 1, last_error = ?, next_at = ?"
                " WHERE id = ?",
                (error[:500], next_at, delivery_id),
            )

    def due_all_now(self) -> None:
        """At start-up: every waiting delivery is tried at once (a restart is a retry)."""
        with self.db:
            self.db.execute("UPDATE deliveries SET next_at = ?", (time.time(),))

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0])
