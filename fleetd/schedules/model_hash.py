"""How a schedule hash is read: one reader per field (sans-IO).

Owns the field names schedule_save.lua and schedule_fire.lua write and how each is
turned into a ScheduledJob attribute (`HASH_FIELDS`: attribute, reader, and the
default shown when a stored value cannot be read — fleetd.jobs.model_salvage), so that
ScheduledJob.from_hash (strict: the firing) and ScheduledJob.readable (listings: one
poison value degrades its row) read the hash the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from fleetd.jobs.sealing import redact
from fleetd.schedules.cadence import MisfirePolicy

__all__ = ["HASH_FIELDS"]


def _int(raw: str | None) -> int | None:
    return None if raw in (None, "") else int(raw)


def _data(h: Mapping[str, str]) -> dict[str, Any]:
    data = json.loads(h.get("data") or "{}")
    if not isinstance(data, dict):
        raise ValueError("data is not an object")
    sealed = h.get("sealed") or ""
    return redact(data, sealed) if sealed else data


def _lateness(h: Mapping[str, str]) -> dict[int, int]:
    """The lateness histogram schedule_fire.lua keeps (`late:<bucket>` fields,
    fleetd.analytics.histogram's buckets), with `late_ms` (their sum) under -1."""
    out = {int(k[5:]): int(v) for k, v in h.items() if k.startswith("late:")}
    if out:
        out[-1] = int(h.get("late_ms") or 0)
    return out


def _stored_data(h: Mapping[str, str]) -> dict[str, Any] | None:
    return json.loads(h.get("data") or "{}") if h.get("sealed") else None


# How a schedule hash is read: (attribute, reader, default when the stored value cannot
# be read; ScheduledJob.readable). Names as schedule_save.lua writes them.
HASH_FIELDS: list[tuple[str, Callable[[Mapping[str, str]], Any], Any]] = [
    ("id", lambda h: h["id"], "?"),
    ("name", lambda h: h["name"], "?"),
    ("job_type", lambda h: h["job_type"], "?"),
    ("data", _data, {}),
    ("schedule", lambda h: h["schedule"], "?"),
    ("priority", lambda h: int(h["priority"]), 0),
    ("is_active", lambda h: h.get("is_active") == "1", False),
    ("next_run_ms", lambda h: _int(h.get("next_run")), None),
    ("created_at_ms", lambda h: int(h["created_at"]), 0),
    ("updated_at_ms", lambda h: int(h["updated_at"]), 0),
    ("last_run_ms", lambda h: _int(h.get("last_run")), None),
    ("company_id", lambda h: h.get("company_id") or None, None),
    ("user_id", lambda h: h.get("user_id") or None, None),
    ("timezone", lambda h: h.get("timezone") or "UTC", "UTC"),
    (
        "misfire_policy",
        lambda h: MisfirePolicy(h.get("misfire_policy") or "run_once"),
        MisfirePolicy.RUN_ONCE,
    ),
    ("runs", lambda h: int(h.get("runs") or 0), 0),
    ("missed", lambda h: int(h.get("missed") or 0), 0),
    ("lateness", _lateness, {}),
    ("last_job_id", lambda h: h.get("last_job_id") or None, None),
    ("last_error", lambda h: h.get("last_error") or None, None),
    ("last_occurrence_ms", lambda h: _int(h.get("last_occurrence")), None),
    ("anchor_ms", lambda h: int(h.get("anchor") or 0), 0),
    ("rev", lambda h: int(h.get("rev") or 0), 0),
    ("sealed", lambda h: h.get("sealed") or "", ""),
    ("stored_data", _stored_data, None),
    ("template", lambda h: json.loads(h["template"]) if h.get("template") else None, None),
]
