"""Workflow endpoints against a real daemon (api and worker roles): run, get, cancel,
resume, every problem in one 422, company isolation, the audit log."""

from __future__ import annotations

import trio
from api_client import api_config, auth, running_api

from fleetd.config import Config

WF = "/api/v1/admin/workflows"


async def _wait(api: object, wid: str, *statuses: str) -> dict:  # type: ignore[type-arg]
    with trio.fail_after(20):
        while True:
            r = await api.get(f"{WF}/{wid}")  # type: ignore[attr-defined]
            body = r.json()["workflow"]
            if body["status"] in statuses:
                return body  # type: ignore[no-any-return]
            await trio.sleep(0.05)


async def test_run_get_and_isolation(config: Config) -> None:
    async with running_api(api_config(config), roles=("api", "worker")) as api:
        r = await api.post(WF, json={"name": "nightly", "chain": [
            {"type": "noop", "data": {"n": 1}},
            {"type": "noop", "data": {"from": {"$from": "step-1.result.echo.n"}}},
        ]}, headers=auth("acme"))  # fmt: skip
        assert r.status_code == 201, r.text
        wid = r.json()["workflow_id"]
        assert r.headers["Location"] == f"{WF}/{wid}"
        assert set(r.json()["nodes"]) == {"step-1", "step-2"}
        done = await _wait(api, wid, "completed", "failed")
        assert done["status"] == "completed" and done["company_id"] == "acme"
        assert done["counts"] == {"completed": 2} and done["name"] == "nightly"
        second = (await api.get(f"/api/v1/admin/jobs/{done['nodes'][1]['job_id']}")).json()["job"]
        assert second["result"]["echo"] == {"from": {"$from": "step-1.result.echo.n"}}
        # Another company sees nothing, as if it did not exist; its own company does.
        other = await api.get(f"{WF}/{wid}", headers=auth("globex"))
        assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"
        assert (await api.get(f"{WF}/{wid}", headers=auth("acme"))).status_code == 200
        assert (await api.delete(f"{WF}/{wid}", headers=auth("globex"))).status_code == 404
        # A company token cannot name another company.
        r = await api.post(WF, json={"company_id": "globex", "chain": [{"type": "noop"}]},
                           headers=auth("acme"))  # fmt: skip
        assert r.status_code == 403
        again = await api.delete(f"{WF}/{wid}")
        assert (
            again.status_code == 409 and again.json()["error"]["details"]["status"] == "completed"
        )
        audit = (
            await api.get("/api/v1/admin/jobs/audit", params={"action": "workflow.run"})
        ).json()
        assert [e["target"] for e in audit["entries"] if e["outcome"] == "ok"] == [wid]


async def test_every_problem_in_one_422(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        r = await api.post(WF, json={"nodes": [
            {"name": "a", "type": "noop", "depends_on": ["b"]},
            {"name": "b", "type": "unknown-type"},
            {"name": "c", "type": "noop", "depends_on": ["zz"], "condition": "(("},
        ]})  # fmt: skip
        assert r.status_code == 422, r.text
        fields = {e["field"] for e in r.json()["error"]["details"]["fields"]}
        assert fields >= {"nodes[1].type", "nodes[2].depends_on[0]", "nodes[2].condition"}
        r = await api.post(WF, json={"nodes": [{"name": "a", "type": "noop", "extra": 1}]})
        assert r.status_code == 422
        assert r.json()["error"]["details"]["fields"][0]["field"] == "nodes[0].extra"
        assert (await api.get(f"{WF}/wf_nope")).status_code == 404


async def test_cancel_and_resume(config: Config) -> None:
    async with running_api(api_config(config), roles=("api", "worker")) as api:
        r = await api.post(WF, json={"chain": [
            {"type": "noop", "data": {"sleep_ms": 60_000}},
            {"type": "noop"},
        ]})  # fmt: skip
        wid = r.json()["workflow_id"]
        await _wait_state(api, wid, "step-1", "processing")
        r = await api.delete(f"{WF}/{wid}")
        assert r.status_code == 202 and r.json()["cancelled"] is False
        body = await _wait(api, wid, "cancelled")
        assert [n["state"] for n in body["nodes"]] == ["cancelled", "cancelled"]
        r = await api.post(f"{WF}/{wid}/resume")
        assert r.status_code == 200 and r.json()["resumed"] == 2
        assert (await api.post(f"{WF}/{wid}/resume")).status_code == 409
        r = await api.delete(f"{WF}/{wid}")
        assert r.status_code in (200, 202)


async def _wait_state(api: object, wid: str, node: str, state: str) -> None:
    with trio.fail_after(20):
        while True:
            body = (await api.get(f"{WF}/{wid}")).json()["workflow"]  # type: ignore[attr-defined]
            if any(n["name"] == node and n["state"] == state for n in body["nodes"]):
                return
            await trio.sleep(0.05)


async def test_a_large_graph_over_http_within_max_body_size(config: Config) -> None:
    body = {"first": {"type": "noop"}, "then": {"type": "noop"},
            "group": [{"type": "noop", "data": {"i": i}} for i in range(8000)]}  # fmt: skip
    async with running_api(api_config(config)) as api:
        # ~0.4 MB: over the default [http] max_body_size (256 KiB).
        r = await api.post(WF, json=body)
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    async with running_api(api_config(config, max_body_size=2 * 1024 * 1024)) as api:
        r = await api.post(WF, json=body)  # planned in a worker thread (> 200 nodes)
        assert r.status_code == 201, r.text
        assert len(r.json()["nodes"]) == 8002
        got = (await api.get(f"{WF}/{r.json()['workflow_id']}")).json()["workflow"]
        assert got["counts"] == {"pending": 1, "waiting": 8001}
