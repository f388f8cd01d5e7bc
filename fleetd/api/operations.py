"""What each admin API view states about itself, for the OpenAPI document.

Owns `documented()`, the decorator that states what a view is about (summary, its
answers and their body classes, the error statuses it adds, its request body, query,
headers and path parameters), and `operation_of()`, which fleetd.api.openapi reads
while it walks the route table. Pure data: the statements name declarations
(fleetd.api.bodies, fleetd.api.inputs, EnqueueRequest, ScheduleSpec), they restate none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

__all__ = ["Operation", "documented", "operation_of"]

F = TypeVar("F", bound=Callable[..., Any])

_ATTR = "_fleetd_openapi"


@dataclass(frozen=True)
class Operation:
    """What `documented()` states about one view."""

    summary: str
    # status → (the answer's type, or None for no body; description)
    ok: Mapping[int, tuple[Any, str]]
    errors: tuple[int, ...] = ()
    body: Any = None
    partial: bool = False
    query: type[BaseModel] | None = None
    headers: type[BaseModel] | None = None
    path: Mapping[str, Any] = field(default_factory=dict)
    tag: str = "jobs"
    media: str = "application/json"


def documented(
    summary: str,
    ok: Mapping[int, tuple[Any, str]],
    errors: str = "",
    *,
    body: Any = None,
    partial: bool = False,
    query: type[BaseModel] | None = None,
    headers: type[BaseModel] | None = None,
    path: Mapping[str, Any] | None = None,
    tag: str = "jobs",
    media: str = "application/json",
) -> Callable[[F], F]:
    """State what a view answers and reads. `errors` lists its own error statuses
    ("404 409"); `partial` documents `body` with no field required (PUT)."""
    op = Operation(
        summary,
        ok,
        tuple(int(code) for code in errors.split()),
        body,
        partial,
        query,
        headers,
        dict(path or {}),
        tag,
        media,
    )

    def mark(view: F) -> F:
        setattr(view, _ATTR, op)
        return view

    return mark


def operation_of(view: Callable[..., Any]) -> Operation | None:
    op = getattr(view, _ATTR, None)
    return op if isinstance(op, Operation) else None
