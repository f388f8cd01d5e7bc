"""The handler contract and the registry of job types a process knows.

A handler names its job type, validates a job's data at enqueue (bad data never reaches
the queue), carries defaults for priority, max_retries and timeout, and runs the job:
`async run(ctx, data) -> dict`, a JSON object that becomes the job's result.

Raising `PermanentError` fails a job at once, without retries (a request that can never
succeed); any other exception is a failed attempt, retried while retries are left.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from fleetd.model import ValidationError

if TYPE_CHECKING:
    from fleetd.context import JobContext

__all__ = [
    "DuplicateJobType",
    "Handler",
    "HandlerDefaults",
    "HandlerRegistry",
    "PermanentError",
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


class DuplicateJobType(Exception):
    """Two sources claim one job type: a start-up error naming both."""


class HandlerRegistry:
    """Job type → handler, and where each came from (for errors and `fleetd plugins`)."""

    def __init__(self, disabled: Iterable[str] = ()) -> None:
        self._handlers: dict[str, Handler] = {}
        self._sources: dict[str, str] = {}
        self.disabled = frozenset(disabled)

    def register(self, handler: Handler, source: str = "fleetd") -> None:
        job_type = handler.job_type
        if job_type in self.disabled:
            return
        if job_type in self._handlers:
            raise DuplicateJobType(
                f"job type {job_type!r} is claimed by both {self._sources[job_type]!r} "
                f"and {source!r}; disable one of them in [plugins] disable"
            )
        self._handlers[job_type] = handler
        self._sources[job_type] = source

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
