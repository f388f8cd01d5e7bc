"""Templates in Redis: save a version, read, list, delete, run one — `TemplateOps`.

Each template is one hash (`template:<n>:<company>:<name>`, Keys.template): `latest` and
one `v<N>` field per version (its JSON, never changed once stored; template_save.lua
numbers them). A company's template is seen and run by that company; a platform
template (no company) by everyone, each company running it as its own. A name is
looked up in the caller's company first, then among the platform's. Every method takes
a Redis client and is one RedisLink hop.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fleetd.backend.codec import JobRow
from fleetd.backend.redis_link import SyncClient
from fleetd.jobs.answer import format_ts
from fleetd.jobs.model import EnqueueRequest, ValidationError
from fleetd.jobs.queue import QueueOps
from fleetd.jobs.schema import SchemaValidator, compile_schema
from fleetd.templates.model import TemplateSpec, render
from fleetd.workflows.plan import Plan
from fleetd.workflows.store import WorkflowOps

__all__ = ["Loaded", "Prepared", "RunResult", "TemplateOps", "TemplateRun", "member"]


def member(company: str | None, name: str) -> str:
    """`<n>:<company>:<name>`: length-prefixed so no company and name spell another's."""
    c = company or ""
    return f"{len(c.encode())}:{c}:{name}"


@dataclass(frozen=True, slots=True)
class RunResult:
    template: str
    version: int
    kind: str
    id: str  # the job's or the workflow's


@dataclass(frozen=True, slots=True)
class Prepared:
    """One run of a template, checked: the job's row or the workflow's plan."""

    version: int
    made: JobRow | Plan


@dataclass(frozen=True, slots=True)
class Loaded:
    """A template read to run (many times: a schedule's fan-out)."""

    version: int
    spec: TemplateSpec
    schema: SchemaValidator


# The public name of a run's answer (fleetd.TemplateRun, Client.run_template).
TemplateRun = RunResult


class TemplateOps:
    def __init__(self, ops: QueueOps) -> None:
        self.ops = ops
        self.keys = ops.keys

    def save(self, client: SyncClient, spec: TemplateSpec) -> dict[str, Any]:
        """A new version of `spec` (checked first: ValidationError lists every problem)."""
        spec.check()
        body = spec.model_dump(exclude_none=True)
        m = member(spec.company_id, spec.name)
        keys = [self.keys.template(m), self.keys.templates, self.keys.events]
        args = [m, json.dumps(body, separators=(",", ":")), spec.name, spec.company_id or ""]
        version, now = self.ops.scripts.call(client, "template_save", keys, args)
        return _answer({**body, "version": int(version), "created_at": int(now)}, int(version))

    def _find(
        self, client: SyncClient, name: str, company: str | None, version: int | None
    ) -> dict[str, Any] | None:
        for owner in [company, None] if company else [None]:
            key = self.keys.template(member(owner, name))
            latest = client.hget(key, "latest")
            if latest is None:
                continue
            raw = client.hget(key, f"v{version or int(latest)}")
            if raw is None:
                return None
            return _answer(json.loads(raw), int(latest))
        return None

    def load(
        self, client: SyncClient, name: str, company: str | None, version: int | None = None
    ) -> Loaded | None:
        """A template to run, with its schema compiled (None: none for the caller)."""
        found = self._find(client, name, company, version)
        if found is None:
            return None
        spec = TemplateSpec.model_validate(
            {k: v for k, v in found.items() if k not in ("version", "created_at", "latest", "kind")}
        )
        return Loaded(int(found["version"]), spec, compile_schema(spec.params))

    def get(
        self, client: SyncClient, name: str, company: str | None, version: int | None = None
    ) -> dict[str, Any] | None:
        return self._find(client, name, company, version)

    def list(self, client: SyncClient, company: str | None) -> list[dict[str, Any]]:
        """The latest version of each template the caller sees (None: platform admin,
        every template)."""
        out = []
        for m in client.zrange(self.keys.templates, 0, -1):
            n, rest = m.split(":", 1)
            owner = rest[: int(n)]
            if company is not None and owner not in ("", company):
                continue
            key = self.keys.template(m)
            latest = client.hget(key, "latest")
            raw = client.hget(key, f"v{latest}") if latest else None
            if raw is not None:
                out.append(_answer(json.loads(raw), int(latest or 0)))
        return out

    def delete(self, client: SyncClient, name: str, company: str | None) -> bool:
        m = member(company, name)
        deleted = bool(client.delete(self.keys.template(m)))
        client.zrem(self.keys.templates, m)
        return deleted

    def run(
        self,
        client: SyncClient,
        name: str,
        params: object,
        *,
        company: str | None,
        user_id: str | None = None,
        version: int | None = None,
    ) -> RunResult | None:
        """Render and enqueue (a job) or submit (a workflow); None when there is no such
        template for the caller. `company`: the caller's (None: platform admin)."""
        prepared = self.prepare(client, name, params, company=company, user_id=user_id,
                                version=version)  # fmt: skip
        if prepared is None:
            return None
        if isinstance(prepared.made, Plan):
            WorkflowOps(self.ops).submit(client, prepared.made)
            return RunResult(name, prepared.version, "workflow", prepared.made.workflow_id)
        [result] = self.ops.enqueue_rows(client, [prepared.made])
        return RunResult(name, prepared.version, "job", result.job_id)

    def prepare(
        self,
        client: SyncClient,
        name: str,
        params: object,
        *,
        company: str | None,
        user_id: str | None = None,
        version: int | None = None,
        extra: Mapping[str, Any] | None = None,
        loaded: Loaded | None = None,
    ) -> Prepared | None:
        """The job row or the workflow plan of one run, checked but not stored (None:
        no such template for the caller). `extra`: fields set on a job body (tags are
        added to the template's); `loaded`: the template, already read (`load`).
        Raises ValidationError."""
        loaded = loaded or self.load(client, name, company, version)
        if loaded is None:
            return None
        spec = loaded.spec
        body = render(spec, params, loaded.schema)
        owner = company or spec.company_id or body.get("company_id")
        if company is not None and body.get("company_id") not in (None, company):
            raise ValidationError(
                "params", f"names company {body['company_id']!r}, not the caller's"
            )
        if owner is not None:
            body["company_id"] = owner
        if user_id is not None:
            body.setdefault("user_id", user_id)
        if spec.kind == "job":
            for key, value in (extra or {}).items():
                body[key] = [*(body.get(key) or []), *value] if key == "tags" else value
            try:
                row = self.ops.prepare(EnqueueRequest.from_dict(body))
            except ValidationError as exc:
                raise exc.prefixed("job.") from None
            return Prepared(loaded.version, row)
        try:
            plan = WorkflowOps(self.ops).plan(body)
        except ValidationError as exc:
            raise exc.prefixed("workflow.") from None
        return Prepared(loaded.version, plan)


def _answer(stored: Mapping[str, Any], latest: int) -> dict[str, Any]:
    out = dict(stored)
    out["kind"] = "job" if "job" in out else "workflow"
    out["latest"] = latest
    out["created_at"] = format_ts(int(stored["created_at"]))
    return out
