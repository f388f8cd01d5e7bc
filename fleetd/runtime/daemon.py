"""`fleetd run`: the daemon's supervision tree (one of N with `[daemon] processes`).

    daemon (TERM/INT graceful stop, a second one at once; HUP reload; USR1 dump state)
    ├── redis link      connect (waits with capped backoff), load every script
    ├── heartbeat       this daemon's metrics, visible to every daemon
    ├── maintenance     promote / reap / prune                     (role worker)
    ├── scheduler       default schedules, then fire due ones      (role scheduler)
    ├── worker pool     fetch, run, flush, renew, control          (role worker)
    ├── http            admin API, /healthz, /readyz, /metrics     (role api; started
    │                   before Redis answers, so probes work while it waits)
    ├── alerts, notify  alerts with hysteresis; [[notify]] rules → webhook, e-mail job
    └── systemd         READY once every service started, WATCHDOG pings, STATUS,
                        RELOADING around SIGHUP, STOPPING at stop (fleetd.runtime.systemd)

Every service is `run(*, task_status)` started with `nursery.start`, so the daemon is
ready only when all of them are. A graceful stop quiets the pool (no more claims), lets
running jobs finish within shutdown_timeout, releases the rest to pending, flushes
outcomes, closes the API's listeners (requests in flight get [http] shutdown_timeout;
/readyz answers 503 from the stop request on), then cancels the remaining services;
the exit code is 0.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from fleetd.audit.writer import AuditWriter
from fleetd.backend.redis_link import (
    RedisCommandError,
    RedisUnavailable,
    SyncClient,
    embedded_address_file,
)
from fleetd.config import Config, ConfigError, load_config
from fleetd.config.durations import format_duration
from fleetd.config.queue_section import Served
from fleetd.engine import Engine
from fleetd.jobs.handlers import HandlerRegistry
from fleetd.notify.service import start_notify
from fleetd.plugins.discovery import default_schedules
from fleetd.runtime import gctune, self_report, stacks
from fleetd.runtime.alerts import Alerts
from fleetd.runtime.heartbeat import Heartbeat, WorkerMetrics, new_daemon_id
from fleetd.runtime.inline import attach
from fleetd.runtime.log import set_level
from fleetd.runtime.pools import Pools
from fleetd.runtime.systemd import Notifier
from fleetd.schedules.service import Scheduler, SchedulerSettings
from fleetd.schedules.store import ScheduleOps

if TYPE_CHECKING:
    from fleetd.api.server import HttpService

__all__ = ["Daemon", "DaemonError"]

log = logging.getLogger("fleetd.daemon")


class DaemonError(Exception):
    """The daemon cannot start (another one owns the embedded store, a script is broken)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Daemon:
    def __init__(
        self,
        cfg: Config,
        *,
        config_path: Path | None = None,
        registry: HandlerRegistry | None = None,
        tune_gc: bool = False,
        listen_fds: Sequence[int] = (),
        supervisor_pid: int | None = None,
    ) -> None:
        """`tune_gc`: once ready, freeze start-up's objects and raise the collector's
        threshold (fleetd.runtime.gctune) — process-wide, so for `fleetd run`, not a test.
        `listen_fds`, `supervisor_pid`: a child of fleetd.runtime.supervisor."""
        self.cfg = cfg
        self.tune_gc = tune_gc
        self.listen_fds = tuple(listen_fds)
        self.supervisor_pid = supervisor_pid
        self.config_path = config_path
        self.roles = frozenset(cfg.daemon.roles)
        self.daemon_id = new_daemon_id(cfg.daemon.name)
        self.metrics = WorkerMetrics()
        self.engine = Engine.build(cfg, daemon=True, registry=registry)
        self.pool: Pools | None = None  # one per key space served (fleetd.runtime.pools)
        self.scheduler: Scheduler | None = None
        self.http: HttpService | None = None
        self.alerts: Alerts | None = None
        self.ready = False
        self.notifier = Notifier()
        self._stop = trio.Event()
        self._stop_requests = 0

    # -- control ---------------------------------------------------------------------

    def request_stop(self) -> None:
        """Graceful stop; a second request stops running jobs at once (they are released)."""
        self._stop_requests += 1
        if self._stop_requests > 1 and self.pool is not None:
            log.warning("second stop request: releasing running jobs now")
            self.pool.stop_now()
        self._stop.set()

    def reload(self) -> None:
        """Re-read the config file; apply what can change live (log level, concurrency)."""
        self.notifier.reloading()
        try:
            self._reload()
        finally:
            if self.ready:
                self.notifier.ready()

    def _reload(self) -> None:
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("reload refused, keeping the running config: %s", "; ".join(exc.errors))
            return
        if new.daemon.log_level != self.cfg.daemon.log_level:
            set_level(new.daemon.log_level)
            log.info("reload: log_level %s", new.daemon.log_level)
        if self.pool is not None and new.worker.concurrency != self.pool.concurrency:
            log.info("reload: concurrency %d → %d", self.pool.concurrency, new.worker.concurrency)
            self.pool.set_concurrency(new.worker.concurrency)
        live = replace(
            new,
            daemon=replace(new.daemon, log_level=self.cfg.daemon.log_level),
            worker=replace(new.worker, concurrency=self.cfg.worker.concurrency),
        )
        if live != self.cfg:
            log.warning("reload: other changed settings take effect after a restart")
        self.cfg = replace(
            self.cfg,
            daemon=replace(self.cfg.daemon, log_level=new.daemon.log_level),
            worker=replace(self.cfg.worker, concurrency=new.worker.concurrency),
        )

    def state(self) -> dict[str, Any]:
        pool = self.pool
        return {
            "daemon_id": self.daemon_id,
            "roles": sorted(self.roles),
            "ready": self.ready and self.engine.link.ready,
            "redis": self.engine.link.safe_url,
            "concurrency": pool.concurrency if pool else 0,
            "running": [j.id for j in pool.running_jobs()] if pool else [],
            "metrics": self.metrics.to_dict(),
            "alerts": self._alerts_state(),
        }

    def _alerts_state(self) -> dict[str, str] | None:
        """Raised alerts → their latest reading; None when alerts are disabled."""
        a = self.alerts
        return None if a is None else {n: getattr(a.values.get(n), "text", "") for n in a.active}

    async def _signals(self) -> None:
        sigs = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1]
        with trio.open_signal_receiver(*sigs) as receiver:
            async for signum in receiver:
                if signum in (signal.SIGTERM, signal.SIGINT):
                    log.info("received %s: stopping gracefully", signal.Signals(signum).name)
                    self.request_stop()
                elif signum == signal.SIGHUP:
                    self.reload()
                else:
                    log.info("state: %s", json.dumps(self.state()))

    # -- start-up --------------------------------------------------------------------

    def _claim_embedded(self) -> None:
        path = embedded_address_file(self.cfg.state_dir)
        try:
            other = json.loads(path.read_text()).get("pid")
        except (OSError, ValueError):
            other = None
        if isinstance(other, int) and other != os.getpid() and _pid_alive(other):
            raise DaemonError(
                f"another fleetd daemon (pid {other}) serves the embedded store in "
                f"{self.cfg.state_dir}; stop it or give this one another daemon.state_dir"
            )
        self.engine.link.serve_embedded()
        log.warning(
            "redis.url = memory://: jobs live inside this process and are lost when "
            "it stops (NOT durable); served for the CLI at %s",
            self.engine.link.served_url,
        )

    @staticmethod
    def _eviction_policy(client: SyncClient) -> str:
        return str(client.config_get("maxmemory-policy").get("maxmemory-policy", ""))

    async def _check_redis(self) -> None:
        if self.engine.link.embedded:
            return
        try:
            policy = await self.engine.link.call(self._eviction_policy)
        except (RedisCommandError, RedisUnavailable):
            return  # CONFIG may be forbidden by an ACL; nothing to warn about then
        if policy and policy != "noeviction":
            log.warning(
                "Redis maxmemory-policy is %r: an evicted job or lease is lost work; "
                "set it to noeviction",
                policy,
            )

    # -- run -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        link = self.engine.link
        try:
            if link.embedded:
                self._claim_embedded()
            if "api" in self.roles:
                self._prepare_http()
            async with trio.open_nursery() as services:
                services.start_soon(self._signals)
                if self.supervisor_pid is not None:
                    services.start_soon(self._watch_supervisor, self.supervisor_pid)
                await services.start(self.notifier.run, self._status_line)
                log.info(
                    "fleetd %s starting: roles %s, Redis %s",
                    self.daemon_id,
                    ",".join(sorted(self.roles)),
                    link.safe_url,
                )
                if self.http is not None:
                    await services.start(self.http.run)
                with trio.CancelScope() as connecting:
                    services.start_soon(self._cancel_on_stop, connecting)
                    await link.connect(self.engine.scripts.all())
                if connecting.cancelled_caught:
                    self.notifier.stopping("stopping: never reached Redis")
                    services.cancel_scope.cancel()
                    return
                await self._check_redis()
                await self._serve(services, task_status)
                if self.http is not None:
                    await self.http.stop_and_wait()
                services.cancel_scope.cancel()
        except RedisCommandError as exc:
            raise DaemonError(str(exc)) from None
        finally:
            self.ready = False
            if self.http is not None:
                self.http.close()
            self.engine.close()
            log.info("fleetd %s stopped", self.daemon_id)

    def _prepare_http(self) -> None:
        """Check the API's settings and bind its addresses before any service starts,
        so that a taken port or a bad key file is one plain start-up error."""
        from fleetd.api.server import HttpError, HttpService  # quart and hypercorn: role api only

        try:
            self.http = HttpService(self.engine, lambda: self.ready)
            self.http.bind(self.listen_fds)
        except HttpError as exc:
            raise DaemonError(str(exc)) from None

    async def _watch_supervisor(self, pid: int) -> None:
        """Stop gracefully when the supervisor dies (SIGKILLed, say) rather than run on
        unsupervised: its pidfd turns readable at its exit. (PR_SET_PDEATHSIG would fire
        when the forking *thread* exits; trio forks from worker threads that come and go.)"""
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            fd = -1
        try:  # checked with the pidfd open: the pid cannot be reused under it
            if fd >= 0 and os.getppid() == pid:
                await trio.lowlevel.wait_readable(fd)
        finally:
            if fd >= 0:
                os.close(fd)
        log.warning("supervisor (pid %d) is gone: stopping", pid)
        self.request_stop()

    async def _cancel_on_stop(self, scope: trio.CancelScope) -> None:
        await self._stop.wait()
        scope.cancel()

    async def _serve(self, services: trio.Nursery, task_status: trio.TaskStatus[None]) -> None:
        e, cfg = self.engine, self.cfg
        assert isinstance(e.audit, AuditWriter)  # what Engine.build(daemon=True) makes
        await services.start(e.audit.run)
        if e.spooler is not None:  # replays this state directory's spool (fleetd.spool)
            await services.start(e.spooler.run)
        heartbeat = Heartbeat(e.link, e.scripts, self.daemon_id, self.metrics,
            cfg.daemon.heartbeat_interval, self._details)  # fmt: skip
        await services.start(heartbeat.run)
        if cfg.alerts.enabled:
            self.alerts = Alerts(e, self.daemon_id, cfg.alerts)
            await services.start(self.alerts.run)
            if self.http is not None and self.http.state.metrics is not None:
                self.http.state.metrics.registry.register(self.alerts.collector())
        await start_notify(services, e, self.daemon_id, self.http)  # [[notify]] rules
        if "scheduler" in self.roles:
            s, pm = cfg.scheduler, e.registry.plugins
            self.scheduler = Scheduler(e.link, ScheduleOps.from_engine(e), self.daemon_id,
                SchedulerSettings(misfire_grace=s.misfire_grace,
                    create_defaults=s.create_defaults,
                    reconnect_max_backoff=cfg.redis.reconnect_max_backoff,
                    command_timeout=cfg.redis.command_timeout),
                defaults=default_schedules(pm) if pm is not None else ())  # fmt: skip
            await services.start(self.scheduler.run)
        async with trio.open_nursery() as work:
            if "worker" in self.roles:
                self.pool = Pools()
                served = Served.parse(cfg.worker.queues).names
                for space in await e.link.call(e.spaces.serving, served):
                    await stacks.serve_space(self, services, work, space)
                attach(self.http.state.inline if self.http else None, self.pool.home)
                services.start_soon(stacks.watch_spaces, self, services, work)
            self.ready = True
            task_status.started()
            if self.tune_gc:
                gctune.settle()
            # Logged before READY: a supervisor's "ready" line follows its children's.
            log.info(
                "fleetd %s ready: %s, concurrency %d, job types %s",
                self.daemon_id,
                ",".join(sorted(self.roles)),
                cfg.worker.concurrency,
                ",".join(e.registry.types()) or "none",
            )
            self.notifier.ready(await self._status_line())
            await self._stop.wait()
            self.ready = False
            self.notifier.stopping(await self._status_line())
            if self.pool is not None:
                log.info(
                    "stopping: no new jobs; grace %s", format_duration(cfg.worker.shutdown_timeout)
                )
                self.pool.quiet()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def _status_line(self) -> str:
        return await self_report.status_line(self)

    def _details(self) -> dict[str, Any]:
        return self_report.details(self)
