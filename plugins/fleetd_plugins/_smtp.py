"""Blocking mail transports for the e-mail plugin: SMTP (stdlib smtplib) and the outbox.

Everything here blocks and is called through `trio.to_thread.run_sync`. Owns:
- `SmtpTransport.send()`: connect (plain, STARTTLS or implicit TLS, certificates
  verified), log in, hand the message over; returns the open connection so the caller
  can record the delivery *before* saying goodbye (`quit()`), and the refused recipients;
- `classify()`: a permanent failure (5xx, or a server that lacks what the config asks
  for) versus a temporary one (4xx, refused connection, time-out, TLS or network error);
- `write_outbox()`: `<dir>/<job id>.eml`, written whole (temporary file, fsync, rename).
"""

from __future__ import annotations

import contextlib
import os
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from ._email_config import EmailConfig

__all__ = ["SmtpTransport", "classify", "write_outbox"]

# The usual port of each security mode (RFC 8314: 465 implicit TLS, 587 submission).
DEFAULT_PORTS = {"none": 25, "starttls": 587, "tls": 465}


def classify(exc: BaseException) -> tuple[bool, str]:
    """(permanent, text) for a failed delivery attempt."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        answers = [f"{rcpt}: {code} {_text(msg)}" for rcpt, (code, msg) in exc.recipients.items()]
        permanent = all(500 <= code < 600 for code, _ in exc.recipients.values())
        return permanent, "all recipients refused: " + "; ".join(answers)
    if isinstance(exc, smtplib.SMTPResponseException):
        # Sender refused, data refused, greeting, HELO, AUTH: the reply code decides.
        text = f"SMTP {exc.smtp_code} {_text(exc.smtp_error)}"
        return 500 <= exc.smtp_code < 600, text
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return True, f"SMTP server does not support what [email] asks for: {exc}"
    return False, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


@dataclass
class Sent:
    connection: smtplib.SMTP
    refused: dict[str, str]  # recipient -> reply, for the ones the server refused


class SmtpTransport:
    def __init__(self, cfg: EmailConfig) -> None:
        self.cfg = cfg
        self.port = cfg.port or DEFAULT_PORTS[cfg.security]
        # host:port, as a job's result names the server it handed the message to.
        self.address = f"{cfg.host}:{self.port}"

    def _tls(self) -> ssl.SSLContext:
        """Verifying context: the system's CAs, or `[email] ca_file` for a private CA."""
        return ssl.create_default_context(cafile=self.cfg.ca_file or None)

    def _connect(self) -> smtplib.SMTP:
        cfg = self.cfg
        if cfg.security == "tls":
            return smtplib.SMTP_SSL(cfg.host, self.port, timeout=cfg.timeout, context=self._tls())
        conn = smtplib.SMTP(cfg.host, self.port, timeout=cfg.timeout)
        try:
            conn.ehlo()
            if cfg.security == "starttls":
                # No STARTTLS on offer raises SMTPNotSupportedError: never fall back to
                # sending a password or a message in clear text.
                conn.starttls(context=self._tls())
                conn.ehlo()
        except BaseException:
            conn.close()
            raise
        return conn

    def send(self, msg: EmailMessage, sender: str, recipients: list[str]) -> Sent:
        """Hand `msg` to the server (envelope: `sender` → `recipients`). On success the
        server has accepted it for at least one recipient; call `quit(sent)` after
        recording that. Raises smtplib/OS errors (see `classify`)."""
        conn = self._connect()
        try:
            if self.cfg.username:
                conn.login(self.cfg.username, self.cfg.password)
            refused = conn.send_message(msg, from_addr=sender, to_addrs=recipients)
        except BaseException:
            conn.close()
            raise
        return Sent(conn, {r: f"{code} {_text(m)}" for r, (code, m) in refused.items()})

    @staticmethod
    def quit(sent: Sent) -> None:
        """Say goodbye; the message is already accepted, so a failure here is ignored."""
        with contextlib.suppress(smtplib.SMTPException, OSError):
            sent.connection.quit()
        sent.connection.close()


def write_outbox(directory: Path, name: str, msg: EmailMessage) -> Path:
    """Write `msg` as `<directory>/<name>.eml` atomically; return its absolute path."""
    directory.mkdir(parents=True, exist_ok=True)
    final = (directory / f"{name}.eml").absolute()
    tmp = directory / f".{name}.eml.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(msg.as_bytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself survives a crash
    finally:
        os.close(fd)
    return final
