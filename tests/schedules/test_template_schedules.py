"""Schedules that run a template (fleetd.schedules.templated), against real Redis:
refused at create time with field errors; a firing makes the template's job, or one
job per `for_each` element with that element's company; a workflow template's
workflows; exactly once with two real scheduler daemons racing for each occurrence."""

from __future__ import annotations

import signal
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from api_client import api_config, auth, running_api
from conftest import fleetd_env
from daemons import Fleet, cli_json, run_cli, settings, wait_for
from fleetdata_db import Raw, fresh_url
from test_scheduler import fired

from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.model import ValidationError
from fleetd.jobs.status import JobStatus
from fleetd.schedules.firing import FiringOps
from fleetd.schedules.model import ScheduledJob
from fleetd.schedules.store import ScheduleOps
from fleetd.templates.model import TemplateSpec
from fleetd.templates.store import TemplateOps
from fleetd.workflows.store import WorkflowOps

COMPANIES = ["acme", "globex", "initech"]
REPORT = TemplateSpec.model_validate({
    "name": "monthly-report",
    "params": {
        "type": "object",
        "properties": {
            "company_id": {"type": "string", "minLength": 1},
            "recipients": {"type": "string", "default": "fleet_managers"},
            "company_name": {"type": "string"},
        },
        "required": ["company_id"],
        "additionalProperties": False,
    },
    "job": {
        "type": "noop",
        "company_id": {"$param": "company_id"},
        "data": {"mail_to": {"$param": "recipients"}},
    },
})  # fmt: skip
FAN_OUT = {
    "name": "Monthly Fleet Report",
    "schedule": "@monthly",
    "template": {"name": "monthly-report"},
    "params": {"recipients": "fleet_managers"},
    "for_each": [{"company_id": c} for c in COMPANIES],
}


def _ops(engine: Engine) -> tuple[ScheduleOps, Any]:
    TemplateOps(engine.ops).save(engine.link.client, REPORT)
    return ScheduleOps.from_engine(engine), engine.link.client


def _fire(engine: Engine, ops: ScheduleOps, job: ScheduledJob) -> Any:
    """Make the schedule due now and let one scheduler handle it."""
    client = engine.link.client
    now = ops.now_ms(client)
    client.zadd(engine.keys.schedules_due, {job.id: now})
    h = client.hgetall(engine.keys.schedule(job.id))
    return FiringOps(ops).fire_due(client, job.id, now, now, 60_000, h)


def test_bad_template_schedules_are_refused_with_field_errors(engine: Engine) -> None:
    ops, client = _ops(engine)
    cases: list[tuple[dict[str, Any], set[str]]] = [
        ({**FAN_OUT, "template": {"name": "no-such"}}, {"template.name"}),
        ({**FAN_OUT, "for_each": [{"company_id": ""}, {"x": 1}]},
         {"for_each[0].params.company_id", "for_each[1].params.company_id",
          "for_each[1].params.x"}),
        ({**FAN_OUT, "job_type": "noop", "data": {"a": 1}}, {"job_type", "data"}),
        ({"name": "n", "schedule": "@daily", "params": {}}, {"params", "job_type"}),
        ({**FAN_OUT, "template": {"name": "monthly-report", "version": 9}}, {"template.name"}),
    ]  # fmt: skip
    for body, fields in cases:
        with pytest.raises(ValidationError) as exc:
            ops.add(client, body)
        assert {e.field for e in exc.value.errors} == fields, exc.value.errors
    # A company's schedule cannot name another company in its parameters.
    with pytest.raises(ValidationError) as exc:
        ops.add(client, {**FAN_OUT, "company_id": "acme"})
    assert {e.field for e in exc.value.errors} == {"for_each[1].params", "for_each[2].params"}
    assert ops.list_schedules(client) == []


def test_a_fan_out_over_three_companies_makes_one_job_each(engine: Engine) -> None:
    ops, client = _ops(engine)
    job = ops.add(client, FAN_OUT)
    body = job.to_dict()
    assert body["job_type"] == "template:monthly-report"
    assert body["template"] == {"name": "monthly-report", "version": None}
    assert body["for_each"] == FAN_OUT["for_each"] and body["data"] == {}
    result = _fire(engine, ops, job)
    assert result is not None and result.action == "fire", result
    jobs = [j for _, j in fired(engine, job.id)]
    assert sorted(j.company_id or "" for j in jobs) == COMPANIES
    assert all(j.type == "noop" and j.data == {"mail_to": "fleet_managers"} for j in jobs)
    assert len({j.idempotency_key for j in jobs}) == 3
    after = ops.require(client, job.id)
    assert after.runs == 1 and after.last_job_id in {j.id for j in jobs}
    # Fired again for the same occurrence (a racing scheduler that lost): nothing more.
    h = client.hgetall(engine.keys.schedule(job.id))
    assert FiringOps(ops).fire_due(client, job.id, result.due_ms, result.now_ms, 60_000, h) is None
    assert len(fired(engine, job.id)) == 3
    # Run now makes the three runs too, tagged run-now.
    ops.run_now(client, job.id)
    ids = client.zrange(engine.keys.status(JobStatus.PENDING), 0, -1)
    now = [j for j in engine.link.run_sync(engine.ops.get_many, ids) if j and "run-now" in j.tags]
    assert sorted(j.company_id or "" for j in now) == COMPANIES


def test_a_company_schedule_runs_a_template_as_its_company(engine: Engine) -> None:
    ops, client = _ops(engine)
    job = ops.add(client, {**FAN_OUT, "company_id": "acme", "for_each": None,
                           "params": {"company_id": "acme"}})  # fmt: skip
    _fire(engine, ops, job)
    [(_, made)] = fired(engine, job.id)
    assert made.company_id == "acme"
    # Another company's template is not found for it.
    TemplateOps(engine.ops).save(
        client, REPORT.model_copy(update={"name": "mine", "company_id": "globex"})
    )
    with pytest.raises(ValidationError) as exc:
        ops.update(client, job.id, {"template": {"name": "mine"}})
    assert exc.value.field == "template.name"


def test_a_company_schedule_stored_naming_a_plugins_list_fires_nothing_of_others(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin's list spans every company: a company's schedule naming one (refused
    when saved now; stored so by an earlier version) makes each occurrence an error
    that names no other company, and no job carrying their values."""
    ops, client = _ops(engine)
    pm = engine.ops.registry.plugins
    assert pm is not None
    others = [{"company_id": "globex", "company_name": "Globex Corp"},
              {"company_id": "initech", "company_name": "Initech"}]  # fmt: skip
    monkeypatch.setitem(pm.param_sources, "companies", lambda: others)
    TemplateOps(engine.ops).save(client, TemplateSpec.model_validate({
        "name": "hello",
        "params": {"type": "object", "properties": {"company_id": {"type": "string"},
                                                    "company_name": {"type": "string"}}},
        "job": {"type": "noop", "data": {"to": {"$param": "company_name"}}},
    }))  # fmt: skip
    body = {"name": "hi", "schedule": "1h", "template": {"name": "hello"},
            "for_each": "companies", "company_id": "acme"}  # fmt: skip
    with pytest.raises(ValidationError) as exc:
        ops.add(client, body)
    assert exc.value.field == "for_each" and "spans every company" in str(exc.value)
    # As an earlier version stored it: saved without the check.
    spec = replace(ops.parse(body), id="sch_old")
    now = ops.now_ms(client)
    ops._save(client, "create", spec, rev=None, anchor_ms=now, next_due_ms=now)
    job = ops.require(client, "sch_old")
    result = _fire(engine, ops, job)
    assert result is not None and result.action == "error", result
    after = ops.require(client, "sch_old")
    assert "spans every company" in (after.last_error or ""), after.last_error
    assert "globex" not in (after.last_error or "").lower()
    assert fired(engine, "sch_old") == []
    with pytest.raises(ValidationError) as exc:
        ops.run_now(client, "sch_old")
    assert exc.value.field == "for_each"
    # Unchanged for a platform schedule (no company): one job per element.
    mine = ops.add(client, {**body, "company_id": None, "name": "all"})
    _fire(engine, ops, mine)
    assert sorted(j.data["to"] for _, j in fired(engine, mine.id)) == ["Globex Corp", "Initech"]


def test_a_workflow_template_schedule_submits_its_workflows(engine: Engine) -> None:
    ops, client = _ops(engine)
    TemplateOps(engine.ops).save(client, TemplateSpec.model_validate({
        "name": "report-flow",
        "params": {"type": "object", "properties": {"company": {"type": "string"}},
                   "required": ["company"]},
        "workflow": {"company_id": {"$param": "company"},
                     "chain": [{"type": "noop"}, {"type": "noop"}]},
    }))  # fmt: skip
    job = ops.add(client, {"name": "flows", "schedule": "1h", "template": {"name": "report-flow"},
                           "for_each": [{"company": "acme"}, {"company": "globex"}]})  # fmt: skip
    result = _fire(engine, ops, job)
    assert result is not None and result.job_id.startswith("wf")
    ids = client.zrange(engine.keys.workflows, 0, -1)
    assert len(ids) == 2
    companies = {WorkflowOps(engine.ops).get(client, i).company_id for i in ids}  # type: ignore[union-attr]
    assert companies == {"acme", "globex"}
    assert ops.require(client, job.id).last_job_id == result.job_id


def test_an_occurrence_makes_a_bounded_number_of_workflow_nodes(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """schedule_fire.lua stores an occurrence's workflows in one call: their nodes in
    all are capped (MAX_OCCURRENCE_NODES, here 5): refused at save, and an occurrence
    over it (the template grew since) is the run's error, not a long script call."""
    from fleetd.schedules import templated

    monkeypatch.setattr(templated, "MAX_OCCURRENCE_NODES", 5)
    ops, client = _ops(engine)
    flow = {
        "name": "flow", "params": {"type": "object", "properties": {"n": {"type": "integer"}}},
        "workflow": {"chain": [{"type": "noop"}, {"type": "noop"}]},
    }  # fmt: skip
    TemplateOps(engine.ops).save(client, TemplateSpec.model_validate(flow))
    body = {"name": "flows", "schedule": "1h", "template": {"name": "flow"}}
    with pytest.raises(ValidationError) as exc:
        ops.add(client, {**body, "for_each": [{"n": i} for i in range(3)]})  # 6 nodes
    assert exc.value.field == "for_each" and "6 workflow nodes in all, at most 5" in str(exc.value)
    job = ops.add(client, {**body, "for_each": [{"n": i} for i in range(2)]})  # 4 nodes
    flow["workflow"]["chain"].append({"type": "noop"})  # type: ignore[index]
    TemplateOps(engine.ops).save(client, TemplateSpec.model_validate(flow))  # now 6
    result = _fire(engine, ops, job)
    assert result is not None and result.action == "error"
    assert client.zcard(engine.keys.workflows) == 0
    assert "6 workflow nodes in all" in (ops.require(client, job.id).last_error or "")


def test_cli_refuses_a_bad_template_schedule_in_one_line(config: Config, engine: Engine) -> None:
    _ops(engine)
    env = fleetd_env(config)
    done = run_cli(env, "schedules", "add", "r", "--schedule", "1h", "--template", "nope")
    assert done.returncode != 0 and "template.name" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    done = run_cli(env, "schedules", "add", "r", "--schedule", "1h",
                   "--template", "monthly-report", "--for-each", "[{")  # fmt: skip
    assert done.returncode != 0 and "--for-each is not valid JSON" in done.stderr
    done = run_cli(env, "schedules", "add", "r", "--schedule", "1h", "--template",
                   "monthly-report@1", "--for-each", '[{"company_id": "acme"}]')  # fmt: skip
    assert done.returncode == 0, done.stderr
    shown = run_cli(env, "schedules", "show", "r").stdout
    assert "template: monthly-report@1" in shown and 'for_each: [{"company_id": "acme"}]' in shown


@pytest.mark.slow
def test_two_daemons_fire_a_fan_out_once_per_occurrence(
    config: Config, engine: Engine, fleet: Fleet
) -> None:
    _ops(engine)
    env = fleetd_env(config) | settings(daemon_log_format="json")
    for name in ("d1", "d2"):
        fleet.start(env, "--roles", "scheduler", name=name)
    body = cli_json(
        env, "schedules", "add", "report every second", "--schedule", "1s",
        "--template", "monthly-report", "--params", '{"recipients": "fleet_managers"}',
        "--for-each", '[{"company_id": "acme"}, {"company_id": "globex"},'
        ' {"company_id": "initech"}]', "--json",
    )  # fmt: skip
    schedule_id = body["scheduled_job"]["id"]
    assert body["scheduled_job"]["template"] == {"name": "monthly-report", "version": None}
    wait_for(lambda: len(fired(engine, schedule_id)) >= 12, 30, "four occurrences fired")
    for d in fleet.procs:
        d.send(signal.SIGTERM)
    for d in fleet.procs:
        assert d.wait_exit(10) == 0, d.tail()
    time.sleep(0.1)
    by_occurrence: dict[int, list[str]] = {}
    for occurrence, job in fired(engine, schedule_id):
        by_occurrence.setdefault(occurrence, []).append(job.company_id or "")
    assert len(by_occurrence) >= 4
    for occurrence, companies in by_occurrence.items():
        assert sorted(companies) == COMPANIES, (occurrence, companies)
    schedule = ScheduleOps.from_engine(engine).require(engine.link.client, schedule_id)
    assert schedule.runs == len(by_occurrence)
    for d in fleet.procs:
        assert "Traceback" not in d.log(), d.tail()


async def test_http_create_refuses_bad_template_schedules_and_shows_good_ones(
    config: Config, engine: Engine
) -> None:
    _ops(engine)
    s = "/api/v1/admin/jobs/scheduled"
    async with running_api(api_config(config), roles=("api",)) as api:
        r = await api.post(s, json={**FAN_OUT, "template": {"name": "nope"}})
        assert r.status_code == 422, r.text
        fields = {e["field"] for e in r.json()["error"]["details"]["fields"]}
        assert fields == {"template.name"}
        r = await api.post(s, json={**FAN_OUT, "for_each": [{"company_id": 7}]})
        assert r.status_code == 422, r.text
        fields = {e["field"] for e in r.json()["error"]["details"]["fields"]}
        assert fields == {"for_each[0].params.company_id"}
        r = await api.post(s, json=FAN_OUT)
        assert r.status_code == 201, r.text
        made = r.json()["scheduled_job"]
        assert made["template"] == {"name": "monthly-report", "version": None}
        assert made["for_each"] == FAN_OUT["for_each"]
        # A company admin's schedule runs as its company: other companies refused.
        r = await api.post(s, json={**FAN_OUT, "name": "mine"}, headers=auth("acme"))
        assert r.status_code == 422, r.text
        fields = {e["field"] for e in r.json()["error"]["details"]["fields"]}
        assert fields == {"for_each[1].params", "for_each[2].params"}
        # Ordinary schedules keep the spec's shape: no template fields.
        r = await api.post(s, json={"name": "plain", "job_type": "noop", "schedule": "@daily"})
        assert r.status_code == 201 and "template" not in r.json()["scheduled_job"]
        # An update to another template is checked as a create is.
        r = await api.put(f"{s}/{made['id']}", json={"template": {"name": "nope"}})
        assert r.status_code == 422, r.text
        r = await api.put(f"{s}/{made['id']}", json={"is_active": False})
        assert r.status_code == 200 and r.json()["scheduled_job"]["for_each"], r.text


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_fan_out_over_the_fleet_databases_companies(
    config: Config, engine: Engine, fleet: Fleet, tmp_path: Path, backend: str
) -> None:
    """`for_each: "companies"` (the fleetdata plugin's list) read when it fires: one
    job per company of a real fleet database, each that company's."""
    _ops(engine)
    url = fresh_url(backend, tmp_path)
    raw = Raw(url)
    raw.execute("INSERT INTO companies (id, name, created_at) VALUES (?, ?, ?)",
                str(uuid.uuid4()), "Third Fleet", "2026-01-01T00:00:00Z")  # fmt: skip
    companies = sorted(str(r[0]) for r in raw.rows("SELECT id FROM companies"))
    assert len(companies) == 3
    env = fleetd_env(config) | {"FLEETD_DATA_URL": url}
    done = run_cli(env, "schedules", "add", "per company", "--schedule", "1h",
                   "--template", "monthly-report", "--for-each", "nope")  # fmt: skip
    assert done.returncode != 0 and "no parameter list named 'nope'" in done.stderr
    body = cli_json(env, "schedules", "add", "per company", "--schedule", "1s", "--template",
                    "monthly-report", "--for-each", "companies", "--json")  # fmt: skip
    schedule_id = body["scheduled_job"]["id"]
    assert body["scheduled_job"]["for_each"] == "companies"
    fleet.start(env | settings(daemon_log_format="json"), "--roles", "scheduler")
    wait_for(lambda: len(fired(engine, schedule_id)) >= 3, 30, "one occurrence fired")
    run_cli(env, "schedules", "pause", schedule_id)
    first = min(o for o, _ in fired(engine, schedule_id))
    made = [j for o, j in fired(engine, schedule_id) if o == first]
    assert sorted(j.company_id or "" for j in made) == companies
    assert all(j.data == {"mail_to": "fleet_managers"} for j in made)
