"""The registry of the job types a process knows: job type → handler, where each came
from, its compiled schema and its sensitive paths.

Built once per process by `fleetd.engine.build_registry` from the loaded plugins (the
daemon and the CLI alike) and used by the queue to validate every enqueue and by the
worker to find a job's handler. The handler contract itself is fleetd.jobs.contract and
its errors fleetd.jobs.errors; both are re-exported here, where callers have long
imported them from (`from fleetd.jobs.handlers import HandlerRegistry, PermanentError`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleetd.jobs.artifact_limits import ArtifactLimits
from fleetd.jobs.contract import Handler, HandlerDefaults, JobHandler, check_handler
from fleetd.jobs.errors import DuplicateJobType, InvalidHandler, PermanentError
from fleetd.jobs.model import ValidationError
from fleetd.jobs.schema import SchemaValidator
from fleetd.jobs.sealing import check_paths

if TYPE_CHECKING:
    from fleetd.plugins.lifecycle import JobHooks
    from fleetd.plugins.manager import PluginManager

__all__ = [
    "DuplicateJobType",
    "Handler",
    "HandlerDefaults",
    "HandlerRegistry",
    "InvalidHandler",
    "JobHandler",
    "PermanentError",
    "check_handler",
]


class HandlerRegistry:
    """Job type → handler, and where each came from (for errors and `fleetd plugins`).

    Built once per process by `fleetd.engine.build_registry`, which also attaches what
    running handlers need: `hooks` (lifecycle hooks of plugins; None when no plugin
    implements any, so the worker's hot path stays free of them), `artifacts_dir`,
    `artifact_limits`, `max_result_bytes` and
    `plugins` (the loaded plugins, for listings and default schedules).
    """

    def __init__(self, disabled: Iterable[str] = ()) -> None:
        self._handlers: dict[str, Handler] = {}
        self._sources: dict[str, str] = {}
        self._schemas: dict[str, SchemaValidator | None] = {}
        # Job type → its sensitive paths; only types that declare some are listed.
        self._sensitive: dict[str, tuple[str, ...]] = {}
        self.disabled = frozenset(disabled)
        # (job type, source) of handlers skipped because [plugins] disable names them.
        self.skipped: list[tuple[str, str]] = []
        self.hooks: JobHooks | None = None
        self.artifacts_dir: Path | None = None
        self.artifact_limits = ArtifactLimits()
        # [worker] max_result_bytes (fleetd.runtime.running checks every result).
        self.max_result_bytes = 1024 * 1024
        self.plugins: PluginManager | None = None

    def register(self, handler: Handler, source: str = "fleetd") -> None:
        """Add a handler; raises InvalidHandler (contract) or DuplicateJobType."""
        schema = check_handler(handler)
        job_type = handler.job_type
        if job_type in self.disabled:
            self.skipped.append((job_type, source))
            return
        if job_type in self._handlers:
            raise DuplicateJobType(
                f"job type {job_type!r} is claimed by both {self._sources[job_type]!r} "
                f"and {source!r}; disable one of them in [plugins] disable"
            )
        self._handlers[job_type] = handler
        self._sources[job_type] = source
        self._schemas[job_type] = schema
        if paths := check_paths(getattr(handler, "sensitive", ())):
            self._sensitive[job_type] = paths

    def validate(self, handler: Handler, data: dict[str, Any]) -> dict[str, Any]:
        """The data to store for a job of `handler`: its schema first (every field error
        at once), then its own `validate`. Raises ValidationError."""
        schema = self._schemas.get(handler.job_type)
        if schema is not None and (errors := schema.errors(data)):
            raise ValidationError.of(errors)
        return handler.validate(data)

    def sensitive(self, job_type: str) -> tuple[str, ...]:
        """The data paths `job_type`'s handler marks sensitive (usually none)."""
        return self._sensitive.get(job_type, ())

    def schema(self, job_type: str) -> Mapping[str, Any] | None:
        validator = self._schemas.get(job_type)
        return None if validator is None else validator.schema

    def get(self, job_type: str) -> Handler | None:
        return self._handlers.get(job_type)

    def source(self, job_type: str) -> str:
        return self._sources[job_type]

    def require(self, job_type: str) -> Handler:
        handler = self._handlers.get(job_type)
        if handler is None:
            known = ", ".join(sorted(self._handlers)) or "none"
            raise ValidationError("type", f"unknown job type {job_type!r} (known: {known})")
        return handler

    def types(self) -> list[str]:
        return sorted(self._handlers)

    def __contains__(self, job_type: object) -> bool:
        return job_type in self._handlers

    def __len__(self) -> int:
        return len(self._handlers)
