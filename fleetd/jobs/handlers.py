"""The handler contract and the registry of job types a process knows.

A handler names its job type, declares its data as a JSON Schema checked at enqueue
(bad data never reaches the queue; every field error is reported), may add checks a
schema cannot express in `validate(data)`, may mark fields `sensitive` (sealed at rest,
see fleetd.jobs.sealing), carries defaults for priority, max_retries and timeout, and runs
the job: `async run(ctx, data) -> dict`, a JSON object that becomes the job's result.
`JobHandler` is a convenient base class; any object of that shape works.

Raising `PermanentError` fails a job at once, without retries (a request that can never
succeed); any other exception is a failed attempt, retried while retries are left.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from fleetd.jobs.model import (
    MAX_PRIORITY,
    MAX_RETRIES_LIMIT,
    MAX_TYPE_LENGTH,
    MIN_PRIORITY,
    ValidationError,
)
from fleetd.jobs.schema import SchemaValidator, compile_schema
from fleetd.jobs.sealing import check_paths

if TYPE_CHECKING:
    from fleetd.jobs.context import JobContext
    from fleetd.plugins.discovery import JobHooks, PluginManager

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


class PermanentError(Exception):
    """Raised by a handler: this job can never succeed; fail it now, no retries."""


@dataclass(frozen=True, slots=True)
class HandlerDefaults:
    """Per-type defaults; None falls back to the config's [worker] values."""

    priority: int | None = None
    max_retries: int | None = None
    timeout: float | None = None


@runtime_checkable
class Handler(Protocol):
    """What the worker pool runs. See docs/PLUGINS.md for the contract in prose."""

    job_type: str
    defaults: HandlerDefaults

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        """Return the data to store (normalised), or raise ValidationError naming the field."""
        ...

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        """Do the work; return a JSON object (the job's result)."""
        ...


class JobHandler:
    """Base class for handlers: set the attributes, override `run` (and `validate` for
    checks a schema cannot express, e.g. "end_date after start_date")."""

    #: The job type this handler runs, e.g. "email_notification".
    job_type: str = ""
    #: One line for `fleetd plugins`.
    description: str = ""
    #: JSON Schema (draft 2020-12) of the job's data, checked at enqueue; None = any object.
    schema: Mapping[str, Any] | None = None
    #: Defaults for jobs of this type that do not set their own.
    defaults: HandlerDefaults = HandlerDefaults()
    #: Paths of data fields sealed at rest (AES-GCM) and never shown or logged, e.g.
    #: ("smtp_password", "recipient.phone"): object keys joined by dots. A value there
    #: of any JSON type is sealed as a whole; `run` gets the plaintext.
    sensitive: tuple[str, ...] = ()

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        """Runs after the schema passed: return the data to store, or raise
        ValidationError naming the field (`data.<name>`)."""
        return data

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__}.run")


class DuplicateJobType(Exception):
    """Two sources claim one job type: a start-up error naming both."""


class InvalidHandler(Exception):
    """An object offered as a handler breaks the contract (the message says how)."""


def check_handler(handler: object) -> SchemaValidator | None:
    """Check an object against the handler contract; return its compiled schema.

    Raises InvalidHandler naming the first problem: done once at start-up, so a broken
    handler stops the daemon instead of failing its first job.
    """
    name = type(handler).__name__
    job_type = getattr(handler, "job_type", None)
    if not isinstance(job_type, str) or not job_type.strip() or job_type != job_type.strip():
        raise InvalidHandler(f"{name}.job_type must be a non-empty string, got {job_type!r}")
    if len(job_type) > MAX_TYPE_LENGTH:
        raise InvalidHandler(f"{name}.job_type is longer than {MAX_TYPE_LENGTH} characters")
    if not inspect.iscoroutinefunction(getattr(handler, "run", None)):
        raise InvalidHandler(f"{name} ({job_type}) needs `async def run(self, ctx, data)`")
    if not callable(getattr(handler, "validate", None)):
        raise InvalidHandler(f"{name} ({job_type}) needs `validate(self, data)`")
    d = getattr(handler, "defaults", None)
    if not isinstance(d, HandlerDefaults):
        raise InvalidHandler(f"{name} ({job_type}).defaults must be a HandlerDefaults")
    if d.priority is not None and not MIN_PRIORITY <= d.priority <= MAX_PRIORITY:
        raise InvalidHandler(f"{job_type}: default priority must be 1-20, got {d.priority}")
    if d.max_retries is not None and not 0 <= d.max_retries <= MAX_RETRIES_LIMIT:
        raise InvalidHandler(f"{job_type}: default max_retries must be 0-100, got {d.max_retries}")
    if d.timeout is not None and not (math.isfinite(d.timeout) and d.timeout > 0):
        raise InvalidHandler(f"{job_type}: default timeout must be > 0, got {d.timeout}")
    try:
        check_paths(getattr(handler, "sensitive", ()))
    except ValueError as exc:
        raise InvalidHandler(f"{job_type}: {exc}") from None
    schema = getattr(handler, "schema", None)
    if schema is None:
        return None
    try:
        return compile_schema(schema)
    except ValueError as exc:
        raise InvalidHandler(f"{job_type}: {exc}") from None


class HandlerRegistry:
    """Job type → handler, and where each came from (for errors and `fleetd plugins`).

    Built once per process by `fleetd.engine.build_registry`, which also attaches what
    running handlers need: `hooks` (lifecycle hooks of plugins; None when no plugin
    implements any, so the worker's hot path stays free of them), `artifacts_dir` and
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
