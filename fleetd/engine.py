"""The core objects for one configuration, wired together once.

Owns building the RedisLink, the scripts, the handler registry, the queue operations,
their async facade and the audit writer (fleetd.audit: the daemon's trio service, or
the CLI's and the client's background writer, which `close` flushes) from a Config,
for the daemon and the CLI alike. The CLI talks to
Redis directly; with `memory://` it reaches the running daemon's embedded store through
the address the daemon recorded in its state directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from fleetd.audit.background import BackgroundWriter
from fleetd.audit.backlog import AuditTrail
from fleetd.audit.spool import SPOOL_NAME, AuditSpool
from fleetd.audit.store import AuditStore
from fleetd.audit.writer import AuditWriter
from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import RedisLink, embedded_address_file
from fleetd.backend.scripts import Scripts
from fleetd.config import Config
from fleetd.jobs.handlers import HandlerRegistry
from fleetd.jobs.queue import JobDefaults, Queue, QueueOps
from fleetd.jobs.sealing import Sealer
from fleetd.plugins import discovery

__all__ = ["Engine", "NoDaemonError", "build_registry"]


class NoDaemonError(Exception):
    """The CLI was pointed at memory:// but no daemon serves the embedded store."""


def build_registry(cfg: Config) -> HandlerRegistry:
    """The job types this process knows: the core `noop` and every installed plugin's
    (entry-point group `fleetd.plugins`), less `[plugins] disable`. Raises PluginError
    or DuplicateJobType naming the culprit."""
    return discovery.build_registry(cfg)


def client_url(cfg: Config) -> str:
    """The URL a client process (CLI, benchmarks) uses for this config."""
    if not cfg.redis.url.startswith("memory://"):
        return cfg.redis.url
    path = embedded_address_file(cfg.state_dir)
    try:
        return str(json.loads(path.read_text())["url"])
    except (OSError, ValueError, KeyError):
        raise NoDaemonError(
            f"redis.url is memory:// and no running fleetd daemon serves it "
            f"(nothing at {path}); start `fleetd run` first or set redis.url"
        ) from None


@dataclass
class Engine:
    config: Config
    link: RedisLink
    keys: Keys
    scripts: Scripts
    registry: HandlerRegistry
    ops: QueueOps
    queue: Queue
    audit: AuditWriter | BackgroundWriter

    def worker_scripts(self) -> Scripts:
        """The scripts a worker pool claims with: only the job types this process has
        handlers for, within [limits] (claim only what you can run)."""
        return self.scripts.for_claims(self.registry.types(), self.config.limits.build().encode())

    @classmethod
    def build(cls, cfg: Config, *, daemon: bool, registry: HandlerRegistry | None = None) -> Engine:
        """`daemon=True` opens the configured URL (memory:// becomes the embedded store,
        served on loopback); `daemon=False` opens what a client should use."""
        r = cfg.redis
        link = RedisLink(
            r.url if daemon else client_url(cfg),
            max_connections=r.max_connections,
            connect_timeout=r.connect_timeout,
            command_timeout=r.command_timeout,
            reconnect_max_backoff=r.reconnect_max_backoff,
            memory_listen=r.memory_listen,
            state_dir=cfg.state_dir,
            shared_by_threads=not daemon,
        )
        keys = Keys(r.namespace)
        scripts = Scripts(keys, r.events_maxlen)
        registry = registry if registry is not None else build_registry(cfg)
        w = cfg.worker
        defaults = JobDefaults(
            max_retries=w.max_retries,
            timeout=w.job_timeout,
            max_data_bytes=cfg.http.max_body_size,
            max_data_depth=cfg.http.max_json_depth,
        )
        quota = cfg.limits.build().encode_quota(registry.types())
        wait = (r.wait_replicas, int(r.wait_timeout * 1000))
        ops = QueueOps(keys, scripts, registry, defaults, Sealer.from_config(cfg), quota, wait)
        trail = AuditTrail(
            AuditStore(keys, scripts, cfg.http.audit_maxlen),
            AuditSpool(cfg.state_dir / SPOOL_NAME),
        )
        audit: AuditWriter | BackgroundWriter
        audit = AuditWriter(trail, link) if daemon else BackgroundWriter(trail, link)
        return cls(cfg, link, keys, scripts, registry, ops, Queue(link, ops), audit)

    def close(self) -> None:
        self.audit.close()  # before the link: it may still write (or spool) entries
        self.link.close()
