"""`fleetd quarantine list|release` against the test Redis: the HTTP bodies with
`--json`, audited releases, one-line errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cli_runner import cli_runner

from fleetd.audit.reader import AuditReader
from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.parts import part_name
from fleetd.jobs.quarantine import Strikes, count_failures


@pytest.fixture
def cli(config: Config, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """cli(*args) → (exit code, stdout, stderr) of `fleetd quarantine <args>`."""
    return cli_runner(config, monkeypatch, capsys, "quarantine")


def test_list_and_release(cli: Any, engine: Engine) -> None:
    failures = [(f"j{i}", 1, "noop", "acme", "memory") for i in range(3)]
    engine.link.run_sync(lambda c: count_failures(c, engine.scripts, Strikes(3, 600_000), failures))
    code, out, _ = cli("list", "--json")
    body = json.loads(out)
    assert code == 0 and body["count"] == 1
    assert body["quarantines"][0]["kinds"] == {"memory": 3}
    code, out, _ = cli("list")
    assert code == 0 and out.startswith("noop  company acme  since ")
    code, out, _ = cli("release", "noop", "--company", "acme")
    assert code == 0 and "released noop of company acme" in out
    assert engine.link.client.hget(engine.keys.quarantines, part_name("noop", "acme")) is None
    code, out, _ = cli("list")
    assert out == "no job type quarantined\n"
    code, _, err = cli("release", "noop", "--company", "acme")
    assert code == 2 and err.count("\n") == 1 and "is not quarantined" in err
    code, _, err = cli("release")
    assert code == 2 and "needs the job TYPE" in err
    found, _ = engine.link.run_sync(lambda c: AuditReader(engine.keys).read(c, limit=100))
    brief = [(e["action"], e["door"], e["target"], e["outcome"]) for e in found]
    assert brief == [
        ("quarantine.release", "cli", "noop/acme", "not_found"),
        ("quarantine.release", "cli", "noop/acme", "ok"),
    ]
