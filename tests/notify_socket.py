"""A fake $NOTIFY_SOCKET for the systemd tests: a real AF_UNIX datagram socket, as
systemd's, bound in a short temporary directory, collecting every message in a thread."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path


class NotifyListener:
    """A bound AF_UNIX datagram socket collecting every message, in a thread."""

    def __init__(self) -> None:
        # A short path: AF_UNIX paths are limited to 108 bytes, pytest's tmp_path is long.
        self.dir = Path(tempfile.mkdtemp(prefix="fleetd-notify-"))
        self.path = self.dir / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, list[str]]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode().split("\n")))

    def lines(self) -> list[str]:
        return [line for _, msg in list(self.messages) for line in msg]

    def index(self, line: str, after: int = 0) -> int:
        """Position of the first message holding `line` at or after message `after`, or -1."""
        for i, (_, msg) in enumerate(list(self.messages)):
            if i >= after and line in msg:
                return i
        return -1

    def close(self) -> None:
        self._closed = True
        self._thread.join()
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)
