"""Hostile and absurd input to the `fleetd` command line, run as a subprocess against the
shared test Redis: invalid UTF-8 in argv, control characters, JSON nested too deep or
holding a 5,000-digit number, files that are not UTF-8 or never end, stdout that cannot
encode a job's text, config files TOML cannot read, `redis.url`s the link cannot use.
Each is exactly one line on stderr and exit 2 (never a traceback), and stores nothing.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from api_client import SECRET
from conftest import fleetd_env
from daemons import CLI_TIMEOUT, FLEETD, Fleet, cli_json

from fleetd.config import Config
from fleetd.engine import Engine

Arg = str | bytes
DEEP = "[" * 50_000 + "]" * 50_000
HUGE_INT = '{"n": ' + "9" * 5000 + "}"


@pytest.fixture
def env(config: Config) -> dict[str, str]:
    return fleetd_env(config)


def run(
    env: Mapping[str, str], *args: Arg, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """`fleetd <args>`, whose arguments may be bytes that are not UTF-8."""
    return subprocess.run(
        [*FLEETD, *args],
        env=dict(env),
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )


def one_error(done: subprocess.CompletedProcess[bytes]) -> str:
    """Exit 2, nothing on stdout, one line on stderr without a control character: it."""
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 2, f"exit {done.returncode}\n{err}"
    assert "Traceback" not in err, err
    assert done.stdout == b""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fleetd"), lines[0]
    assert lines[0].isprintable(), repr(lines[0])  # no ESC, no stray \r, no surrogate
    return lines[0]


def total(engine: Engine) -> int:
    return engine.link.run_sync(engine.ops.stats)["total"]


# -- JSON and files --------------------------------------------------------------------


@pytest.mark.parametrize("text", [DEEP, HUGE_INT], ids=["deep", "huge-int"])
@pytest.mark.parametrize(
    "command",
    [
        ["enqueue", "noop", "--data"],
        ["template", "run", "nightly", "--params"],
        ["enqueue", "--jsonl", "-"],
        ["workflow", "run", "-"],
        ["template", "add", "-"],
        ["schedules", "add", "s", "--type", "noop", "--schedule", "1h", "--data"],
        ["schedules", "add", "s", "--template", "t", "--schedule", "1h", "--params"],
        ["schedules", "add", "s", "--template", "t", "--schedule", "1h", "--for-each"],
    ],
    ids=" ".join,
)
def test_json_nested_too_deep_or_with_a_huge_number(
    env: dict[str, str], engine: Engine, command: list[str], text: str
) -> None:
    if command[-1] == "-":
        error = one_error(run(env, *command, stdin=text.encode()))
    else:
        error = one_error(run(env, *command, text))
    assert "not valid JSON" in error or "is not JSON" in error
    assert total(engine) == 0


@pytest.mark.parametrize("version", ["9" * 5000, "\u00b2", "1.5", "-1"])
def test_a_schedule_template_version_that_is_no_number(
    env: dict[str, str], engine: Engine, version: str
) -> None:
    args = ["schedules", "add", "s", "--template", f"t@{version}", "--schedule", "1h"]
    assert "must be a number" in one_error(run(env, *args))


@pytest.mark.parametrize(
    "command", [["enqueue", "--jsonl"], ["workflow", "run"], ["template", "add"]]
)
def test_input_files_not_utf8_or_endless(
    env: dict[str, str], engine: Engine, tmp_path: Path, command: list[str]
) -> None:
    latin1 = tmp_path / "jobs.json"
    latin1.write_bytes('{"type": "noop", "data": {"name": "Müller"}}\n'.encode("latin-1"))
    assert "not UTF-8" in one_error(run(env, *command, str(latin1)))
    assert "not UTF-8" in one_error(run(env, *command, "-", stdin=b"\xff\xfe{}"))
    # Read up to the cap, never to the end of memory.
    assert "more than 256 MiB" in one_error(run(env, *command, "/dev/zero"))
    assert total(engine) == 0


# -- argv: bytes that are not UTF-8, control characters ----------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["spool", "drop", b"job_\xff"],  # was: UnicodeEncodeError from SQLite
        ["jobs", "show", b"job_\xff"],
        ["enqueue", "noop", "--company", b"\xff\xfe"],
        ["enqueue", b"no\xffop"],
        ["token", "--subject", b"\xff"],  # was: a token for a subject no API could match
        ["events", "--url", "http://127.0.0.1:1", "--token", b"\xff"],  # was: a traceback
    ],
    ids=lambda a: " ".join(map(str, a[:2])),
)
def test_an_argument_that_is_not_utf8_is_refused(
    env: dict[str, str], engine: Engine, args: list[Arg]
) -> None:
    error = one_error(run(env, *args))
    assert "not valid UTF-8 text" in error and "\\xff" in error
    assert total(engine) == 0


def test_utf8_arguments_under_an_ascii_locale_are_read_as_utf8(
    env: dict[str, str], engine: Engine
) -> None:
    """LC_ALL=C without UTF-8 mode decodes argv as ASCII: é arrives as two escaped
    bytes, which are UTF-8 and mean é."""
    cli_json(env, "enqueue", "noop", "--company", "café", "--json")
    ascii_env = env | {"LC_ALL": "POSIX", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    done = run(ascii_env, "jobs", "list", "--company", "café".encode(), "--json")
    assert done.returncode == 0, done.stderr
    assert [j["company_id"] for j in json.loads(done.stdout)["jobs"]] == ["café"]


@pytest.mark.parametrize(
    "args",
    [
        ["jobs", "show", "job_01\nfleetd: forged second line"],
        ["jobs", "cancel", "job_\x1b[2J\x1b[31mred"],
        ["jobs", "reset", "job_\r\x85\u2028x"],
        ["stats", "unexpected\nargument"],
        ["-c", "missing\n.toml", "stats"],
        ["events", "--url", "http://host\nname:8080"],
    ],
    ids=["newline", "escape", "cr-nel-ls", "argparse", "config-path", "events-url"],
)
def test_an_error_echoing_control_characters_stays_one_plain_line(
    env: dict[str, str], args: list[Arg]
) -> None:
    one_error(run(env, *args))


def test_job_text_stdout_cannot_encode_is_escaped_not_a_crash(
    env: dict[str, str], engine: Engine
) -> None:
    job_id = cli_json(env, "enqueue", "noop", "--company", "café☃", "--json")["job_id"]
    for variables in ({"PYTHONIOENCODING": "ascii"}, {"PYTHONIOENCODING": "latin-1"}):
        done = run(env | variables, "jobs", "show", job_id)
        assert done.returncode == 0, done.stderr
        assert b"company_id: caf" in done.stdout and b"\\u2603" in done.stdout
        assert run(env | variables, "analytics").returncode == 0  # prints "±"


def test_events_whose_reader_went_away_exits_0(env: dict[str, str], fleet: Fleet) -> None:
    """`fleetd events | head -1`: the broken pipe ends it (it took it for a dropped
    connection and reconnected forever, a "following" line each time)."""
    env = env | {"FLEETD_AUTH_SECRET": SECRET}
    fleet.start(env, "--roles", "api,worker")
    proc = subprocess.Popen(
        [*FLEETD, "events"], env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stderr is not None and proc.stdout is not None
        assert proc.stderr.readline().startswith(b"fleetd: events: following ws://")
        cli_json(env, "enqueue", "noop", "--json")
        assert proc.stdout.readline()
        proc.stdout.close()  # the reader goes away; the next events hit a closed pipe
        for _ in range(3):
            cli_json(env, "enqueue", "noop", "--json")
        assert proc.wait(timeout=CLI_TIMEOUT) == 0
        assert proc.stderr.read() == b""
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


# -- options --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["token", "--ttl", "0s"], "--ttl"),
        (["token", "--ttl", "99999999999999999999w"], "--ttl"),
        (["events", "--url", "http://[::1"], "--url"),
        (["events", "--url", "http://127.0.0.1:99999"], "--url"),
        (["run", "--listen-fds", "abc"], "--listen-fds"),
        (["run", "--supervisor", str(2**64)], "--supervisor"),
    ],
    ids=lambda x: " ".join(x) if isinstance(x, list) else x,
)
def test_absurd_option_values(
    env: dict[str, str], args: list[str], expected: str, tmp_path: Path
) -> None:
    env = env | {"FLEETD_AUTH_SECRET": "s" * 64}
    assert expected in one_error(run(env, *args))


# -- the config -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "toml",
    [
        "x = " + "[" * 5000 + "]" * 5000 + "\n",
        "x = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n",
        "[worker]\nconcurrency = " + "9" * 5000 + "\n",
    ],
    ids=["deep-array", "deep-table", "huge-int"],
)
@pytest.mark.parametrize("command", [["config", "check"], ["stats"]])
def test_a_config_file_toml_cannot_read(
    env: dict[str, str], tmp_path: Path, toml: str, command: list[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    assert "invalid TOML" in one_error(run(env, "-c", str(path), *command))


@pytest.mark.parametrize(
    "url",
    [
        "redis://[::1",
        "redis://127.0.0.1:99999/0",
        "redis://127.0.0.1:6379/zero",
        "redis://127.0.0.1:6379/0?socket_timeout=soon",
        "redis://127.0.0.1:6379/0?socket_timeout=-1",
        "redis://127.0.0.1:6379/0?no_such_option=1",
        "unix://",
        "redis+sentinel://127.0.0.1:abc/primary",
        "redis+sentinel://127.0.0.1:26379/",
        "redis+cluster://127.0.0.1:99999",
        "redis+cluster://127.0.0.1:7000/3",
        "redis://host name:6379/0",
    ],
)
@pytest.mark.parametrize("command", [["config", "check"], ["stats"], ["enqueue", "noop"]])
def test_a_redis_url_the_link_cannot_use_is_a_config_error(
    env: dict[str, str], url: str, command: Sequence[str]
) -> None:
    """They passed `config check`, then each command that built the link died with a
    traceback (enqueue, unreachable, would have spooled the job instead)."""
    error = one_error(run(env | {"FLEETD_REDIS_URL": url}, *command))
    assert error.startswith("fleetd: config: redis.url"), error


def test_a_redis_url_with_options_the_link_takes_passes(config: Config) -> None:
    url = f"{config.redis.url}?socket_timeout=5&max_connections=8&health_check_interval=0"
    done = run(fleetd_env(config) | {"FLEETD_REDIS_URL": url}, "stats", "--json")
    assert done.returncode == 0, done.stderr
    done = run(fleetd_env(config) | {"FLEETD_REDIS_URL": url}, "config", "check")
    assert done.returncode == 0, done.stderr


def test_the_password_of_a_bad_redis_url_is_not_printed(env: dict[str, str]) -> None:
    error = one_error(run(env | {"FLEETD_REDIS_URL": "redis://u:hunter2@[::1/0"}, "stats"))
    assert "hunter2" not in error and "u:***@" in error
