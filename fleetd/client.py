"""A synchronous client for callers outside trio (web apps, scripts, cron jobs).

The same queue operations as the daemon's HTTP API and the CLI, on the calling thread,
one Redis round trip each:

    from fleetd.client import Client
    with Client.from_config() as jobs:
        jobs.enqueue("noop", {"n": 1}, priority="high")

Validation happens before anything is sent (unknown job types and bad data raise
ValidationError). Only job types this process knows can be enqueued: the built-ins, and
plugins installed in the same environment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from fleetd.config import Config, load_config
from fleetd.engine import Engine
from fleetd.jobs.model import Job, JobStatus
from fleetd.jobs.queue import CancelResult, EnqueueResult, JobPage, ResetResult

__all__ = ["Client"]


class Client:
    def __init__(self, config: Config) -> None:
        self._engine = Engine.build(config, daemon=False)
        self._ops = self._engine.ops
        self._run = self._engine.link.run_sync

    @classmethod
    def from_config(cls, path: str | Path | None = None) -> Client:
        """Read fleetd.toml the way the daemon does (FLEETD_* overrides included)."""
        return cls(load_config(path))

    def enqueue(
        self, job_type: str, data: Mapping[str, Any] | None = None, **fields: Any
    ) -> EnqueueResult:
        """Enqueue one job; `fields` are the enqueue request's other fields (priority,
        max_retries, timeout, company_id, user_id, tags, run_at, idempotency_key, and
        encrypt=True to seal the whole data at rest)."""
        row = self._ops.prepare({"type": job_type, "data": dict(data or {}), **fields})
        return self._run(self._ops.enqueue_rows, [row])[0]

    def enqueue_many(self, jobs: Sequence[Mapping[str, Any]]) -> list[EnqueueResult]:
        """Enqueue request objects in bulk; all are validated before any is sent."""
        return self._run(self._ops.enqueue_rows, self._ops.prepare_many(jobs))

    def get(self, job_id: str) -> Job | None:
        return self._run(self._ops.get, job_id)

    def list_jobs(
        self, status: JobStatus | str, *, limit: int = 50, cursor: str | None = None
    ) -> JobPage:
        st = JobStatus(status)
        return self._run(lambda c: self._ops.list_jobs(c, st, limit=limit, cursor=cursor))

    def cancel(self, job_id: str) -> CancelResult:
        return self._run(self._ops.cancel, job_id)

    def reset(self, job_id: str) -> ResetResult:
        return self._run(self._ops.reset, job_id)

    def stats(self) -> dict[str, int]:
        return self._run(self._ops.stats)

    def close(self) -> None:
        self._engine.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
