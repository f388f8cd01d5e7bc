"""What every `fleetd` command shares: the user-facing error (one line on stderr, exit
2), JSON output as the HTTP API prints it, duration flags, and the reading of user
input — JSON text (`parse_json`) and files or stdin (`read_input`) — so that no input,
however hostile (invalid UTF-8, nesting 100,000 deep, a 5,000-digit number, /dev/zero),
ends in a traceback instead of that one line."""

from __future__ import annotations

import json
import re
import sys
from typing import Any, NoReturn

__all__ = [
    "EXIT_USAGE",
    "MAX_INPUT_BYTES",
    "CliError",
    "duration",
    "fail",
    "one_line",
    "parse_json",
    "print_json",
    "read_input",
]

EXIT_USAGE = 2
# The most a file or stdin given to a command may hold (`enqueue --jsonl`, `workflow
# run`, `template add`): far above any real input, and a bound on what `/dev/zero` or an
# endless pipe can make the command hold in memory.
MAX_INPUT_BYTES = 256 * 1024 * 1024

# What must not reach a terminal from an error message: C0 and C1 controls (a newline
# would make two lines, an ESC sequence would drive the terminal), DEL, the Unicode line
# and paragraph separators, and the lone surrogates that stand for argv's non-UTF-8 bytes.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


class CliError(Exception):
    """A user-facing error: printed as one line, exit 2."""


def fail(message: str) -> NoReturn:
    raise CliError(message)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte of argv that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def one_line(text: str) -> str:
    """`text` with every character a terminal would act on written as an escape: what
    an error message may safely echo of the user's input."""
    return _UNPRINTABLE.sub(_escape, text)


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


def parse_json(text: str, not_json: str) -> Any:
    """The JSON value of `text`, or the usage error "<not_json>: <why>". Beyond
    malformed text this covers what json.loads raises besides JSONDecodeError: nesting
    deeper than the interpreter's recursion limit and integers of more than 4,300
    digits."""
    try:
        return json.loads(text)
    except RecursionError:
        fail(f"{not_json}: nested too deeply")
    except ValueError as exc:  # JSONDecodeError, the integer digit limit
        fail(f"{not_json}: {exc}")


def read_input(source: str) -> str:
    """The text of file `source` (`-`: stdin), or a usage error when it cannot be read,
    is not UTF-8 or holds more than MAX_INPUT_BYTES."""
    try:
        if source == "-":
            if sys.stdin is None:  # started with stdin closed
                fail("cannot read -: no standard input")
            data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
        else:
            with open(source, "rb") as f:
                data = f.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        fail(f"cannot read {source}: {exc.strerror or exc}")
    if len(data) > MAX_INPUT_BYTES:
        fail(f"{source}: more than {MAX_INPUT_BYTES // (1024 * 1024)} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        fail(f"{source}: not UTF-8 text (byte {exc.start})")
