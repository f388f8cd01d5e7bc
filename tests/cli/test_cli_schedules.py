"""`fleetd schedules …` against the shared test Redis: each action's output, the HTTP
bodies `--json` prints, and bad input (one line on stderr, exit 2, nothing written).

Most commands run in-process through `fleetd.cli.main` (a subprocess costs ~0.4 s of
imports each); one test runs the real `fleetd` executable end to end.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from cli_runner import cli_runner
from conftest import fleetd_env
from daemons import cli_json, run_cli

from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.model import JobStatus, parse_ts
from fleetd.schedules.store import ScheduleOps

SCHEDULE_ID = re.compile(r"sch_[0-9A-HJKMNP-TV-Z]{26}")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture
def cli(config: Config, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """cli(*args) → (exit code, stdout, stderr) of `fleetd schedules <args>`."""
    return cli_runner(config, monkeypatch, capsys, "schedules")


def ok_json(cli: Any, *args: str) -> Any:
    code, out, err = cli(*args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_add_show_list_and_stats_print_the_http_bodies(cli: Any, engine: Engine) -> None:
    body = ok_json(
        cli, "add", "Nightly export", "--type", "noop", "--schedule", "0 2 * * *",
        "--timezone", "Europe/Berlin", "--data", '{"format": "csv"}', "--priority", "high",
        "--company", "acme", "--user", "u1", "--misfire", "skip",
    )  # fmt: skip
    job = body["scheduled_job"]
    assert list(body) == ["scheduled_job"] and SCHEDULE_ID.fullmatch(job["id"])
    assert job["name"] == "Nightly export" and job["schedule"] == "0 2 * * *"
    assert job["job_type"] == "noop" and job["data"] == {"format": "csv"}
    assert job["priority"] == 10 and job["is_active"] is True
    assert job["company_id"] == "acme" and job["user_id"] == "u1"
    assert job["timezone"] == "Europe/Berlin" and job["misfire_policy"] == "skip"
    assert "last_run" not in job and TIMESTAMP.fullmatch(job["next_run"])
    # 02:00 in Berlin is 00:00 or 01:00 UTC.
    assert job["next_run"][11:13] in ("00", "01")
    assert ok_json(cli, "show", job["id"]) == body
    assert ok_json(cli, "show", "Nightly export") == body  # by name
    listed = ok_json(cli, "list")
    assert listed == {"scheduled_jobs": [job], "count": 1, "limit": 500, "next_cursor": None}
    assert ok_json(cli, "list", "--company", "other")["scheduled_jobs"] == []
    stats = ok_json(cli, "stats")
    assert stats == {
        "scheduler_stats": {
            "total_scheduled_jobs": 1, "active_jobs": 1, "inactive_jobs": 0,
            "next_run": job["next_run"], "missed_executions": 0,
        }
    }  # fmt: skip
    code, out, _ = cli("list")
    assert code == 0 and job["id"] in out and "1 schedule(s)" in out


def test_update_pause_resume_run_now_and_rm(cli: Any, engine: Engine) -> None:
    job = ok_json(cli, "add", "tick", "--type", "noop", "--schedule", "1h")["scheduled_job"]
    updated = ok_json(cli, "update", "tick", "--schedule", "30m", "--name", "tock")
    assert updated["scheduled_job"]["schedule"] == "30m"
    assert updated["scheduled_job"]["name"] == "tock"
    paused = ok_json(cli, "pause", job["id"])["scheduled_job"]
    assert paused["is_active"] is False and paused["next_run"] is None
    ran = ok_json(cli, "run-now", "tock")
    assert list(ran) == ["job_id", "status", "enqueued", "schedule_id"]
    assert ran["status"] == "pending" and ran["schedule_id"] == job["id"]
    queued = engine.link.run_sync(engine.ops.get, ran["job_id"])
    assert queued is not None and queued.status is JobStatus.PENDING
    assert queued.tags == (f"schedule:{job['id']}", "run-now")
    resumed = ok_json(cli, "resume", job["id"])["scheduled_job"]
    assert resumed["is_active"] is True and resumed["runs"] == 1
    assert parse_ts(resumed["last_run"]) == parse_ts(ran["enqueued"])
    assert ok_json(cli, "rm", "tock") == {"id": job["id"], "deleted": True}
    assert ok_json(cli, "list")["count"] == 0


def test_add_upsert_with_an_id_is_idempotent(cli: Any, engine: Engine) -> None:
    args = ["add", "Nightly", "--id", "nightly", "--type", "noop", "--schedule", "@daily"]
    first = ok_json(cli, *args, "--upsert")["scheduled_job"]
    again = ok_json(cli, *args, "--upsert", "--data", '{"v": 2}')["scheduled_job"]
    assert first["id"] == again["id"] == "nightly" and again["data"] == {"v": 2}
    assert ok_json(cli, "list")["count"] == 1
    code, _, err = cli(*args)
    assert code == 2 and err == "fleetd: schedules: a schedule with id 'nightly' exists\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "x", "--type", "noop", "--schedule", "61 * * * *"],
         "invalid schedule: schedule: '61 * * * *': minute field '61': 61 is out of range 0-59"),
        (["add", "x", "--type", "noop", "--schedule", "@reboot"], "@reboot is not supported"),
        (["add", "x", "--type", "noop", "--schedule", "0s"], "shorter than 1s"),
        (["add", "x", "--type", "noop", "--schedule", "@daily", "--timezone", "Mars/Base"],
         "invalid schedule: timezone: unknown time zone 'Mars/Base'"),
        (["add", "x", "--type", "nosuch", "--schedule", "@daily"],
         "invalid schedule: job_type: unknown job type 'nosuch'"),
        (["add", "x", "--type", "noop", "--schedule", "@daily", "--data", "{"],
         "--data is not valid JSON"),
        (["add", "x", "--type", "noop", "--schedule", "@daily", "--data", "[1]"],
         "data: must be a JSON object"),
        (["add", "x", "--type", "noop", "--schedule", "@daily", "--upsert"],
         "--upsert needs --id"),
        (["show", "nope"], "no schedule with id or name 'nope'"),
        (["list", "--limit", "0"], "--limit must be from 1 to 500"),
        (["list", "--limit", "501"], "--limit must be from 1 to 500"),
        (["list", "--cursor", "garbage"], "--cursor 'garbage' is not the next cursor of a page"),
        (["list", "--cursor", "12.a b", "--json"], "is not the next cursor of a page"),
        (["rm", "nope"], "no schedule with id or name 'nope'"),
        (["update", "nope", "--name", "y"], "no schedule with id or name 'nope'"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    cli: Any, engine: Engine, args: list[str], message: str
) -> None:
    code, out, err = cli(*args)
    assert code == 2 and out == ""
    assert err.startswith("fleetd: schedules: ") and err.count("\n") == 1, err
    assert message in err
    assert engine.link.client.zcard(engine.keys.schedules_all) == 0


def test_list_reads_every_page_or_the_one_asked_for(cli: Any, engine: Engine) -> None:
    ops = ScheduleOps.from_engine(engine)
    body = {"job_type": "noop", "schedule": "1h"}
    for i in range(510):  # more than the largest page (500)
        engine.link.run_sync(lambda c, i=i: ops.add(c, {**body, "name": f"s{i}"}))
    every = ok_json(cli, "list")
    assert every["count"] == 510 and every["next_cursor"] is None
    ids = [s["id"] for s in every["scheduled_jobs"]]
    assert len(set(ids)) == 510
    code, out, _ = cli("list")
    assert code == 0 and out.splitlines()[-1] == "510 schedule(s)"
    assert [line.split()[0] for line in out.splitlines()[:-1]] == ids
    # One page with --limit, the next with --cursor: the HTTP listing's pages.
    first = ok_json(cli, "list", "--limit", "200")
    assert first["count"] == 200 and first["limit"] == 200 and first["next_cursor"]
    paged, cursor = [s["id"] for s in first["scheduled_jobs"]], first["next_cursor"]
    while cursor:
        nxt = ok_json(cli, "list", "--limit", "200", "--cursor", cursor)
        paged, cursor = paged + [s["id"] for s in nxt["scheduled_jobs"]], nxt["next_cursor"]
    assert paged == ids
    code, out, _ = cli("list", "--limit", "2")
    last = out.splitlines()[-1]
    assert code == 0 and last.startswith("2 schedule(s); next page: --cursor ")
    rest = ok_json(cli, "list", "--cursor", last.split()[-1])  # the default page: 50
    assert [s["id"] for s in rest["scheduled_jobs"]] == ids[2:52] and rest["limit"] == 50


def test_conflicts_and_empty_updates(cli: Any) -> None:
    ok_json(cli, "add", "Nightly", "--type", "noop", "--schedule", "@daily")
    code, _, err = cli("add", "Nightly", "--type", "noop", "--schedule", "@hourly")
    assert code == 2 and "is already named 'Nightly'; names are unique" in err
    code, _, err = cli("update", "Nightly")
    assert code == 2 and "nothing to change" in err
    ok_json(cli, "add", "Nightly", "--type", "noop", "--schedule", "@daily", "--company", "a")
    code, _, err = cli("show", "Nightly")
    assert code == 2 and "2 schedules are named 'Nightly'" in err


def test_the_fleetd_executable(config: Config, engine: Engine) -> None:
    env = fleetd_env(config)
    body = cli_json(env, "schedules", "add", "every ten", "--type", "noop", "--schedule", "10s",
                    "--json")  # fmt: skip
    job = body["scheduled_job"]
    now = ScheduleOps.now_ms(engine.link.client)
    assert 0 < parse_ts(job["next_run"]) - now <= 10_000
    assert cli_json(env, "schedules", "list", "--json")["scheduled_jobs"] == [job]
    done = run_cli(env, "schedules", "show", "missing")
    assert done.returncode == 2 and done.stderr.strip().startswith("fleetd: schedules: no ")
    done = run_cli(env, "schedules", "--help")
    assert done.returncode == 0
    for action in ("list", "add", "update", "rm", "pause", "resume", "run-now", "stats"):
        assert action in done.stdout
