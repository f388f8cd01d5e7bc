"""The wire between the daemon and its sandbox children (fleetd.runtime.sandbox_children,
fleetd.runtime.sandbox_child): how a child is started, what it inherits, and the frames
they exchange — a 4-byte length, then a pickle; jobs one way, replies the other, over
the child's stdin and stdout pipes.
"""

from __future__ import annotations

import logging
import os
import pickle
import struct
from typing import Any

from fleetd.runtime.log import JsonFormatter

__all__ = [
    "BASE_ENV",
    "BOOT",
    "FRAME",
    "FrameReader",
    "environment",
    "log_format",
    "read_frame",
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
READ_SIZE = 65536


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

    async def frame(self) -> bytes:
        """The next frame's pickle; EOFError if the stream ends first."""
        buffer = self._buffer
        while True:
            if len(buffer) >= FRAME.size:
                end = FRAME.size + FRAME.unpack_from(buffer)[0]
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
