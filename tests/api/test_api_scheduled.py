"""Scheduled-job endpoints against a real daemon, with the spec's example bodies."""

from __future__ import annotations

from api_client import PREFIX, api_config, auth, running_api

from fleetd.config import Config

# The spec's example of POST /api/v1/admin/jobs/scheduled (job type swapped for the
# built-in noop: the fleet-data plugins are optional here).
SPEC_CREATE = {
    "name": "Daily Report Generation",
    "job_type": "noop",
    "data": {
        "report_type": "fleet_summary",
        "start_date": "2024-01-01",
        "end_date": "2024-01-31",
    },
    "schedule": "@daily",
    "priority": 5,
    "is_active": True,
}
# The spec's ScheduledJob struct: field → omitempty.
FIELDS = {
    "id": False, "name": False, "job_type": False, "data": False, "schedule": False,
    "priority": False, "is_active": False, "last_run": True, "next_run": False,
    "company_id": True, "user_id": True, "created_at": False, "updated_at": False,
}  # fmt: skip
STATS = {"total_scheduled_jobs", "active_jobs", "inactive_jobs", "next_run"}


async def test_create_list_update_delete_and_stats(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        r = await api.post(f"{PREFIX}/scheduled", json=SPEC_CREATE)
        assert r.status_code == 201, r.text
        created = r.json()["scheduled_job"]
        assert set(r.json()) == {"scheduled_job"}
        for name, optional in FIELDS.items():
            assert optional or name in created, name
        assert created["name"] == SPEC_CREATE["name"] and created["data"] == SPEC_CREATE["data"]
        assert created["is_active"] is True and created["next_run"].endswith("T00:00:00.000Z")
        assert created["user_id"] == "tester"
        sid = created["id"]
        assert r.headers["Location"] == f"{PREFIX}/scheduled/{sid}"

        dup = await api.post(f"{PREFIX}/scheduled", json=SPEC_CREATE)
        assert dup.status_code == 409 and dup.json()["error"]["code"] == "conflict"

        listed = (await api.get(f"{PREFIX}/scheduled")).json()
        assert listed["count"] == 1 and listed["scheduled_jobs"][0]["id"] == sid
        assert (await api.get(f"{PREFIX}/scheduled/{sid}")).json()["scheduled_job"] == created

        r = await api.put(f"{PREFIX}/scheduled/{sid}", json={"schedule": "30m", "is_active": False})
        assert r.status_code == 200
        updated = r.json()["scheduled_job"]
        assert updated["schedule"] == "30m" and updated["is_active"] is False
        assert updated["next_run"] is None and updated["name"] == SPEC_CREATE["name"]

        stats = (await api.get(f"{PREFIX}/scheduled/stats")).json()
        assert set(stats) == {"scheduler_stats"} and set(stats["scheduler_stats"]) >= STATS
        assert stats["scheduler_stats"]["total_scheduled_jobs"] == 1
        assert stats["scheduler_stats"]["inactive_jobs"] == 1

        r = await api.put(f"{PREFIX}/scheduled/{sid}", json={"id": "other"})
        assert r.status_code == 422
        r = await api.delete(f"{PREFIX}/scheduled/{sid}")
        assert r.status_code == 200 and r.json() == {"id": sid, "deleted": True}
        for method in ("get", "delete"):
            r = await getattr(api, method)(f"{PREFIX}/scheduled/{sid}")
            assert r.status_code == 404
        assert (await api.put(f"{PREFIX}/scheduled/{sid}", json={"priority": 1})).status_code == 404


async def test_company_admins_see_only_their_schedules(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        acme, globex = auth("acme"), auth("globex")
        body = {**SPEC_CREATE, "name": "Same name"}
        a = (await api.post(f"{PREFIX}/scheduled", json=body, headers=acme)).json()
        g = (await api.post(f"{PREFIX}/scheduled", json=body, headers=globex)).json()
        assert a["scheduled_job"]["company_id"] == "acme"  # names are unique per company
        gid = g["scheduled_job"]["id"]
        listed = (await api.get(f"{PREFIX}/scheduled", headers=acme)).json()
        assert [s["company_id"] for s in listed["scheduled_jobs"]] == ["acme"]
        for r in (
            await api.get(f"{PREFIX}/scheduled/{gid}", headers=acme),
            await api.put(f"{PREFIX}/scheduled/{gid}", json={"priority": 1}, headers=acme),
            await api.delete(f"{PREFIX}/scheduled/{gid}", headers=acme),
        ):
            assert r.status_code == 404
        r = await api.post(
            f"{PREFIX}/scheduled", json={**body, "company_id": "globex"}, headers=acme
        )
        assert r.status_code == 403
        stats = (await api.get(f"{PREFIX}/scheduled/stats", headers=acme)).json()
        assert stats["scheduler_stats"]["total_scheduled_jobs"] == 1
        everyone = (await api.get(f"{PREFIX}/scheduled")).json()
        assert everyone["count"] == 2
