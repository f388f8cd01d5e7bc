"""A spooled job as `GET /jobs/{id}` and the CLI show it until it reaches Redis.

Owns `spooled_job_body`: the job's answer built from its spooled row (the row's
fields are named as in the job hash: fleetd.backend.codec), with `status: "spooled"`,
`created_at` the time it was spooled (the host's clock; Redis's once it lands), and
sealed data redacted exactly as for a stored job (fleetd.jobs.model.Job.from_hash).
"""

from __future__ import annotations

import json
from typing import Any

from fleetd.jobs.answer import Job as JobAnswer
from fleetd.jobs.model import Job
from fleetd.spool.file import SpooledJob
from fleetd.spool.outage import SPOOLED

__all__ = ["spooled_job_body"]


def spooled_job_body(spooled: SpooledJob) -> dict[str, Any]:
    """{"job": {..., "status": "spooled", "spooled": true}, "status": "spooled"}."""
    fields = {k: str(v) for k, v in json.loads(spooled.row).items()}
    at = str(spooled.spooled_at_ms)
    fields.update(status="pending", created_at=at, updated_at=at, retry_count="0", attempts="0")
    job = JobAnswer.of(Job.from_hash(fields)).jsonable()
    job.update(status=SPOOLED, spooled=True)
    return {"job": job, "status": SPOOLED}
