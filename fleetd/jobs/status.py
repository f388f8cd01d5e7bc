"""The spec's six job statuses, and which of them are terminal or active.

Its own module so that the job's JSON answer (fleetd.jobs.answer), which declares the
status field, and the job model (fleetd.jobs.model, which re-exports these names and
builds its answer from fleetd.jobs.answer) do not import each other.
"""

from __future__ import annotations

import enum

__all__ = ["ACTIVE_STATUSES", "TERMINAL_STATUSES", "JobStatus"]


class JobStatus(enum.StrEnum):
    """The spec's six statuses. A future `run_at` job is `pending` with a `run_at`."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    RETRYING = "retrying"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
ACTIVE_STATUSES = frozenset({JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.RETRYING})
