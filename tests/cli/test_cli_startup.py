"""What a `fleetd` command imports before its own work (#19: every command took
0.75-1.1 s), and `fleetd --version`.

`import fleetd` loads its public names on first use; the command modules import their
heavy libraries inside the commands that use them. Each test runs a fresh interpreter
and lists the modules a command left in sys.modules: a heavy library showing up there
again fails the test, naming it. bench/cli_startup.py measures the time itself.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import fleetd_env
from daemons import run_cli

import fleetd
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
# What `fleetd stats` needs none of (its goal: 0.25 s): trio (the
# Redis link makes its trio objects on first async use), the job model and pydantic,
# the handler contract, cryptography, and the plugins' handlers (their modules are
# loaded for their config sections only).
NOT_FOR_COUNTS = (*NOT_FOR_READS, "pydantic", "trio")
HEAVY_MODULES = (
    "fleetd.jobs.model", "fleetd.jobs.handlers", "fleetd.jobs.queue", "fleetd.audit.writer",
    "fleetd.plugins.discovery", "fleetd.api.bodies", "fleetd_plugins._email_handler",
    "fleetd_plugins._smtp", "fleetd_plugins.fleetdata.source",
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
    code, _out, modules = probe(fleetd_env(config), *args)
    assert code == 0
    assert sorted(modules & set(NOT_FOR_READS)) == []


def test_stats_imports_no_trio_no_model_no_handlers(config: Config) -> None:
    code, out, modules = probe(fleetd_env(config), "stats", full=True)
    assert code == 0 and out
    top = {m.split(".")[0] for m in modules}
    assert sorted(top & set(NOT_FOR_COUNTS)) == [], sorted(
        m for m in modules if m.split(".")[0] in NOT_FOR_COUNTS
    )[:20]
    assert sorted(modules & set(HEAVY_MODULES)) == []
    # --json prints the API's body: that one needs the declarations (pydantic).
    code, out, modules = probe(fleetd_env(config), "stats", "--json")
    assert code == 0 and json.loads(out) and "pydantic" in modules


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
