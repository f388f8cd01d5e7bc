"""Failure notifications: `[[notify]]` rules (fleetd.config.notify_rules) delivered
by signed webhook and/or `email_notification` job, durably (docs/OPERATIONS.md,
"Failure notifications").

`match` (which rules an event fires, the payload), `outbox` (the local SQLite outbox),
`webhook` (the signed POST), `service` (the daemon's service: intake, claim, send).
"""

from fleetd.notify.match import Occurrence, matching, payload
from fleetd.notify.outbox import OUTBOX_FILE, Outbox
from fleetd.notify.service import NotifyService, start_notify
from fleetd.notify.webhook import SIGNATURE_HEADER, sign

__all__ = [
    "OUTBOX_FILE",
    "SIGNATURE_HEADER",
    "NotifyService",
    "Occurrence",
    "Outbox",
    "matching",
    "payload",
    "sign",
    "start_notify",
]
