"""The `fleetd` command line: `main` (the console script), the argument parser, and the
dispatch from a command to the module that runs it.

Commands: `run` (fleetd.cli.run), the job commands `enqueue`, `jobs`, `stats`,
`workers`, `cleanup` (fleetd.cli.jobs), `analytics`, `capacity` (fleetd.cli.analytics),
`schedules` (fleetd.cli.schedules), `workflow` (fleetd.cli.workflows), `template`
(fleetd.cli.templates), `spool` (fleetd.cli.spool), `quarantine`
(fleetd.cli.quarantine), `events` (fleetd.cli.events), the
admin commands `config`, `plugins`, `token`, `keygen` (fleetd.cli.admin), and
`demo-data` and `data companies` (the fleetdata plugin). Every command but `run` is
synchronous. `--json` prints exactly the body of the matching HTTP endpoint. Errors
are one line on stderr and exit code 2; `enqueue --wait` exits 1 when the job ended
other than completed. `--version` prints `fleetd <version>`.

Start-up time is the interpreter's plus what the command imports: `import fleetd` is
lazy (its names load on first use), the command modules import their heavy libraries
inside the functions that use them, and this module imports the config and the Engine
only once the arguments parsed. bench/cli_startup.py measures `--help`, `--version` and
`stats`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from fleetd_plugins.fleetdata import demo_cli

from fleetd.cli import admin as cli_admin
from fleetd.cli import analytics as cli_analytics
from fleetd.cli import events as cli_events
from fleetd.cli import jobs as cli_jobs
from fleetd.cli import quarantine as cli_quarantine
from fleetd.cli import queues as cli_queues
from fleetd.cli import run as cli_run
from fleetd.cli import schedules as cli_schedules
from fleetd.cli import spool as cli_spool
from fleetd.cli import templates as cli_templates
from fleetd.cli import workflows as cli_workflows
from fleetd.cli.common import EXIT_USAGE, CliError
from fleetd.version import __version__

__all__ = ["main"]

# The commands that take an Engine (a Redis link and the queue operations).
_ENGINE_COMMANDS = {
    **cli_jobs.COMMANDS,
    "schedules": cli_schedules.run,
    "queues": cli_queues.run,
    "workflow": cli_workflows.run,
    "template": cli_templates.run,
    "spool": cli_spool.run,
    "quarantine": cli_quarantine.run,
    "analytics": cli_analytics.run,
    "capacity": cli_analytics.capacity,
}
# Those of them that check job data against the handlers (enqueue, a schedule's job):
# only they discover the plugins' handlers, ~45 ms the others (stats, jobs list …,
# cleanup) do without: they read and change jobs, never validate one.
_HANDLER_COMMANDS = {"enqueue", "schedules", "workflow", "template"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fleetd", description="FleetTracker background-job daemon")
    p.add_argument("--version", action="version", version=f"fleetd {__version__}")
    p.add_argument(
        "-c",
        "--config",
        type=Path,
        help="config file (default: FLEETD_CONFIG, ./fleetd.toml, /etc/fleetd/fleetd.toml)",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli_run.add_parser(sub)
    cli_jobs.add_parsers(sub)
    cli_analytics.add_parser(sub)
    cli_schedules.add_parser(sub)
    cli_queues.add_parser(sub)
    cli_workflows.add_parser(sub)
    cli_templates.add_parser(sub)
    cli_spool.add_parser(sub)
    cli_quarantine.add_parser(sub)
    cli_events.add_parser(sub)
    demo_cli.add_parser(sub)
    cli_admin.add_parsers(sub)
    return p


def _add_plugin_wheels(directory: str) -> None:
    """Each *.whl of [plugins] directory onto the import path, in name order: a wheel is
    a zip, so a pure-Python one imports as it is and importlib.metadata finds its entry
    points (what the one-file binary, which has no pip, uses for extra plugins)."""
    if directory:
        wheels = sorted(str(p) for p in Path(directory).expanduser().glob("*.whl"))
        sys.path[:0] = [w for w in wheels if w not in sys.path]


def _dispatch(argv: Sequence[str] | None) -> int:
    a = _parser().parse_args(argv)
    # Start-up time: the config package and the Engine (redis-py, trio, the job model)
    # cost ~0.2 s that `--help` and `--version` never need (bench/cli_startup.py). These
    # imports close no cycle (tests/test_architecture.py checks).
    from fleetd.config import load_config
    from fleetd.engine import Engine

    cfg = load_config(a.config)
    _add_plugin_wheels(cfg.plugins.directory)
    if a.command == "config":
        return cli_admin.config(cfg, a)
    if a.command in ("demo-data", "data"):  # the fleet database, not Redis
        return demo_cli.run(cfg, a)
    if a.command == "run":
        return cli_run.run(cfg, a)
    if a.command == "plugins":
        return cli_admin.plugins(cfg, a)
    if a.command == "token":
        return cli_admin.token(cfg, a)
    if a.command == "events":  # the daemon's API, not Redis
        return cli_events.run(cfg, a)
    if a.command == "keygen":
        return cli_admin.keygen(a)
    engine = Engine.build(cfg, daemon=False, handlers=a.command in _HANDLER_COMMANDS)
    try:
        return _ENGINE_COMMANDS[a.command](engine, a)
    finally:
        engine.close()


def _error_lines(exc: Exception) -> list[str] | None:
    """What to print for a user-facing error, or None for a bug (re-raised).

    The error classes are imported here, on the error path only: importing them up
    front would load the daemon, the job model and redis-py (~0.25 s measured) for every
    command, `--help` included. These imports close no cycle
    (tests/test_architecture.py checks)."""
    from fleetd.backend.redis_link import RedisCommandError, RedisUnavailable
    from fleetd.config import ConfigError
    from fleetd.engine import NoDaemonError
    from fleetd.jobs.errors import DuplicateJobType, NotReplicated, QuotaExceeded
    from fleetd.jobs.model import ValidationError
    from fleetd.jobs.sealing import EncryptionUnavailable
    from fleetd.plugins.discovery import PluginError
    from fleetd.runtime.daemon import DaemonError

    if isinstance(exc, ConfigError):
        return [f"fleetd: config: {error}" for error in exc.errors]
    if isinstance(exc, ValidationError):
        return [f"fleetd: invalid job: {'; '.join(map(str, exc.errors))}"]
    if isinstance(exc, RedisUnavailable):
        return [f"fleetd: Redis unreachable: {exc}"]
    if isinstance(exc, QuotaExceeded):
        return [f"fleetd: refused: {exc} (retry after {exc.retry_after:.3g}s)"]
    if isinstance(
        exc,
        NoDaemonError
        | DaemonError
        | DuplicateJobType
        | EncryptionUnavailable
        | PluginError
        | RedisCommandError
        | NotReplicated,
    ):
        return [f"fleetd: {exc}"]
    return None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _dispatch(argv)
    except CliError as exc:
        print(f"fleetd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`fleetd jobs list | head`): not an error of ours. Point
        # stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        lines = _error_lines(exc)
        if lines is None:
            raise
        for line in lines:
            print(line, file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
