"""A spooled job as `GET /jobs/{id}` and the CLI show it until it reaches Redis.

Owns `spooled_job_body`: the job's answer built from its spooled row (the row's
fields are named as in the job hash: fleetd.backend.codec), with `status: "spooled"`,
`created_at` the time it was spooled (the host's clock; Redis's once it lands), and
sealed data redacted exactly as for a stored job (fleetd.jobs.model.Job.from_hash). A
job that ran inline (fleetd.spool.finished) answers with its outcome (completed or
failed, its result or error) and `"spooled": true`.
"""

from __future__ import annotations

import json
from typing import Any

from fleetd.jobs.answer import Job as JobAnswer
from fleetd.jobs.model import Job
from fleetd.spool.file import SpooledJob
from fleetd.spool.finished import finished_of
from fleetd.spool.outage import SPOOLED

__all__ = ["spooled_job_body"]


def spooled_job_body(spooled: SpooledJob) -> dict[str, Any]:
    """{"job": {..., "status": "spooled", "spooled": true}, "status": "spooled"}."""
    fields = {k: str(v) for k, v in json.loads(spooled.row).items() if k != "finished"}
    at = str(spooled.spooled_at_ms)
    fields.update(status="pending", created_at=at, updated_at=at, retry_count="0", attempts="0")
    if (done := finished_of(spooled.row)) is not None:  # ran inline: its outcome
        fields.update(status=done.status, attempts="1", started_at=str(done.started_at),
                      completed_at=str(done.finished_at), worker=done.worker)  # fmt: skip
        fields.update({"result": done.result} if done.result else {"error": done.error})
        job = JobAnswer.of(Job.from_hash(fields)).jsonable()
        job.update(spooled=True)
        return {"job": job, "status": done.status}
    job = JobAnswer.of(Job.from_hash(fields)).jsonable()
    job.update(status=SPOOLED, spooled=True)
    return {"job": job, "status": SPOOLED}
