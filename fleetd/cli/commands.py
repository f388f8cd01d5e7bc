"""The `fleetd` command line: `main` (the console script), the argument parser, and the
dispatch from a command to the module that runs it.

Commands: `run` (fleetd.cli.run), the job commands `enqueue`, `jobs`, `stats`,
`workers`, `cleanup` (fleetd.cli.jobs), `schedules` (fleetd.cli.schedules), `events`
(fleetd.cli.events), the admin commands `config`, `plugins`, `token`, `keygen`
(fleetd.cli.admin) and `demo-data` (the fleetdata plugin). Every command but `run` is
synchronous. `--json` prints exactly the body of the matching HTTP endpoint. Errors are
one line on stderr and exit code 2; `enqueue --wait` exits 1 when the job ended other
than completed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from fleetd_plugins.fleetdata import demo_cli

from fleetd.backend.redis_link import RedisCommandError, RedisUnavailable
from fleetd.cli import admin as cli_admin
from fleetd.cli import events as cli_events
from fleetd.cli import jobs as cli_jobs
from fleetd.cli import run as cli_run
from fleetd.cli import schedules as cli_schedules
from fleetd.cli.common import EXIT_USAGE, CliError
from fleetd.config import ConfigError, load_config
from fleetd.engine import Engine, NoDaemonError
from fleetd.jobs.errors import DuplicateJobType
from fleetd.jobs.model import ValidationError
from fleetd.jobs.sealing import EncryptionUnavailable
from fleetd.plugins.discovery import PluginError

__all__ = ["main"]

# The commands that take an Engine (a Redis link and the queue operations).
_ENGINE_COMMANDS = {**cli_jobs.COMMANDS, "schedules": cli_schedules.run}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fleetd", description="FleetTracker background-job daemon")
    p.add_argument(
        "-c",
        "--config",
        type=Path,
        help="config file (default: FLEETD_CONFIG, ./fleetd.toml, /etc/fleetd/fleetd.toml)",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli_run.add_parser(sub)
    cli_jobs.add_parsers(sub)
    cli_schedules.add_parser(sub)
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
    cfg = load_config(a.config)
    _add_plugin_wheels(cfg.plugins.directory)
    if a.command == "config":
        return cli_admin.config(cfg, a)
    if a.command == "demo-data":  # the fleet database, not Redis
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
    engine = Engine.build(cfg, daemon=False)
    try:
        return _ENGINE_COMMANDS[a.command](engine, a)
    finally:
        engine.close()


def main(argv: Sequence[str] | None = None) -> int:
    # Start-up time only (the daemon's modules cost ~20 ms that no other command needs);
    # this import closes no cycle (tests/test_architecture.py checks).
    from fleetd.runtime.daemon import DaemonError

    try:
        return _dispatch(argv)
    except ConfigError as exc:
        for error in exc.errors:
            print(f"fleetd: config: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ValidationError as exc:
        print(f"fleetd: invalid job: {'; '.join(map(str, exc.errors))}", file=sys.stderr)
        return EXIT_USAGE
    except RedisUnavailable as exc:
        print(f"fleetd: Redis unreachable: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (
        CliError,
        NoDaemonError,
        DaemonError,
        DuplicateJobType,
        EncryptionUnavailable,
        PluginError,
        RedisCommandError,
    ) as exc:
        print(f"fleetd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`fleetd jobs list | head`): not an error of ours. Point
        # stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
