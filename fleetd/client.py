"""A synchronous client for callers outside trio (web apps, scripts, cron jobs).

The same queue operations as the daemon's HTTP API and the CLI, on the calling thread,
one Redis round trip each:

    from fleetd.client import Client
    with Client.from_config() as jobs:
        jobs.enqueue("noop", {"n": 1}, priority="high")

Validation happens before anything is sent (unknown job types and bad data raise
ValidationError). Only job types this process knows can be enqueued: the built-ins, and
plugins installed in the same environment.

Every enqueue, cancel and reset is recorded in the audit log (door `client`, subject
`client:<name>`, the OS user unless `name` is given), written in the background in
batches — no extra round trip per call — and on `close` (or at the interpreter's
exit); entries Redis does not take are spooled to the state directory.

While Redis is unreachable, `enqueue` and `enqueue_many` write the jobs to the state
directory's enqueue spool instead (fleetd.spool) and answer them with status `spooled`
and the id each will have; a daemon on that state directory sends them to Redis, in
order, each once, when Redis is back. Past the spool's caps they raise RedisUnavailable
as without one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from fleetd.audit.entry import Action, AuditEntry, Door, client_subject, outcome_of
from fleetd.backend.codec import JobRow
from fleetd.config import Config, load_config
from fleetd.engine import Engine
from fleetd.jobs.model import Job, JobStatus
from fleetd.jobs.queue import CancelResult, EnqueueResult, JobPage, ResetResult
from fleetd.spool.outage import SPOOLED, enqueue_or_spool
from fleetd.workflows.answer import WorkflowAnswer, WorkflowSubmitted
from fleetd.workflows.store import ActionResult, WorkflowOps

__all__ = ["Client"]

# A cancel or reset the queue refused, as the HTTP API answers it (409, 404).
_REFUSALS = {"final": "conflict", "refused": "conflict", "missing": "not_found"}


def _outcome(result: str) -> str:
    return _REFUSALS.get(result, "ok")


class Client:
    def __init__(self, config: Config, *, name: str | None = None) -> None:
        """`name`: who this client is in the audit log (`client:<name>`)."""
        self._engine = Engine.build(config, daemon=False)
        self._ops = self._engine.ops
        self._workflows = WorkflowOps(self._ops)
        self._run = self._engine.link.run_sync
        self._subject = client_subject(name)

    @classmethod
    def from_config(cls, path: str | Path | None = None, *, name: str | None = None) -> Client:
        """Read fleetd.toml the way the daemon does (FLEETD_* overrides included)."""
        return cls(load_config(path), name=name)

    def _audit(
        self,
        action: Action,
        outcome: str,
        target: str | None = None,
        company_id: Any = None,
        **detail: Any,
    ) -> None:
        self._engine.audit.submit(AuditEntry(
            action, self._subject, Door.CLIENT, outcome,
            company_id=company_id if isinstance(company_id, str) else None,
            target=target, detail=detail,
        ))  # fmt: skip

    def enqueue(
        self, job_type: str, data: Mapping[str, Any] | None = None, **fields: Any
    ) -> EnqueueResult:
        """Enqueue one job; `fields` are the enqueue request's other fields (priority,
        max_retries, timeout, company_id, user_id, tags, run_at, idempotency_key, queue, and
        encrypt=True to seal the whole data at rest)."""
        company = fields.get("company_id")
        try:
            row = self._ops.prepare({"type": job_type, "data": dict(data or {}), **fields})
            result = self._send([row])[0]
        except Exception as exc:
            self._audit(Action.JOB_ENQUEUE, outcome_of(exc), None, company, type=job_type)
            raise
        spooled: dict[str, Any] = {"spooled": True} if result.status == SPOOLED else {}
        self._audit(
            Action.JOB_ENQUEUE, "ok", result.job_id, company, type=job_type,
            duplicate=result.duplicate, **spooled,
        )  # fmt: skip
        return result

    def _send(self, rows: list[JobRow]) -> list[EnqueueResult]:
        """To Redis, or to the spool while Redis is away (status `spooled`)."""
        return enqueue_or_spool(
            self._run, self._ops, self._engine.spool, rows, door="client", subject=self._subject
        )

    def enqueue_many(self, jobs: Sequence[Mapping[str, Any]]) -> list[EnqueueResult]:
        """Enqueue request objects in bulk; all are validated before any is sent."""
        try:
            results = self._send(self._ops.prepare_many(jobs))
        except Exception as exc:
            self._audit(Action.JOB_ENQUEUE_BULK, outcome_of(exc), count=len(jobs))
            raise
        dups = sum(r.duplicate for r in results)
        spooled: dict[str, Any] = {}
        if results and results[0].status == SPOOLED:
            spooled["spooled"] = True
        self._audit(Action.JOB_ENQUEUE_BULK, "ok", count=len(results), duplicates=dups, **spooled)
        return results

    def get(self, job_id: str) -> Job | None:
        return self._run(self._ops.get, job_id)

    def list_jobs(
        self, status: JobStatus | str, *, limit: int = 50, cursor: str | None = None
    ) -> JobPage:
        st = JobStatus(status)
        return self._run(lambda c: self._ops.list_jobs(c, st, limit=limit, cursor=cursor))

    def cancel(self, job_id: str) -> CancelResult:
        try:
            result = self._run(self._ops.cancel, job_id)
        except Exception as exc:
            self._audit(Action.JOB_CANCEL, outcome_of(exc), job_id)
            raise
        self._audit(Action.JOB_CANCEL, _outcome(result.outcome), job_id, status=result.status)
        return result

    def reset(self, job_id: str) -> ResetResult:
        try:
            result = self._run(self._ops.reset, job_id)
        except Exception as exc:
            self._audit(Action.JOB_RESET, outcome_of(exc), job_id)
            raise
        self._audit(Action.JOB_RESET, _outcome(result.outcome), job_id, status=result.status)
        return result

    def stats(self) -> dict[str, int]:
        return self._run(self._ops.stats)

    # -- workflows (docs/WORKFLOWS.md) --------------------------------------------------

    def run_workflow(self, spec: Mapping[str, Any]) -> WorkflowSubmitted:
        """Store a whole workflow (its JSON shape as a dict) in one call, all or nothing;
        ValidationError lists every problem before anything is sent."""
        try:
            plan = self._workflows.plan(spec)
            submitted = self._run(self._workflows.submit, plan)
        except Exception as exc:
            self._audit(Action.WORKFLOW_RUN, outcome_of(exc), None, spec.get("company_id"))
            raise
        self._audit(
            Action.WORKFLOW_RUN, "ok", plan.workflow_id, spec.get("company_id"),
            name=plan.meta["name"], nodes=len(plan.nodes),
        )  # fmt: skip
        return submitted

    def get_workflow(self, workflow_id: str) -> WorkflowAnswer | None:
        return self._run(self._workflows.get, workflow_id)

    def cancel_workflow(self, workflow_id: str) -> ActionResult:
        """outcome cancelled | cancelling | final | missing."""
        result = self._run(self._workflows.cancel, workflow_id)
        self._audit(Action.WORKFLOW_CANCEL, _outcome(result.outcome), workflow_id)
        return result

    def resume_workflow(self, workflow_id: str) -> ActionResult:
        """outcome resumed | refused | missing; `count` nodes run again."""
        result = self._run(self._workflows.resume, workflow_id)
        self._audit(
            Action.WORKFLOW_RESUME, _outcome(result.outcome), workflow_id, nodes=result.count
        )
        return result

    def close(self) -> None:
        self._engine.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
