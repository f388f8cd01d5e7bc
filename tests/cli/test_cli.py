"""The `fleetd` command line, run as a subprocess against the shared test Redis.

Output shapes (`--json` prints the admin API's bodies), exit codes (0 ok; 1 when
`enqueue --wait` sees the job end other than completed; 2 for any error), and bad input:
one line on stderr, no traceback, exit 2, nothing enqueued. A `fleetd run` daemon is
started only where a job must actually run.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import fleetd_env
from daemons import FLEETD, Fleet, FleetdProcess, cli_json, run_cli, settings, wait_for

from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.model import JobStatus

JOB_ID = re.compile(r"job_[0-9A-HJKMNP-TV-Z]{26}")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
STATS_KEYS = ["pending", "processing", "completed", "failed", "retrying", "cancelled", "total"]
EMPTY_STATS = dict.fromkeys(STATS_KEYS, 0)


@pytest.fixture
def env(config: Config) -> dict[str, str]:
    return fleetd_env(config)


@pytest.fixture
def daemon(env: dict[str, str], fleet: Fleet) -> FleetdProcess:
    """One worker daemon for this test's namespace, quick to stop."""
    return fleet.start(env | settings(worker_shutdown_timeout="1s", maintenance_interval="100ms"))


def stats(engine: Engine) -> dict[str, int]:
    return engine.link.run_sync(engine.ops.stats)


def status_of(engine: Engine, job_id: str) -> JobStatus | None:
    job = engine.link.run_sync(engine.ops.get, job_id)
    return None if job is None else job.status


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stderr}"
    return done.stdout


def usage_error(done: subprocess.CompletedProcess[str]) -> str:
    """Exit 2, nothing on stdout, exactly one line on stderr (no traceback): that line."""
    assert done.returncode == 2, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert done.stdout == ""
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("fleetd: "), lines[0]
    return lines[0]


def enqueue_id(env: dict[str, str], *args: str) -> str:
    body = cli_json(env, "enqueue", "noop", *args, "--json")
    job_id: str = body["job_id"]
    return job_id


def show(env: dict[str, str], job_id: str) -> dict[str, object]:
    body = cli_json(env, "jobs", "show", job_id, "--json")
    # `waiting` only on a ready pending job held back; these tests run no worker.
    assert set(body) - {"waiting"} == {"job", "status"}
    if "waiting" in body:
        assert body["status"] == "pending"
        assert (
            body["waiting"]
            == f"no running daemon has a handler for job type {body['job']['type']!r}"
        )
    assert body["status"] == body["job"]["status"]
    job: dict[str, object] = body["job"]
    return job


# -- enqueue ---------------------------------------------------------------------------


def test_enqueue_prints_the_id_or_the_spec_enqueue_response(
    env: dict[str, str], engine: Engine
) -> None:
    human = ok(run_cli(env, "enqueue", "noop"))
    assert re.fullmatch(rf"{JOB_ID.pattern} pending\n", human), human

    args = ["--data", '{"a": 1}', "--priority", "high", "--max-retries", "2", "--timeout", "30s"]
    args += ["--company", "c1", "--user", "u1", "--tag", "x", "--tag", "y"]
    body = cli_json(env, "enqueue", "noop", *args, "--json")
    assert set(body) == {"job_id", "status", "enqueued"}
    assert JOB_ID.fullmatch(body["job_id"])
    assert body["status"] == "pending"
    assert TIMESTAMP.fullmatch(body["enqueued"])

    job = show(env, body["job_id"])
    expected = {
        "id": body["job_id"], "type": "noop", "data": {"a": 1}, "priority": 10,
        "status": "pending", "created_at": body["enqueued"], "max_retries": 2, "timeout": 30.0,
        "company_id": "c1", "user_id": "u1", "tags": ["x", "y"], "retry_count": 0,
        "attempts": 0,
    }  # fmt: skip
    assert {k: job.get(k) for k in expected} == expected
    assert stats(engine)["pending"] == 2


def test_enqueue_jsonl_from_a_file_and_from_stdin(
    env: dict[str, str], engine: Engine, tmp_path: Path
) -> None:
    lines = [
        {"type": "noop", "data": {"n": 1}},
        {"type": "noop", "data": {"n": 2}, "priority": "critical"},
        {"type": "noop", "idempotency_key": "once"},
    ]
    path = tmp_path / "jobs.jsonl"
    path.write_text(
        "\n".join(json.dumps(line) for line in lines[:2]) + "\n\n" + json.dumps(lines[2])
    )
    body = cli_json(env, "enqueue", "--jsonl", str(path), "--json")
    assert set(body) == {"jobs", "count"}
    assert body["count"] == 3
    for item in body["jobs"]:
        assert set(item) == {"job_id", "status", "enqueued"}
        assert item["status"] == "pending"
    assert len({item["job_id"] for item in body["jobs"]}) == 3
    assert show(env, body["jobs"][1]["job_id"])["priority"] == 20

    stdin = json.dumps({"type": "noop"}) + "\n" + json.dumps(lines[2]) + "\n"
    human = ok(run_cli(env, "enqueue", "--jsonl", "-", stdin=stdin))
    assert human == "enqueued 1 job(s), 1 duplicate(s)\n"
    assert stats(engine)["pending"] == 4


def test_idempotency_key_twice_gives_the_same_job(env: dict[str, str], engine: Engine) -> None:
    first = cli_json(env, "enqueue", "noop", "--idempotency-key", "k1", "--json")
    second = cli_json(env, "enqueue", "noop", "--idempotency-key", "k1", "--json")
    assert second["job_id"] == first["job_id"]
    assert second.get("duplicate") is True
    assert "duplicate" not in first
    human = ok(run_cli(env, "enqueue", "noop", "--idempotency-key", "k1"))
    assert human == f"{first['job_id']} pending (duplicate: existing job)\n"
    assert stats(engine)["total"] == 1


def test_run_at_in_the_future_keeps_the_job_pending_with_its_time(
    env: dict[str, str], engine: Engine
) -> None:
    job_id = enqueue_id(env, "--run-at", "2030-01-02T03:04:05+02:00")
    job = show(env, job_id)
    assert job["status"] == "pending"
    assert job["run_at"] == "2030-01-02T01:04:05.000Z"
    assert stats(engine)["pending"] == 1


# -- jobs list / show / cancel / reset ---------------------------------------------------


def test_jobs_list_json_shape_newest_first_with_a_cursor(env: dict[str, str]) -> None:
    ids = [enqueue_id(env) for _ in range(3)]  # separate commands: distinct created_at
    body = cli_json(env, "jobs", "list", "--status", "pending", "--json")
    assert set(body) == {"jobs", "status", "count", "limit", "next_cursor"}
    assert (body["status"], body["count"], body["limit"], body["next_cursor"]) == (
        "pending", 3, 50, None,
    )  # fmt: skip
    assert [j["id"] for j in body["jobs"]] == ids[::-1]
    assert all(j["status"] == "pending" for j in body["jobs"])

    page1 = cli_json(env, "jobs", "list", "--status", "pending", "--limit", "2", "--json")
    assert [j["id"] for j in page1["jobs"]] == ids[:0:-1]
    assert page1["next_cursor"]
    page2 = cli_json(
        env, "jobs", "list", "--status", "pending", "--limit", "2",
        "--cursor", page1["next_cursor"], "--json",
    )  # fmt: skip
    assert ([j["id"] for j in page2["jobs"]], page2["next_cursor"]) == ([ids[0]], None)

    empty = cli_json(env, "jobs", "list", "--status", "completed", "--json")
    assert (empty["jobs"], empty["count"]) == ([], 0)
    human = ok(run_cli(env, "jobs", "list", "--status", "pending"))
    assert human.splitlines()[-1] == "3 job(s)"


def test_jobs_list_by_user(env: dict[str, str]) -> None:
    alice = enqueue_id(env, "--user", "alice")
    bob = enqueue_id(env, "--user", "bob")
    body = cli_json(env, "jobs", "list", "--user", "alice", "--json")
    assert [j["id"] for j in body["jobs"]] == [alice]
    by_status = cli_json(env, "jobs", "list", "--status", "pending", "--user", "bob", "--json")
    assert [j["id"] for j in by_status["jobs"]] == [bob]
    assert cli_json(env, "jobs", "list", "--user", "carol", "--json")["jobs"] == []


def test_jobs_show_cancel_and_reset_a_waiting_job(env: dict[str, str], engine: Engine) -> None:
    job_id = enqueue_id(env)
    human = ok(run_cli(env, "jobs", "show", job_id))
    assert human.splitlines()[0] == f"{job_id}  noop  pending  priority 5"

    cancelled = cli_json(env, "jobs", "cancel", job_id, "--json")
    assert cancelled == {"job_id": job_id, "status": "cancelled", "cancelled": True}
    assert show(env, job_id)["status"] == "cancelled"
    assert "already cancelled" in usage_error(run_cli(env, "jobs", "cancel", job_id))

    reset = cli_json(env, "jobs", "reset", job_id, "--json")
    assert reset == {"job_id": job_id, "status": "pending", "reset": True}
    assert show(env, job_id)["status"] == "pending"
    assert "pending" in usage_error(run_cli(env, "jobs", "reset", job_id))

    assert job_id in usage_error(run_cli(env, "jobs", "show", job_id + "X"))
    assert stats(engine) | {"total": 0} == EMPTY_STATS | {"pending": 1}


def test_stats_json_is_exactly_the_spec_body(env: dict[str, str]) -> None:
    assert cli_json(env, "stats", "--json") == {"stats": EMPTY_STATS}
    enqueue_id(env)
    body = cli_json(env, "stats", "--json")
    assert list(body) == ["stats"]
    assert list(body["stats"]) == STATS_KEYS
    assert body["stats"] == EMPTY_STATS | {"pending": 1, "total": 1}
    human = ok(run_cli(env, "stats"))
    assert human.split() == [w for k in STATS_KEYS for w in (k, str(body["stats"][k]))]


# -- with a daemon: jobs that run ----------------------------------------------------------


def test_wait_exit_codes_run_at_and_cleanup(
    env: dict[str, str], engine: Engine, daemon: FleetdProcess
) -> None:
    done = run_cli(env, "enqueue", "noop", "--data", '{"x": 1}', "--wait", "--json")
    body = json.loads(ok(done))
    assert set(body) == {"job", "status"}
    assert body["status"] == "completed"
    result = body["job"]["result"]
    # The handler's result, then the spec's facts of the run (processing_time, worker_id).
    assert result.pop("processing_time").endswith("s")
    assert result == {"echo": {"x": 1}, "worker_id": body["job"]["worker"]}

    failing = ["--data", '{"fail_attempts": 1}', "--max-retries", "0", "--wait", "--json"]
    failed = run_cli(env, "enqueue", "noop", *failing)
    assert failed.returncode == 1, failed.stderr
    body = json.loads(failed.stdout)
    assert body["status"] == "failed"
    assert "failing attempt 1" in body["job"]["error"]

    run_at = datetime.now(UTC) + timedelta(seconds=1.5)
    at = run_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    late = json.loads(ok(run_cli(env, "enqueue", "noop", "--run-at", at, "--wait", "--json")))
    assert late["status"] == "completed"
    assert late["job"]["started_at"] >= at

    time.sleep(0.01)  # cleanup takes jobs finished strictly before now - older_than
    cleaned = cli_json(env, "cleanup", "--older-than", "0s", "--json")
    assert cleaned == {
        "deleted": 3,
        "older_than": "0s",
        "by_status": {"cancelled": 0, "completed": 2, "failed": 1},
        "workflows": 0,
    }
    assert cli_json(env, "stats", "--json") == {"stats": EMPTY_STATS}
    daemon.assert_alive()


def test_cancel_a_running_job_and_reset_a_failed_one(
    env: dict[str, str], engine: Engine, daemon: FleetdProcess
) -> None:
    job_id = enqueue_id(env, "--data", '{"sleep_ms": 60000}')
    wait_for(
        lambda: status_of(engine, job_id) is JobStatus.PROCESSING,
        10,
        "the job to start",
        daemon.tail,
    )
    started = time.monotonic()
    body = cli_json(env, "jobs", "cancel", job_id, "--json")
    assert time.monotonic() - started < 5, daemon.tail()
    assert body == {
        "job_id": job_id, "status": "cancelled", "cancelled": True, "cancel_requested": True,
    }  # fmt: skip
    assert show(env, job_id)["status"] == "cancelled"

    failing = ["--data", '{"fail_attempts": 1}', "--max-retries", "0", "--wait", "--json"]
    failed = json.loads(run_cli(env, "enqueue", "noop", *failing).stdout)
    assert failed["status"] == "failed"
    failed_id = failed["job"]["id"]
    reset = cli_json(env, "jobs", "reset", failed_id, "--json")
    assert reset == {"job_id": failed_id, "status": "pending", "reset": True}

    def completed() -> bool:
        return status_of(engine, failed_id) is JobStatus.COMPLETED

    wait_for(completed, 10, "the reset job to run again", daemon.tail)  # attempt 2 passes
    assert stats(engine) | {"total": 0} == EMPTY_STATS | {"completed": 1, "cancelled": 1}
    daemon.assert_alive()


# -- config ------------------------------------------------------------------------------


def test_config_show_prints_toml_that_loads_back(env: dict[str, str], tmp_path: Path) -> None:
    overridden = env | settings(worker_concurrency=7, worker_lease="90s")
    text = ok(run_cli(overridden, "config", "show"))
    shown = tomllib.loads(text)
    assert shown["worker"]["concurrency"] == 7
    assert shown["worker"]["lease"] == "1m30s"
    assert shown["redis"]["url"] == env["FLEETD_REDIS_URL"]

    path = tmp_path / "shown.toml"
    path.write_text(text)
    bare = {k: v for k, v in env.items() if not k.startswith("FLEETD_")}
    assert ok(run_cli(bare, "-c", str(path), "config", "check")) == (f"configuration OK ({path})\n")
    assert ok(run_cli(bare, "-c", str(path), "config", "show")) == text


def test_config_check_accepts_the_test_config(env: dict[str, str]) -> None:
    assert ok(run_cli(env, "config", "check")) == f"configuration OK ({env['FLEETD_CONFIG']})\n"


# -- bad input -----------------------------------------------------------------------------


BAD_ENQUEUE = [
    (["nosuchtype"], "unknown job type 'nosuchtype'"),
    (["noop", "--data", "[1]"], "--data must be a JSON object"),
    (["noop", "--data", "not json"], "--data is not valid JSON"),
    (["noop", "--priority", "0"], "priority"),
    (["noop", "--priority", "99"], "priority"),
    (["noop", "--priority", "urgent"], "priority"),
    (["noop", "--max-retries", "-1"], "max_retries"),
    (["noop", "--run-at", "2030-01-01T09:00:00"], "run_at"),
    (["noop", "--timeout", "five"], "timeout"),
    (["noop", "--data", '{"sleep_ms": -1}'], "data.sleep_ms"),
    (["noop", "--wait", "--jsonl", "-"], "--jsonl"),
]


@pytest.mark.parametrize(
    ("args", "says"), BAD_ENQUEUE, ids=[" ".join(args) for args, _ in BAD_ENQUEUE]
)
def test_bad_enqueue_is_one_line_exit_2_and_enqueues_nothing(
    env: dict[str, str], engine: Engine, args: list[str], says: str
) -> None:
    error = usage_error(run_cli(env, "enqueue", *args, stdin=""))
    assert says in error
    assert stats(engine) == EMPTY_STATS


ARGPARSE_ERRORS = [
    (["nosuchcommand"], "fleetd: error: argument COMMAND: invalid choice: 'nosuchcommand'"),
    (["jobs", "list", "--status", "bogus"], "fleetd jobs list: error: argument --status"),
    (["jobs", "list", "--limit", "x"], "fleetd jobs list: error: argument --limit"),
    (["stats", "--no-such-flag"], "fleetd: error: unrecognized arguments: --no-such-flag"),
    (["schedules"], "fleetd schedules: error: the following arguments are required"),
]


@pytest.mark.parametrize(
    ("args", "says"), ARGPARSE_ERRORS, ids=[" ".join(args) for args, _ in ARGPARSE_ERRORS]
)
def test_a_usage_error_of_the_parser_is_one_line_exit_2(
    env: dict[str, str], args: list[str], says: str
) -> None:
    """argparse's own errors too: one line naming the command and pointing at its
    --help, not the usage block followed by the error."""
    done = run_cli(env, *args)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(says), done.stderr
    assert "--help)" in done.stderr


def test_bad_jsonl_line_enqueues_none_of_the_file(
    env: dict[str, str], engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_text('{"type": "noop"}\n{"type": "noop", "priority": 0}\n')
    assert "jobs[1].priority" in usage_error(run_cli(env, "enqueue", "--jsonl", str(path)))
    path.write_text('{"type": "noop"}\n[1]\n')
    assert f"{path}:2" in usage_error(run_cli(env, "enqueue", "--jsonl", str(path)))
    assert stats(engine) == EMPTY_STATS


def test_malformed_duration_in_the_config_file(
    env: dict[str, str], engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[worker]\njob_timeout = "five"\n')
    error = usage_error(run_cli(env, "-c", str(path), "enqueue", "noop"))
    assert "worker.job_timeout" in error
    assert "five" in error
    assert stats(engine) == EMPTY_STATS


@pytest.mark.parametrize("command", [["config", "check"], ["enqueue", "noop"], ["run"]])
def test_every_bad_config_key_is_reported_at_once(
    env: dict[str, str], engine: Engine, tmp_path: Path, command: list[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[worker]\njob_timeout = "five"\nlease = "10"\n\n[maintenance]\ninterval = "soon"\n'
    )
    done = run_cli(env, "-c", str(path), *command)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 3, done.stderr
    for key, line in zip(
        ["maintenance.interval", "worker.job_timeout", "worker.lease"], sorted(lines), strict=True
    ):
        assert line.startswith(f"fleetd: config: {key}: "), lines
    assert stats(engine) == EMPTY_STATS


def test_unknown_config_key_or_variable(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "typo.toml"
    path.write_text("[worker]\nconcurency = 5\n")
    error = usage_error(run_cli(env, "-c", str(path), "config", "check"))
    assert "unknown key 'worker.concurency'" in error
    assert "worker.concurrency" in error  # the suggestion

    error = usage_error(run_cli(env | {"FLEETD_WORKER_CONCURENCY": "5"}, "config", "check"))
    assert "FLEETD_WORKER_CONCURENCY" in error


def test_output_cut_short_by_its_reader_is_not_an_error(
    env: dict[str, str], engine: Engine
) -> None:
    engine.link.run_sync(
        engine.ops.enqueue_rows,
        engine.ops.prepare_many([{"type": "noop", "data": {"pad": "x" * 500}}] * 400),
    )
    proc = subprocess.Popen(
        [*FLEETD, "jobs", "list", "--status", "pending", "--limit", "500", "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(10) == b'{\n  "jobs"'
    proc.stdout.close()  # like `| head -c 10`
    with proc.stderr:
        assert proc.wait(timeout=30) == 0
        assert proc.stderr.read() == b""
