"""What every `fleetd` command shares: the user-facing error (one line on stderr, exit
2), JSON output as the HTTP API prints it, and duration flags."""

from __future__ import annotations

import json
from typing import Any, NoReturn

__all__ = ["EXIT_USAGE", "CliError", "duration", "fail", "print_json"]

EXIT_USAGE = 2


class CliError(Exception):
    """A user-facing error: printed as one line, exit 2."""


def fail(message: str) -> NoReturn:
    raise CliError(message)


def print_json(body: Any) -> None:
    print(json.dumps(body, indent=2, sort_keys=False))


def duration(flag: str, text: str) -> float:
    """`text` in seconds, or a usage error naming `flag`."""
    # Here, not at the top: importing any fleetd.config module runs the config
    # package's __init__ (~30 ms), which the parser of every command would then pay.
    from fleetd.config.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        fail(f"{flag}: {exc}")
