"""The wire between the daemon and its sandbox children (fleetd.runtime.sandbox_children,
fleetd.runtime.sandbox_child): how a child is started, what it inherits, and the frames
they exchange over the child's stdin and stdout pipes — a 4-byte length, then the body.

A job goes to a child as a pickle (the daemon trusts itself; the child unpickles the
handler anyway). A reply comes back as JSON, never a pickle: the child runs code the
daemon must not trust, and that code can write to the reply pipe, so a reply is only
data, checked field by field (`reply_of`) and bounded in size (`MAX_REPLY`). A frame
that breaks these rules is a `BadReply`: the daemon kills the child.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import struct
from typing import Any

from fleetd.jobs.isolation import ERROR, KINDS
from fleetd.runtime.log import JsonFormatter

__all__ = [
    "BASE_ENV",
    "BOOT",
    "FRAME",
    "MAX_REPLY",
    "STOPS",
    "BadReply",
    "FrameReader",
    "environment",
    "log_format",
    "read_frame",
    "reply_of",
    "write_now",
]

# How the daemon starts a child: the daemon's sys.path first (a one-file build's
# unpacked packages, a test's rootdir), then fleetd. argv[1] names it in `ps`.
BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[2]); "
    "from fleetd.runtime.sandbox_child import main; main()"
)
# Variables a child keeps whatever the handler declares: what programs and libraries
# need to find themselves, their locale and time zone. Everything else (FLEETD_*, the
# JWT secret, data keys, the Redis URL with its password) never reaches a child.
BASE_ENV = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "PYTHONPATH", "PYTHONHOME",
            "VIRTUAL_ENV", "SSL_CERT_FILE", "SSL_CERT_DIR")  # fmt: skip
FRAME = struct.Struct("!I")  # a frame's length, before its pickle
# A job frame's body starts with how many SIGTERMs the daemon had sent the child when it
# wrote the frame: a SIGTERM the child counts beyond that is the stop of this job, one
# within it the late stop of an earlier job (fleetd.runtime.sandbox_child).
STOPS = struct.Struct("!I")
READ_SIZE = 65536
# A reply's largest frame: a result (its JSON text), a traceback, an error message.
MAX_REPLY = 64 * 1024 * 1024
# A reply's fields and the types each may have (anything else is a BadReply).
_STR, _FLAG = (str,), (bool, type(None))
REPLY_FIELDS: dict[str, tuple[type, ...]] = {
    "result": (str, type(None)), "error": _STR, "kind": _STR, "traceback": _STR,
    "retryable": _FLAG, "retry_after": (int, float, type(None)), "exc_name": _STR,
    "progress_end": _FLAG, "scratch": (str, type(None)), "leaving": (bool,),
}  # fmt: skip


class BadReply(ValueError):
    """A child's reply fleetd does not read: too large, not JSON, wrong fields."""


def environment(keep: tuple[str, ...]) -> dict[str, str]:
    """A child's whole environment: the daemon's `BASE_ENV`, `LC_*` and `keep`."""
    wanted = set(BASE_ENV) | set(keep)
    return {k: v for k, v in os.environ.items() if k in wanted or k.startswith("LC_")}


def log_format() -> str:
    """The daemon's log format ("json" or "text"), for its children."""
    handlers = logging.getLogger().handlers
    json_lines = any(isinstance(h.formatter, JsonFormatter) for h in handlers)
    return "json" if json_lines else "text"


class FrameReader:
    """Frames from a trio receive stream, read in large chunks: a frame written at
    once is read at once (one wake-up, no second read for its body)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def frame(self, limit: int = 0) -> bytes:
        """The next frame's body; EOFError if the stream ends first, BadReply if it
        announces more than `limit` bytes (0: no limit)."""
        buffer = self._buffer
        while True:
            if len(buffer) >= FRAME.size:
                size = FRAME.unpack_from(buffer)[0]
                if limit and size > limit:
                    raise BadReply(f"a frame of {size} bytes (at most {limit})")
                end = FRAME.size + size
                if len(buffer) >= end:
                    body = bytes(buffer[FRAME.size : end])
                    del buffer[:end]
                    return body
            chunk = await self._stream.receive_some(READ_SIZE)
            if not chunk:
                raise EOFError("the other end closed the pipe")
            buffer += chunk


def read_frame(fd: int) -> Any:
    """One frame, read before the loop runs (the settings)."""
    head = b""
    while len(head) < FRAME.size:
        chunk = os.read(fd, FRAME.size - len(head))
        if not chunk:
            raise SystemExit(0)  # the daemon went away before we started
        head += chunk
    size, body = FRAME.unpack(head)[0], b""
    while len(body) < size:
        chunk = os.read(fd, size - len(body))
        if not chunk:
            raise SystemExit(0)
        body += chunk
    return pickle.loads(body)


def write_now(stream: Any, frame: bytes) -> bytes:
    """Write what a trio FdStream's pipe takes of `frame` now, without a checkpoint (a
    scheduler pass less on the way out); what is left, for `send_all`."""
    try:
        written = os.write(stream.fileno(), frame)
    except BlockingIOError:
        written = 0
    return frame[written:]


def reply_of(body: bytes) -> dict[str, Any]:
    """A child's reply frame as its fields, checked (module docstring)."""
    try:
        reply = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadReply(f"not JSON: {exc}") from None
    if not isinstance(reply, dict):
        raise BadReply("not a JSON object")
    for key, value in reply.items():
        types = REPLY_FIELDS.get(key)
        if types is None or not isinstance(value, types):
            raise BadReply(f"field {key!r}: {type(value).__name__}")
    if reply.get("kind", ERROR) not in KINDS:
        raise BadReply(f"kind {reply['kind']!r}")
    after = reply.get("retry_after")
    if after is not None and not (math.isfinite(after) and after >= 0):
        raise BadReply(f"retry_after {after!r}")
    return reply
