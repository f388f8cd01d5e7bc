"""Quarantines over HTTP against a real daemon: a quarantined part's jobs wait with a
`quarantined` reason while other companies' jobs run; admins list (a company admin only
its own) and release them (platform admins, audited), and the held jobs run."""

from __future__ import annotations

import trio
from api_client import PREFIX, api_config, auth, running_api

from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.quarantine import Strikes, count_failures

QUARANTINES = "/api/v1/admin/quarantines"


def quarantine(engine: Engine, job_type: str, company: str) -> None:
    """Two crashes of one part through quarantine_count.lua, as a worker pool counts
    them (tests/runtime/test_quarantine.py makes them with real memory hogs)."""
    failures = [(f"j{i}", 1, job_type, company, "crash") for i in range(2)]
    got = engine.link.run_sync(
        lambda c: count_failures(c, engine.scripts, Strikes(2, 600_000), failures)
    )
    assert [q.company_id for q in got] == [company]


async def test_quarantined_jobs_wait_until_a_platform_admin_releases_them(
    config: Config, engine: Engine
) -> None:
    quarantine(engine, "noop", "acme")
    async with running_api(api_config(config), roles=("api", "worker")) as api:
        held = await api.enqueue({"type": "noop", "company_id": "acme"})
        other = await api.enqueue({"type": "noop", "company_id": "globex"})
        await api.wait_status(other["job_id"], "completed")
        got = (await api.get(f"{PREFIX}/{held['job_id']}")).json()
        assert got["status"] == "pending"
        assert got["waiting"].startswith(
            "quarantined: job type 'noop' of company 'acme' after 2 failures (2 crash)"
        )

        listed = (await api.get(QUARANTINES)).json()
        assert listed["count"] == 1
        item = listed["quarantines"][0]
        assert (item["job_type"], item["company_id"], item["kinds"]) == (
            "noop",
            "acme",
            {"crash": 2},
        )
        # A company admin sees its own company's quarantines only, and cannot release.
        acme, globex = auth("acme"), auth("globex")
        assert (await api.get(QUARANTINES, headers=acme)).json()["count"] == 1
        assert (await api.get(QUARANTINES, headers=globex)).json()["count"] == 0
        r = await api.delete(f"{QUARANTINES}/noop/acme", headers=acme)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"

        r = await api.delete(f"{QUARANTINES}/noop/acme")
        assert r.status_code == 200, r.text
        assert r.json()["released"]["failures"] == 2
        await api.wait_status(held["job_id"], "completed")
        again = await api.delete(f"{QUARANTINES}/noop/acme")
        assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"
        assert (await api.get(QUARANTINES)).json() == {"quarantines": [], "count": 0}

        with trio.fail_after(5):
            while True:
                entries = (
                    await api.get(f"{PREFIX}/audit", params={"action": "quarantine.release"})
                ).json()["entries"]
                if len(entries) == 3:
                    break
                await trio.sleep(0.02)
        assert [(e["outcome"], e["status"]) for e in entries] == [
            ("not_found", 404), ("ok", 200), ("forbidden", 403)
        ]  # fmt: skip
        assert entries[1]["target"] == "noop/acme"
