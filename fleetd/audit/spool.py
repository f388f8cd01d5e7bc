"""The durable backlog: audit entries that could not reach Redis, in a local file.

Owns `<state_dir>/audit-spool.jsonl`: one JSON line per entry (its writer epoch, number
and fields), created 0600 (entries name who did what), appended under an exclusive
`flock` and fsync'd before `append` returns; and `replay`: under the same lock, every
line is handed to the writer function (fleetd.audit.store, which skips what was
written before), then the file is truncated. Any process of the host that reaches Redis
replays it — a daemon at start and every REPLAY_INTERVAL, a CLI command or a client
when it closes — and the lock makes two of them take turns, never lose a line
appended meanwhile.

A line that does not parse (a torn write: the process died inside `write`, before the
fsync that would have made `append` return) is logged with its text and dropped.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fleetd.audit.entry import AuditEntry

__all__ = ["SPOOL_NAME", "AuditSpool", "Stamped"]

log = logging.getLogger("fleetd.audit.spool")

SPOOL_NAME = "audit-spool.jsonl"
# Entries name users, companies and targets: readable by the service user only.
FILE_MODE = 0o600


@dataclass(frozen=True, slots=True)
class Stamped:
    """An entry with the epoch of the writer that numbered it and its number there."""

    epoch: str
    seq: int
    entry: AuditEntry


class AuditSpool:
    def __init__(self, path: Path) -> None:
        self.path = path

    def has_entries(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except OSError:
            return False

    def _open(self, flags: int) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return os.open(self.path, flags | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)

    def append(self, items: Sequence[Stamped]) -> None:
        """Append durably (raises OSError when the file cannot be written)."""
        if not items:
            return
        text = "".join(
            json.dumps({"epoch": s.epoch, "seq": s.seq, "entry": s.entry.to_json()}) + "\n"
            for s in items
        ).encode()
        fd = self._open(os.O_WRONLY | os.O_APPEND)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            view = memoryview(text)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)

    def replay(self, write: Callable[[str, list[Stamped]], int]) -> int | None:
        """Hand every spooled entry to `write(epoch, entries in order)`, then empty the
        file. Returns the number `write` added; None when another process is replaying
        (its lock is held). An exception of `write` leaves the file as it was."""
        if not self.has_entries():
            return 0
        fd = self._open(os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None
            with open(fd, "rb", closefd=False) as f:
                lines = f.read().splitlines()
            groups: dict[str, list[Stamped]] = {}
            for line in lines:
                item = _parse(line)
                if item is not None:
                    groups.setdefault(item.epoch, []).append(item)
            added = 0
            for epoch, items in groups.items():
                items.sort(key=lambda s: s.seq)
                added += write(epoch, items)
            os.ftruncate(fd, 0)
            os.fsync(fd)
            return added
        finally:
            os.close(fd)


def _parse(line: bytes) -> Stamped | None:
    if not line.strip():
        return None
    try:
        raw = json.loads(line)
        return Stamped(str(raw["epoch"]), int(raw["seq"]), AuditEntry.from_json(raw["entry"]))
    except (ValueError, KeyError, TypeError):
        log.error("audit spool: dropped a line that does not parse: %r", line[:2000])
        return None
