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

import pydantic

from fleetd.audit.entry import Action, AuditEntry, Door, client_subject, outcome_of
from fleetd.backend.codec import JobRow
from fleetd.config import Config, load_config
from fleetd.engine import Engine
from fleetd.jobs.model import Job, JobStatus
from fleetd.jobs.queue import CancelResult, EnqueueResult, JobPage, ResetResult
from fleetd.jobs.validation import from_pydantic
from fleetd.spool.outage import SPOOLED, enqueue_or_spool
from fleetd.templates.model import TemplateSpec
from fleetd.templates.store import TemplateOps, TemplateRun
from fleetd.workflows.answer import WorkflowAnswer, WorkflowSubmitted
from fleetd.workflows.store import ActionResult, WorkflowOps

__all__ = ["Client"]

# A cancel or reset the queue refused, as the HTTP API answers it (409, 404).
_REFUSALS = {"final": "conflict", "refused": "conflict", "missing": "not_found"}


def _outcome(result: str) -> str:
    return _REFUSALS.get(result, "ok")


def validated_template(spec: Mapping[str, Any] | TemplateSpec) -> TemplateSpec:
    """A template body checked (ValidationError, not pydantic's, on bad input)."""
    if isinstance(spec, TemplateSpec):
        return spec
    try:
        return TemplateSpec.model_validate(spec)
    except pydantic.ValidationError as exc:
        raise from_pydantic(exc) from None


class Client:
    def __init__(self, config: Config, *, name: str | None = None) -> None:
        """`name`: who this client is in the audit log (`client:<name>`)."""
        self._engine = Engine.build(config, daemon=False)
        self._ops = self._engine.ops
        self._workflows = WorkflowOps(self._ops)
        self._templates = TemplateOps(self._ops)
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
        encrypt=True to seal the whole data at rest). `fallback="sync"`: while Redis is
        away, run the job in this process and return an InlineResult (status completed
        or failed, its result or error), spooled finished (docs/OPERATIONS.md)."""
        from fleetd.runtime.inline import InlineResult, enqueue_or_run  # the pool: on use

        company = fields.get("company_id")
        fallback = fields.pop("fallback", None)
        try:
            row = self._ops.prepare({"type": job_type, "data": dict(data or {}), **fields})
            if fallback is None:
                result = self._send([row])[0]
            else:
                result = enqueue_or_run(
                    self._engine, row, fallback, door="client", subject=self._subject
                )
        except Exception as exc:
            self._audit(Action.JOB_ENQUEUE, outcome_of(exc), None, company, type=job_type)
            raise
        spooled: dict[str, Any] = {"spooled": True} if result.status == SPOOLED else {}
        if isinstance(result, InlineResult):
            spooled.update(spooled=True, ran="sync", status=result.status)
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
        """outcome reset | refused | missing. The job counts as one enqueued for its
        company: over a quota raises QuotaExceeded (the job keeps its status)."""
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
        """outcome resumed | refused | missing; `count` nodes run again. Every node put
        back counts as one enqueued for the workflow's company: over a quota raises
        QuotaExceeded (the workflow and its nodes unchanged)."""
        try:
            result = self._run(self._workflows.resume, workflow_id)
        except Exception as exc:
            self._audit(Action.WORKFLOW_RESUME, outcome_of(exc), workflow_id)
            raise
        self._audit(
            Action.WORKFLOW_RESUME, _outcome(result.outcome), workflow_id, nodes=result.count
        )
        return result

    # -- templates (docs/WORKFLOWS.md, "Templates") -------------------------------------

    def save_template(self, spec: Mapping[str, Any] | TemplateSpec) -> dict[str, Any]:
        """Save a new version of a template (its JSON shape as a dict); the template as
        stored, with its `version`. ValidationError lists every problem."""
        company = spec.get("company_id") if isinstance(spec, Mapping) else spec.company_id
        try:
            parsed = validated_template(spec)
            saved = self._run(self._templates.save, parsed)
        except Exception as exc:
            self._audit(Action.TEMPLATE_SAVE, outcome_of(exc), None, company)
            raise
        self._audit(Action.TEMPLATE_SAVE, "ok", saved["name"], company, version=saved["version"])
        return saved

    def list_templates(self, company_id: str | None = None) -> list[dict[str, Any]]:
        """The latest version of each template a company sees (its own and the
        platform's); every template when company_id is None."""
        return self._run(self._templates.list, company_id)

    def get_template(
        self, name: str, company_id: str | None = None, version: int | None = None
    ) -> dict[str, Any] | None:
        """A template by name (the company's own first, then the platform's)."""
        return self._run(self._templates.get, name, company_id, version)

    def run_template(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        *,
        company_id: str | None = None,
        version: int | None = None,
    ) -> TemplateRun:
        """Render a template with `params` and enqueue its job or submit its workflow,
        as `company_id` (None: as the platform). LookupError when there is no such
        template; ValidationError (fields under `params.`) on bad parameters."""
        try:
            result = self._run(lambda c: self._templates.run(
                c, name, dict(params or {}), company=company_id, version=version))  # fmt: skip
            if result is None:
                raise LookupError(f"no template {name!r}")
        except Exception as exc:
            outcome = "not_found" if isinstance(exc, LookupError) else outcome_of(exc)
            self._audit(Action.TEMPLATE_RUN, outcome, name, company_id)
            raise
        self._audit(Action.TEMPLATE_RUN, "ok", name, company_id, kind=result.kind, id=result.id)
        return result

    def delete_template(self, name: str, company_id: str | None = None) -> bool:
        """Delete every version of a company's (or, None, a platform) template; False
        when there was none."""
        deleted = self._run(self._templates.delete, name, company_id)
        self._audit(Action.TEMPLATE_DELETE, "ok" if deleted else "not_found", name, company_id)
        return deleted

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
