"""Failure notifications end to end (#18 point 4): `fleetd run` daemons with
`[[notify]]` rules, a job that fails for good, and a real webhook receiver on loopback
that checks the HMAC signature — retried until it answers 2xx, sent once however many
daemons share Redis, kept across a daemon's restart; an e-mail delivered through the
`email_notification` job to the SMTP test server; Redis lost and back notified while
Redis is down.

Real parts: the test redis-server (and one of the test's own), `fleetd run`
subprocesses, the CLI, http.server, aiosmtpd.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from conftest import fleetd_env
from daemons import Fleet, run_cli, wait_for
from receiver import SECRET, Receiver, webhook_receiver

from fleetd.audit.reader import AuditReader
from fleetd.config import Config
from fleetd.engine import Engine

sys.path.insert(0, str(Path(__file__).parent.parent / "fleetd_plugins"))
from test_email import smtp_server


def rules_file(tmp_path: Path, url: str = "", email: str = "", on: str = "job.failed") -> Path:
    where = f'webhook_url = "{url}"\nwebhook_secret = "{SECRET}"\n' if url else ""
    where += f'email_to = ["{email}"]\n' if email else ""
    path = tmp_path / "notify.toml"
    path.write_text(f'[[notify]]\nname = "billing-failures"\non = ["{on}"]\n'
                    f'job_types = ["noop"]\ntags = ["billing"]\n{where}')  # fmt: skip
    return path


def audit(cfg: Config) -> list[dict[str, Any]]:
    engine = Engine.build(cfg, daemon=False)
    try:
        entries, _ = engine.link.run_sync(lambda c: AuditReader(engine.keys).read(c, limit=1000))
        return list(entries)
    finally:
        engine.link.close()


def fail_job(env: dict[str, str], *tags: str) -> str:
    args = [a for t in tags for a in ("--tag", t)]
    run = run_cli(env, "enqueue", "noop", "--data", json.dumps({"fail_attempts": 5}),
                  "--max-retries", "0", *args, "--wait", "--json")  # fmt: skip
    done = json.loads(run.stdout)  # exit 1: the job failed, as it should
    assert run.returncode == 1 and done["job"]["status"] == "failed", (run.stdout, run.stderr)
    return str(done["job"]["id"])


def delivered(receiver: Receiver, fleet: Fleet, n: int = 1) -> None:
    wait_for(lambda: len(receiver.delivered()) >= n, 20, "a delivered notification", fleet.tails)


def test_a_failed_job_is_notified_once_signed_after_two_refusals(
    config: Config, fleet: Fleet, tmp_path: Path
) -> None:
    with webhook_receiver(fail_next=2) as receiver:
        base = fleetd_env(config) | {"FLEETD_CONFIG": str(rules_file(tmp_path, receiver.url))}
        # Two daemons on one Redis, each with its own state directory: one sends.
        fleet.start(base, "--roles", "worker")
        fleet.start(base | {"FLEETD_DAEMON_STATE_DIR": str(tmp_path / "state2")}, "--roles", "api")
        fail_job(base)  # no billing tag: no notification
        job_id = fail_job(base, "billing")
        delivered(receiver, fleet)
        time.sleep(1.5)  # a second sender would have posted by now
        tries = list(receiver.requests)
    assert [r.answered for r in tries] == [500, 500, 200], tries
    assert all(r.signed for r in tries), tries
    assert len({r.delivery for r in tries}) == 1
    body = tries[-1].body
    assert tries[-1].event == body["event"] == "job.failed"
    assert body["job"]["id"] == job_id and body["job"]["tags"] == ["billing"]
    assert body["rule"] == "billing-failures" and body["job"]["error"]


def test_a_job_retried_n_times_is_notified_from_the_nth_retry(
    config: Config, fleet: Fleet, tmp_path: Path
) -> None:
    with webhook_receiver() as receiver:
        path = tmp_path / "notify.toml"
        hook = f'webhook_url = "{receiver.url}"\nwebhook_secret = "{SECRET}"\n'
        path.write_text('[[notify]]\non = "job.retried"\nretries_at_least = 2\n' + hook)
        env = fleetd_env(config) | {"FLEETD_CONFIG": str(path)}
        fleet.start(env, "--roles", "worker")
        # Retried twice (after 1 s, then 4 s), then failed: only the 2nd retry matches.
        run = run_cli(env, "enqueue", "noop", "--data", json.dumps({"fail_attempts": 5}),
                      "--max-retries", "2", "--wait", "--json")  # fmt: skip
        assert json.loads(run.stdout)["job"]["status"] == "failed", run.stderr
        delivered(receiver, fleet)
        time.sleep(1)
        [got] = receiver.delivered()
    assert got.event == "job.retried" and got.body["job"]["retry_count"] == 2 and got.signed


def test_a_delivery_waiting_at_a_restart_is_made_after_it(
    config: Config, fleet: Fleet, tmp_path: Path
) -> None:
    with webhook_receiver(fail_next=10**6) as receiver:
        env = fleetd_env(config) | {"FLEETD_CONFIG": str(rules_file(tmp_path, receiver.url))}
        first = fleet.start(env, "--roles", "worker,api")
        job_id = fail_job(env, "billing")
        wait_for(lambda: len(receiver.requests) >= 1, 20, "a first try", fleet.tails)
        first.kill()  # SIGKILL: nothing is flushed on the way out
        first.wait_exit(10)
        with receiver.lock:
            receiver.fail_next = 0
            refused = len(receiver.requests)
        assert receiver.delivered() == []
        fleet.start(env, "--roles", "worker,api", name="restarted")
        delivered(receiver, fleet)
        time.sleep(1)
    [done] = receiver.delivered()
    assert done.signed and done.body["job"]["id"] == job_id
    assert {r.delivery for r in receiver.requests} == {done.delivery}
    assert len(receiver.requests) == refused + 1


def test_an_email_notification_reaches_the_smtp_server(
    config: Config, fleet: Fleet, tmp_path: Path
) -> None:
    with smtp_server() as (server, port):
        env = fleetd_env(config) | {
            "FLEETD_CONFIG": str(rules_file(tmp_path, email="ops@example.com")),
            "FLEETD_EMAIL_MODE": "smtp",
            "FLEETD_EMAIL_HOST": "127.0.0.1",
            "FLEETD_EMAIL_PORT": str(port),
            "FLEETD_EMAIL_SECURITY": "none",
            "FLEETD_EMAIL_FROM": "noreply@fleet.example.com",
        }
        fleet.start(env, "--roles", "worker")
        job_id = fail_job(env, "billing")
        wait_for(lambda: server.messages, 20, "the notification e-mail", fleet.tails)
        time.sleep(1)
        [(_, rcpts, msg)] = server.messages
    assert rcpts == ["ops@example.com"]
    [entry] = [e for e in audit(config) if e["door"] == "notify"]
    assert (entry["action"], entry["subject"]) == ("job.enqueue", "notify:billing-failures")
    assert entry["outcome"] == "ok" and entry["target"]
    assert msg["Subject"].startswith("[fleetd] job.failed: job " + job_id)
    text = msg.get_body()
    assert text is not None and f"job id: {job_id}" in text.get_content()


def test_redis_and_spool_transitions_are_sent_while_redis_is_down(
    config: Config, fleet: Fleet, tmp_path: Path, own_redis: Any
) -> None:
    redis = own_redis()
    path = tmp_path / "notify.toml"
    with webhook_receiver() as receiver:
        path.write_text(
            '[[notify]]\non = ["redis.lost", "redis.back", "spool.started", "spool.stopped"]\n'
            f'webhook_url = "{receiver.url}"\nwebhook_secret = "{SECRET}"\n'
        )
        env = fleetd_env(config) | {"FLEETD_CONFIG": str(path), "FLEETD_REDIS_URL": redis.url}
        fleet.start(env, "--roles", "worker")
        redis.stop()
        delivered(receiver, fleet)
        assert [r.event for r in receiver.delivered()] == ["redis.lost"]
        # The CLI spools into the daemon's state directory while Redis is away.
        spooled = run_cli(env, "enqueue", "noop", "--json")
        assert json.loads(spooled.stdout)["status"] == "spooled", spooled.stderr
        delivered(receiver, fleet, 2)
        redis.start()
        delivered(receiver, fleet, 4)
        time.sleep(0.5)
        events = [r.event for r in receiver.delivered()]
    assert events[:2] == ["redis.lost", "spool.started"], events
    assert sorted(events[2:]) == ["redis.back", "spool.stopped"], events
    assert all(r.signed and r.body["job"] is None for r in receiver.requests)
