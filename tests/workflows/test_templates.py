"""Templates against a real daemon's API and real Redis: versions, a run with good and
bad parameters (every problem under params.), a workflow template fanned out over
companies, company isolation."""

from __future__ import annotations

import trio
from api_client import api_config, auth, running_api

from fleetd.config import Config

T = "/api/v1/admin/templates"
REPORT = {
    "name": "fleet-report",
    "description": "one company's monthly report, then a mail",
    "params": {
        "type": "object",
        "properties": {
            "company": {"type": "string", "minLength": 1},
            "month": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"},
            "rows": {"type": "integer", "minimum": 1, "default": 10},
        },
        "required": ["company", "month"],
        "additionalProperties": False,
    },
    "workflow": {
        "name": "report",
        "company_id": {"$param": "company"},
        "chain": [
            {"type": "noop", "data": {"month": {"$param": "month"}, "rows": {"$param": "rows"}}},
            {"type": "noop", "data": {"mail": {"$from": "step-1.result.echo.month"}}},
        ],
    },
}


async def test_save_versions_run_good_and_bad_params_fan_out(config: Config) -> None:
    async with running_api(api_config(config), roles=("api", "worker")) as api:
        r = await api.post(T, json=REPORT)
        assert r.status_code == 201, r.text
        assert r.json()["template"]["version"] == 1
        r = await api.post(T, json={**REPORT, "description": "v2"})
        assert r.json()["template"]["version"] == 2
        got = (await api.get(f"{T}/fleet-report", params={"version": 1})).json()["template"]
        assert got["description"] == REPORT["description"] and got["latest"] == 2

        bad = await api.post(f"{T}/fleet-report/run", json={"params": {"month": "May", "x": 1}})
        assert bad.status_code == 422, bad.text
        fields = {e["field"] for e in bad.json()["error"]["details"]["fields"]}
        assert fields == {"params.company", "params.month", "params.x"}

        # A schedule's fan-out, done by hand: one run per company.
        ids = {}
        for company in ("acme", "globex"):
            r = await api.post(
                f"{T}/fleet-report/run", json={"params": {"company": company, "month": "2026-11"}}
            )
            assert r.status_code == 201, r.text
            assert r.json()["kind"] == "workflow" and r.json()["version"] == 2
            ids[company] = r.json()["workflow_id"]
        for company, wid in ids.items():
            with trio.fail_after(20):
                while (
                    body := (await api.get(f"/api/v1/admin/workflows/{wid}")).json()["workflow"]
                )["status"] == "running":
                    await trio.sleep(0.05)
            assert body["status"] == "completed" and body["company_id"] == company
            first = (await api.get(f"/api/v1/admin/jobs/{body['nodes'][0]['job_id']}")).json()
            assert first["job"]["data"] == {"month": "2026-11", "rows": 10}


async def test_bad_templates_and_company_isolation(config: Config) -> None:
    async with running_api(api_config(config), roles=("api", "worker")) as api:
        r = await api.post(
            T,
            json={
                "name": "x",
                "params": {"type": "string"},
                "job": {"type": "noop", "data": {"a": {"$param": "nope"}}},
            },
        )
        assert r.status_code == 422
        fields = {e["field"] for e in r.json()["error"]["details"]["fields"]}
        assert fields == {"params", "job.data.a"}
        job_tpl = {
            "name": "ping",
            "params": {"type": "object", "properties": {"n": {"type": "integer"}}},
            "job": {"type": "noop", "data": {"n": {"$param": "n"}}},
        }
        assert (await api.post(T, json=job_tpl, headers=auth("acme"))).status_code == 201
        mine = await api.get(T, headers=auth("acme"))
        assert [t["name"] for t in mine.json()["templates"]] == ["ping"]
        assert (await api.get(f"{T}/ping", headers=auth("globex"))).status_code == 404
        assert (await api.post(f"{T}/ping/run", json={}, headers=auth("globex"))).status_code == 404
        r = await api.post(f"{T}/ping/run", json={"params": {"n": 3}}, headers=auth("acme"))
        assert r.status_code == 201 and r.json()["kind"] == "job"
        job = await api.wait_status(r.json()["job_id"], "completed")
        assert job["job"]["company_id"] == "acme" and job["job"]["data"] == {"n": 3}
        assert (await api.delete(f"{T}/ping", headers=auth("globex"))).status_code == 404
        assert (await api.delete(f"{T}/ping", headers=auth("acme"))).status_code == 200
