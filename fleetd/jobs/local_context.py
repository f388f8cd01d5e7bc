"""The `ctx` of a handler that runs isolated (fleetd.jobs.isolation: `thread`, `process`):
what a job can do away from the daemon's trio loop and its Redis link.

It has the job (`ctx.job`, without its lease token), `company_id`, `user_id`, a
`logger`, `progress` (handed to the daemon through `report`, a callable the runner
gives: a pipe in a child process, a hop back to the trio thread in a thread),
`artifacts` (written straight into `[artifacts] dir`, on the same host) and
`run_blocking` (a worker thread of its own loop). It has no Redis: `redis`,
`enqueue`, `remember` and `recall` raise `IsolationError`, since a sandboxed child
holds no Redis password (docs/PLUGINS.md). `finish` merges the artifacts into the
result, as JobContext.finish does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import trio

from fleetd.jobs.artifact_limits import ArtifactLimits
from fleetd.jobs.artifacts import ArtifactStore
from fleetd.jobs.errors import PermanentError

if TYPE_CHECKING:
    from fleetd.backend.codec import ClaimedJob

__all__ = ["IsolationError", "LocalContext"]

T = TypeVar("T")
_log = logging.getLogger("fleetd.job")


class IsolationError(RuntimeError):
    """A handler running isolated used something only an inline handler has."""


class LocalContext:
    """One isolated attempt's `ctx` (see the module docstring)."""

    def __init__(
        self,
        job: ClaimedJob,
        artifacts_root: Path | None,
        report: Callable[[float, str], bool] | None = None,
        mode: str = "process",
        limits: ArtifactLimits | None = None,
    ) -> None:
        self.job = job
        self._root = artifacts_root
        self._limits = limits
        self._report = report
        self._mode = mode
        self._artifacts: ArtifactStore | None = None
        self.logger = logging.LoggerAdapter(_log, {"job_id": job.id, "job_type": job.type})

    @property
    def company_id(self) -> str | None:
        return self.job.company_id

    @property
    def user_id(self) -> str | None:
        return self.job.user_id

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(fn, *args)

    async def progress(self, percent: float, message: str = "") -> bool:
        """Hand progress (0-100) to the daemon, which records it as an inline job's.
        True: an isolated job that lost its lease is killed, not told."""
        pct = max(0.0, min(100.0, float(percent)))
        if self._report is None:
            return True
        return await trio.to_thread.run_sync(self._report, pct, message)

    @property
    def artifacts(self) -> ArtifactStore:
        if self._artifacts is None:
            if self._root is None:
                raise RuntimeError("no artifact directory: build the registry with build_registry")
            self._artifacts = ArtifactStore(self._root, self.job.id, self._limits)
        return self._artifacts

    def finish(self, result: Any) -> Any:
        if self._artifacts is None:
            return result
        try:
            return self._artifacts.merge_into(result)
        except ValueError as exc:
            raise PermanentError(str(exc)) from None

    def _refuse(self, what: str) -> NoReturn:
        raise IsolationError(
            f"ctx.{what} is not available to a job running with isolation {self._mode!r} "
            "(no Redis link there); run the type inline, or return what the daemon should do"
        )

    @property
    def redis(self) -> NoReturn:
        self._refuse("redis")

    async def enqueue(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("enqueue")

    async def remember(self, key: str, value: Any) -> NoReturn:
        self._refuse("remember")

    async def recall(self, key: str, default: Any = None) -> NoReturn:
        self._refuse("recall")
