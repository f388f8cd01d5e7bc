"""Named queues over HTTP: `"queue"` in the enqueue body (checked, shown in the job's
answer), `GET /api/v1/admin/queues` with per-queue figures, pause and resume (platform
admins only, audited), bad names answered 400/422 with their field."""

from __future__ import annotations

import dataclasses
from typing import Any

import trio
from api_client import PREFIX, api_config, auth, running_api

from fleetd.config import Config
from fleetd.config.limit_sections import LimitsConfig

QUEUES = "/api/v1/admin/queues"


async def audit_actions(api: Any) -> list[tuple[str, str | None, str]]:
    for _ in range(100):  # the audit writer flushes in the background
        r = await api.get(f"{PREFIX}/audit")
        entries = [e for e in r.json()["entries"] if e["action"].startswith("queue.")]
        if len(entries) >= 2:
            return sorted((e["action"], e["target"], e["outcome"]) for e in entries)
        await trio.sleep(0.05)
    raise AssertionError("no queue.* audit entries")


async def test_queue_on_enqueue_listing_pause_and_resume(config: Config) -> None:
    cfg = dataclasses.replace(api_config(config), limits=LimitsConfig(queues=("bulk=4,600/1m",)))
    async with running_api(cfg) as api:
        sent = await api.enqueue({"type": "noop", "queue": "bulk", "company_id": "acme"})
        r = await api.get(f"{PREFIX}/{sent['job_id']}")
        assert r.json()["job"]["queue"] == "bulk"
        plain = await api.enqueue({"type": "noop"})
        r = await api.get(f"{PREFIX}/{plain['job_id']}")
        assert r.json()["job"]["queue"] == "default"

        bad = await api.post(f"{PREFIX}/enqueue", json={"type": "noop", "queue": "Bad Name"})
        assert bad.status_code == 422
        fields = [f["field"] for f in bad.json()["error"]["details"]["fields"]]
        assert fields == ["queue"]

        # Listings filter by queue.
        r = await api.get(f"{PREFIX}/status/pending", params={"queue": "bulk"})
        assert [j["id"] for j in r.json()["jobs"]] == [sent["job_id"]], r.text
        r = await api.get(f"{PREFIX}/status/pending", params={"queue": "default"})
        assert [j["id"] for j in r.json()["jobs"]] == [plain["job_id"]], r.text
        r = await api.get(f"{PREFIX}/status/pending", params={"queue": "No!"})
        assert r.status_code == 422 and "queue" in r.text

        r = await api.get(QUEUES)
        assert r.status_code == 200, r.text
        figures = {q["name"]: q for q in r.json()["queues"]}
        assert figures["bulk"] == {
            "name": "bulk", "paused": False, "ready": 1, "waiting": 0, "processing": 0,
            "daemons": [], "completed": 0, "failed": 0, "throughput": 0.0,
            "limit": "4 running, 600 starts per 60s", "estimated": False,
        }  # fmt: skip
        assert figures["default"]["ready"] == 1 and figures["default"]["limit"] is None

        r = await api.post(f"{QUEUES}/bulk/pause")
        assert r.json() == {"name": "bulk", "paused": True, "changed": True}
        r = await api.post(f"{QUEUES}/bulk/pause")
        assert r.json() == {"name": "bulk", "paused": True, "changed": False}
        assert {q["name"]: q["paused"] for q in (await api.get(QUEUES)).json()["queues"]}["bulk"]
        r = await api.get(f"{PREFIX}/{sent['job_id']}")
        assert r.json()["waiting"] == "queue 'bulk' is paused (fleetd queues resume bulk)"
        r = await api.post(f"{QUEUES}/bulk/resume")
        assert r.json() == {"name": "bulk", "paused": False, "changed": True}

        r = await api.post(f"{QUEUES}/Not%20A%20Queue/pause")
        assert r.status_code == 400
        error = r.json()["error"]
        assert error["code"] == "invalid_queue"
        assert error["details"]["fields"][0]["field"] == "name"

        # Platform admins only: a company admin cannot read every company's figures
        # nor stop every company's jobs.
        acme = auth("acme")
        for method, path in (("GET", QUEUES), ("POST", f"{QUEUES}/bulk/pause")):
            r = await api.client.request(method, path, headers=acme)
            assert r.status_code == 403, (path, r.text)
            assert r.json()["error"]["code"] == "forbidden"

        actions = await audit_actions(api)
        assert ("queue.pause", "bulk", "ok") in actions
        assert ("queue.resume", "bulk", "ok") in actions
