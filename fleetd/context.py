"""What a running handler gets: `ctx` — its job, company, logger, progress and follow-ups.

One JobContext per attempt. Everything here goes through the daemon's RedisLink (never
a Redis call on the trio thread) and is company-scoped: a follow-up job inherits the
company and user of the job that enqueued it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fleetd.model import EnqueueRequest

if TYPE_CHECKING:
    from fleetd.queue import EnqueueResult, Queue
    from fleetd.scripts import ClaimedJob

__all__ = ["JobContext"]

_log = logging.getLogger("fleetd.job")


class JobContext:
    def __init__(self, job: ClaimedJob, queue: Queue) -> None:
        self.job = job
        self._queue = queue
        self._logger: logging.LoggerAdapter[logging.Logger] | None = None

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger that stamps every line with the job's id and type (made on first use:
        most handlers of short jobs never log)."""
        if self._logger is None:
            self._logger = logging.LoggerAdapter(
                _log, {"job_id": self.job.id, "job_type": self.job.type}
            )
        return self._logger

    @property
    def company_id(self) -> str | None:
        return self.job.company_id

    @property
    def user_id(self) -> str | None:
        return self.job.user_id

    async def progress(self, percent: float, message: str = "") -> bool:
        """Record progress (0–100) on the job and publish a `job.progress` event.

        Returns False when this daemon no longer holds the job (it was recovered
        elsewhere); a handler may stop early then.
        """
        pct = max(0.0, min(100.0, float(percent)))
        payload = json.dumps({"percent": round(pct, 2), "message": message})
        ops = self._queue.ops
        return await self._queue.link.call(
            ops.scripts.progress, self.job.id, self.job.token, payload
        )

    async def enqueue(
        self, job_type: str, data: Mapping[str, Any] | None = None, **fields: Any
    ) -> EnqueueResult:
        """Enqueue a follow-up job in this job's company (validated like any enqueue)."""
        raw: dict[str, Any] = {"type": job_type, "data": dict(data or {}), **fields}
        raw.setdefault("company_id", self.job.company_id)
        raw.setdefault("user_id", self.job.user_id)
        return await self._queue.enqueue(EnqueueRequest.from_dict(raw))
