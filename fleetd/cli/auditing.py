"""The CLI's door to the audit log: one entry per mutating command, whatever its outcome.

Owns `recorded(engine, action, …)`, a context manager around the mutation of one
command (`enqueue`, `jobs cancel|reset`, `cleanup`, `schedules
add|update|rm|pause|resume|run-now`): the subject is `cli:<OS user>`, the door `cli`;
the command fills in the target, company and detail as it learns them, and may name
the outcome of a refusal ("not_found", "conflict"); an exception that ends the
command gives the outcome its code (fleetd.audit.entry.outcome_of) and goes on.

The entry goes to the engine's writer, which writes it when the command's engine
closes — with Redis away, to the spool in the state directory, written by the next
command or daemon that reaches Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fleetd.audit.entry import Action, AuditEntry, Door, cli_subject, outcome_of

if TYPE_CHECKING:  # the parser of every command imports this module: no engine yet
    from fleetd.engine import Engine

__all__ = ["Record", "recorded"]


@dataclass
class Record:
    target: str | None = None
    company_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    # A refusal the command reports itself (then exits 2): its outcome code.
    outcome: str | None = None


@contextmanager
def recorded(
    engine: Engine, action: Action, target: str | None = None, company_id: str | None = None
) -> Iterator[Record]:
    rec = Record(target, company_id)
    try:
        yield rec
    except Exception as exc:
        _submit(engine, action, rec, rec.outcome or outcome_of(exc))
        raise
    _submit(engine, action, rec, rec.outcome or "ok")


def _submit(engine: Engine, action: Action, rec: Record, outcome: str) -> None:
    engine.audit.submit(
        AuditEntry(
            action,
            cli_subject(),
            Door.CLI,
            outcome,
            company_id=rec.company_id,
            target=rec.target,
            detail=rec.detail,
        )
    )
