"""Jobs that ran while Redis was away, kept in the spool until Redis has them, finished.

A sync-fallback job (`"fallback": "sync"`) or a bypassed critical job (`"bypass":
true`) that finds Redis away runs inline on the process that received it
(fleetd.runtime.inline); its row is then spooled with a `finished` member — status
(`completed` or `failed`), result or error, who ran it and when — so that the replay
(fleetd.spool.replay) stores it through land.lua as a finished job, never as a pending
one: it reaches Redis completed (or failed) and never runs again. Owns that row format
(`finished_encoder`, `finished_of`) and `land_finished`, the one land.lua call of a
replay; `land` is the typed method of land.lua for both its modes, `Landing` its reply
(a bypass's may be `held`: not stored, to be enqueued as usual).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from fleetd.backend.codec import JobRow, encode_row
from fleetd.backend.redis_link import SyncClient
from fleetd.backend.scripts import Scripts
from fleetd.jobs.status import JobStatus

__all__ = [
    "Finished", "Landing", "finished_encoder", "finished_of", "land", "land_finished",
    "land_keys", "landed",
]  # fmt: skip

FINISHED = "finished"
# land.lua's first reply element for a bypass a claim would hold (see Landing).
HELD = 2


@dataclass(frozen=True, slots=True)
class Finished:
    """How an inline run ended: `completed` with its result (JSON text) or `failed`
    with its error; times in ms of the host's clock."""

    status: str
    worker: str
    started_at: int
    finished_at: int
    result: str = ""
    error: str = ""
    elapsed_ms: int = 0


def finished_encoder(outcome: Finished) -> Callable[[JobRow], str]:
    """The spool row of a job that ran: its enqueue row with the `finished` member."""

    def encode(row: JobRow) -> str:
        raw = json.loads(encode_row(row))
        raw[FINISHED] = asdict(outcome)
        return json.dumps(raw, ensure_ascii=False, separators=(",", ":"))

    return encode


def finished_of(text: str) -> Finished | None:
    """The outcome a spooled row carries; None for a plain enqueue (or not a row)."""
    try:
        raw = json.loads(text).get(FINISHED)
        return None if raw is None else Finished(**raw)
    except (ValueError, TypeError, AttributeError):
        return None


class Landing(NamedTuple):
    """land.lua's reply. Not `stored` when the id is there already or the idempotency key
    names another job (that one is answered: `job_id`, `status`, `created_ms`), or, in
    mode `processing`, when the job is `held`: a claim would not start it now (`held`
    says why: `quarantined`, `paused`) and nothing was written — enqueue it as usual."""

    stored: bool
    job_id: str
    status: str
    created_ms: int
    held: str = ""


def land(
    client: SyncClient, scripts: Scripts, row_text: str, mode: str, args: Sequence[Any]
) -> Landing:
    """land.lua in `mode` (processing, completed, failed) with that mode's `args`."""
    return landed(scripts.call(client, "land", land_keys(scripts), [row_text, mode, *args]))


def land_keys(scripts: Scripts) -> list[str]:
    keys = scripts.keys
    return [keys.leases, keys.status(JobStatus.COMPLETED), keys.status(JobStatus.FAILED),
            keys.events]  # fmt: skip


def landed(reply: Any) -> Landing:
    """land.lua's reply read (whichever client sent it)."""
    code, job_id, status, created = int(reply[0]), str(reply[1]), str(reply[2]), int(reply[3])
    if code == HELD:
        return Landing(False, job_id, "", created, held=status)
    return Landing(code == 1, job_id, status, created)


def land_finished(
    client: SyncClient, scripts: Scripts, row_text: str, created_ms: int, done: Finished
) -> tuple[bool, str]:
    """Store a spooled finished job finished: (stored now, its job id)."""
    outcome = done.result if done.status == "completed" else done.error
    event: dict[str, Any] = {"duration_ms": done.elapsed_ms, "attempt": 1, "inline": True}
    if done.status != "completed":
        event["error"] = done.error
    got = land(client, scripts, row_text, done.status, [
        done.worker, created_ms, done.started_at, done.finished_at, outcome or "{}",
        json.dumps(event, separators=(",", ":")),
    ])  # fmt: skip
    return got.stored, got.job_id
