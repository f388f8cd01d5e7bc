"""Job log lines of a real `fleetd run`: one per start (debug) and per finish, with
duration and attempt, as JSON or journald text; never a secret nor the job's data.

The daemon runs as a subprocess against the test redis-server with an SMTP password in
its environment and a secret inside each job's data; the whole output is searched.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Mapping, Sequence
from typing import Any

from conftest import fleetd_env
from daemons import Fleet, FleetdProcess, settings, wait_for

from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.model import JobStatus

SMTP_PASSWORD = "smtp-Pa55-do-not-log"
DATA_SECRET = "card-4111-1111-do-not-log"


def enqueue(engine: Engine, requests: Sequence[Mapping[str, Any]]) -> list[str]:
    rows = engine.ops.prepare_many(requests)
    return [r.job_id for r in engine.link.run_sync(engine.ops.enqueue_rows, rows)]


def run_jobs(
    config: Config, engine: Engine, fleet: Fleet, journal: bool = False, **extra: object
) -> FleetdProcess:
    """Start a daemon, run one good, one retried and one failing job, stop it."""
    env = fleetd_env(config) | settings(
        **({"email_password": SMTP_PASSWORD, "daemon_log_level": "debug"} | extra)
    )
    if journal:  # what systemd sets when stderr goes to the journal
        env["JOURNAL_STREAM"] = "8:4242"
    d = fleet.start(env)
    ids = enqueue(
        engine,
        [
            {"type": "noop", "data": {"secret": DATA_SECRET}},
            {"type": "noop", "data": {"fail_attempts": 1, "secret": DATA_SECRET}},
            {"type": "noop", "data": {"fail_attempts": 9, "secret": DATA_SECRET}, "max_retries": 0},
        ],
    )
    done = engine.keys.status(JobStatus.COMPLETED), engine.keys.status(JobStatus.FAILED)

    def finished() -> bool:
        d.assert_alive()
        c = engine.link.client
        return sum(1 for i in ids if c.zscore(done[0], i) or c.zscore(done[1], i)) == len(ids)

    wait_for(finished, 15, "the three jobs to finish (one retry after 1 s)", d.tail)
    d.send(signal.SIGTERM)
    assert d.wait_exit(10) == 0
    d.ids = ids  # type: ignore[attr-defined]
    return d


def test_json_lines_per_start_and_finish(config: Config, engine: Engine, fleet: Fleet) -> None:
    d = run_jobs(config, engine, fleet, daemon_log_format="json")
    out = d.log()
    assert SMTP_PASSWORD not in out and DATA_SECRET not in out
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    jobs = [r for r in records if r.get("job_id") in d.ids]  # type: ignore[attr-defined]
    good, retried, failed = d.ids  # type: ignore[attr-defined]

    def lines(job_id: str) -> list[tuple[str, str | None, int]]:
        return [(r["level"], r.get("outcome"), r["attempt"]) for r in jobs if r["job_id"] == job_id]

    assert lines(good) == [("debug", None, 1), ("info", "completed", 1)]
    assert lines(retried) == [
        ("debug", None, 1),
        ("info", "failed, retrying", 1),
        ("debug", None, 2),
        ("info", "completed", 2),
    ]
    assert lines(failed) == [("debug", None, 1), ("warning", "failed", 1)]
    for r in jobs:
        assert r["job_type"] == "noop" and r["logger"] == "fleetd.worker"
        if r.get("outcome"):
            assert isinstance(r["duration_ms"], float) and r["duration_ms"] >= 0
    [fail_line] = [r for r in jobs if r.get("outcome") == "failed"]
    assert "failing attempt 1 of 9" in fail_line["msg"]


def test_text_lines_are_journald_friendly(config: Config, engine: Engine, fleet: Fleet) -> None:
    # As under systemd: no timestamp of our own (journald stamps each line).
    d = run_jobs(config, engine, fleet, journal=True)
    out = d.log()
    assert SMTP_PASSWORD not in out and DATA_SECRET not in out
    good, retried, _ = d.ids  # type: ignore[attr-defined]
    finish = [line for line in out.splitlines() if good in line and "completed" in line]
    assert len(finish) == 1 and finish[0].split()[:3] == ["INFO", "fleetd.worker:", "job"]
    assert " ms, attempt 1" in finish[0]
    lines = out.splitlines()
    assert any(f"job {retried} (noop) completed in" in ln and "attempt 2" in ln for ln in lines)
    assert any(f"DEBUG fleetd.worker: job {good} (noop) started, attempt 1" == ln for ln in lines)


def test_log_jobs_off_keeps_only_final_failures(
    config: Config, engine: Engine, fleet: Fleet
) -> None:
    d = run_jobs(config, engine, fleet, daemon_log_jobs="false", daemon_log_level="info")
    out = d.log()
    good, retried, failed = d.ids  # type: ignore[attr-defined]
    assert good not in out and retried not in out
    assert f"job {failed} (noop) failed after" in out
