"""Tenant isolation of the admin API, route by route, against a real daemon and Redis.

Company globex owns a job (pending and cancelled), a schedule, a workflow and a
template. With a token bound to company acme, every route that takes an id answers for
globex's resource exactly as for one that does not exist (same status, same code, the
same message but for the id), and changes nothing of it; no listing, filter, audit
page, analytics group or event replay shows anything of globex; and every route over
every company's jobs (stats, throughput, capacity, clean-up, queues and their pause,
worker figures, quarantine release, /metrics) answers 403. A critical job sent with
`bypass` runs past nothing a claim enforces (its company's limits, a paused queue).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import httpx
import trio
from api_client import PREFIX, Api, api_config, auth, running_api
from test_ws_events import feed, recv

from fleetd.config import Config
from fleetd.config.limit_sections import LimitsConfig

WORKFLOWS = "/api/v1/admin/workflows"
TEMPLATES = "/api/v1/admin/templates"
SCHEDULED = f"{PREFIX}/scheduled"
# Minted once at import: valid for a day, so a long run never sees them expire.
ACME = auth("acme", subject="alice", ttl=86_400)
GLOBEX = auth("globex", subject="bob", ttl=86_400)
# Ids of the same shapes that name nothing.
NO_JOB = "job_01M96M41WRHNVBPSZFYD94H8ZZ"
NO_SCHEDULE = "sch_01M96M41WRHNVBPSZFYD94H8ZZ"
NO_WORKFLOW = "wf_01M96M41WRHNVBPSZFYD94H8ZZ"
NO_TEMPLATE = "no-such-template"


async def globex_resources(api: Api) -> dict[str, str]:
    """globex's job (pending), cancelled job, schedule, workflow and template."""
    job = await api.enqueue({"type": "noop", "tags": ["globex-secret"]}, headers=GLOBEX)
    done = await api.enqueue({"type": "noop"}, headers=GLOBEX)
    r = await api.delete(f"{PREFIX}/{done['job_id']}", headers=GLOBEX)
    assert r.status_code == 200, r.text
    r = await api.post(
        SCHEDULED, json={"name": "globex-nightly", "job_type": "noop", "schedule": "@daily"},
        headers=GLOBEX,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    schedule = r.json()["scheduled_job"]["id"]
    r = await api.post(
        WORKFLOWS, json={"name": "globex-flow", "nodes": [{"name": "a", "type": "noop"}]},
        headers=GLOBEX,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    workflow = r.json()["workflow_id"]
    r = await api.post(
        TEMPLATES, json={"name": "globex-tmpl", "job": {"type": "noop"}}, headers=GLOBEX
    )
    assert r.status_code == 201, r.text
    return {"job": job["job_id"], "done": done["job_id"], "schedule": schedule,
            "workflow": workflow, "template": "globex-tmpl"}  # fmt: skip


def same_answer(theirs: httpx.Response, none: httpx.Response, their_id: str, no_id: str) -> None:
    assert theirs.status_code == none.status_code, (theirs.text, none.text)
    a, b = theirs.json()["error"], none.json()["error"]
    assert a["code"] == b["code"] and a["details"] == b["details"], (a, b)
    assert a["message"].replace(their_id, "<id>") == b["message"].replace(no_id, "<id>")


async def test_another_company_is_indistinguishable_from_nothing(config: Config) -> None:
    async with running_api(api_config(config), roles=("api",)) as api:
        g = await globex_resources(api)
        routes: list[tuple[str, str, str, str, dict[str, Any]]] = []
        for job in (g["job"], g["done"]):
            routes += [
                ("GET", f"{PREFIX}/{{}}", job, NO_JOB, {}),
                ("DELETE", f"{PREFIX}/{{}}", job, NO_JOB, {}),
                ("POST", f"{PREFIX}/{{}}/reset", job, NO_JOB, {}),
                ("GET", f"{PREFIX}/{{}}/artifact", job, NO_JOB, {}),
            ]
        routes += [
            ("GET", f"{SCHEDULED}/{{}}", g["schedule"], NO_SCHEDULE, {}),
            ("PUT", f"{SCHEDULED}/{{}}", g["schedule"], NO_SCHEDULE, {"json": {"priority": 9}}),
            ("DELETE", f"{SCHEDULED}/{{}}", g["schedule"], NO_SCHEDULE, {}),
            ("GET", f"{WORKFLOWS}/{{}}", g["workflow"], NO_WORKFLOW, {}),
            ("DELETE", f"{WORKFLOWS}/{{}}", g["workflow"], NO_WORKFLOW, {}),
            ("POST", f"{WORKFLOWS}/{{}}/resume", g["workflow"], NO_WORKFLOW, {}),
            ("GET", f"{TEMPLATES}/{{}}", g["template"], NO_TEMPLATE, {}),
            ("GET", f"{TEMPLATES}/{{}}?version=1", g["template"], NO_TEMPLATE, {}),
            ("POST", f"{TEMPLATES}/{{}}/run", g["template"], NO_TEMPLATE, {"json": {}}),
            ("DELETE", f"{TEMPLATES}/{{}}", g["template"], NO_TEMPLATE, {}),
        ]
        for method, path, theirs, none, kw in routes:
            a = await api.client.request(method, path.format(theirs), headers=ACME, **kw)
            b = await api.client.request(method, path.format(none), headers=ACME, **kw)
            assert a.status_code == 404, (method, path, a.text)
            same_answer(a, b, theirs, none)
        # Nothing of globex changed.
        job = (await api.get(f"{PREFIX}/{g['job']}", headers=GLOBEX)).json()["job"]
        assert job["status"] == "pending"
        done = (await api.get(f"{PREFIX}/{g['done']}", headers=GLOBEX)).json()["job"]
        assert done["status"] == "cancelled"
        schedule = (await api.get(f"{SCHEDULED}/{g['schedule']}", headers=GLOBEX)).json()
        assert schedule["scheduled_job"]["priority"] == 5
        flow = await api.get(f"{WORKFLOWS}/{g['workflow']}", headers=GLOBEX)
        assert flow.json()["workflow"]["status"] == "running"
        assert (await api.get(f"{TEMPLATES}/{g['template']}", headers=GLOBEX)).status_code == 200


async def test_no_listing_or_feed_shows_another_company(config: Config) -> None:
    async with running_api(api_config(config), roles=("api",)) as api:
        g = await globex_resources(api)
        mine = await api.enqueue({"type": "noop"}, headers=ACME)
        with trio.fail_after(10):  # globex's audit entries are there (the writer batches)
            while "globex" not in (await api.get(f"{PREFIX}/audit?limit=500")).text:
                await trio.sleep(0.05)
        secrets = [*g.values(), "globex", "bob", "globex-secret"]
        listings = [
            *(f"{PREFIX}/status/{s}" for s in ("pending", "cancelled", "processing")),
            f"{PREFIX}/status/pending?q=globex",
            f"{PREFIX}/status/pending?user_id=bob",
            f"{PREFIX}/status/cancelled?type=noop&limit=500",
            SCHEDULED,
            f"{SCHEDULED}/stats",
            TEMPLATES,
            f"{PREFIX}/audit?limit=500",
            f"{PREFIX}/audit?subject=bob",
            f"{PREFIX}/analytics?by=type_company",
            f"{PREFIX}/analytics?by=company&window=week",
            "/api/v1/admin/quarantines",
        ]
        for path in listings:
            r = await api.get(path, headers=ACME)
            assert r.status_code == 200, (path, r.text)
            leaked = [s for s in secrets if s in r.text]
            assert not leaked, (path, leaked, r.text[:500])
        pending = (await api.get(f"{PREFIX}/status/pending", headers=ACME)).json()["jobs"]
        assert [j["id"] for j in pending] == [mine["job_id"]]
        for path in (f"{PREFIX}/audit?company_id=globex", f"{PREFIX}/analytics?company_id=globex"):
            r = await api.get(path, headers=ACME)
            assert r.status_code in (200, 403), r.text
            assert "bob" not in r.text and g["job"] not in r.text
        # The feed, replayed from the start: acme's events only, even asked for
        # globex's job by id; naming globex is refused.
        async with feed(api, f"last_event_id=0-0&job_id={g['job']},{mine['job_id']}",
                        tok=ACME["Authorization"].split()[1]) as ws:  # fmt: skip
            first = await recv(ws)
            assert first["filters"]["company_id"] == "acme"
            ev = await recv(ws)
            while ev["type"] == "gap":  # from 0-0: the stream starts later
                ev = await recv(ws)
            assert ev.get("job_id") == mine["job_id"] and ev.get("company_id") == "acme", ev
            await ws.send_message(json.dumps({"action": "subscribe", "company_id": "globex"}))
            assert (await recv(ws))["error"]["code"] == "forbidden"


async def test_every_route_over_all_companies_is_for_platform_admins(config: Config) -> None:
    async with running_api(api_config(config), roles=("api",)) as api:
        routes = [
            ("GET", f"{PREFIX}/stats"),
            ("GET", f"{PREFIX}/throughput"),
            ("GET", f"{PREFIX}/capacity"),
            ("POST", f"{PREFIX}/cleanup?older_than=0s"),
            ("GET", "/api/v1/admin/queues"),
            ("POST", "/api/v1/admin/queues/default/pause"),
            ("POST", "/api/v1/admin/queues/default/resume"),
            ("GET", f"{PREFIX}/worker/metrics"),
            ("GET", f"{PREFIX}/worker/health"),
            ("DELETE", "/api/v1/admin/quarantines/noop"),
            ("DELETE", "/api/v1/admin/quarantines/noop/globex"),
            ("GET", "/metrics"),
        ]
        for method, path in routes:
            r = await api.client.request(method, path, headers=ACME)
            assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", (path, r.text)
        queues = (await api.get("/api/v1/admin/queues")).json()["queues"]
        assert not any(q.get("paused") for q in queues)


async def test_a_bypass_runs_past_no_limit_a_claim_enforces(config: Config) -> None:
    cfg = api_config(config)
    cfg = dataclasses.replace(
        cfg,
        limits=LimitsConfig(company_concurrency=1),
        worker=dataclasses.replace(cfg.worker, concurrency=4, critical_slots=2),
    )
    slow = {"type": "noop", "priority": "critical", "bypass": True, "data": {"sleep_ms": 30_000}}
    # A failure is raised once the daemon has stopped as usual: an exception leaving
    # running_api cancels a worker daemon instead, which waits out its jobs' grace.
    failure: AssertionError | None = None
    async with running_api(cfg, roles=("api", "worker")) as api:
        ids: list[str] = []

        async def send(headers: dict[str, str]) -> dict[str, Any]:
            r = await api.post(f"{PREFIX}/enqueue", json=slow, headers=headers)
            assert r.status_code == 201, r.text
            ids.append(r.json()["job_id"])
            body: dict[str, Any] = r.json()
            return body

        try:
            # acme may run one job at a time: its bypasses are enqueued as usual (claimed
            # under the limit), not started beside each other in the shared critical slots.
            sent = [await send(ACME) for _ in range(2)]
            assert all("ran" not in r for r in sent), sent
            await api.wait_status(ids[0], "processing")
            running = (await api.get(f"{PREFIX}/status/processing", headers=ACME)).json()
            assert [j["id"] for j in running["jobs"]] == [ids[0]]
            # A job under no limit still bypasses; in a paused queue it waits like the rest.
            assert (await send(api.headers)).get("ran") == "bypass"
            assert (await api.post("/api/v1/admin/queues/default/pause")).status_code == 200
            held = await send(api.headers)
            assert "ran" not in held and held["status"] == "pending", held
        except AssertionError as exc:
            failure = exc
        finally:  # the jobs sleep 30 s: cancelled (and ended), the daemon stops at once
            for job_id in ids:
                await api.delete(f"{PREFIX}/{job_id}")
            for job_id in ids:
                await api.wait_status(job_id, "cancelled")
    if failure is not None:
        raise failure


async def test_a_bypass_does_not_run_past_its_queues_limit(config: Config) -> None:
    cfg = api_config(config)
    cfg = dataclasses.replace(
        cfg,
        limits=LimitsConfig(queues=("default=1",)),
        worker=dataclasses.replace(cfg.worker, concurrency=4, critical_slots=2),
    )
    job = {"type": "noop", "priority": "critical", "bypass": True}
    async with running_api(cfg, roles=("api", "worker")) as api:
        # mail has no limit: bypassed (this also shows the daemon's pool takes bypasses).
        with trio.fail_after(10):
            while True:
                r = await api.post(f"{PREFIX}/enqueue", json={**job, "queue": "mail"})
                assert r.status_code == 201, r.text
                if r.json().get("ran") == "bypass":
                    break
                await trio.sleep(0.05)  # the pool had not started yet: enqueued as usual
        r = await api.post(f"{PREFIX}/enqueue", json=job)
        assert r.status_code == 201, r.text
        assert "ran" not in r.json(), r.text  # enqueued as usual: under the queue's limit
        await api.wait_status(r.json()["job_id"], "completed")
