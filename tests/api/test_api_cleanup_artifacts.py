"""POST /jobs/cleanup deletes the removed jobs' artifact folders on the API daemon's
host (#19: cleanup left 56 MB of orphaned exports), real daemon and Redis."""

from __future__ import annotations

import trio
from api_client import PREFIX, api_config, running_api

from fleetd.config import Config
from fleetd.jobs.artifacts import artifacts_root


async def test_cleanup_deletes_the_folders_of_the_jobs_it_removed(config: Config) -> None:
    root = artifacts_root(config)
    async with running_api(api_config(config)) as api:
        gone = (await api.enqueue({"type": "noop"}))["job_id"]
        kept = (await api.enqueue({"type": "noop"}))["job_id"]
        for job_id in (gone, kept):
            (root / job_id).mkdir(parents=True)
            (root / job_id / "export.csv").write_text("a,b\n")
        await api.delete(f"{PREFIX}/{gone}")
        await trio.sleep(0.01)
        r = await api.post(f"{PREFIX}/cleanup", params={"older_than": "1ms"})
        assert r.status_code == 200 and r.json()["deleted"] == 1
    assert sorted(p.name for p in root.iterdir()) == [kept]
