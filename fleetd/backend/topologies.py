"""Redis topologies: what each `redis.url` scheme means and how its client is opened.

- `redis://`, `rediss://`, `unix://`: one server (`open_direct`), with a connection pool
  sized and typed for its callers;
- `redis+sentinel://` / `rediss+sentinel://`: the primary a set of Sentinels names for a
  service, found again after a failover (`open_sentinel`);
- `redis+cluster://` / `rediss+cluster://`: a Redis Cluster from any reachable nodes
  (`open_cluster`; the client is made on first use, see RedisLink.client);
- `memory://`: the embedded in-process store (fakeredis, same Lua), optionally served
  on loopback TCP so the CLI in another terminal reaches it (`open_embedded`).

Sentinel and Cluster URLs name several hosts, which urllib does not parse
(`MultiHostURL`). Every client gets the same options (`client_options`): RESP2, decoded
strings, no hidden retries. Only fleetd.backend.redis_link uses this module: nothing
else in fleetd imports redis.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

__all__ = [
    "CLUSTER_SCHEMES",
    "SENTINEL_SCHEMES",
    "MultiHostURL",
    "client_options",
    "open_cluster",
    "open_direct",
    "open_embedded",
    "open_sentinel",
]

SENTINEL_SCHEMES = ("redis+sentinel://", "rediss+sentinel://")
CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
_DEFAULT_PORT = {"sentinel": 26379, "cluster": 6379}


class MultiHostURL:
    """`<scheme>://[[user]:password@]host[:port][,host[:port]...][/path]`, parsed.

    The `+sentinel`/`+cluster` URLs name several hosts, which urllib does not parse.
    """

    def __init__(self, url: str, kind: str) -> None:
        scheme, _, rest = url.partition("://")
        self.tls = scheme.startswith("rediss+")
        netloc, _, path = rest.partition("/")
        userinfo, _, hosts = netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        self.username = unquote(user) or None
        self.password = unquote(password) or None
        self.nodes: list[tuple[str, int]] = []
        for item in hosts.split(","):
            host, sep, port = item.strip().rpartition(":")
            if not sep or "]" in port:  # no port (an IPv6 literal's colons are in [])
                host, port = item.strip(), ""
            host = host.strip("[]")
            if not host or not (port == "" or port.isdigit()):
                raise ValueError(f"redis.url: bad host {item!r} in {kind} URL")
            self.nodes.append((host, int(port) if port else _DEFAULT_PORT[kind]))
        self.path = [part for part in path.split("/") if part]


def _parse_db(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"redis.url: database must be a number, got {text!r}")
    return int(text)


def client_options(connect_timeout: float, timeout: float) -> dict[str, Any]:
    # RESP2 and decoded strings everywhere; no hidden retries: a retried script could
    # run twice (an enqueue without an idempotency key would duplicate a job).
    # No health-check PINGs: a dead connection shows as an error on first use,
    # which the caller already handles (they cost ~10 µs on every command).
    # Bytes that are not UTF-8 (a value written by hand or by another program) read
    # as lone surrogates instead of failing the whole reply: the row holding them is
    # shown degraded (fleetd.jobs.model_salvage), and written back they round-trip.
    return {
        "decode_responses": True,
        "encoding_errors": "surrogateescape",
        "protocol": 2,
        "retry": Retry(NoBackoff(), 0),
        "socket_timeout": timeout,
        "socket_connect_timeout": connect_timeout,
    }


def open_direct(
    url: str, max_conn: int, options: dict[str, Any], *, shared_by_threads: bool
) -> Any:
    """One server: `redis://`, `rediss://` or `unix://`."""
    if shared_by_threads:
        # Any number of caller threads: wait for a free connection.
        pool: redis.ConnectionPool = redis.BlockingConnectionPool.from_url(
            url, max_connections=max_conn, timeout=options["socket_timeout"], **options
        )
    else:
        # Only RedisLink.call() uses it, and its CapacityLimiter keeps in-flight hops at
        # max_connections, so a plain pool (cheaper get/release) never runs dry.
        pool = redis.ConnectionPool.from_url(url, max_connections=max_conn, **options)
    return redis.Redis(connection_pool=pool)


def open_sentinel(url: str, max_conn: int, options: dict[str, Any]) -> tuple[Sentinel, Any]:
    """`redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]`:
    the primary Sentinel names for `service`, found again by redis-py after a failover.
    The password is the primary's; the sentinels are reached with the same timeouts
    (and TLS for `rediss+sentinel://`) but no password. Returns the Sentinel (its
    connections are closed with the link) and the primary's client."""
    parsed = MultiHostURL(url, "sentinel")
    if not parsed.path or len(parsed.path) > 2:
        raise ValueError("redis.url: redis+sentinel:// needs /<service_name>[/<db>]")
    service = unquote(parsed.path[0])
    db = _parse_db(parsed.path[1]) if len(parsed.path) == 2 else 0
    tls: dict[str, Any] = {"ssl": True} if parsed.tls else {}
    sentinel_options = {
        "socket_timeout": options["socket_timeout"],
        "socket_connect_timeout": options["socket_connect_timeout"],
        "decode_responses": True,
        "protocol": 2,
        "retry": Retry(NoBackoff(), 0),
        **tls,
    }
    sentinel = Sentinel(parsed.nodes, sentinel_kwargs=sentinel_options)
    # Not a blocking pool (redis-py has no Sentinel variant): max_connections bounds
    # it; call()'s limiter keeps the daemon within it.
    return sentinel, sentinel.master_for(
        service,
        max_connections=max_conn,
        db=db,
        username=parsed.username,
        password=parsed.password,
        **tls,
        **options,
    )


def open_cluster(url: str, max_conn: int, options: dict[str, Any]) -> Callable[[], Any]:
    """`redis+cluster://[[user]:password@]host[:port][,host[:port]...]`: any reachable
    nodes; redis-py discovers the rest and follows MOVED/ASK. fleetd's keys share one
    hash tag, so each script and pipeline goes to one node. Database 0 only."""
    parsed = MultiHostURL(url, "cluster")
    if parsed.path and parsed.path != ["0"]:
        raise ValueError("redis.url: a Cluster has database 0 only")
    return functools.partial(
        RedisCluster,
        startup_nodes=[ClusterNode(host, port) for host, port in parsed.nodes],  # type: ignore[no-untyped-call]
        max_connections=max_conn,  # per node
        username=parsed.username,
        password=parsed.password,
        ssl=parsed.tls,
        **options,
    )


def open_embedded(listen: str, options: dict[str, Any]) -> tuple[Any, str | None, Any]:
    """`memory://`: a fresh in-process store. With `listen` ("host:port", port 0 = any)
    it is also served on loopback TCP (started by RedisLink.serve_embedded). Returns
    the TCP server (or None), the URL it serves (or None) and the client."""
    import fakeredis  # only the embedded store needs it (and lupa for its Lua)

    tcp: Any = None
    served_url: str | None = None
    server: Any
    if listen:
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"redis.memory_listen must be host:port, got {listen!r}")
        tcp = fakeredis.TcpFakeServer((host, int(port)), server_type="redis")
        tcp.daemon_threads = True
        server = tcp.fake_server
        bound_host, bound_port = tcp.server_address[:2]
        served_url = f"redis://{bound_host}:{bound_port}/0"
    else:
        server = fakeredis.FakeServer()
    options = {k: v for k, v in options.items() if k != "socket_connect_timeout"}
    return tcp, served_url, fakeredis.FakeRedis(server=server, **options)
