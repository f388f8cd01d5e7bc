"""The handler contract: what a job type's handler is, and the check that an object is one.

A handler names its job type, declares its data as a JSON Schema checked at enqueue
(bad data never reaches the queue; every field error is reported), may add checks a
schema cannot express in `validate(data)`, may mark fields `sensitive` (sealed at rest,
see fleetd.jobs.sealing), carries defaults for priority, max_retries and timeout, and runs
the job: `async run(ctx, data) -> dict`, a JSON object that becomes the job's result.
`JobHandler` is a convenient base class; any object of that shape works (`Handler`).

Raising `PermanentError` (fleetd.jobs.errors) fails a job at once, without retries (a
request that can never succeed); any other exception is a failed attempt, retried while
retries are left. The registry of the handlers a process knows is fleetd.jobs.handlers.

Depends on fleetd.jobs.context only for the type of `ctx`; the context depends on
nothing here, nor on the registry or the queue (see its docstring), so the contract,
the context and the registry import in that order, without a cycle.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from fleetd.jobs.errors import InvalidHandler
from fleetd.jobs.isolation import MODES, Policy, kinds_of, rules_of
from fleetd.jobs.model import MAX_PRIORITY, MAX_RETRIES_LIMIT, MAX_TYPE_LENGTH, MIN_PRIORITY
from fleetd.jobs.schema import SchemaValidator, compile_schema
from fleetd.jobs.sealing import check_paths

if TYPE_CHECKING:
    from fleetd.jobs.context import JobContext

__all__ = ["Handler", "HandlerDefaults", "JobHandler", "allows_sync_fallback", "check_handler"]


@dataclass(frozen=True, slots=True)
class HandlerDefaults:
    """Per-type defaults; None falls back to the config's [worker] values."""

    priority: int | None = None
    max_retries: int | None = None
    timeout: float | None = None
    # How the handler runs (fleetd.jobs.isolation): "inline", "thread" or "process".
    isolation: str = "inline"
    # Limits of a "process" job's child, 0 = the [isolation] default.
    memory_mb: int = 0
    cpu_seconds: int = 0
    # Error kinds ("memory", "cpu", "timeout", "crash", "error") or exception class
    # names that are not retried.
    no_retry: tuple[str, ...] = ("memory",)
    # Retry rules, one per error kind or exception class:
    # "<kind or exception>:<delay>[/<most retries>]", e.g. ("timeout:10m/1",
    # "SMTPServerDisconnected:30s"): the delay before such a failure's retry, and the
    # most retries a job may have had for it to be retried (fleetd.jobs.isolation).
    retry: tuple[str, ...] = ()
    # Environment variables a "process" child keeps (it gets a clean environment).
    env: tuple[str, ...] = ()
    # The named queue of this type's jobs when neither the caller nor [queues] routes
    # says (fleetd.jobs.queues); None = `default`.
    queue: str | None = None

    def policy(self) -> Policy:
        """The isolation this handler declares, before the config's overrides."""
        return Policy(self.isolation, self.memory_mb, self.cpu_seconds,
                      kinds_of(self.no_retry), tuple(self.env), rules_of(self.retry))  # fmt: skip

    #: May run inline on the receiving process when the queue is unavailable and the
    #: caller asks for it (`"fallback": "sync"`; docs/OPERATIONS.md, Redis outage).
    sync_fallback: bool = False


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
    if d.isolation not in MODES:
        raise InvalidHandler(f"{job_type}: isolation must be one of {', '.join(MODES)}")
    if min(d.memory_mb, d.cpu_seconds) < 0:
        raise InvalidHandler(f"{job_type}: memory_mb and cpu_seconds must be >= 0")
    try:
        rules_of(d.retry)
    except ValueError as exc:
        raise InvalidHandler(f"{job_type}: retry rule {exc}") from None
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


def allows_sync_fallback(handler: Handler) -> bool:
    """Whether jobs of `handler` may run inline while the queue is unavailable: its
    `defaults.sync_fallback`, or a `sync_fallback = True` attribute of the handler."""
    return bool(getattr(handler, "sync_fallback", False) or handler.defaults.sync_fallback)
