"""The `email_notification` handler (the hooks and the config are fleetd_plugins.email's).

Imported by the hook `fleetd_handlers` only: the plugin module itself stays light, since
every command loads it to read its config section (this one brings in trio, the job
model and smtplib).
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import trio

from fleetd import (
    HandlerDefaults,
    JobContext,
    JobHandler,
    PermanentError,
    ValidationError,
)

from ._email_config import EmailConfig
from ._smtp import SmtpTransport, classify, write_outbox

__all__ = ["DeliveryError", "EmailNotificationHandler", "build_message", "sender_address"]

# RFC 5322 caps a line at 998 characters; a subject longer than that is a bug upstream.
MAX_SUBJECT = 998
# Recipients per message across to, cc and bcc: more is a mailing, not a notification.
MAX_RECIPIENTS = 100
# The delivery record kept with the job (ctx.remember).
NOTE = "email.delivery"

_ADDRESS = {"type": "string", "format": "mailbox", "maxLength": 320}
_ADDRESSES = {
    "anyOf": [
        _ADDRESS,
        {"type": "array", "items": _ADDRESS, "minItems": 1, "maxItems": MAX_RECIPIENTS},
    ]
}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "to": _ADDRESSES,
        "cc": _ADDRESSES,
        "bcc": _ADDRESSES,
        "reply_to": _ADDRESS,
        # No line breaks: a subject must not smuggle in headers. Every control character
        # and Unicode line separator is refused, not only CR and LF: the email package
        # splits header values on all of them (str.splitlines) and raises at send time.
        "subject": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_SUBJECT,
            "pattern": "^[^\\x00-\\x08\\x0a-\\x1f\\x7f-\\x9f\\u2028\\u2029]*$",
        },
        "body": {"type": "string"},
        "html": {"type": "string"},
    },
    "required": ["to", "subject", "body"],
    "additionalProperties": False,
}


class DeliveryError(Exception):
    """A temporary delivery failure: the job is retried."""


def _as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _address(text: str) -> Address:
    header = SMTP_POLICY.header_factory("To", text)
    address: Address = header.addresses[0]
    return address


def _recipients(data: dict[str, Any]) -> set[str]:
    """Every address of to, cc and bcc, once (the envelope's RCPT TO)."""
    return {_address(a).addr_spec for key in ("to", "cc", "bcc") for a in _as_list(data.get(key))}


def sender_address(cfg: EmailConfig) -> str:
    """`[email] from`, or fleetd@<host name>; raises ValueError when it is unusable."""
    text = cfg.from_ or f"fleetd@{socket.getfqdn()}"
    header = SMTP_POLICY.header_factory("From", text)
    addresses = header.addresses
    if len(addresses) != 1 or not addresses[0].username or not addresses[0].domain:
        raise ValueError(f"[email] from = {text!r} is not one e-mail address")
    return text


def build_message(data: dict[str, Any], *, sender: str, message_id: str) -> EmailMessage:
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = sender
    msg["To"] = ", ".join(_as_list(data["to"]))
    if cc := _as_list(data.get("cc")):
        msg["Cc"] = ", ".join(cc)
    if reply_to := data.get("reply_to"):
        msg["Reply-To"] = reply_to
    msg["Subject"] = data["subject"]
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = message_id
    msg.set_content(data["body"])
    if html := data.get("html"):
        msg.add_alternative(html, subtype="html")
    return msg


class EmailNotificationHandler(JobHandler):
    job_type = "email_notification"
    description = "Send one e-mail (to, subject, body; optional cc, bcc, html, reply_to)"
    schema = SCHEMA
    # Mail servers answer within seconds; a minute covers a slow relay plus TLS.
    # An e-mail can be sent inline while Redis is away (`"fallback": "sync"`).
    defaults = HandlerDefaults(timeout=60.0, sync_fallback=True)

    def __init__(self, cfg: EmailConfig, outbox_dir: Path) -> None:
        self.cfg = cfg
        self.outbox_dir = outbox_dir
        self.sender = sender_address(cfg)
        sender = _address(self.sender)
        self.envelope_from = sender.addr_spec  # MAIL FROM
        self.domain = sender.domain
        self.transport = SmtpTransport(cfg)

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        # Counted ignoring case: Bob@x and bob@x are one recipient towards the cap.
        if len({a.lower() for a in _recipients(data)}) > MAX_RECIPIENTS:
            raise ValidationError("data", f"at most {MAX_RECIPIENTS} recipients in all")
        return data

    def message_id(self, job_id: str) -> str:
        """The same for every attempt of one job: duplicates are recognisable."""
        return f"<{job_id}@{self.domain}>"

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        note = await ctx.recall(NOTE)
        if note and note.get("state") == "delivered":
            ctx.logger.info("message already delivered by attempt %s; not sending again",
                            note["attempt"])  # fmt: skip
            return {**note["result"], "already_delivered": True}
        message_id = self.message_id(ctx.job.id)
        msg = build_message(data, sender=self.sender, message_id=message_id)
        recipients = sorted(_recipients(data))
        result: dict[str, Any] = {
            "message_id": message_id,
            "mode": self.cfg.mode,
            "recipients": len(recipients),
        }
        if self.cfg.mode == "outbox":
            path = await trio.to_thread.run_sync(write_outbox, self.outbox_dir, ctx.job.id, msg)
            # Completed, but nobody got mail: the result says so where it is shown.
            result.update(delivery="outbox", sent=False, path=str(path))
            await self._record(ctx, result)
            return result
        if note and note.get("state") == "sending":
            ctx.logger.warning(
                "attempt %s may have delivered message %s before it could record it; "
                "sending again with the same Message-ID",
                note["attempt"],
                message_id,
            )
            result["resent"] = True
        result.update(delivery="smtp", sent=True, server=self.transport.address)
        await ctx.remember(NOTE, {"state": "sending", "attempt": ctx.job.attempts})
        try:
            # Not abandoned on cancel (a time-out or a stop): once the message is on
            # its way, the answer must be known so the record below is right.
            sent = await trio.to_thread.run_sync(
                self.transport.send, msg, self.envelope_from, recipients
            )
        except Exception as exc:
            permanent, text = classify(exc)
            if permanent:
                raise PermanentError(text) from exc
            raise DeliveryError(text) from exc
        if sent.refused:
            # Accepted for the others: sending again would duplicate it for them.
            ctx.logger.warning("message %s refused for %s", message_id, sent.refused)
            result["refused"] = sent.refused
        await self._record(ctx, result)
        await trio.to_thread.run_sync(self.transport.quit, sent, abandon_on_cancel=True)
        return result

    @staticmethod
    async def _record(ctx: JobContext, result: dict[str, Any]) -> None:
        """Record the delivery; shielded, so a time-out that struck while the server
        was accepting cannot skip it."""
        result["delivered_at"] = datetime.now(UTC).isoformat(timespec="milliseconds")
        with trio.CancelScope(shield=True):
            await ctx.remember(
                NOTE, {"state": "delivered", "attempt": ctx.job.attempts, "result": result}
            )
