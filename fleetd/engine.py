"""The core objects for one configuration, wired together once.

Owns building the RedisLink, the scripts, the handler registry, the queue operations,
their async facade, the audit writer (fleetd.audit: the daemon's trio service, or
the CLI's and the client's background writer, which `close` flushes) and the enqueue
spool (fleetd.spool; in a daemon with its replayer) from a Config,
for the daemon and the CLI alike. The CLI talks to
Redis directly; with `memory://` it reaches the running daemon's embedded store through
the address the daemon recorded in its state directory.

The registry, the queue operations, their facade and the spool are built on first use, and the
daemon's audit writer (a trio service) imported by the daemon only: they bring in
the job model (pydantic), the handler contract, cryptography and trio, ~0.15 s that
`fleetd stats` and the other read-only commands never need (bench/cli_startup.py). The
daemon and the client touch them at once, so a broken plugin still fails start-up.
These function-level imports close no cycle (tests/test_architecture.py checks).
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import TYPE_CHECKING

from fleetd.audit.background import BackgroundWriter
from fleetd.audit.backlog import AuditTrail
from fleetd.audit.spool import SPOOL_NAME, AuditSpool
from fleetd.audit.store import AuditCaps, AuditStore
from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import RedisLink, embedded_address_file
from fleetd.backend.scripts import Scripts
from fleetd.backend.spaces import Space, Spaces
from fleetd.config import Config
from fleetd.config.queue_section import Served, parse_routes

if TYPE_CHECKING:
    from fleetd.audit.writer import AuditWriter
    from fleetd.jobs.handlers import HandlerRegistry
    from fleetd.jobs.queue import Queue, QueueOps
    from fleetd.spool.file import JobSpool
    from fleetd.spool.service import DaemonSpool

__all__ = ["Engine", "NoDaemonError", "build_registry"]


class NoDaemonError(Exception):
    """The CLI was pointed at memory:// but no daemon serves the embedded store."""


def build_registry(cfg: Config) -> HandlerRegistry:
    """The job types this process knows: the core `noop` and every installed plugin's
    (entry-point group `fleetd.plugins`), less `[plugins] disable`. Raises PluginError
    or DuplicateJobType naming the culprit."""
    from fleetd.plugins import discovery  # start-up time (module docstring)

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


class Engine:
    def __init__(
        self,
        config: Config,
        link: RedisLink,
        keys: Keys,
        scripts: Scripts,
        audit: AuditWriter | BackgroundWriter,
        *,
        registry: HandlerRegistry | None,
        handlers: bool,
    ) -> None:
        self.config = config
        self.link = link
        self.keys = keys
        self.scripts = scripts
        # The namespace's key spaces: its own, and one per queue with a slot of its own.
        self.spaces = Spaces(scripts, config.queues.own_slot)
        self.audit = audit
        self._registry = registry
        self._handlers = handlers
        # In a daemon with [spool] enabled: the API's side of the spool and its replayer.
        self.spooler: DaemonSpool | None = None

    def worker_scripts(self, space: Space | None = None) -> Scripts:
        """The scripts a worker pool claims with: only the job types this process has
        handlers for, within [limits] (claim only what you can run), from the queues it
        serves: in the namespace's space all of them (jobs stored there before a queue
        had a space, and the jobs of workflows and schedules, stay there); in a queue's
        space that queue."""
        served = Served.parse(self.config.worker.queues)
        if space is not None and not space.home:
            served = Served(((space.queue, 0),))
        scripts = self.scripts if space is None else space.scripts
        return scripts.for_claims(
            self.registry.types(), self.config.limits.build().encode(), served
        )

    @classmethod
    def build(
        cls,
        cfg: Config,
        *,
        daemon: bool,
        registry: HandlerRegistry | None = None,
        handlers: bool = True,
    ) -> Engine:
        """`daemon=True` opens the configured URL (memory:// becomes the embedded store,
        served on loopback); `daemon=False` opens what a client should use. The
        registry: `registry` if given, else the plugins' handlers (`build_registry`),
        or none with `handlers=False` (commands that never validate a job's data)."""
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
        scripts = Scripts(keys, r.events_maxlen, company_maxlen=cfg.events.company_maxlen)
        h = cfg.http
        caps = AuditCaps(h.audit_maxlen, h.audit_company_maxlen, h.audit_anonymous_maxlen)
        trail = AuditTrail(
            AuditStore(keys, scripts, caps),
            AuditSpool(cfg.state_dir / SPOOL_NAME),
        )
        audit: AuditWriter | BackgroundWriter
        if daemon:
            from fleetd.audit.writer import AuditWriter  # a trio service: start-up time

            audit = AuditWriter(trail, link)
        else:
            audit = BackgroundWriter(trail, link)
        engine = cls(cfg, link, keys, scripts, audit, registry=registry, handlers=handlers)
        if handlers:
            engine.queue  # noqa: B018 - built now: a broken plugin fails here, not later
        if daemon and (sp := cfg.spool).enabled and (spool := engine.spool) is not None:
            from fleetd.spool.service import DaemonSpool  # a trio service: start-up time

            engine.spooler = DaemonSpool(spool, link, engine.ops, trail.store,
                batch=sp.replay_batch, interval=sp.replay_interval)  # fmt: skip
        return engine

    @cached_property
    def registry(self) -> HandlerRegistry:
        if self._registry is not None:
            return self._registry
        if self._handlers:
            return build_registry(self.config)
        from fleetd.jobs.handlers import HandlerRegistry  # start-up time (module docstring)

        return HandlerRegistry()

    @cached_property
    def ops(self) -> QueueOps:
        from fleetd.jobs.queue import JobDefaults, QueueOps  # start-up time (docstring)
        from fleetd.jobs.sealing import Sealer

        cfg, w = self.config, self.config.worker
        defaults = JobDefaults(
            max_retries=w.max_retries,
            timeout=w.job_timeout,
            max_data_bytes=cfg.http.max_body_size,
            max_data_depth=cfg.http.max_json_depth,
            routes=parse_routes(cfg.queues.routes),
        )
        quota = cfg.limits.build().encode_quota(self.registry.types())
        r = cfg.redis
        wait = (r.wait_replicas, int(r.wait_timeout * 1000))
        sealer = Sealer.from_config(cfg)
        return QueueOps(
            self.keys, self.scripts, self.registry, defaults, sealer, quota, wait, self.spaces
        )

    @cached_property
    def queue(self) -> Queue:
        from fleetd.jobs.queue import Queue  # start-up time (module docstring)

        return Queue(self.link, self.ops)

    @cached_property
    def spool(self) -> JobSpool | None:
        """The enqueue spool of the state directory, None with [spool] enabled = false."""
        sp = self.config.spool
        if not sp.enabled:
            return None
        from fleetd.spool.file import SPOOL_FILE, JobSpool  # start-up time (docstring)

        return JobSpool(
            self.config.state_dir / SPOOL_FILE,
            max_jobs=sp.max_jobs,
            max_bytes=sp.max_bytes,
            company_share=sp.company_share,
        )

    def close(self) -> None:
        self.audit.close()  # before the link: it may still write (or spool) entries
        if "spool" in self.__dict__ and self.spool is not None:  # opened: close it
            self.spool.close()
        self.link.close()
