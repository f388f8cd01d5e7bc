"""Real Redis topologies on loopback for the system tests and benchmarks: a 3-primary
Redis Cluster and a Sentinel set-up (a primary, a replica, three sentinels), all made of
the installed ``redis-server`` and checked with tests/redis_server.py's RESP client.

Owns:
- ``LocalCluster``: N cluster-enabled servers on free ports, slots split evenly by
  CLUSTER ADDSLOTSRANGE, joined by CLUSTER MEET; ``url`` is a ``redis+cluster://`` URL,
  ``node_for(key)`` names the primary serving a key (CLUSTER KEYSLOT + the slot map),
  ``spread(...)`` picks names whose keys fall on different primaries;
- ``LocalSentinels``: a primary, one replica, three sentinels (quorum 2, 1 s
  down-after); ``url`` is a ``redis+sentinel://`` URL naming all three,
  ``primary_port()`` asks a sentinel who the primary is now.

Both start in ``__enter__`` and stop every process in ``__exit__`` (and at interpreter
exit through RedisServer), so a failing test leaks nothing.
"""

from __future__ import annotations

import functools
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Self

from redis_server import HOST, REDIS_BINARY, RedisServer, RespConnection, RespError, _free_port

SLOTS = 16384
SERVICE = "fleetd-primary"
# Forming a cluster or electing a new primary takes a few seconds here; 30 s only
# matters on a starved box.
FORM_TIMEOUT = 30.0


def wait_until(what: str, check: Callable[[], bool], timeout: float = FORM_TIMEOUT) -> None:
    """Poll `check` (connection errors count as "not yet") until true or fail."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (OSError, RespError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


class _Servers:
    """Started on `with` (stopped again if starting fails), stopped on leaving it."""

    def _start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class LocalCluster(_Servers):
    """`primaries` cluster-enabled redis-servers owning every slot (see module doc)."""

    def __init__(self, workdir: Path, primaries: int = 3) -> None:
        self.nodes = [
            RedisServer(
                workdir / f"node-{n}",
                extra_args=["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"],
            )
            for n in range(primaries)
        ]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{HOST}:{node.port}" for node in self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def _start(self) -> None:
        for node in self.nodes:
            node.start()
        share = SLOTS // len(self.nodes)
        for n, node in enumerate(self.nodes):
            last = SLOTS - 1 if n == len(self.nodes) - 1 else (n + 1) * share - 1
            node.command("CLUSTER", "ADDSLOTSRANGE", n * share, last)
        for node in self.nodes[1:]:
            self.nodes[0].command("CLUSTER", "MEET", HOST, node.port)
        wait_until("cluster_state:ok on every node", self._formed)

    def _formed(self) -> bool:
        for node in self.nodes:
            info = node.command("CLUSTER", "INFO")
            assert isinstance(info, bytes)
            if (
                b"cluster_state:ok" not in info
                or b"cluster_known_nodes:%d" % len(self.nodes) not in info
            ):
                return False
        return True

    def keyslot(self, key: str) -> int:
        slot = self.nodes[0].command("CLUSTER", "KEYSLOT", key)
        assert isinstance(slot, int)
        return slot

    def node_for(self, key: str) -> RedisServer:
        """The primary that serves `key` (by the slot ranges this cluster was formed with)."""
        share = SLOTS // len(self.nodes)
        return self.nodes[min(self.keyslot(key) // share, len(self.nodes) - 1)]

    def spread(self, key_of: Callable[[str], str], names: Iterable[str], count: int) -> list[str]:
        """`count` of `names` whose keys (`key_of(name)`) fall on `count` different
        primaries, in the order of those primaries."""
        chosen: dict[int, str] = {}
        for name in names:
            chosen.setdefault(self.nodes.index(self.node_for(key_of(name))), name)
            if len(chosen) == count:
                return [chosen[k] for k in sorted(chosen)]
        raise AssertionError(f"no {count} of the names fall on {count} primaries")

    def keys_on(self, node: RedisServer, pattern: str) -> list[str]:
        """Every key matching `pattern` stored on `node` (KEYS: test-sized data only)."""
        reply = node.command("KEYS", pattern)
        assert isinstance(reply, list)
        return sorted(k.decode() for k in reply if isinstance(k, bytes))


class LocalSentinels(_Servers):
    """A primary, one replica and three sentinels watching them (see module doc)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.servers = [RedisServer(workdir / "redis-a"), RedisServer(workdir / "redis-b")]
        self.sentinel_ports: list[int] = []
        self._procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"{HOST}:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for server in self.servers:
            server.stop()

    def server_on(self, port: int) -> RedisServer:
        [server] = [s for s in self.servers if s.port == port]
        return server

    def _named_by(self, sentinel_port: int) -> int | None:
        """The primary's port as one sentinel names it; None when it does not answer."""
        try:
            with RespConnection(sentinel_port) as conn:
                reply = conn.command("SENTINEL", "get-master-addr-by-name", SERVICE)
        except (OSError, RespError):
            return None
        assert isinstance(reply, list) and isinstance(reply[1], bytes), reply
        return int(reply[1])

    def primary_port(self) -> int:
        """The primary's port as the first answering sentinel names it."""
        for port in self.sentinel_ports:
            if (named := self._named_by(port)) is not None:
                return named
        raise AssertionError("no sentinel answers")

    def promoted(self, old_port: int) -> bool:
        """Every sentinel names one primary, not `old_port`, and that server says it is
        the primary: the failover is complete everywhere, so the old one may come back
        (empty). Before that it can still be taken for the primary, and a replica that
        follows it is emptied with it (docs/OPERATIONS.md, Sentinel)."""
        named = {self._named_by(port) for port in self.sentinel_ports}
        if len(named) != 1 or None in named or old_port in named:
            return False
        [port] = named
        assert port is not None
        info = self.server_on(port).command("INFO", "replication")
        return isinstance(info, bytes) and b"role:master" in info

    def replica_online(self) -> bool:
        """The current primary has a replica linked and in sync."""
        info = self.server_on(self.primary_port()).command("INFO", "replication")
        return isinstance(info, bytes) and b"role:master" in info and b"state=online" in info

    def _start(self) -> None:
        primary, replica = self.servers
        primary.start()
        replica.extra_args = ("--replicaof", HOST, str(primary.port))
        replica.start()
        wait_until("the replica to sync", self.replica_online_on_first)
        for n in range(3):
            self._start_sentinel(n, primary.port)
        wait_until("every sentinel to see the replica and the others", self._sentinels_agree)

    def replica_online_on_first(self) -> bool:
        info = self.servers[0].command("INFO", "replication")
        return isinstance(info, bytes) and b"state=online" in info

    def _start_sentinel(self, n: int, primary_port: int) -> None:
        workdir = self.workdir / f"sentinel-{n}"
        workdir.mkdir(parents=True, exist_ok=True)
        conf = workdir / "sentinel.conf"
        for _ in range(5):  # the port picked can be taken before the sentinel binds it
            port = _free_port()
            conf.write_text(
                f"port {port}\nbind {HOST}\ndir {workdir}\n"
                f"sentinel monitor {SERVICE} {HOST} {primary_port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 5000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            proc = subprocess.Popen(
                [REDIS_BINARY, str(conf), "--sentinel", "--logfile", str(workdir / "sentinel.log")],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                wait_until(f"sentinel {n}", functools.partial(_answers, port), 10)
            except AssertionError:
                proc.kill()
                proc.wait()
                continue
            self._procs.append(proc)
            self.sentinel_ports.append(port)
            return
        raise AssertionError(f"sentinel {n} did not start; see {workdir / 'sentinel.log'}")

    def _sentinels_agree(self) -> bool:
        for port in self.sentinel_ports:
            with RespConnection(port) as conn:
                reply = conn.command("SENTINEL", "master", SERVICE)
            assert isinstance(reply, list)
            fields = dict(zip(reply[::2], reply[1::2], strict=True))
            if fields.get(b"num-slaves") != b"1" or fields.get(b"num-other-sentinels") != b"2":
                return False
        return True


def _answers(port: int) -> bool:
    with RespConnection(port) as conn:
        return conn.command("PING") == "PONG"
