"""What a subscriber of the events WebSocket asks for: its filter and frame mode.

Owns `parse_filter` — a filter from the query string or a `subscribe` message: `type`
(job types), `status`, `job_id`, each a list or comma-separated, and `company_id` (a
platform admin's choice; a company-bound token is always its own company) — and
`parse_batch` (the frame mode). Both raise ValidationError (422) naming the field.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fleetd.api.auth import Principal
from fleetd.api.errors import ApiError
from fleetd.jobs.model import MAX_ID_LENGTH, MAX_TYPE_LENGTH, FieldError, JobStatus, ValidationError
from fleetd.runtime.event_model import EventFilter

__all__ = ["MAX_FILTER_VALUES", "parse_batch", "parse_filter"]

# Values one filter kind may list: each is a set lookup per event, but a filter is sent
# by anyone holding a token; this keeps one bounded.
MAX_FILTER_VALUES = 100
_STATUSES = frozenset(s.value for s in JobStatus)


def _values(field: str, raw: Any, limit: int, errors: list[FieldError]) -> frozenset[str]:
    items: Iterable[Any] = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else ()
    if raw is not None and not isinstance(raw, str | list):
        errors.append(FieldError(field, "must be a list of strings or a comma-separated string"))
    out: set[str] = set()
    for item in items:
        if not isinstance(item, str):
            errors.append(FieldError(field, "must be a list of strings"))
            continue
        for value in (v.strip() for v in item.split(",")):
            if not value:
                continue
            if len(value) > limit or not value.isprintable():
                errors.append(FieldError(field, f"{value[:40]!r} is too long or not printable"))
            elif field == "status" and value not in _STATUSES:
                errors.append(FieldError(field, f"unknown status {value!r}"))
            else:
                out.add(value)
    if len(out) > MAX_FILTER_VALUES:
        errors.append(FieldError(field, f"at most {MAX_FILTER_VALUES} values"))
    return frozenset(out)


def parse_batch(raw: Any) -> bool:
    """The frame mode of a query string (`1`/`true`, `0`/`false`) or of a subscribe
    message (a JSON boolean); ValidationError (422) naming `batch` otherwise."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("1", "true", "0", "false"):
        return raw.lower() in ("1", "true")
    raise ValidationError.of([FieldError("batch", "must be 1 or 0 (true or false)")])


def parse_filter(raw: dict[str, Any], who: Principal) -> EventFilter:
    """A filter from lists of strings per kind; ValidationError (422) naming the field,
    or ApiError 403 for another company's events."""
    errors: list[FieldError] = []
    types = _values("type", raw.get("type"), MAX_TYPE_LENGTH, errors)
    statuses = _values("status", raw.get("status"), 20, errors)
    job_ids = _values("job_id", raw.get("job_id"), MAX_ID_LENGTH, errors)
    company = raw.get("company_id")
    if isinstance(company, list):  # one company: a list of two is not a choice
        if len(company) > 1:
            errors.append(FieldError("company_id", "names one company, not a list of them"))
        company = company[0] if len(company) == 1 else None
    if company is not None and (not isinstance(company, str) or len(company) > MAX_ID_LENGTH):
        errors.append(FieldError("company_id", "must be a string of at most 128 characters"))
        company = None
    if errors:
        raise ValidationError.of(errors)
    if not who.platform:
        if company not in (None, "", who.company_id):
            raise ApiError(403, "forbidden", "a company-bound token sees its own company only")
        company = who.company_id
    return EventFilter(types, statuses, job_ids, company or None)
