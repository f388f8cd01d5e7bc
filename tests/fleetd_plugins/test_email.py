"""email_notification end to end: jobs run by the real worker pool against the test
redis-server, delivered to a real SMTP server on loopback (aiosmtpd) or written to the
outbox, and read back with the `email` package."""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import logging
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fleetd_plugins.email import EmailConfig
from pool import running_pool, wait_status

from fleetd.config import Config
from fleetd.engine import Engine, build_registry
from fleetd.jobs.model import JobStatus, ValidationError

SENDER = "FleetTracker Pro <noreply@fleet.example.com>"
MAIL = {"to": "driver@example.com", "subject": "Fleet Update", "body": "Your fleet status changed"}


class Recorder:
    """aiosmtpd handler: keeps what it accepted; answers DATA and QUIT as scripted."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []
        self.data_answers: list[str] = []  # consumed one per DATA; then 250
        self.quit_stall = 0.0
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            answer = self.data_answers.pop(0) if self.data_answers else None
        if answer is not None:
            return answer
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 Message accepted for delivery"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        if self.quit_stall:
            await asyncio.sleep(self.quit_stall)
        return "221 Bye"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def smtp_server(**controller_options: Any) -> Iterator[tuple[Recorder, int]]:
    """An aiosmtpd server on a free loopback port (TLS options passed on)."""
    recorder, port = Recorder(), free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, **controller_options)
    controller.start()
    try:
        yield recorder, port
    finally:
        controller.stop()


@pytest.fixture
def smtp() -> Iterator[tuple[Recorder, int]]:
    with smtp_server() as server:
        yield server


def email_config(config: Config, **email_changes: Any) -> Config:
    return config.with_section(dataclasses.replace(config.section(EmailConfig), **email_changes))


def smtp_config(config: Config, port: int, **changes: Any) -> Config:
    settings = {"mode": "smtp", "host": "127.0.0.1", "port": port, "security": "none"}
    return email_config(config, **(settings | {"from_": SENDER} | changes))


async def deliver(
    cfg: Config, *statuses: JobStatus, data: dict[str, Any] = MAIL, **fields: Any
) -> tuple[str, list[Any]]:
    """Enqueue one email_notification (job `fields` such as max_retries) on a worker pool
    for `cfg`: its id, and the job as it was at each of `statuses`, in turn."""
    async with running_pool(cfg, build_registry(cfg)) as (engine, _):
        r = await engine.queue.enqueue({"type": "email_notification", "data": data, **fields})
        return r.job_id, [await wait_status(engine, r.job_id, s) for s in statuses]


# -- enqueue-time validation -----------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "errors"),
    [
        (
            {**MAIL, "to": "not-an-address"},
            ["data.to: 'not-an-address' is not a valid e-mail address"],
        ),
        ({**MAIL, "cc": ["a@example.com", "b@localhost"]}, ["data.cc[1]: 'b@localhost' is not"]),
        ({**MAIL, "reply_to": ["a@example.com"]}, ["data.reply_to: must be a string"]),
        ({**MAIL, "subject": "Hi\r\nBcc: victim@example.com"}, ["data.subject: 'Hi"]),
        # Header line breaks beyond CR and LF (the email package splits on them all).
        ({**MAIL, "subject": "Hi\x0bthere"}, ["data.subject: 'Hi"]),
        ({**MAIL, "subject": "Hi\u2028there"}, ["data.subject: 'Hi"]),
        ({**MAIL, "subject": "Hi\x85there"}, ["data.subject: 'Hi"]),
        ({"to": "a@example.com"}, ["data.body: is required", "data.subject: is required"]),
        ({**MAIL, "attachments": []}, ["data.attachments: unknown field"]),
        ({**MAIL, "bcc": [f"u{i}@example.com" for i in range(100)]}, ["data: at most 100"]),
    ],
)
async def test_bad_data_is_refused_at_enqueue(
    engine: Engine, data: dict[str, Any], errors: list[str]
) -> None:
    with pytest.raises(ValidationError) as info:
        await engine.queue.enqueue({"type": "email_notification", "data": data})
    got = [str(e) for e in info.value.errors]
    assert len(got) == len(errors)
    assert all(g.startswith(e) for g, e in zip(got, errors, strict=True)), got
    assert await engine.queue.stats() == dict.fromkeys(
        ["pending", "processing", "completed", "failed", "retrying", "cancelled", "total"], 0
    )


def test_a_bad_sender_stops_start_up(config: Config) -> None:
    from fleetd import PluginError

    with pytest.raises(PluginError, match=r"plugin 'email'.*is not one e-mail address"):
        build_registry(email_config(config, from_="two@example.com, three@example.com"))


# -- SMTP ------------------------------------------------------------------------------


async def test_delivered_over_smtp_with_the_right_headers(
    config: Config, smtp: tuple[Recorder, int]
) -> None:
    server, port = smtp
    cfg = smtp_config(config, port)
    data = {
        "to": ["Jane Doe <jane@example.com>", "bob@example.com"],
        "cc": "boss@example.com",
        "bcc": ["audit@example.com"],
        "reply_to": "dispatch@example.com",
        "subject": "Wartung fällig: LKW 7",
        "body": "Plain text body",
        "html": "<p>HTML <b>body</b></p>",
    }
    job_id, [job] = await deliver(cfg, JobStatus.COMPLETED, data=data)
    [(mail_from, rcpts, msg)] = server.messages
    assert mail_from == "noreply@fleet.example.com"
    assert sorted(rcpts) == sorted(
        ["jane@example.com", "bob@example.com", "boss@example.com", "audit@example.com"]
    )
    assert msg["From"] == SENDER
    assert msg["To"] == "Jane Doe <jane@example.com>, bob@example.com"
    assert msg["Cc"] == "boss@example.com"
    assert msg["Bcc"] is None and b"audit@" not in msg.as_bytes()
    assert msg["Reply-To"] == "dispatch@example.com"
    assert msg["Subject"] == "Wartung fällig: LKW 7"
    assert msg["Message-ID"] == f"<{job_id}@fleet.example.com>"
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None and html is not None
    assert plain.get_content().strip() == "Plain text body"
    assert html.get_content().strip() == "<p>HTML <b>body</b></p>"
    assert job.result["message_id"] == msg["Message-ID"]
    assert (job.result["mode"], job.result["recipients"]) == ("smtp", 4)
    assert (job.result["delivery"], job.result["sent"]) == ("smtp", True)
    assert job.result["server"] == f"127.0.0.1:{port}"


async def test_a_4xx_answer_is_retried_then_delivered(
    config: Config, smtp: tuple[Recorder, int]
) -> None:
    server, port = smtp
    server.data_answers = ["451 4.3.0 Mailbox temporarily unavailable"]
    cfg = smtp_config(config, port)
    _, [retrying, job] = await deliver(cfg, JobStatus.RETRYING, JobStatus.COMPLETED)
    assert "SMTP 451 4.3.0 Mailbox temporarily unavailable" in retrying.error
    assert (job.attempts, job.retry_count) == (2, 1)
    assert len(server.messages) == 1


async def test_a_5xx_answer_fails_without_retries(
    config: Config, smtp: tuple[Recorder, int]
) -> None:
    server, port = smtp
    server.data_answers = ["554 5.7.1 Message rejected as spam"]
    _, [job] = await deliver(smtp_config(config, port), JobStatus.FAILED)
    assert (job.attempts, job.retry_count) == (1, 0)
    assert job.error == "PermanentError: SMTP 554 5.7.1 Message rejected as spam"
    assert server.messages == []


async def test_a_refused_connection_is_retried(config: Config) -> None:
    cfg = smtp_config(config, free_port())  # nothing listens there
    _, [retrying] = await deliver(cfg, JobStatus.RETRYING, max_retries=1)
    assert "ConnectionRefusedError" in retrying.error


async def test_starttls_required_but_not_offered_fails_for_good(
    config: Config, smtp: tuple[Recorder, int]
) -> None:
    server, port = smtp
    _, [job] = await deliver(smtp_config(config, port, security="starttls"), JobStatus.FAILED)
    assert job.attempts == 1 and "STARTTLS extension not supported" in job.error
    assert server.messages == []  # never fell back to clear text


async def test_never_sent_twice_when_the_attempt_fails_after_acceptance(
    config: Config, smtp: tuple[Recorder, int]
) -> None:
    """The server accepts the message, then stalls on QUIT past the job's time limit:
    the attempt times out after acceptance, and the retry must not send again."""
    server, port = smtp
    server.quit_stall = 3.0
    cfg = smtp_config(config, port)
    async with running_pool(cfg, build_registry(cfg)) as (engine, _):
        r = await engine.queue.enqueue(
            {"type": "email_notification", "data": MAIL, "timeout": "1s"}
        )
        retrying = await wait_status(engine, r.job_id, JobStatus.RETRYING)
        assert retrying.error.startswith("timeout: timed out after 1s")
        server.quit_stall = 0.0
        job = await wait_status(engine, r.job_id, JobStatus.COMPLETED)
    assert job.attempts == 2
    assert job.result["already_delivered"] is True
    assert job.result["message_id"] == f"<{r.job_id}@fleet.example.com>"
    assert len(server.messages) == 1


# -- outbox ----------------------------------------------------------------------------


async def test_outbox_writes_an_eml_the_email_package_parses(
    config: Config, tmp_path: Path
) -> None:
    cfg = email_config(config, outbox_dir=str(tmp_path / "out"), from_=SENDER)
    data = {**MAIL, "bcc": "hidden@example.com"}
    job_id, [job] = await deliver(cfg, JobStatus.COMPLETED, data=data)
    path = tmp_path / "out" / f"{job_id}.eml"
    assert job.result["path"] == str(path) and job.result["mode"] == "outbox"
    assert (job.result["delivery"], job.result["sent"]) == ("outbox", False)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp files
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert (msg["To"], msg["Subject"], msg["From"]) == (MAIL["to"], MAIL["subject"], SENDER)
    assert msg["Bcc"] is None and msg["Message-ID"] == f"<{job_id}@fleet.example.com>"
    body = msg.get_body(("plain",))
    assert body is not None and body.get_content().strip() == MAIL["body"]


def test_outbox_mode_is_announced_at_start_up(
    config: Config, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from fleetd_plugins import email as plugin

    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="fleetd.email"):
        plugin.fleetd_handlers(smtp_config(config, 25))  # smtp: nothing to say
        assert caplog.messages == []
        plugin.fleetd_handlers(email_config(config, outbox_dir=str(out)))
    assert caplog.messages == [
        f"[email] mode = outbox: e-mail is NOT sent; each email_notification job writes "
        f'its message to {out}/<job id>.eml (set [email] mode = "smtp" and host to send)'
    ]


async def test_outbox_is_the_embedded_default(config: Config) -> None:
    assert config.section(EmailConfig).mode == "outbox"
    job_id, [job] = await deliver(config, JobStatus.COMPLETED)
    assert Path(job.result["path"]) == config.state_dir / "outbox" / f"{job_id}.eml"
    assert Path(job.result["path"]).is_file()


# -- TLS -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost, made with the openssl command."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def _server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_delivered_over_verified_tls(
    config: Config, certificate: tuple[Path, Path], security: str
) -> None:
    context = _server_context(certificate)
    tls: dict[str, Any] = (
        {"tls_context": context, "require_starttls": True}
        if security == "starttls"
        else {"ssl_context": context}
    )
    with smtp_server(**tls) as (recorder, port):
        cfg = smtp_config(
            config, port, host="localhost", security=security, ca_file=str(certificate[0])
        )
        await deliver(cfg, JobStatus.COMPLETED)
    [(_, rcpts, msg)] = recorder.messages
    assert rcpts == ["driver@example.com"]
    assert msg["Subject"] == "Fleet Update"


async def test_an_untrusted_certificate_delivers_nothing(
    config: Config, certificate: tuple[Path, Path]
) -> None:
    with smtp_server(ssl_context=_server_context(certificate)) as (recorder, port):
        # The system's CAs do not know our self-signed certificate.
        cfg = smtp_config(config, port, host="localhost", security="tls")
        _, [job] = await deliver(cfg, JobStatus.FAILED, max_retries=0)
    assert recorder.messages == []
    assert "CERTIFICATE_VERIFY_FAILED" in (job.error or "")
