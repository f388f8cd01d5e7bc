"""What a `fleetd` command imports before its own work (#19: every command took
0.75-1.1 s; `fleetd stats` must answer in under 0.25 s), and `fleetd --version`.

`import fleetd` loads its public names on first use; the parser holds only the command
given, so only its module is imported; the command modules import their heavy
libraries inside the commands that use them; the commands that run no plugin code
load no plugin unless the config names a plugin's section. Each test runs a fresh
interpreter against a real redis-server and lists the modules a command left in
sys.modules: a heavy library showing up there again fails the test, naming it.
bench/cli_startup.py measures the time itself.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import fleetd_env
from daemons import Fleet, cli_json, run_cli, wait_for

import fleetd
from fleetd.cli import commands as cli_commands
from fleetd.cli import events as cli_events
from fleetd.cli import jobs as cli_jobs
from fleetd.config import ENV_TOKEN, Config
from fleetd.jobs.model import JobStatus

# Libraries only some commands need: the API server, tokens, schedules, schemas, the
# embedded store, the plugins' drivers, the events client.
NOT_FOR_READS = (
    "quart", "hypercorn", "jwt", "croniter", "fakeredis", "jsonschema", "email_validator",
    "trio_websocket", "psycopg", "openpyxl", "prometheus_client",
)  # fmt: skip
# ...and what `--help` and `--version` need none of.
NOT_FOR_HELP = (*NOT_FOR_READS, "pydantic", "redis", "trio", "cryptography", "pluggy")
# What `fleetd stats` and `fleetd workers` need none of (the goal: 0.25 s): trio (the
# Redis link makes its trio objects on first async use), the job model and pydantic,
# the handler contract, cryptography, the plugins (pluggy, and fleetd_plugins: a config
# without plugin sections loads none) and their handlers.
NOT_FOR_COUNTS = (*NOT_FOR_READS, "pydantic", "trio", "pluggy", "fleetd_plugins")
HEAVY_MODULES = (
    "fleetd.jobs.model", "fleetd.jobs.handlers", "fleetd.jobs.queue", "fleetd.audit.writer",
    "fleetd.plugins.discovery", "fleetd.plugins.hookspecs", "fleetd.api.bodies",
    "fleetd.runtime.heartbeat", "fleetd.cli.schedules", "fleetd.cli.events",
    "fleetd_plugins._email_handler", "fleetd_plugins._smtp", "fleetd_plugins.fleetdata.source",
    "fleetd_plugins.fleetdata.cleanup", "fleetd_plugins.fleetdata.reports",
    "cryptography.hazmat",  # redis-py imports the package, sealing its ciphers
)  # fmt: skip

_PROBE = """
import contextlib, io, json, sys
from fleetd.cli.commands import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
print(json.dumps({"code": code, "out": out.getvalue(), "modules": sorted(sys.modules)}))
"""


def probe(env: dict[str, str], *args: str, full: bool = False) -> tuple[int, str, set[str]]:
    """(exit code, stdout, top-level packages imported) of `fleetd ARGS` in a fresh
    interpreter; with `full`, every module's dotted name."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout.splitlines()[-1])
    modules = set(body["modules"]) if full else {m.split(".")[0] for m in body["modules"]}
    return body["code"], body["out"], modules


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_help_and_version_import_no_heavy_library(config: Config, flag: str) -> None:
    code, out, modules = probe(fleetd_env(config), flag)
    assert code == 0 and out
    assert sorted(modules & set(NOT_FOR_HELP)) == []


@pytest.mark.parametrize("args", [["stats"], ["jobs", "list"], ["workers"]])
def test_read_commands_import_only_what_they_use(config: Config, args: list[str]) -> None:
    code, _out, modules = probe(fleetd_env(config), *args, full=True)
    assert code == 0
    top = {m.split(".")[0] for m in modules}
    # No command reading Redis needs trio, and only --json the API's declarations.
    assert sorted(top & {*NOT_FOR_READS, "trio"}) == []
    assert "fleetd.api.bodies" not in modules and "fleetd.runtime.heartbeat" not in modules


@pytest.mark.parametrize(
    "args",
    [["schedules", "list"], ["schedules", "stats"], ["template", "list"],
     ["workflow", "show", "wf-none"]],
)  # fmt: skip
def test_reading_schedules_templates_workflows_loads_no_handlers(
    config: Config, args: list[str]
) -> None:
    # Only their actions that check a job (add, update, run ...) discover the handlers.
    code, _out, modules = probe(fleetd_env(config), *args, full=True)
    assert code == (2 if args[0] == "workflow" else 0)  # no such workflow
    top = {m.split(".")[0] for m in modules}
    heavy = {*NOT_FOR_READS, "trio", "pluggy", "fleetd_plugins"} - {"croniter"}  # schedules'
    assert sorted(top & heavy) == []
    assert "fleetd.plugins.discovery" not in modules


def assert_light(modules: set[str]) -> None:
    """None of NOT_FOR_COUNTS' packages nor of HEAVY_MODULES among `modules`."""
    top = {m.split(".")[0] for m in modules}
    assert sorted(top & set(NOT_FOR_COUNTS)) == [], sorted(
        m for m in modules if m.split(".")[0] in NOT_FOR_COUNTS
    )[:20]
    assert sorted(modules & set(HEAVY_MODULES)) == []


def test_stats_imports_no_trio_no_model_no_plugins(config: Config) -> None:
    code, out, modules = probe(fleetd_env(config), "stats", full=True)
    assert code == 0 and out.startswith("pending ")
    assert_light(modules)
    # --json prints the API's body: that one needs the declarations (pydantic).
    code, out, modules = probe(fleetd_env(config), "stats", "--json")
    assert code == 0 and json.loads(out) and "pydantic" in modules


def test_workers_imports_no_trio_no_model_no_plugins(
    config: Config, fleet: Fleet, tmp_path: Path
) -> None:
    env = fleetd_env(config)
    code, out, modules = probe(env, "workers", full=True)
    assert (code, out) == (0, "0 live daemon(s); processed 0, succeeded 0, failed 0, retried 0\n")
    assert_light(modules)
    # With a live daemon: the same figures as the API's body (`--json`), summed without
    # trio or pydantic, and one line per daemon.
    fleet.start(env | {"FLEETD_DAEMON_STATE_DIR": str(tmp_path / "daemon-state")})
    body = wait_for(
        lambda: (b := cli_json(env, "workers", "--json"))["daemons"] and b, 10, "a heartbeat"
    )
    code, out, modules = probe(env, "workers", full=True)
    assert_light(modules)
    m, [d] = body["metrics"], body["daemons"]
    lines = out.splitlines()
    assert code == 0 and lines[0] == (
        f"1 live daemon(s); processed {m['jobs_processed']}, succeeded {m['jobs_succeeded']}, "
        f"failed {m['jobs_failed']}, retried {m['jobs_retried']}"
    )
    assert lines[1].startswith(f"  {d['daemon_id']}  {','.join(d['roles'])}  running 0/"), out
    assert " up " in lines[1] and len(lines) == 2


def test_a_plugin_section_in_the_config_is_still_checked(config: Config, tmp_path: Path) -> None:
    # `stats` asks the plugins for their sections only when the config names one; then
    # they are checked as ever, and an unknown section is still refused.
    env = fleetd_env(config)
    conf = tmp_path / "fleetd.toml"
    conf.write_text('[email]\nport = "not a port"\n')
    done = run_cli(env | {"FLEETD_CONFIG": str(conf)}, "stats")
    assert done.returncode == 2 and "email.port" in done.stderr, done.stderr
    conf.write_text("[email]\nport = 2525\n")
    code, _out, modules = probe(env | {"FLEETD_CONFIG": str(conf)}, "stats")
    assert code == 0 and "pluggy" in modules and "fleetd_plugins" in modules
    conf.write_text("[redsi]\nurl = 'redis://localhost'\n")
    done = run_cli(env | {"FLEETD_CONFIG": str(conf)}, "stats")
    assert done.returncode == 2 and "unknown section 'redsi'" in done.stderr, done.stderr
    done = run_cli(env | {"FLEETD_EMAIL_PORT": "x"}, "stats")
    assert done.returncode == 2 and "FLEETD_EMAIL_PORT" in done.stderr, done.stderr


def test_the_parser_of_one_command_is_that_of_every_command() -> None:
    # _PARSERS names the commands each module adds: the parser of one command holds
    # exactly its module's, and all of them together are the full parser's.
    def choices(p: argparse.ArgumentParser) -> list[str]:
        [sub] = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        return list(sub.choices)

    assert choices(cli_commands._parser()) == [
        name for _, _, names in cli_commands._PARSERS for name in names
    ]
    for _, _, names in cli_commands._PARSERS:
        for name in names:
            assert choices(cli_commands._parser(name)) == list(names), name
    command_of = cli_commands._command_of
    assert command_of(["stats"]) == "stats"
    assert command_of(["-c", "x.toml", "jobs", "list"]) == "jobs"
    assert command_of(["--config=x.toml", "workers"]) == "workers"
    assert command_of(["-cx.toml", "stats", "--json"]) == "stats"
    assert command_of(["--config", "stats", "workers"]) == "workers"  # a file named stats
    # The full parser: help, version, an abbreviated or unknown option, a misspelt name.
    assert command_of(["--version", "stats"]) == "--version"  # the version, no command
    assert choices(cli_commands._parser("--version")) == []
    for argv in (["--help"], ["-h", "stats"], ["-c", "x", "--version"], ["--conf", "x", "stats"],
                 ["stat"], [], ["--", "stats"]):  # fmt: skip
        assert command_of(argv) is None, argv


def test_a_misspelt_command_lists_every_command(config: Config) -> None:
    done = run_cli(fleetd_env(config), "stat")
    assert done.returncode == 2 and "'stats'" in done.stderr and "'keygen'" in done.stderr


def test_version_prints_the_package_version(config: Config) -> None:
    done = run_cli(fleetd_env(config), "--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"fleetd {fleetd.__version__}\n", "")


def test_every_public_name_loads() -> None:
    # fleetd/__init__.py maps each name of __all__ to its module, loaded on first use.
    assert sorted(dir(fleetd)) == sorted(fleetd.__all__)
    for name in fleetd.__all__:
        assert getattr(fleetd, name) is not None, name
    with pytest.raises(AttributeError, match="no_such_name"):
        fleetd.no_such_name  # noqa: B018


def test_constants_spelled_out_for_the_parsers_match_their_sources() -> None:
    assert tuple(s.value for s in JobStatus) == cli_jobs.STATUSES
    assert cli_events.TOKEN_VARIABLE == ENV_TOKEN
