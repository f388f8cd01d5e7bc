"""`[[notify]]` rules: every error of every rule at once (as the other sections), and
the sans-IO matching, payload and outbox."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from fleetd.config import Config, ConfigError, dump_toml, load_config
from fleetd.config.notify_rules import NotifyRule
from fleetd.notify.match import Occurrence, email_data, matching, needs_tags, payload
from fleetd.notify.outbox import Delivery, Outbox
from fleetd.notify.service import RETRY_CAP, retry_delay
from fleetd.notify.webhook import encode, sign


def load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "fleetd.toml"
    path.write_text(text)
    return load_config(path, env={})


def test_every_error_of_every_rule_is_listed_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(
            tmp_path,
            """
[worker]
concurrency = 0

[[notify]]
on = ["job.failed", "job.exploded"]
webhook_url = "ftp://example.com/"

[[notify]]
name = "mail"
on = "redis.lost"
retries_at_least = 3
colour = "red"

[[notify]]
name = "mail"
on = "job.retried"
webhook_url = "https://example.com/hook"
webhook_secret = "short"
email_to = 5
""",
        )
    errors = caught.value.errors
    expected = [
        "worker.concurrency",
        "notify[0].on: unknown event 'job.exploded'",
        "notify[0].webhook_url: must be an http:// or https:// URL",
        "notify[1].colour: unknown key",
        "notify[1].retries_at_least: only applies to on = 'job.retried'",
        "notify[1]: needs webhook_url and/or email_to",
        "notify[2].name: 'mail' names another rule too",
        "notify[2].webhook_secret: required with webhook_url, at least 16 characters",
        "notify[2].email_to: must be a string or a list of non-empty strings",
    ]
    for text in expected:
        assert any(text in e for e in errors), (text, errors)
    assert len(errors) == len(expected), errors


def test_a_good_rule_is_loaded(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
[[notify]]
name = "payments"
on = ["job.failed", "job.retried"]
retries_at_least = 2
job_types = "noop"
companies = ["acme"]
tags = ["billing"]
webhook_url = "https://hooks.example.com/fleetd"
webhook_secret = "0123456789abcdef"
email_to = ["ops@example.com"]
""",
    )
    assert cfg.notify == (NotifyRule("payments", ("job.failed", "job.retried"), 2, ("noop",),
        ("acme",), ("billing",), "https://hooks.example.com/fleetd", "0123456789abcdef",
        ("ops@example.com",)),)  # fmt: skip


RULE = NotifyRule("r", ("job.failed", "job.retried"), 2, ("noop",), ("acme",), ("billing",),
                  "http://127.0.0.1/", "0123456789abcdef", ("ops@example.com",))  # fmt: skip


def occ(kind: str = "job.failed", **changes: Any) -> Occurrence:
    base = Occurrence("1-0", kind, 1, "d1", "job j1 failed", "j1", "noop", "acme", ("billing",))
    return dataclasses.replace(base, **changes)


def test_matching_by_kind_type_company_tag_and_retries() -> None:
    assert matching([RULE], occ()) == [RULE]
    assert matching([RULE], occ(job_type="other")) == []
    assert matching([RULE], occ(company_id="globex")) == []
    assert matching([RULE], occ(tags=("other",))) == []
    assert matching([RULE], occ("job.retried", retry_count=1)) == []
    assert matching([RULE], occ("job.retried", retry_count=2)) == [RULE]
    assert matching([RULE], occ("redis.lost", job_id=None, job_type=None, company_id=None)) == []
    assert needs_tags([RULE], occ(tags=())) and not needs_tags([RULE], occ(job_type="x"))


def test_payload_email_and_signature() -> None:
    body = payload(RULE, occ(data={"error": "boom"}))
    assert body["event"] == "job.failed" and body["job"]["error"] == "boom"
    assert body["job"]["tags"] == ["billing"] and body["rule"] == "r"
    mail = email_data(RULE, body)
    assert mail["to"] == ["ops@example.com"] and mail["subject"].startswith("[fleetd] job.failed")
    assert "job id: j1" in mail["body"]
    signature = sign("k" * 16, encode(body))
    assert signature.startswith("sha256=") and signature != sign("x" * 16, encode(body))


def test_retry_delay_doubles_up_to_the_cap() -> None:
    delays = [retry_delay(n) for n in range(1, 40)]
    assert delays[:3] == [0.5, 1.0, 2.0]
    assert max(delays) == RETRY_CAP and delays == sorted(delays)


def test_the_outbox_keeps_deliveries_and_its_instance_across_a_reopen(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    d = Delivery("1-0/r/webhook", "1-0", "r", "webhook", {"a": 1}, claimed=False)
    assert box.add([d, d]) == 1
    instance = box.instance
    box.close()
    box = Outbox(tmp_path / "o.db")
    assert box.instance == instance
    assert [x.id for x in box.unclaimed()] == [d.id] and box.due(1e12) == []
    box.mark_claimed("1-0", "r", True)
    [due] = box.due(1e12)
    assert due.body == {"a": 1}
    assert box.take(d.id, 1e12, 10) and not box.take(d.id, 1e12, 10)
    box.failed(d.id, "500", 0)
    assert box.due(1)[0].attempts == 1
    box.done(d.id)
    assert box.count() == 0
    box.add([Delivery("2-0/r/email", "2-0", "r", "email", {}, claimed=False)])
    box.mark_claimed("2-0", "r", False)  # another daemon won: dropped
    assert box.count() == 0


def test_rules_round_trip_through_the_dump_and_are_redacted_for_show(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
[[notify]]
on = ["job.failed", "redis.lost"]
webhook_url = "https://user:pw@hooks.example.com/x"
webhook_secret = "0123456789abcdef"

[[notify]]
name = "retries"
on = "job.retried"
retries_at_least = 4
email_to = "ops@example.com"
""",
    )
    text = dump_toml(cfg)
    assert load(tmp_path, text) == cfg
    shown = dump_toml(cfg, redact=True)
    assert "0123456789abcdef" not in shown and ":pw@" not in shown
    assert 'webhook_secret = "***"' in shown
