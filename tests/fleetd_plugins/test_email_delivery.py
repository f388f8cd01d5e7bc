"""E-mail that is not sent must never pass for sent (#19): a `fleetd run` daemon in
outbox mode (the default) says so at start-up, at WARNING, naming the folder, and each
e-mail job's result carries `"delivery": "outbox", "sent": false` and the file; in
smtp mode, against a real SMTP server on loopback (aiosmtpd), there is no warning and
the result says where the message was handed over.

Real parts: the test redis-server, `fleetd run` subprocesses, the CLI, aiosmtpd.
"""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path

from conftest import fleetd_env
from daemons import Fleet, cli_json
from test_email import MAIL, smtp_server

from fleetd.config import Config

OUTBOX_WARNING = "WARNING fleetd.email: [email] mode = outbox: e-mail is NOT sent"


def send(env: dict[str, str]) -> dict[str, object]:
    done = cli_json(env, "enqueue", "email_notification", "--data", json.dumps(MAIL),
                    "--wait", "--json")  # fmt: skip
    job: dict[str, object] = done["job"]
    assert job["status"] == "completed", job
    return job


def test_outbox_mode_is_announced_and_marked(config: Config, fleet: Fleet, tmp_path: Path) -> None:
    outbox = tmp_path / "mail out"
    env = fleetd_env(config) | {"FLEETD_EMAIL_OUTBOX_DIR": str(outbox)}
    daemon = fleet.start(env, "--roles", "worker")
    [line] = [ln for ln in daemon.log().splitlines() if OUTBOX_WARNING in ln]
    assert f"writes its message to {outbox}/<job id>.eml" in line, line

    job = send(env)
    result = job["result"]
    assert isinstance(result, dict)
    path = outbox / f"{job['id']}.eml"
    assert (result["mode"], result["delivery"], result["sent"]) == ("outbox", "outbox", False)
    assert result["path"] == str(path)
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert msg["Subject"] == MAIL["subject"]


def test_smtp_mode_sends_without_the_warning(config: Config, fleet: Fleet) -> None:
    with smtp_server() as (server, port):
        env = fleetd_env(config) | {
            "FLEETD_EMAIL_MODE": "smtp",
            "FLEETD_EMAIL_HOST": "127.0.0.1",
            "FLEETD_EMAIL_PORT": str(port),
            "FLEETD_EMAIL_SECURITY": "none",
            "FLEETD_EMAIL_FROM": "noreply@fleet.example.com",
        }
        daemon = fleet.start(env, "--roles", "worker")
        job = send(env)
        [(_, rcpts, msg)] = server.messages
    assert "[email] mode = outbox" not in daemon.log()
    result = job["result"]
    assert isinstance(result, dict)
    assert (result["mode"], result["delivery"], result["sent"]) == ("smtp", "smtp", True)
    assert result["server"] == f"127.0.0.1:{port}"
    assert "path" not in result
    assert rcpts == [MAIL["to"]] and msg["Message-ID"] == result["message_id"]
