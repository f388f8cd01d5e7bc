"""Which rules an event matches, and the notification it becomes (sans-IO).

Owns `Occurrence` (what happened: a job event of the stream, or one of this daemon's
own transitions), `matching()` (the rules that fire for it: the kind, then job types,
companies and tags — an empty list matches any; a rule with tags or companies never
matches an event without a job) and `payload()`, the JSON body a webhook receives and
from which an e-mail is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fleetd.config.notify_rules import NotifyRule

__all__ = ["Occurrence", "email_data", "matches", "matching", "needs_tags", "payload"]


@dataclass(frozen=True)
class Occurrence:
    id: str  # a job event's stream id (Event.origin); "<daemon id>:<n>" for a transition
    kind: str  # one of fleetd.config.notify_rules.NOTIFY_EVENTS
    ts: int  # ms
    daemon_id: str
    message: str
    job_id: str | None = None
    job_type: str | None = None
    company_id: str | None = None
    tags: tuple[str, ...] = ()
    retry_count: int = 0
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def shared(self) -> bool:
        """A job event every daemon sees (claimed in Redis), not this daemon's own."""
        return self.job_id is not None


def matches(rule: NotifyRule, occ: Occurrence) -> bool:
    if occ.kind not in rule.on:
        return False
    if occ.kind == "job.retried" and occ.retry_count < rule.retries_at_least:
        return False
    if rule.job_types and occ.job_type not in rule.job_types:
        return False
    if rule.companies and occ.company_id not in rule.companies:
        return False
    return not rule.tags or any(t in rule.tags for t in occ.tags)


def matching(rules: Iterable[NotifyRule], occ: Occurrence) -> list[NotifyRule]:
    return [r for r in rules if matches(r, occ)]


def needs_tags(rules: Iterable[NotifyRule], occ: Occurrence) -> bool:
    """Whether a rule could match but for the tags, which the stream does not carry."""
    return any(r.tags and matches_but_tags(r, occ) for r in rules)


def matches_but_tags(rule: NotifyRule, occ: Occurrence) -> bool:
    return matches(NotifyRule(rule.name, rule.on, rule.retries_at_least, rule.job_types,
                              rule.companies), occ)  # fmt: skip


def payload(rule: NotifyRule, occ: Occurrence) -> dict[str, Any]:
    job = None
    if occ.job_id is not None:
        job = {"id": occ.job_id, "type": occ.job_type, "company_id": occ.company_id,
               "tags": list(occ.tags), "retry_count": occ.retry_count,
               "error": occ.data.get("error")}  # fmt: skip
    return {"event": occ.kind, "event_id": occ.id, "rule": rule.name, "ts": occ.ts,
            "daemon_id": occ.daemon_id, "message": occ.message, "job": job}  # fmt: skip


def email_data(rule: NotifyRule, body: dict[str, Any]) -> dict[str, Any]:
    """The `email_notification` job's data for one notification."""
    lines = [body["message"], "", f"event: {body['event']} ({body['event_id']})",
             f"rule: {body['rule']}", f"daemon: {body['daemon_id']}"]  # fmt: skip
    for key, value in (body.get("job") or {}).items():
        lines.append(f"job {key}: {value}")
    subject = f"[fleetd] {body['event']}: {body['message']}"[:200]
    return {"to": list(rule.email_to), "subject": subject, "body": "\n".join(lines)}
