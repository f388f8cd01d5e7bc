"""The one place that talks to Redis: redis-py's sync client driven from trio.

Owns: opening the client for a URL (`redis://`, `rediss://`, `unix://`, or `memory://`,
the embedded in-process store), the single thread hop every Redis call takes
(`trio.to_thread.run_sync` behind one CapacityLimiter, so the trio thread never blocks
on a socket), loading Lua scripts, translating redis-py's errors into fleetd's, and
knowing whether Redis is reachable right now (`ready`).

Nothing else in fleetd imports redis. Callers hand `call()` a plain function that takes
the sync client, so a batch of commands costs one hop, not one per command.

Lifecycle: open() → connect() (waits with capped backoff until Redis answers) →
call()… → close(). With `memory://` the store is also served on loopback TCP so the CLI
in another terminal reaches the same jobs; its address is written to the state directory.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import redis
import redis.exceptions
import trio
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "Backoff",
    "RedisCommandError",
    "RedisLink",
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

# Errors that mean "Redis is not reachable right now", as opposed to a bug in a command.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,  # a replica after failover: wait for the new primary
    redis.exceptions.MasterDownError,
    redis.exceptions.TryAgainError,
    OSError,
)


class RedisUnavailable(Exception):
    """Redis cannot be reached (refused, timed out, loading, read-only replica)."""


class RedisCommandError(Exception):
    """Redis answered with an error: a script bug or a misconfigured server."""


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
        await trio.sleep(self.next_delay())


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
        reply travelling in between. Returns (prelude replies, script reply)."""
        pipe = client.pipeline(transaction=False)
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
        self.served_url: str | None = None
        # Hops in flight at once: one per pooled connection, so no thread ever waits
        # for a connection while holding a limiter token.
        self._limiter = trio.CapacityLimiter(max_connections)
        self.ready = False
        self._ready_event = trio.Event()
        self.client = self._open(url, max_connections, connect_timeout, command_timeout)

    def _open(self, url: str, max_conn: int, connect_timeout: float, timeout: float) -> SyncClient:
        # RESP2 and decoded strings everywhere; no hidden retries: a retried script could
        # run twice (an enqueue without an idempotency key would duplicate a job).
        # No health-check PINGs: a dead connection shows as an error on first use,
        # which the caller already handles (they cost ~10 µs on every command).
        options: dict[str, Any] = {
            "decode_responses": True,
            "protocol": 2,
            "retry": Retry(NoBackoff(), 0),
            "socket_timeout": timeout,
            "socket_connect_timeout": connect_timeout,
        }
        if not self.embedded:
            if self._shared_by_threads:
                # Any number of caller threads: wait for a free connection.
                pool: redis.ConnectionPool = redis.BlockingConnectionPool.from_url(
                    url, max_connections=max_conn, timeout=timeout, **options
                )
            else:
                # Only call() uses it, and its CapacityLimiter keeps in-flight hops at
                # max_connections, so a plain pool (cheaper get/release) never runs dry.
                pool = redis.ConnectionPool.from_url(url, max_connections=max_conn, **options)
            return redis.Redis(connection_pool=pool)
        return self._open_embedded(options)

    def _open_embedded(self, options: dict[str, Any]) -> SyncClient:
        import fakeredis

        server: Any
        if self._memory_listen and self._state_dir is not None:
            host, _, port = self._memory_listen.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(
                    f"redis.memory_listen must be host:port, got {self._memory_listen!r}"
                )
            self._tcp = fakeredis.TcpFakeServer((host, int(port)), server_type="redis")
            self._tcp.daemon_threads = True
            server = self._tcp.fake_server
            bound_host, bound_port = self._tcp.server_address[:2]
            self.served_url = f"redis://{bound_host}:{bound_port}/0"
        else:
            server = fakeredis.FakeServer()
        options.pop("socket_connect_timeout")
        return fakeredis.FakeRedis(server=server, **options)

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
        self._state_dir.mkdir(parents=True, exist_ok=True)
        path = embedded_address_file(self._state_dir)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"url": self.served_url, "pid": os.getpid()}))
        tmp.replace(path)

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
                await trio.sleep(delay)

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
        self.client.close()

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
        if ok and not self.ready:
            self.ready = True
            self._ready_event.set()
            log.info("Redis at %s is reachable", self.safe_url)
        elif not ok and self.ready:
            self.ready = False
            self._ready_event = trio.Event()
            log.error("Redis at %s became unreachable: %s", self.safe_url, error)

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(client, *args)` on this thread, translating errors (sync callers)."""
        try:
            return fn(self.client, *args)
        except _UNAVAILABLE as exc:
            raise RedisUnavailable(str(exc) or type(exc).__name__) from exc
        except redis.exceptions.RedisError as exc:
            raise RedisCommandError(str(exc)) from exc

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(client, *args)` in a worker thread: the only way trio code reaches Redis.

        Not abandoned on cancel: a Redis call that already left must finish so its
        outcome (a claimed job, a completion) is known. Keep `fn` short or bounded by a
        server-side timeout (blocking waits are ≤ the poll interval).
        """
        try:
            result = await trio.to_thread.run_sync(self.run_sync, fn, *args, limiter=self._limiter)
        except RedisUnavailable as exc:
            self._mark(False, exc)
            raise
        self._mark(True)
        return result

    async def wait_ready(self) -> None:
        await self._ready_event.wait()
