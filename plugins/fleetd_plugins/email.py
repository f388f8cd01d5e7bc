"""`email_notification`: send one e-mail (the spec's job type), exactly once.

Data: `{to, subject, body}` as in the spec, plus optional `cc`, `bcc`, `html` (an HTML
alternative: the message becomes multipart/alternative) and `reply_to`. `to`, `cc` and
`bcc` take one address or a list; an address may carry a display name
(`"Jane Doe <jane@example.com>"`). Addresses are checked at enqueue (syntax only, no
DNS). Bcc recipients get the message but never appear in its headers.

Config: the `[email]` section, which this plugin owns (`EmailConfig`, _email_config.py).
Delivery (`[email] mode`): "outbox" (the default) writes `<outbox_dir>/<job id>.eml`
and sends nothing; "smtp" sends through `[email] host`. A 5xx answer fails the job at
once (PermanentError); a 4xx answer, a refused connection or a time-out is retried.
Outbox mode must never pass for delivery: the daemon logs a WARNING at start-up naming
the folder, and each job's result says `"delivery": "outbox", "sent": false` and where
the message went (the dashboard marks such jobs "not sent").

Exactly once: the Message-ID is derived from the job id, and the job records the
delivery with `ctx.remember` right after the server accepted the message and before the
job is acknowledged; a retry that finds the record returns it instead of sending again.
The remaining window: if the daemon dies (or Redis is unreachable) between the server's
"250 accepted" and that record, the retry sends the message again, with the same
Message-ID, which mail systems use to spot the duplicate; fleetd logs a warning then.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleetd import Config, ConfigSection, hookimpl

from ._email_config import SECTION, EmailConfig

if TYPE_CHECKING:
    from fleetd import JobHandler

    from ._email_handler import EmailNotificationHandler

__all__ = [
    "EmailConfig",
    "EmailNotificationHandler",
    "fleetd_config_sections",
    "fleetd_handlers",
    "outbox_warning",
]

log = logging.getLogger("fleetd.email")


def __getattr__(name: str) -> Any:
    """The handler's names, from its own module on first use (PEP 562): this module is
    loaded by every command for its config section, the handler only by those that run
    or validate jobs (~0.1 s of start-up: trio, the job model, smtplib)."""
    if name == "EmailNotificationHandler":
        from . import _email_handler

        return getattr(_email_handler, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def outbox_warning(email: EmailConfig, outbox: Path) -> str | None:
    """The start-up warning of outbox mode (None in smtp mode)."""
    if email.mode != "outbox":
        return None
    return (
        f"[email] mode = outbox: e-mail is NOT sent; each email_notification job writes "
        f'its message to {outbox}/<job id>.eml (set [email] mode = "smtp" and host to send)'
    )


@hookimpl
def fleetd_config_sections() -> list[ConfigSection]:
    return [SECTION]


@hookimpl
def fleetd_handlers(config: Config) -> list[JobHandler]:
    email = config.section(EmailConfig)
    outbox = Path(email.outbox_dir).expanduser() if email.outbox_dir else None
    outbox = (outbox or config.state_dir / "outbox").absolute()
    # Announced where a process has set up logging (the daemon), like memory:// and the
    # fleetdata plugin's refusal; a CLI command, which builds the handlers too, would
    # print it on every call.
    if (warning := outbox_warning(email, outbox)) and logging.getLogger().handlers:
        log.warning("%s", warning)
    from ._email_handler import EmailNotificationHandler

    return [EmailNotificationHandler(email, outbox)]
