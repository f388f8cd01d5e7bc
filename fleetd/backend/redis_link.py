"""The one place that talks to Redis: redis-py's sync client driven from trio.

Owns: the client for a URL (`redis://`, `rediss://`, `unix://`, a Sentinel-managed
primary `redis+sentinel://`, a Cluster `redis+cluster://`, or `memory://`, the embedded
in-process store; what each scheme means and how it is opened is
fleetd.backend.topologies), the single thread hop every Redis call takes
(`trio.to_thread.run_sync` behind one CapacityLimiter, so the trio thread never blocks
on a socket), loading Lua scripts, translating redis-py's errors into fleetd's, and
knowing whether Redis is reachable right now (`ready`; `down`: known not to be).

Nothing else in fleetd imports redis (but topologies, for this module, and native_lane).
Callers hand `call()` a plain function that takes the sync client, so a batch of
commands costs one hop, not one per command.

Lifecycle: open() → connect() (waits with capped backoff until Redis answers) →
call()… → close(). trio is imported, and its objects made, on first async use only: a
CLI command talks to Redis through run_sync and never needs it (importing trio is
~60 ms of `fleetd stats`' start-up, bench/cli_startup.py). With `memory://` the store
is also served on loopback TCP so the CLI in another terminal reaches the same jobs;
its address is written to the state directory.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import redis
import redis.exceptions
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel

from fleetd.backend.redis_errors import (
    REFUSAL_LOG_EVERY,
    UNAVAILABLE_ERRORS,
    RedisCommandError,
    RedisRefusingWrites,
    RedisUnavailable,
    refuses_writes,
)
from fleetd.backend.topologies import (
    CLUSTER_SCHEMES,
    SENTINEL_SCHEMES,
    client_options,
    open_cluster,
    open_direct,
    open_embedded,
    open_sentinel,
)
from fleetd.config.statefiles import write_json_atomically

if TYPE_CHECKING:
    import trio

__all__ = [
    "Backoff",
    "RedisCommandError",
    "RedisLink",
    "RedisRefusingWrites",
    "RedisUnavailable",
    "Script",
    "SyncClient",
    "embedded_address_file",
]

log = logging.getLogger("fleetd.redis")

T = TypeVar("T")
# The sync client as callers see it. redis-py annotates replies as unions over bytes,
# str and awaitables; with decode_responses=True they are str, so call sites state the
# types they rely on instead of casting every reply.
SyncClient: TypeAlias = Any

# Name of the file in the state directory that records where a running daemon serves
# its embedded (memory://) store.
EMBEDDED_FILE = "embedded-redis.json"


def embedded_address_file(state_dir: Path) -> Path:
    return state_dir / EMBEDDED_FILE


class Backoff:
    """Capped exponential backoff with full jitter: 0.1 s, 0.2 s, 0.4 s… up to `cap`.

    Full jitter keeps many daemons that lost Redis together from reconnecting in lockstep.
    """

    BASE = 0.1

    def __init__(self, cap: float) -> None:
        self.cap = cap
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.BASE * 2**self.attempt)
        self.attempt = min(self.attempt + 1, 30)
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0

    async def sleep(self) -> None:
        await self.pause(self.next_delay())

    @staticmethod
    async def pause(seconds: float) -> None:
        import trio  # first async use (module docstring)

        await trio.sleep(seconds)


class Script:
    """A loaded Lua script: `_lib.lua` + its own file, called by SHA, reloaded on NOSCRIPT
    (a restarted Redis forgets loaded scripts)."""

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = ""

    def load(self, client: SyncClient) -> None:
        try:
            self.sha = client.script_load(self.source)
        except redis.exceptions.ResponseError as exc:
            raise RedisCommandError(f"Lua script {self.name} does not load: {exc}") from None

    def __call__(self, client: SyncClient, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            # Nothing ran: load and run once more.
            self.load(client)
            return client.evalsha(self.sha, len(keys), *keys, *args)

    def after(
        self,
        client: SyncClient,
        prelude: Callable[[Any], object],
        keys: Sequence[str],
        args: Sequence[Any],
    ) -> tuple[list[Any], Any]:
        """Send `prelude(pipe)`'s commands and then this script in one round trip; Redis
        runs the script the moment the prelude is done (a BLPOP wake-up, say) with no
        reply travelling in between. Returns (prelude replies, script reply).

        On a Cluster, redis-py refuses EVALSHA in its cluster pipeline, so the same plain
        pipeline goes to the node that owns the keys' slot (one slot: they share a hash
        tag). If the slot moved meanwhile (MOVED/ASK: nothing ran), the prelude and the
        script go through the cluster client, which follows the redirect, in two trips.
        """
        if isinstance(client, RedisCluster):
            cluster: SyncClient = client  # redis-py's cluster module is not annotated
            node = cluster.get_node_from_key(keys[0])
            pipe = cluster.get_redis_connection(node).pipeline(transaction=False)
            try:
                return self._pipelined(cluster, pipe, prelude, keys, args)
            except (redis.exceptions.MovedError, redis.exceptions.AskError):
                first = cluster.pipeline(transaction=False)
                prelude(first)
                return first.execute(), self(cluster, keys, args)
        return self._pipelined(client, client.pipeline(transaction=False), prelude, keys, args)

    def _pipelined(
        self,
        client: SyncClient,
        pipe: Any,
        prelude: Callable[[Any], object],
        keys: Sequence[str],
        args: Sequence[Any],
    ) -> tuple[list[Any], Any]:
        prelude(pipe)
        pipe.evalsha(self.sha, len(keys), *keys, *args)
        replies = pipe.execute(raise_on_error=False)
        *before, reply = replies
        for item in before:
            if isinstance(item, Exception):
                raise item
        if isinstance(reply, redis.exceptions.NoScriptError):
            reply = self(client, keys, args)
        elif isinstance(reply, Exception):
            raise reply
        return before, reply


class RedisLink:
    """A Redis client for one URL plus the thread hop and the reachability state."""

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 32,
        connect_timeout: float = 5.0,
        command_timeout: float = 10.0,
        reconnect_max_backoff: float = 10.0,
        memory_listen: str = "127.0.0.1:0",
        state_dir: Path | None = None,
        shared_by_threads: bool = False,
    ) -> None:
        """`shared_by_threads`: sync callers on many threads use run_sync (the client
        API); otherwise only call() is used (the daemon)."""
        self.url = url
        self._shared_by_threads = shared_by_threads
        self.embedded = url.startswith("memory://")
        self._reconnect_cap = reconnect_max_backoff
        self._memory_listen = memory_listen
        self._state_dir = state_dir
        self._tcp: Any = None
        self._tcp_thread: threading.Thread | None = None
        self._sentinel: Sentinel | None = None
        self._client: SyncClient = None
        self._open_lock = threading.Lock()
        self.served_url: str | None = None
        # Hops in flight at once: one per pooled connection, so no thread ever waits
        # for a connection while holding a limiter token. Made on the first call().
        self._max_connections = max_connections
        self._limiter: trio.CapacityLimiter | None = None
        self.ready = self.down = False  # the last call did / did not reach Redis; no call yet
        self._refusal_logged = -REFUSAL_LOG_EVERY  # when a refusal of writes was logged last
        self._ready_event: trio.Event | None = None  # made by wait_ready()
        opened = self._open(url, max_connections, connect_timeout, command_timeout)
        if isinstance(opened, functools.partial):
            self._make_client: Callable[[], SyncClient] | None = opened
        else:
            self._client, self._make_client = opened, None

    @property
    def client(self) -> SyncClient:
        """The sync client. A Cluster client is made on first use: redis-py's connects to
        the cluster in its constructor, and an unreachable cluster at start-up must mean
        waiting in connect() (RedisUnavailable), not a crash."""
        if self._client is None:
            with self._open_lock:
                if self._client is None:
                    assert self._make_client is not None
                    try:
                        self._client = self._make_client()
                    except redis.exceptions.RedisClusterException as exc:
                        raise RedisUnavailable(str(exc)) from exc
        return self._client

    def _open(self, url: str, max_conn: int, connect_timeout: float, timeout: float) -> SyncClient:
        options = client_options(connect_timeout, timeout)
        if url.startswith(SENTINEL_SCHEMES):
            self._sentinel, client = open_sentinel(url, max_conn, options)
            return client
        if url.startswith(CLUSTER_SCHEMES):
            return open_cluster(url, max_conn, options)
        if not self.embedded:
            return open_direct(url, max_conn, options, shared_by_threads=self._shared_by_threads)
        self._tcp, self.served_url, client = open_embedded(
            self._memory_listen if self._state_dir is not None else "", options
        )
        return client

    # -- lifecycle -------------------------------------------------------------------

    def serve_embedded(self) -> None:
        """Start serving the embedded store on loopback and record where (memory:// only)."""
        if self._tcp is None or self._tcp_thread is not None:
            return
        self._tcp_thread = threading.Thread(
            target=self._tcp.serve_forever, name="fleetd-embedded-redis", daemon=True
        )
        self._tcp_thread.start()
        assert self._state_dir is not None
        write_json_atomically(
            embedded_address_file(self._state_dir), {"url": self.served_url, "pid": os.getpid()}
        )

    async def connect(self, scripts: Sequence[Script] = ()) -> None:
        """Wait until Redis answers (capped backoff, no spinning), then load `scripts`.

        A script that does not compile raises RedisCommandError: a broken script fails
        start-up, not the first job.
        """
        backoff = Backoff(self._reconnect_cap)
        while True:
            try:
                await self.call(self._ping_and_load, scripts)
                return
            except RedisUnavailable as exc:
                delay = backoff.next_delay()
                log.warning(
                    "Redis at %s unreachable (%s); retrying in %.1fs", self.safe_url, exc, delay
                )
                await Backoff.pause(delay)

    @staticmethod
    def _ping_and_load(client: SyncClient, scripts: Sequence[Script]) -> None:
        client.ping()
        for script in scripts:
            script.load(client)

    def close(self) -> None:
        if self._tcp is not None:
            if self._tcp_thread is not None:
                self._tcp.shutdown()
                self._tcp_thread.join(timeout=5)
            self._tcp.server_close()
            if self._tcp_thread is not None and self._state_dir is not None:
                self._forget_address(embedded_address_file(self._state_dir))
            self._tcp = None
        if self._client is not None:
            self._client.close()
            # A Redis client given its pool (ours are: we size and type them) leaves the
            # pool's sockets open on close(); they would only go at garbage collection.
            # RedisCluster has no single pool: its close() closes its nodes' connections.
            pool = getattr(self._client, "connection_pool", None)
            if pool is not None:
                pool.disconnect()
        if self._sentinel is not None:
            for sentinel in self._sentinel.sentinels:
                sentinel.close()

    @staticmethod
    def _forget_address(path: Path) -> None:
        """Remove the address file if it is ours (another daemon may have taken over)."""
        try:
            owner = json.loads(path.read_text()).get("pid")
        except (OSError, ValueError):
            return
        if owner == os.getpid():
            path.unlink(missing_ok=True)

    @property
    def safe_url(self) -> str:
        """The URL without a password, for logs."""
        if "@" not in self.url:
            return self.url
        scheme, _, rest = self.url.partition("://")
        return f"{scheme}://***@{rest.rpartition('@')[2]}"

    # -- calls -----------------------------------------------------------------------

    def _mark(self, ok: bool, error: BaseException | None = None) -> None:
        self.down = not ok
        if ok and not self.ready:
            self.ready = True
            if self._ready_event is not None:
                self._ready_event.set()
            log.info("Redis at %s is reachable", self.safe_url)
        elif not ok and self.ready:
            self.ready = False
            self._ready_event = None
            log.error("Redis at %s became unreachable: %s", self.safe_url, error)

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(client, *args)` on this thread, translating errors (sync callers)."""
        try:
            return fn(self.client, *args)
        except UNAVAILABLE_ERRORS as exc:
            raise RedisUnavailable(str(exc) or type(exc).__name__) from exc
        except redis.exceptions.RedisError as exc:
            if refuses_writes(exc):
                raise RedisRefusingWrites(str(exc)) from exc
            raise RedisCommandError(str(exc)) from exc

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(client, *args)` in a worker thread: the only way trio code reaches Redis.

        Not abandoned on cancel: a Redis call that already left must finish so its
        outcome (a claimed job, a completion) is known. Keep `fn` short or bounded by a
        server-side timeout (blocking waits are ≤ the poll interval).
        """
        import trio  # first async use (module docstring)

        self._limiter = self._limiter or trio.CapacityLimiter(self._max_connections)
        try:
            result = await trio.to_thread.run_sync(self.run_sync, fn, *args, limiter=self._limiter)
        except RedisRefusingWrites as exc:
            now = time.monotonic()
            if now - self._refusal_logged >= REFUSAL_LOG_EVERY:
                self._refusal_logged = now
                log.warning("Redis at %s refuses writes (retrying): %s", self.safe_url, exc)
            raise
        except RedisUnavailable as exc:
            self._mark(False, exc)
            raise
        self._mark(True)
        return result

    async def wait_ready(self) -> None:
        import trio  # first async use (module docstring)

        if not self.ready:
            if self._ready_event is None:
                self._ready_event = trio.Event()
            await self._ready_event.wait()
