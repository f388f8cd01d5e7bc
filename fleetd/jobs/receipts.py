"""`EnqueueResult`: what an enqueue answers (the spec's enqueue response).

Its own module because both sides of a follow-up enqueue need it: the queue that
makes it (fleetd.jobs.queue) and the `JobContext` a handler calls `enqueue` on, which
must not depend on the queue (the queue depends on the handler registry, whose
handlers take a JobContext: that would be a cycle).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleetd.jobs.answer import EnqueueResponse

__all__ = ["EnqueueResult"]


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    job_id: str
    status: str
    enqueued_at_ms: int
    duplicate: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The spec's enqueue response, plus `duplicate` when an idempotency key matched
        (declared by fleetd.jobs.answer.EnqueueResponse)."""
        return EnqueueResponse.of(self).jsonable()
