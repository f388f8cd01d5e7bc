"""`[email]`: the e-mail plugin's config section (declared through the hook
`fleetd_config_sections`, checked with the rest of the config file at start-up).

Owns `EmailConfig` — delivery mode, outbox folder, SMTP server, security, login,
timeout, sender — and the section's declaration `SECTION`. The plugin reads it as
`config.section(EmailConfig)`; it is importable as `fleetd_plugins.email.EmailConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetd import ConfigSection, setting

__all__ = ["SECTION", "EmailConfig"]

MAX_PORT = 65_535
# A mail server answers within seconds; 30 s covers a slow relay plus TLS, and more
# than 10 minutes would outlive the job's own time limit (1 minute by default).
DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 600.0


def _check_from(value: str) -> str | None:
    # Syntax only here (the e-mail plugin checks the address fully when it starts).
    if value == "" or ("@" in value and "\n" not in value and "\r" not in value):
        return None
    return f"must be an e-mail address such as 'Fleet <noreply@example.com>' or '', got {value!r}"


@dataclass(frozen=True)
class EmailConfig:
    mode: str = setting("outbox", "how e-mail is delivered", choices=("outbox", "smtp"))
    outbox_dir: str = setting("", "where outbox mode writes .eml files; '' = <state_dir>/outbox")
    host: str = setting("localhost", "SMTP server host")
    port: int = setting(0, "SMTP port; 0 = 25, 587 or 465 by security", min=0, max=MAX_PORT)
    security: str = setting(
        "starttls", "SMTP transport security", choices=("none", "starttls", "tls")
    )
    ca_file: str = setting("", "PEM file of CAs to trust for TLS; '' = the system's")
    username: str = setting("", "SMTP login; '' = no AUTH")
    password: str = setting("", "SMTP password (prefer FLEETD_EMAIL_PASSWORD)", secret=True)
    timeout: float = setting(
        DEFAULT_TIMEOUT,
        "SMTP connect and command timeout",
        kind="duration",
        above=0,
        max=MAX_TIMEOUT,
    )
    from_: str = setting(
        "", "sender address; '' = fleetd@<host name>", check=_check_from, key="from"
    )


SECTION = ConfigSection("email", EmailConfig)
