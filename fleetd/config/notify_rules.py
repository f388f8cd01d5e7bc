"""The `[[notify]]` rules: which events send a notification, and where.

Owns `NotifyRule` (one `[[notify]]` table, frozen) and `parse_rules()`, which checks
every table of the array and appends each problem to the loader's error list, naming
the rule (`notify[2].webhook_url: ...`), so one start-up lists every error at once.
The rules are applied by fleetd.notify.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = ["NOTIFY_EVENTS", "NotifyRule", "parse_rules"]

# What a rule may be `on`: the events stream's `job.failed` (final) and `job.retrying`
# (as `job.retried`, with retries_at_least), and this daemon's own transitions.
NOTIFY_EVENTS = (
    "job.failed",
    "job.retried",
    "spool.started",
    "spool.stopped",
    "redis.lost",
    "redis.back",
)
_KEYS = ("name", "on", "retries_at_least", "job_types", "companies", "tags", "webhook_url",
         "webhook_secret", "email_to")  # fmt: skip


@dataclass(frozen=True)
class NotifyRule:
    name: str
    on: tuple[str, ...]
    retries_at_least: int = 1
    job_types: tuple[str, ...] = ()  # empty: any
    companies: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()  # any of them
    webhook_url: str = ""
    webhook_secret: str = ""
    email_to: tuple[str, ...] = ()


def _strings(value: Any, label: str, errors: list[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        errors.append(f"{label}: must be a string or a list of non-empty strings")
        return ()
    return tuple(value)


def _rule(n: int, table: Any, errors: list[str], names: set[str]) -> NotifyRule | None:
    where = f"notify[{n}]"
    if not isinstance(table, dict):
        errors.append(f"{where}: must be a table ([[notify]])")
        return None
    found: list[str] = []
    err: Callable[[str], None] = found.append
    for key in table:
        if key not in _KEYS:
            err(f"{where}.{key}: unknown key (known: {', '.join(_KEYS)})")
    name = table.get("name", where)
    if not isinstance(name, str) or not name:
        err(f"{where}.name: must be a non-empty string")
        name = where
    elif name in names:
        err(f"{where}.name: {name!r} names another rule too")
    names.add(name)
    on = _strings(table.get("on", []), f"{where}.on", found)
    if not on and "on" not in table:
        err(f"{where}.on: required (any of {', '.join(NOTIFY_EVENTS)})")
    for kind in on:
        if kind not in NOTIFY_EVENTS:
            err(f"{where}.on: unknown event {kind!r} (known: {', '.join(NOTIFY_EVENTS)})")
    retries = table.get("retries_at_least", 1)
    if not isinstance(retries, int) or isinstance(retries, bool) or not 1 <= retries <= 1000:
        err(f"{where}.retries_at_least: must be an integer from 1 to 1000")
        retries = 1
    elif "retries_at_least" in table and "job.retried" not in on:
        err(f"{where}.retries_at_least: only applies to on = 'job.retried'")
    lists = {key: _strings(table.get(key, []), f"{where}.{key}", found)
             for key in ("job_types", "companies", "tags", "email_to")}  # fmt: skip
    url, secret = table.get("webhook_url", ""), table.get("webhook_secret", "")
    if not isinstance(url, str) or (url and urlsplit(url).scheme not in ("http", "https")):
        err(f"{where}.webhook_url: must be an http:// or https:// URL")
        url = ""
    if not isinstance(secret, str):
        err(f"{where}.webhook_secret: must be a string")
    elif url and len(secret) < 16:
        err(f"{where}.webhook_secret: required with webhook_url, at least 16 characters")
    elif secret and not url:
        err(f"{where}.webhook_secret: set without webhook_url")
    if not url and not lists["email_to"] and "webhook_url" not in table:
        err(f"{where}: needs webhook_url and/or email_to (where to deliver)")
    errors.extend(found)
    if found:
        return None
    return NotifyRule(name, on, retries, lists["job_types"], lists["companies"], lists["tags"],
                      url, secret, lists["email_to"])  # fmt: skip


def parse_rules(raw: Any, errors: list[str]) -> tuple[NotifyRule, ...]:
    """The `notify` value of the file (an array of tables) as rules; each problem of each
    rule is appended to `errors`."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        errors.append("notify: must be an array of tables ([[notify]])")
        return ()
    names: set[str] = set()
    rules = [_rule(n, table, errors, names) for n, table in enumerate(raw)]
    return tuple(r for r in rules if r is not None)
