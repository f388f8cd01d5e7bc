"""The check of `redis.url`: its scheme, and the rest parsed as the Redis link will
parse it when it opens its client (fleetd.backend.topologies), so that a URL the link
cannot use is a config error naming the key — reported by `fleetd config check` and at
start-up — not a traceback of the first command or daemon that builds the link.

What it catches: a malformed host or port (`redis://[::1`, `:99999`), a database that is
not a number, a query parameter redis-py does not know (it would fail every connection)
or whose value it cannot parse, a timeout that is not a positive number, a sentinel URL
without its service, a cluster URL naming a database other than 0. Nothing here opens a
connection: an unreachable server is the link's error.

redis-py and the topologies are imported inside the check, only for a URL other than
memory://: the commands that reach Redis import them anyway.
"""

from __future__ import annotations

import inspect
import math
import re
from typing import Any

from fleetd.config.settings import MAX_PORT, prefixed

__all__ = ["check_redis_url"]

_SCHEMES = prefixed(
    "memory://",
    "redis://",
    "rediss://",
    "unix://",
    "redis+sentinel://",
    "rediss+sentinel://",
    "redis+cluster://",
    "rediss+cluster://",
)
_PASSWORD = re.compile(r"//([^@/]*):[^@/]*@")
_TIMEOUTS = ("socket_timeout", "socket_connect_timeout", "timeout")


def check_redis_url(url: str) -> str | None:
    if error := _SCHEMES(url):
        return error
    if url.startswith("memory://"):
        return None
    if any(c.isspace() or not c.isprintable() for c in url):
        return f"must not contain spaces or control characters, got {url!r}"
    try:
        if url.startswith(("redis+sentinel://", "rediss+sentinel://")):
            _check_hosts(url, "sentinel")
        elif url.startswith(("redis+cluster://", "rediss+cluster://")):
            _check_hosts(url, "cluster")
        else:
            _check_direct(url)
    except ValueError as exc:
        shown = _PASSWORD.sub(r"//\1:***@", url)  # the error is printed, maybe logged
        return f"{str(exc).removeprefix('redis.url: ').rstrip('.')}, got {shown!r}"
    return None


def _check_hosts(url: str, kind: str) -> None:
    from fleetd.backend.topologies import MultiHostURL

    parsed = MultiHostURL(url, kind)
    path = parsed.path
    if kind == "sentinel" and not 1 <= len(path) <= 2:
        raise ValueError("a sentinel URL needs /<service_name>[/<db>]")
    if kind == "sentinel" and len(path) == 2 and not path[1].isdigit():
        raise ValueError(f"the database must be a number, not {path[1]!r}")
    if kind == "cluster" and path not in ([], ["0"]):
        raise ValueError("a Cluster has database 0 only")
    if bad := [f"{host}:{port}" for host, port in parsed.nodes if port > MAX_PORT]:
        raise ValueError(f"port out of range 0-{MAX_PORT}: {', '.join(bad)}")


def _check_direct(url: str) -> None:
    from urllib.parse import urlsplit

    import redis
    from redis.connection import parse_url

    kwargs = parse_url(url)  # type: ignore[no-untyped-call]  # ValueError: bad host, port, query
    scheme = url.partition("://")[0]
    path = urlsplit(url).path
    if scheme == "unix" and not kwargs.get("path"):
        raise ValueError("a unix:// URL needs the socket's path")
    if scheme != "unix" and path.strip("/") and not path.strip("/").isdigit():
        raise ValueError(f"the database must be a number, not {path.strip('/')!r}")
    for key in _TIMEOUTS:
        if key in kwargs and not (math.isfinite(kwargs[key]) and kwargs[key] > 0):
            raise ValueError(f"{key} must be a positive number of seconds")
    cls: Any = kwargs.pop("connection_class", redis.Connection)
    # What the connection and its pool take (the link opens a pool from the URL).
    known = {
        name
        for klass in (*cls.__mro__, *redis.BlockingConnectionPool.__mro__)
        if "__init__" in vars(klass)
        for name in inspect.signature(klass.__init__).parameters
    }
    if unknown := sorted(set(kwargs) - known):
        raise ValueError(f"unknown query parameter(s) {', '.join(unknown)}")
