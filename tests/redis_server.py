"""A throwaway ``redis-server`` for tests, and a tiny RESP client to talk to it.

Owns:
- ``RedisServer``: one real ``/usr/bin/redis-server`` subprocess on a free
  127.0.0.1 port, with its own ``--dir`` and log file;
- ``RespConnection``: a blocking RESP2 client (``command(*args) -> reply``), so test
  fixtures can check and clean Redis without importing redis-py, the library the
  code under test is built on.

Lifecycle: ``start()`` picks a port on the first start only (restarts reuse it, so a
client's URL stays valid), spawns the server and blocks until *our* process answers
PING and has finished loading → ``stop()`` (SIGTERM: a clean shutdown that flushes
the AOF) or ``kill()`` (SIGKILL: a crash) → ``start()`` again on the same port and dir.
Every running server is also stopped at interpreter exit, so a failing test cannot
leak one. All calls block: use them from sync fixtures or ``trio.to_thread``.
"""

from __future__ import annotations

import atexit
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import NoReturn, Protocol, Self, TypeAlias
from urllib.parse import quote

REDIS_BINARY = "/usr/bin/redis-server"
HOST = "127.0.0.1"
# The machine's shared Redis lives here; tests must never touch it.
SHARED_REDIS_PORT = 6379
# A cold redis-server answers in ~10 ms; 10 s only matters on a starved CI box.
START_TIMEOUT = 10.0
# Poll every 5 ms: a start costs ~2 polls, and a refused connect costs microseconds.
START_POLL_INTERVAL = 0.005
# SIGTERM shutdown fsyncs the AOF and returns in milliseconds; past 10 s we SIGKILL.
STOP_TIMEOUT = 10.0
# Bound on every socket call, so a wedged server fails a test instead of hanging it.
SOCKET_TIMEOUT = 5.0
# A port picked by bind(0) can be taken by someone else before redis binds it
# (e.g. a parallel pytest worker); retry the first start with a new port this often.
PORT_ATTEMPTS = 5
# Keys per SCAN round trip when deleting by pattern; UNLINK takes them in one call.
SCAN_COUNT = 1000
# Lines of log quoted in a start failure.
LOG_TAIL_LINES = 30

Arg: TypeAlias = str | bytes | int
Reply: TypeAlias = "str | bytes | int | RespError | list[Reply] | None"


class RespError(Exception):
    """An error reply (``-ERR ...``) from Redis."""


class RedisStartError(RuntimeError):
    """redis-server did not come up; the message carries the tail of its log."""

    def __init__(self, message: str, *, port_taken: bool) -> None:
        super().__init__(message)
        self.port_taken = port_taken


class RespConnection:
    """One blocking RESP2 connection; ``AUTH`` is sent on connect when a password is set."""

    def __init__(self, port: int, *, password: str | None = None) -> None:
        self._sock = socket.create_connection((HOST, port), timeout=SOCKET_TIMEOUT)
        self._reader = self._sock.makefile("rb")
        try:
            if password is not None:
                self.command("AUTH", password)
        except BaseException:
            self.close()
            raise

    def command(self, *args: Arg) -> Reply:
        """Send one command and return its reply; a top-level error reply is raised."""
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self._sock.sendall(b"".join(parts))
        reply = self._read_reply()
        if isinstance(reply, RespError):
            raise reply
        return reply

    def _read_reply(self) -> Reply:
        line = self._reader.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self._reader.read(size + 2)[:-2]
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self._read_reply() for _ in range(count)]
        raise ConnectionError(f"unexpected RESP line {line!r}")

    def close(self) -> None:
        self._reader.close()
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RedisServer:
    """A real redis-server subprocess owned by one test or session (see module doc)."""

    def __init__(
        self,
        workdir: Path,
        *,
        aof: bool = False,
        port: int | None = None,
        password: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        if port == SHARED_REDIS_PORT:
            raise ValueError(f"port {port} is the machine's shared Redis; tests use their own")
        self.workdir = workdir.absolute()
        self.aof = aof
        self.password = password
        self.extra_args = tuple(extra_args)
        self._port = port
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("no port yet: call start() first")
        return self._port

    @property
    def url(self) -> str:
        auth = "" if self.password is None else f":{quote(self.password, safe='')}@"
        return f"redis://{auth}{HOST}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path:
        return self.workdir / "redis.log"

    @property
    def _output_path(self) -> Path:
        # stdout/stderr: config errors are printed here before the log file is opened.
        return self.workdir / "redis.out"

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"redis-server on port {self.port} is already running")
        self.stop()  # reap a process that died on its own
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, PORT_ATTEMPTS + 1):
            picked = self._port is None
            if self._port is None:
                self._port = _free_port(cluster="--cluster-enabled" in self.extra_args)
            try:
                self._launch()
                return
            except RedisStartError as exc:
                if not (picked and exc.port_taken and attempt < PORT_ATTEMPTS):
                    raise
                self._port = None

    def stop(self) -> None:
        """Clean shutdown (SIGTERM): redis flushes and fsyncs the AOF, then exits."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._forget()

    def kill(self) -> None:
        """Crash (SIGKILL): nothing is flushed beyond what redis already wrote."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._forget()

    def restart(self) -> None:
        self.stop()
        self.start()

    def connect(self) -> RespConnection:
        return RespConnection(self.port, password=self.password)

    def command(self, *args: Arg) -> Reply:
        """Run one command on a fresh connection."""
        with self.connect() as conn:
            return conn.command(*args)

    def ping(self) -> bool:
        """True if something answering as this server replies PONG on our port."""
        if self._port is None:
            return False
        try:
            return self.command("PING") == "PONG"
        except (OSError, RespError):
            return False

    def delete_matching(self, pattern: str) -> int:
        """UNLINK every key matching a glob ``pattern``; returns how many went."""
        deleted = 0
        with self.connect() as conn:
            cursor: Reply = b"0"
            while True:
                reply = conn.command("SCAN", _bulk(cursor), "MATCH", pattern, "COUNT", SCAN_COUNT)
                assert isinstance(reply, list) and len(reply) == 2, reply
                cursor, keys = reply
                assert isinstance(keys, list), keys
                if keys:
                    count = conn.command("UNLINK", *(_bulk(key) for key in keys))
                    assert isinstance(count, int), count
                    deleted += count
                if cursor == b"0":
                    return deleted

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer port={self._port} aof={self.aof} {state} dir={self.workdir}>"

    def _argv(self) -> list[str]:
        argv = [REDIS_BINARY, "--port", str(self.port), "--bind", HOST]
        argv += ["--dir", str(self.workdir), "--save", ""]
        argv += ["--appendonly", "yes" if self.aof else "no"]
        if self.aof:
            argv += ["--appendfsync", "always"]
        argv += ["--daemonize", "no", "--logfile", str(self.log_path)]
        argv += ["--maxmemory-policy", "noeviction"]
        if self.password is not None:
            argv += ["--requirepass", self.password]
        return argv + list(self.extra_args)

    def _launch(self) -> None:
        offsets = {path: _size(path) for path in (self.log_path, self._output_path)}
        with self._output_path.open("ab") as output:
            self._proc = subprocess.Popen(
                self._argv(), stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
            )
        _LIVE.add(self)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._is_ready():
            if self._proc.poll() is not None:
                self._fail(f"exited with code {self._proc.returncode}", offsets)
            if time.monotonic() > deadline:
                self._fail(f"did not answer PING within {START_TIMEOUT} s", offsets)
            time.sleep(START_POLL_INTERVAL)

    def _is_ready(self) -> bool:
        # PONG alone could come from a stranger on the port, or from a server still
        # loading its AOF (which answers LOADING to data commands): check both.
        assert self._proc is not None
        try:
            with self.connect() as conn:
                info = conn.command("INFO", "server", "persistence")
        except (OSError, RespError):
            return False
        assert isinstance(info, bytes), info
        fields = dict(line.split(":", 1) for line in info.decode().splitlines() if ":" in line)
        return fields.get("process_id") == str(self._proc.pid) and fields.get("loading") == "0"

    def _fail(self, why: str, offsets: dict[Path, int]) -> NoReturn:
        self.kill()
        tail = "\n".join(_tail(path, offset) for path, offset in offsets.items())
        raise RedisStartError(
            f"redis-server on {HOST}:{self._port} {why}; {self.workdir}:\n{tail}",
            port_taken="Address already in use" in tail,
        )

    def _forget(self) -> None:
        self._proc = None
        _LIVE.discard(self)


class RedisServerFactory(Protocol):
    """Signature of the ``own_redis`` fixture: returns a started server in its own dir."""

    def __call__(
        self,
        *,
        aof: bool = False,
        password: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> RedisServer: ...


# Servers with a live process, stopped at exit in case a fixture never got to it.
_LIVE: set[RedisServer] = set()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_LIVE):
        server.stop()


# A cluster node also listens on its port + 10000 (the cluster bus), so its own port
# must be 55535 or less; the kernel's ephemeral range often goes higher.
CLUSTER_BUS_OFFSET = 10_000


def free_port() -> int:
    """A loopback port nothing listens on now (for "nothing listening there" tests)."""
    return _free_port()


def _free_port(*, cluster: bool = False) -> int:
    """A port free now; with `cluster`, one whose bus port (+10000) is free too."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        if not cluster:
            return port
        if port + CLUSTER_BUS_OFFSET > 65_535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind((HOST, port + CLUSTER_BUS_OFFSET))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def _bulk(value: Reply) -> bytes:
    assert isinstance(value, bytes), value
    return value


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _tail(path: Path, offset: int) -> str:
    """The last lines ``path`` gained past ``offset`` (the log is appended across restarts)."""
    if not path.exists():
        return f"[{path.name}: missing]"
    with path.open("rb") as file:
        file.seek(offset)
        lines = file.read().decode(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    return "\n".join([f"[{path.name}]", *lines])
