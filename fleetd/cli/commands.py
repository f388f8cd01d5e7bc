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
lazy (its names load on first use); the parser holds the one command the arguments
name (`_command_of`; every command for `--help` or an unknown name, none for
`--version`), so only that command's module is imported; the command modules import
their heavy libraries inside the functions that use them; this module imports the
config and the Engine only once the arguments parsed; the commands that run no plugin
code load the config without asking the plugins for their sections unless it names
one (fleetd.config.loader, `lazy_plugins`), and discover no handlers; the garbage
collector waits until start-up is over (`_start_up`). bench/cli_startup.py measures
`--help`, `--version`, `stats` and `workers`; tests/cli/test_cli_startup.py pins what
the light commands import.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from fleetd.cli.common import EXIT_USAGE, CliError, fail, one_line
from fleetd.version import __version__

if TYPE_CHECKING:
    from fleetd.config import Config
    from fleetd.engine import Engine

__all__ = ["main"]

# Each command module, the function adding its parsers, and the commands it adds, in
# `--help`'s order (tests/cli/test_cli_startup.py pins the names to the parsers).
_PARSERS = (
    ("fleetd.cli.run", "add_parser", ("run",)),
    ("fleetd.cli.jobs", "add_parsers", ("enqueue", "jobs", "stats", "workers", "cleanup")),
    ("fleetd.cli.analytics", "add_parser", ("analytics", "capacity")),
    ("fleetd.cli.schedules", "add_parser", ("schedules",)),
    ("fleetd.cli.queues", "add_parser", ("queues",)),
    ("fleetd.cli.workflows", "add_parser", ("workflow",)),
    ("fleetd.cli.templates", "add_parser", ("template",)),
    ("fleetd.cli.spool", "add_parser", ("spool",)),
    ("fleetd.cli.quarantine", "add_parser", ("quarantine",)),
    ("fleetd.cli.events", "add_parser", ("events",)),
    ("fleetd_plugins.fleetdata.demo_cli", "add_parser", ("demo-data", "data")),
    ("fleetd.cli.admin", "add_parsers", ("config", "plugins", "token", "keygen")),
)
_MODULES = {name: module for module, _, names in _PARSERS for name in names}
COMMAND_NAMES = frozenset(_MODULES)
# The commands that take an Engine (a Redis link and the queue operations).
_JOB_COMMANDS = ("enqueue", "jobs", "stats", "workers", "cleanup")
_ENGINE_COMMANDS = {
    *_JOB_COMMANDS, "schedules", "queues", "workflow", "template", "spool", "quarantine",
    "analytics", "capacity",
}  # fmt: skip
# Those of them that check job data against the handlers (enqueue, a schedule's job):
# only they discover the plugins' handlers, ~45 ms the others (stats, jobs list …,
# cleanup) do without: they read and change jobs, never validate one.
_HANDLER_COMMANDS = {"enqueue", "schedules", "workflow", "template"}
# ...but their actions that only read (list, show, stats) check no job: (the parser's
# dest of the action, those actions).
_READ_ACTIONS = {
    "schedules": ("schedules_command", {"list", "show", "stats"}),
    "template": ("action", {"list", "show"}),
    "workflow": ("action", {"show"}),
}
# The commands that run no plugin code, so need no plugin's config section unless the
# config names one (fleetd.config.loader, `lazy_plugins`): the Engine's commands but
# the handlers', and those that talk to a daemon. `run`, `config`, `plugins` and the
# fleetdata plugin's `demo-data` and `data` load every plugin's section.
_NO_PLUGIN_CODE = (_ENGINE_COMMANDS - _HANDLER_COMMANDS) | {"events", "token", "keygen"}


def _runs_handlers(a: argparse.Namespace) -> bool:
    """Whether the command parsed into `a` checks job data against the handlers."""
    dest, reads = _READ_ACTIONS.get(a.command, ("", set()))
    return a.command in _HANDLER_COMMANDS and getattr(a, dest, None) not in reads


def _command_of(argv: Sequence[str]) -> str | None:
    """The command `argv` names when only `-c/--config` comes before it, else None
    (then the parser holds every command: `--help`, a misspelt name, an abbreviated
    option all parse and fail as they always did). A leading `--version` needs no
    command: argparse prints it and exits before it reads the rest."""
    if argv[:1] == ["--version"]:
        return "--version"
    args = iter(argv)
    for arg in args:
        if arg in ("-c", "--config"):
            next(args, None)  # its value
        elif arg.startswith("-c") or arg.startswith("--config="):
            continue  # -cFILE, --config=FILE
        elif arg.startswith("-"):
            return None
        else:
            return arg if arg in COMMAND_NAMES else None
    return None


class _Parser(argparse.ArgumentParser):
    """argparse's parser whose usage errors are one line on stderr (exit 2), as every
    other CLI error is, instead of the usage block and then the error. Subcommand
    parsers are of the same class (add_subparsers' default)."""

    def error(self, message: str) -> NoReturn:
        line = one_line(f"{self.prog}: error: {message} (see {self.prog} --help)")
        self.exit(EXIT_USAGE, line + "\n")


# The arguments that name files: they may hold any bytes the file system allows. Every
# other argument is text, checked to be UTF-8 (`_check_utf8`).
_PATH_DESTS = frozenset({"config", "jsonl", "file", "output"})


def _labels(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each dest of `parser` and its subcommands' parsers -> how --help names it."""
    labels: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                labels |= _labels(sub)
        elif action.option_strings:
            labels.setdefault(action.dest, action.option_strings[-1])
        else:
            labels.setdefault(action.dest, str(action.metavar or action.dest).upper())
    return labels


def _check_utf8(parser: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """Each text argument of `a` as the UTF-8 it was typed in, or a usage error when it
    is not UTF-8. Python hands argv's bytes over decoded with the locale's encoding, any
    that do not decode as lone surrogates: no encoder (Redis, SQLite, JSON, an HTTP
    header) takes those, and a value holding one would be broken wherever it was
    stored. Under an ASCII locale (LC_ALL=C without UTF-8 mode) UTF-8 text arrives so
    too: its bytes are decoded here again."""
    labels: dict[str, str] | None = None  # read from the parser at most once
    for dest, value in vars(a).items():
        if dest in _PATH_DESTS:
            continue
        texts = value if isinstance(value, list) else [value]
        if not any(isinstance(t, str) and not t.isascii() for t in texts):
            continue
        labels = labels or _labels(parser)
        decoded = [_utf8(t, labels.get(dest, dest)) for t in texts]
        setattr(a, dest, decoded if isinstance(value, list) else decoded[0])


def _utf8(text: object, label: str) -> object:
    if not isinstance(text, str):
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return os.fsencode(text).decode("utf-8")
    except (UnicodeError, ValueError):
        fail(f"{label}: not valid UTF-8 text: {one_line(text)}")


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of `command`, or of every command (None); of none for `--version`."""
    p = _Parser(prog="fleetd", description="FleetTracker background-job daemon")
    p.add_argument("--version", action="version", version=f"fleetd {__version__}")
    p.add_argument(
        "-c",
        "--config",
        type=Path,
        help="config file (default: FLEETD_CONFIG, ./fleetd.toml, /etc/fleetd/fleetd.toml)",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module, adder, names in _PARSERS:
        if command is None or command in names:
            getattr(importlib.import_module(module), adder)(sub)
    return p


def _add_plugin_wheels(directory: str) -> None:
    """Each *.whl of [plugins] directory onto the import path, in name order: a wheel is
    a zip, so a pure-Python one imports as it is and importlib.metadata finds its entry
    points (what the one-file binary, which has no pip, uses for extra plugins)."""
    if directory:
        wheels = sorted(str(p) for p in Path(directory).expanduser().glob("*.whl"))
        sys.path[:0] = [w for w in wheels if w not in sys.path]


def _engine_command(command: str) -> Callable[[Engine, argparse.Namespace], int]:
    """The function running `command`, one of _ENGINE_COMMANDS: its module's `run`
    (the job commands' COMMANDS, analytics' `capacity`)."""
    module = importlib.import_module(_MODULES[command])
    if command in _JOB_COMMANDS:
        runner: Callable[[Engine, argparse.Namespace], int] = module.COMMANDS[command]
    else:
        runner = module.capacity if command == "capacity" else module.run
    return runner


def _config_command(cfg: Config, a: argparse.Namespace) -> int:
    """The commands that take the config, not an Engine: their module's function."""
    module = importlib.import_module(_MODULES[a.command])
    if a.command in ("demo-data", "data", "run", "events"):  # demo-data, data: the
        code: int = module.run(cfg, a)  # fleet database; events: the daemon's API
    elif a.command == "keygen":
        code = module.keygen(a)
    else:  # config, plugins, token
        code = getattr(module, a.command)(cfg, a)
    return code


@contextlib.contextmanager
def _start_up() -> Iterator[None]:
    """The cyclic garbage collector paused (if it ran): start-up (the imports, the
    parser, the config, the Engine) makes ~50,000 objects that all live as long as the
    command, so the collector, run every 700 new ones, walks them over and over and
    frees nothing: ~15 ms of `fleetd stats`'s ~200 ms CPU (bench/cli_startup.py)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _dispatch(argv: Sequence[str] | None) -> int:
    with _start_up():
        args = sys.argv[1:] if argv is None else argv
        parser = _parser(_command_of(args))
        a = parser.parse_args(args)
        _check_utf8(parser, a)
        # Start-up time: the config package and the Engine (redis-py) cost ~0.15 s that
        # `--help` and `--version` never need (bench/cli_startup.py). These imports
        # close no cycle (tests/test_architecture.py checks).
        from fleetd.config import load_config
        from fleetd.engine import Engine

        handlers = _runs_handlers(a)
        lazy = a.command in _NO_PLUGIN_CODE or (a.command in _HANDLER_COMMANDS and not handlers)
        cfg = load_config(a.config, lazy_plugins=lazy)
        _add_plugin_wheels(cfg.plugins.directory)
        if a.command in _ENGINE_COMMANDS:
            run = _engine_command(a.command)
            engine = Engine.build(cfg, daemon=False, handlers=handlers)
    if a.command not in _ENGINE_COMMANDS:
        return _config_command(cfg, a)
    try:
        return run(engine, a)
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


def _say(line: str) -> None:
    """One line on stderr: whatever of the user's input it echoes cannot break it in
    two or drive the terminal (fleetd.cli.common.one_line)."""
    print(one_line(line), file=sys.stderr)


def _tolerant_stdout() -> None:
    """Text stdout cannot encode (a job's data or name under LC_ALL=C, or with
    PYTHONIOENCODING=ascii) is written as backslash escapes instead of failing the
    command after it acted."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    _tolerant_stdout()
    try:
        return _dispatch(argv)
    except CliError as exc:
        _say(f"fleetd: {exc}")
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
            _say(line)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
