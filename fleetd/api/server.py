"""The http service of the daemon (role api): the admin API on hypercorn, through our
accept loop (fleetd.api.acceptor).

Lifecycle: `HttpService(engine, ready)` checks the auth and TLS settings and
`bind()` binds every `[http] listen` address (host:port, or unix:/path; or adopts the
sockets a supervisor bound, fleetd.api.listeners) — both before
the daemon opens its nursery, so a bad key file or a taken port is one plain start-up
error. `run(task_status)` listens, records the bound URLs in `<state_dir>/http.json`
(port 0 picks a free port; the file says which) and calls `task_status.started()`, so
the daemon is ready only when the API answers. Beside the server it runs the event hub
(fleetd.events: the one reader of the events stream, feeding the WebSocket subscribers
and the counters of /metrics) and the audit writer. `stop()` (called by the daemon when
it stops) closes every events WebSocket with 1001 and the listeners; requests in flight
get `[http] shutdown_timeout` to finish.

In front of the app: admission control (fleetd.api.admission: at most `[http]
max_in_flight` requests in flight, an immediate 503 beyond) and graceful early answers
(fleetd.api.linger). The listen backlog is LISTEN_BACKLOG, so that a burst of
connections waits in the kernel instead of being dropped; the accept loop takes such a
burst in batches and answers a plain `GET /healthz` as it accepts it
(fleetd.api.probes.ProbeShortcut).

The API has its own Redis link whose socket timeout is `[http] redis_timeout`: a hung or
unreachable Redis answers 503 within that bound instead of holding requests for the
worker pool's longer command timeout. With `memory://` it shares the daemon's link (the
store lives in this process and cannot hang).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.config import Sockets
from hypercorn.utils import wrap_app

from fleetd.api.acceptor import serve
from fleetd.api.admission import Admission
from fleetd.api.app import create_app
from fleetd.api.audit import AuditLog
from fleetd.api.auth import TokenVerifier
from fleetd.api.batcher import EnqueueBatcher
from fleetd.api.body import BodyLimits
from fleetd.api.context import ApiState, api_redis_timeout
from fleetd.api.linger import Lingering
from fleetd.api.listeners import (
    LISTEN_BACKLOG,
    HttpError,
    adopt_listeners,
    bind_listeners,
    clear_stale_sockets,
)
from fleetd.api.metrics import ApiMetrics
from fleetd.api.probes import ProbeShortcut
from fleetd.api.protocol_errors import install_protocol_errors
from fleetd.api.ws_stream import install_ws_stream
from fleetd.audit.reader import AuditReader
from fleetd.audit.writer import AuditWriter
from fleetd.backend.redis_link import RedisLink
from fleetd.config.statefiles import write_json_atomically
from fleetd.engine import Engine
from fleetd.jobs.artifacts import artifacts_root
from fleetd.jobs.context import JobServices
from fleetd.runtime.events import READ_BLOCK, EventHub
from fleetd.runtime.inline import InlineJobs
from fleetd.schedules.store import ScheduleOps

__all__ = ["HTTP_FILE", "LISTEN_BACKLOG", "HttpError", "HttpService", "build_state"]

log = logging.getLogger("fleetd.http")

HTTP_FILE = "http.json"
# Largest message a WebSocket client may send: the feed only takes `subscribe`
# messages (a few hundred bytes); hypercorn's default is 16 MiB.
WS_MAX_MESSAGE = 64 * 1024


def api_link(engine: Engine) -> RedisLink:
    cfg = engine.config
    if engine.link.embedded:
        return engine.link
    timeout = api_redis_timeout(cfg)
    return RedisLink(
        cfg.redis.url,
        max_connections=cfg.redis.max_connections,
        connect_timeout=min(cfg.redis.connect_timeout, timeout),
        command_timeout=timeout,
        reconnect_max_backoff=cfg.redis.reconnect_max_backoff,
    )


def _audit_writer(engine: Engine) -> AuditWriter:
    """The daemon's audit writer (the daemon runs it; the API only submits)."""
    if not isinstance(engine.audit, AuditWriter):
        raise TypeError("the admin API needs a daemon engine (Engine.build(daemon=True))")
    return engine.audit


def build_state(
    engine: Engine, ready: Callable[[], bool], link: RedisLink | None = None
) -> ApiState:
    """The API's state for an engine (its own link unless one is given)."""
    cfg = engine.config
    try:
        verifier = TokenVerifier(cfg)
    except (ValueError, OSError) as exc:
        raise HttpError(str(exc)) from None
    if verifier.generated:
        log.warning(
            "auth: no [auth] secret configured; generated one into %s (mint a token "
            "with `fleetd token`)",
            verifier.secret_file,
        )
    h = cfg.http
    api = link or api_link(engine)
    # The XREAD blocks below the link's socket timeout: a quiet stream is not a dead Redis.
    hub = EventHub(
        engine.keys,
        api,
        cfg.events,
        block=min(READ_BLOCK, h.redis_timeout / 2),
        reconnect_cap=cfg.redis.reconnect_max_backoff,
        spaces=engine.spaces,
    )
    metrics = ApiMetrics(engine.keys, engine.spaces)
    hub.add_consumer(metrics.count_event)
    metrics.count_subscribers(lambda: len(hub.sessions))
    if engine.spooler is not None:
        metrics.watch_spool(engine.spooler)
    return ApiState(
        config=cfg,
        link=api,
        ops=engine.ops,
        schedules=ScheduleOps.from_engine(engine),
        registry=engine.registry,
        verifier=verifier,
        limits=BodyLimits(h.max_body_size, h.max_json_depth),
        artifacts_root=artifacts_root(cfg),
        ready=ready,
        audit=AuditLog(_audit_writer(engine), AuditReader(engine.keys), api),
        metrics=metrics,
        batcher=EnqueueBatcher(api, engine.ops),
        hub=hub,
        spool=engine.spooler,
        inline=inline_jobs(engine, api),
    )


def inline_jobs(engine: Engine, link: RedisLink) -> InlineJobs:
    """Sync fallback and queue bypass of this API (fleetd.runtime.inline)."""
    w = engine.config.worker
    services = JobServices(link, engine.keys, engine.scripts, engine.queue,
                           engine.registry.artifacts_dir, audit=_audit_writer(engine),
                           artifact_limits=engine.registry.artifact_limits)  # fmt: skip
    timeout = api_redis_timeout(engine.config)
    connect = min(engine.config.redis.connect_timeout, timeout)
    return InlineJobs(link, engine.scripts, engine.registry, engine.ops.sealer, services,
                      engine.spooler, job_timeout=w.job_timeout, lease=w.lease,
                      critical_slots=w.critical_slots,
                      redis_timeouts=(connect, timeout))  # fmt: skip


class HttpService:
    def __init__(self, engine: Engine, ready: Callable[[], bool]) -> None:
        self.engine = engine
        self.cfg = engine.config
        self.state = build_state(engine, ready)
        self.app = create_app(self.state)
        metrics = self.state.metrics
        self.admission = Admission(
            self.app,
            self.cfg.http.max_in_flight,
            on_refused=metrics.overloaded.inc if metrics is not None else lambda: None,
        )
        if metrics is not None:
            metrics.count_in_flight(lambda: self.admission.in_flight)
        self.urls: list[str] = []
        self._hc = self._hyper_config()
        self._sockets: Sockets | None = None
        self._shared = False  # other processes accept from the same sockets
        self._stop = trio.Event()
        self._done = trio.Event()

    def stop(self) -> None:
        """Close the events WebSockets (1001) and the listeners; requests in flight get
        [http] shutdown_timeout."""
        if self.state.hub is not None:
            self.state.hub.close_all(1001, "server shutting down")
        self._stop.set()

    async def stop_and_wait(self) -> None:
        self.stop()
        await self._done.wait()

    def _hyper_config(self) -> HyperConfig:
        h = self.cfg.http
        hc = HyperConfig()
        hc.bind = list(h.listen)
        if bool(h.tls_cert) != bool(h.tls_key):
            raise HttpError("http.tls_cert and http.tls_key must be set together")
        if h.tls_cert:
            for name in (h.tls_cert, h.tls_key):
                if not Path(name).expanduser().is_file():
                    raise HttpError(f"TLS file not found: {name}")
            hc.certfile = str(Path(h.tls_cert).expanduser())
            hc.keyfile = str(Path(h.tls_key).expanduser())
        hc.graceful_timeout = h.shutdown_timeout
        hc.backlog = LISTEN_BACKLOG
        hc.include_server_header = False
        hc.accesslog = None
        hc.errorlog = logging.getLogger("fleetd.http.server")
        # Request headers larger than this are refused by the protocol layer (431).
        hc.h11_max_incomplete_size = 16 * 1024
        hc.websocket_max_message_size = WS_MAX_MESSAGE
        install_ws_stream(hc, self.cfg.events.ping_interval, self.cfg.events.compression)
        install_protocol_errors()
        return hc

    def _record(self) -> None:
        write_json_atomically(
            self.cfg.state_dir / HTTP_FILE, {"urls": self.urls, "pid": os.getpid()}
        )

    def _forget(self) -> None:
        path = self.cfg.state_dir / HTTP_FILE
        with contextlib.suppress(OSError, ValueError):
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()

    def bind(self, inherited: Sequence[int] = ()) -> None:
        """Bind every listen address now (a taken one raises HttpError naming it), or
        adopt the listening sockets a supervisor bound and passed down as `inherited`
        (fleetd.runtime.supervisor: every child accepts from the same sockets)."""
        if inherited:
            opened = adopt_listeners(inherited, self._hc.bind)
            self._shared = True
        else:
            clear_stale_sockets(self._hc.bind)
            opened = bind_listeners(self._hc.bind, self._hc.backlog)
        tls = self._hc.ssl_enabled
        self._sockets = Sockets(opened if tls else [], [] if tls else opened, [])

    def close(self) -> None:
        """Release the bound addresses (if run() never started)."""
        self._close_sockets()

    def _close_sockets(self) -> None:
        if self._sockets is not None:
            for sock in [*self._sockets.secure_sockets, *self._sockets.insecure_sockets]:
                sock.close()
            self._sockets = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        hc = self._hc
        if self._sockets is None:
            self.bind()
        st = self.state
        try:
            async with trio.open_nursery() as nursery:
                assert st.hub is not None
                await nursery.start(st.hub.run)
                serve_done = trio.Event()

                async def serve_http(task_status: trio.TaskStatus[list[str]]) -> None:
                    assert self._sockets is not None
                    try:
                        await serve(
                            wrap_app(Lingering(self.admission), hc.wsgi_max_body_size, "asgi"),
                            hc,
                            self._sockets,
                            shutdown_trigger=self._stop.wait,
                            shortcut=ProbeShortcut(st.metrics, date=hc.include_date_header),
                            shared=self._shared,
                            task_status=task_status,
                        )
                    finally:
                        serve_done.set()

                assert st.audit is not None and st.batcher is not None
                nursery.start_soon(st.batcher.run)
                self.urls = list(await nursery.start(serve_http))
                self._record()
                log.info("admin API listening on %s", ", ".join(self.urls))
                task_status.started()
                # serve() returns once the listeners are closed and the requests in
                # flight are done (or their grace ran out); the event hub goes too.
                await serve_done.wait()
                await st.audit.flush()
                nursery.cancel_scope.cancel()
        finally:
            self._close_sockets()
            self._done.set()
            self._forget()
            if st.inline is not None:
                st.inline.close()
            if st.link is not self.engine.link:
                st.link.close()
