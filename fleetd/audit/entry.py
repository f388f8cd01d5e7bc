"""One audit entry: what was changed, through which door, by whom, with what outcome.

Owns the closed set of `Action` values (the `action` of every entry ever written, and
the only values `GET /jobs/audit?action=` accepts), the `Door` a mutation came through,
the subject conventions of the doors that carry no token, `outcome_of()` (an
exception's outcome code, the same codes the HTTP error bodies use), and `AuditEntry`
with its two encodings: the fields of the Redis stream entry and the JSON of a spool
line (fleetd.audit.spool). Pure data, no I/O.
"""

from __future__ import annotations

import enum
import getpass
import json
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ANONYMOUS",
    "Action",
    "AuditEntry",
    "Door",
    "cli_subject",
    "client_subject",
    "handler_subject",
    "new_entry_id",
    "outcome_of",
    "scheduler_subject",
]


class Action(enum.StrEnum):
    """Every mutation the audit log records. The values are stored: never rename one
    (the first eight are those the HTTP API wrote before the other doors were audited)."""

    JOB_ENQUEUE = "job.enqueue"
    """one job enqueued (HTTP, CLI, client; the scheduler's and handlers' jobs too)"""
    JOB_ENQUEUE_BULK = "job.enqueue_bulk"
    """many jobs in one call (detail: count, duplicates)"""
    JOB_CANCEL = "job.cancel"
    JOB_RESET = "job.reset"
    JOB_CLEANUP = "job.cleanup"
    """finished jobs older than `older_than` deleted (detail: older_than, deleted)"""
    SCHEDULE_CREATE = "schedule.create"
    """a schedule created (also a default one seeded by a scheduler)"""
    SCHEDULE_UPDATE = "schedule.update"
    """some fields changed (detail: fields — their names, never their values)"""
    SCHEDULE_DELETE = "schedule.delete"
    SCHEDULE_PAUSE = "schedule.pause"
    SCHEDULE_RESUME = "schedule.resume"
    QUEUE_PAUSE = "queue.pause"
    """a named queue paused on every daemon (target: the queue; detail: changed)"""
    QUEUE_RESUME = "queue.resume"
    SCHEDULE_RUN_NOW = "schedule.run_now"
    """the schedule's job enqueued now (target: the schedule; detail: job_id)"""
    WORKFLOW_RUN = "workflow.run"
    """a workflow stored (target: its id; detail: name, nodes)"""
    WORKFLOW_CANCEL = "workflow.cancel"
    WORKFLOW_RESUME = "workflow.resume"
    """a failed or cancelled workflow run again (detail: nodes)"""
    TEMPLATE_SAVE = "template.save"
    """a new version of a template (target: its name; detail: version, kind)"""
    TEMPLATE_DELETE = "template.delete"
    TEMPLATE_RUN = "template.run"
    """a template's job or workflow created (detail: version, kind, id)"""
    JOB_REPLAY = "job.replay"
    """a job spooled while Redis was away reached Redis (subject and door: who
    enqueued it; detail: spooled_at, duplicate)"""
    SPOOL_DROP = "spool.drop"
    """spooled jobs deleted by an operator before they reached Redis (detail: count)"""
    QUARANTINE_RELEASE = "quarantine.release"
    """a quarantined job type of a company released (target: `<type>/<company>`;
    detail: failures, kinds)"""


# The subject of an HTTP call refused before any valid token named its caller.
ANONYMOUS = "anonymous"


class Door(enum.StrEnum):
    """Where a mutation came in. The subject's form depends on it."""

    HTTP = "http"  # the token's `sub` ("anonymous" for a refused call without one)
    CLI = "cli"  # cli:<OS user>
    CLIENT = "client"  # client:<name given to fleetd.client.Client, else the OS user>
    SCHEDULER = "scheduler"  # scheduler:<schedule id>
    HANDLER = "handler"  # job:<id of the job whose handler called ctx.enqueue>
    NOTIFY = "notify"  # notify:<[[notify]] rule name> (its email_notification jobs)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME (a bare container)
        return f"uid{os.getuid()}"


def cli_subject() -> str:
    return f"cli:{_os_user()}"


def client_subject(name: str | None = None) -> str:
    return f"client:{name or _os_user()}"


def scheduler_subject(schedule_id: str) -> str:
    return f"scheduler:{schedule_id}"


def handler_subject(parent_job_id: str) -> str:
    return f"job:{parent_job_id}"


def new_entry_id() -> str:
    """128 random bits, hex: unique across hosts without coordination. From `random`
    (seeded from os.urandom, reseeded after fork), not os.urandom: a system call per
    entry is a third of the cost of building one."""
    return f"{random.getrandbits(128):032x}"


# Exceptions → outcome codes, by class name so this module imports nothing that would
# import it back (the codes are those of the HTTP error bodies, fleetd.api.errors).
_OUTCOMES = {
    "ValidationError": "validation_failed",
    "ScheduleNotFound": "not_found",
    "ScheduleConflict": "conflict",
    "RedisUnavailable": "redis_unavailable",
    "EncryptionUnavailable": "encryption_unavailable",
    "CliError": "refused",
    # As the admin API's error codes for them (fleetd.api.errors), whatever the door.
    "QuotaExceeded": "quota_exceeded",
    "NotReplicated": "not_replicated",
}


def outcome_of(exc: BaseException | None) -> str:
    """ "ok" for None, else the outcome code of an exception that ended a mutation."""
    if exc is None:
        return "ok"
    for cls in type(exc).__mro__:
        if cls.__name__ in _OUTCOMES:
            return _OUTCOMES[cls.__name__]
    return "error"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """`status`, `method`, `path` and `remote` are the HTTP request's (door http);
    other doors leave them empty (status 0). `at_ms` is when the outcome was decided,
    by the clock of the host that decided it; `uid` tells one entry from every other.
    `anonymous`: a call refused before any valid token named its caller (door http,
    subject "anonymous"); such entries are kept apart (fleetd.audit.store)."""

    action: Action
    subject: str
    door: Door
    outcome: str = "ok"
    company_id: str | None = None
    target: str | None = None
    status: int = 0
    method: str = ""
    path: str = ""
    remote: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    at_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    uid: str = field(default_factory=new_entry_id)
    anonymous: bool = False

    def met_outage(self) -> bool:
        """The call it records was answered while Redis was away: refused for it, or
        its job kept in the enqueue spool (fleetd.spool) or run inline. Its entry must
        be durable before the caller hears back (fleetd.audit.background)."""
        return self.outcome == _OUTCOMES["RedisUnavailable"] or bool(self.detail.get("spooled"))

    def fields(self) -> dict[str, str]:
        """The stream entry's fields (fleetd.audit.reader decodes them)."""
        return {
            "action": self.action.value,
            "subject": self.subject,
            "door": self.door.value,
            "company_id": self.company_id or "",
            "target": self.target or "",
            "outcome": self.outcome,
            "status": str(self.status),
            "method": self.method,
            "path": self.path,
            "remote": self.remote or "",
            "detail": json.dumps(self.detail, separators=(",", ":")),
            "ts": str(self.at_ms),
            "uid": self.uid,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.fields(), "detail": dict(self.detail), "anonymous": self.anonymous}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> AuditEntry:
        """The inverse of to_json (a spool line); raises KeyError/ValueError when malformed."""
        return cls(
            action=Action(raw["action"]),
            subject=str(raw["subject"]),
            door=Door(raw["door"]),
            outcome=str(raw["outcome"]),
            company_id=raw.get("company_id") or None,
            target=raw.get("target") or None,
            status=int(raw.get("status") or 0),
            method=str(raw.get("method") or ""),
            path=str(raw.get("path") or ""),
            remote=raw.get("remote") or None,
            detail=dict(raw.get("detail") or {}),
            at_ms=int(raw["ts"]),
            uid=str(raw["uid"]),
            # A line of the previous version has no flag: its anonymous refusals are
            # the HTTP entries of that subject without a company.
            anonymous=bool(raw.get("anonymous", _legacy_anonymous(raw))),
        )


def _legacy_anonymous(raw: Mapping[str, Any]) -> bool:
    return (
        raw.get("door") == Door.HTTP.value
        and raw.get("subject") == ANONYMOUS
        and not raw.get("company_id")
    )
