"""The CLI (`fleetd workflow …`) and the sync Client against real Redis: run, show,
cancel, resume; refused input is one line on stderr with every problem, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import fleetd_env
from daemons import cli_json, run_cli

from fleetd.client import Client
from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.validation import ValidationError

CHAIN = {"name": "two", "chain": [{"type": "noop"}, {"type": "noop"}]}


def test_cli_run_show_cancel_resume(config: Config, engine: Engine, tmp_path: Path) -> None:
    env = fleetd_env(config)
    spec = tmp_path / "wf.json"
    spec.write_text(json.dumps(CHAIN))
    submitted = cli_json(env, "workflow", "run", str(spec), "--json")
    wid = submitted["workflow_id"]
    assert set(submitted["nodes"]) == {"step-1", "step-2"}
    shown = cli_json(env, "workflow", "show", wid, "--json")["workflow"]
    assert [n["state"] for n in shown["nodes"]] == ["pending", "waiting"]
    human = run_cli(env, "workflow", "show", wid)
    assert human.returncode == 0 and "waiting on step-1" in human.stdout
    cancelled = cli_json(env, "workflow", "cancel", wid, "--json")
    assert cancelled == {"workflow_id": wid, "status": "cancelled", "cancelled": True}
    again = run_cli(env, "workflow", "cancel", wid)
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "cancelled" in again.stderr
    resumed = cli_json(env, "workflow", "resume", wid, "--json")
    assert resumed == {"workflow_id": wid, "status": "running", "resumed": 2}
    missing = run_cli(env, "workflow", "show", "wf_nope")
    assert missing.returncode == 2 and missing.stderr == "fleetd: no workflow 'wf_nope'\n"
    actions = [f["action"] for _, f in engine.link.client.xrange(engine.keys.audit)]
    assert actions.count("workflow.run") == 1 and actions.count("workflow.resume") == 1


def test_cli_refuses_a_bad_workflow_in_one_line(config: Config, tmp_path: Path) -> None:
    env = fleetd_env(config)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"nodes": [
        {"name": "a", "type": "noop", "depends_on": ["a"]},
        {"name": "b", "type": "no-such-type"},
    ]}))  # fmt: skip
    done = run_cli(env, "workflow", "run", str(bad))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "nodes[1].type" in done.stderr and "Traceback" not in done.stderr
    not_json = tmp_path / "x.json"
    not_json.write_text("{")
    done = run_cli(env, "workflow", "run", str(not_json))
    assert done.returncode == 2 and "is not JSON" in done.stderr


def test_client_runs_gets_cancels_and_refuses(config: Config, engine: Engine) -> None:
    with Client(config, name="tests") as client:
        submitted = client.run_workflow(CHAIN)
        answer = client.get_workflow(submitted.workflow_id)
        assert answer is not None and answer.total == 2 and answer.status == "running"
        assert client.cancel_workflow(submitted.workflow_id).outcome == "cancelled"
        assert client.resume_workflow(submitted.workflow_id).count == 2
        with pytest.raises(ValidationError) as caught:
            client.run_workflow({"chain": [{"type": "noop", "condition": "(("}]})
        assert caught.value.errors[0].field == "chain[0].condition"
        assert client.get_workflow("wf_missing") is None


def test_cli_templates_add_list_run_rm(config: Config, engine: Engine, tmp_path: Path) -> None:
    env = fleetd_env(config)
    spec = tmp_path / "tpl.json"
    spec.write_text(json.dumps({
        "name": "ping", "company_id": "acme",
        "params": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
        "job": {"type": "noop", "data": {"n": {"$param": "n"}}},
    }))  # fmt: skip
    assert cli_json(env, "template", "add", str(spec), "--json")["template"]["version"] == 1
    listed = cli_json(env, "template", "list", "--json")
    assert [(t["name"], t["company_id"]) for t in listed["templates"]] == [("ping", "acme")]
    bad = run_cli(env, "template", "run", "ping", "--company", "acme", "--params", '{"n": "x"}')
    assert bad.returncode == 2 and "params.n" in bad.stderr and bad.stderr.count("\n") == 1
    ran = cli_json(env, "template", "run", "ping", "--company", "acme", "--params", '{"n": 4}',
                   "--json")  # fmt: skip
    job = engine.ops.get(engine.link.client, ran["job_id"])
    assert job is not None and job.company_id == "acme" and job.data == {"n": 4}
    missing = run_cli(env, "template", "run", "ping")  # the platform has no "ping"
    assert missing.returncode == 2 and "no template 'ping'" in missing.stderr
    assert cli_json(env, "template", "rm", "ping", "--company", "acme", "--json")["deleted"]
