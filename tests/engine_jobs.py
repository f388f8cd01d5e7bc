"""Helpers of tests that drive jobs through an Engine against the real test Redis:
enqueue a batch, read jobs back, read the alert events of one alert."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fleetd.backend.redis_link import SyncClient
from fleetd.engine import Engine
from fleetd.jobs.limits import read_waiting
from fleetd.jobs.model import Job


def enqueue(engine: Engine, requests: Sequence[dict[str, Any]]) -> list[str]:
    """Enqueue `requests` (enqueue bodies) in one call; their job ids, in order."""
    rows = engine.ops.prepare_many(requests)
    return [r.job_id for r in engine.link.run_sync(engine.ops.enqueue_rows, rows)]


def jobs_of(engine: Engine, ids: Sequence[str]) -> list[Job]:
    """The jobs of `ids`, every one of which must exist."""
    found = engine.link.run_sync(engine.ops.get_many, ids)
    assert all(j is not None for j in found)
    return [j for j in found if j is not None]


def alert_events(engine: Engine, name: str) -> list[dict[str, Any]]:
    """The data of every `alert.raised` / `alert.resolved` event of alert `name`, oldest
    first."""
    out = []
    for _id, fields in engine.link.client.xrange(engine.keys.events):
        if fields["type"].startswith("alert."):
            data = json.loads(fields["data"])
            if data["alert"] == name:
                out.append(data)
    return out


async def waiting_reason(engine: Engine, job: Job, job_type: str) -> str | None:
    """Why `job` waits (fleetd.jobs.waiting), with one live worker daemon that handles
    `job_type`."""
    daemons = [{"roles": ["worker"], "job_types": [job_type]}]
    limits = engine.config.limits.build()

    def read(c: SyncClient) -> str | None:
        return read_waiting(c, engine.spaces.locate(c, job.id).keys, limits, daemons, job)

    return await engine.link.call(read)
