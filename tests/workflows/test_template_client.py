"""Client's template methods against real Redis: save versions, list per company, get,
run with good and bad parameters (a job and a workflow), delete; audited."""

from __future__ import annotations

import pytest

import fleetd
from fleetd.client import Client
from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.model import ValidationError

JOB = {
    "name": "ping",
    "params": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}},
               "required": ["n"]},
    "job": {"type": "noop", "data": {"n": {"$param": "n"}}},
}  # fmt: skip
FLOW = {
    "name": "two-step",
    "company_id": "acme",
    "workflow": {"chain": [{"type": "noop"}, {"type": "noop"}]},
}


def test_client_saves_lists_runs_and_deletes_templates(config: Config, engine: Engine) -> None:
    assert fleetd.TemplateSpec is fleetd.templates.model.TemplateSpec
    with Client(config) as client:
        assert client.save_template(JOB)["version"] == 1
        assert client.save_template({**JOB, "description": "v2"})["version"] == 2
        client.save_template(fleetd.TemplateSpec.model_validate(FLOW))
        with pytest.raises(ValidationError) as exc:
            client.save_template({"name": "bad name", "job": {"type": "noop"}})
        assert exc.value.field == "name"

        assert {t["name"] for t in client.list_templates()} == {"ping", "two-step"}
        assert {t["name"] for t in client.list_templates("globex")} == {"ping"}
        got = client.get_template("ping", version=1)
        assert got is not None and got["description"] == "" and got["latest"] == 2
        assert client.get_template("two-step", "globex") is None

        run = client.run_template("ping", {"n": 3}, company_id="globex")
        assert isinstance(run, fleetd.TemplateRun) and run.kind == "job" and run.version == 2
        job = client.get(run.id)
        assert job is not None and job.data == {"n": 3} and job.company_id == "globex"
        with pytest.raises(ValidationError) as exc:
            client.run_template("ping", {"n": 0})
        assert {e.field for e in exc.value.errors} == {"params.n"}
        with pytest.raises(LookupError):
            client.run_template("two-step", company_id="globex")
        flow = client.run_template("two-step", company_id="acme")
        answer = client.get_workflow(flow.id)
        assert flow.kind == "workflow" and answer is not None and answer.company_id == "acme"

        assert client.delete_template("two-step", "acme") is True
        assert client.delete_template("two-step", "acme") is False
        assert [t["name"] for t in client.list_templates()] == ["ping"]
