"""The daemon's notification service: `[[notify]]` rules → durable deliveries.

    intake    job.failed / job.retrying from the events stream (fleetd.runtime.events:
              the API's EventHub, or one of its own on a daemon without the api role),
              tags read from the job when a rule needs them
    watch     this daemon's own transitions: Redis lost / back (its link), its spool
              started / stopped holding jobs (fleetd.spool), polled every WATCH_EVERY
    outbox    each match is written to the local outbox first (fleetd.notify.outbox)
    claim     a job event is seen by every daemon: the first to SET NX
              `notify:claim:<event>:<rule>` (value: its outbox's id, TTL CLAIM_TTL)
              delivers it, the others drop their copy. Transitions are the daemon's own
              (each daemon has its own link and spool) and need no claim — so a
              `redis.lost` is recorded and sent while Redis is down
    send      webhook POST signed with HMAC-SHA256 (fleetd.notify.webhook) and/or an
              `email_notification` job enqueued through the queue (idempotency key from
              the delivery id); a failure is retried with capped exponential backoff
              (RETRY_BASE doubling up to RETRY_CAP) for up to GIVE_UP_AFTER, then
              logged at ERROR and dropped; a restart tries every waiting one at once

Lifecycle: run() opens the outbox → started → until cancelled.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import sqlite3
import time
from typing import Any

import trio

from fleetd.audit.entry import Action, AuditEntry, Door, outcome_of
from fleetd.backend.redis_link import (
    Backoff,
    RedisCommandError,
    RedisLink,
    RedisUnavailable,
    SyncClient,
)
from fleetd.config.notify_rules import NotifyRule
from fleetd.engine import Engine
from fleetd.jobs.receipts import EnqueueResult
from fleetd.notify import webhook
from fleetd.notify.match import Occurrence, email_data, matching, needs_tags, payload
from fleetd.notify.outbox import OUTBOX_FILE, Delivery, Outbox
from fleetd.runtime.events import READ_BLOCK, Event, EventHub

__all__ = ["NotifyService", "start_notify"]

log = logging.getLogger("fleetd.notify")

WATCH_EVERY = 0.2
CLAIM_TTL = 7 * 86400
RETRY_BASE = 0.5
RETRY_CAP = 300.0
GIVE_UP_AFTER = 24 * 3600.0
WEBHOOK_TIMEOUT = 10.0
EMAIL_TYPE = "email_notification"
_STREAM_KINDS = {"job.failed": "job.failed", "job.retrying": "job.retried"}


def retry_delay(attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones (capped exponential)."""
    return float(min(RETRY_CAP, RETRY_BASE * 2.0 ** min(attempts - 1, 30)))


class NotifyService:
    def __init__(self, engine: Engine, daemon_id: str, hub: EventHub | None) -> None:
        self.engine = engine
        self.daemon_id = daemon_id
        self.rules: dict[str, NotifyRule] = {r.name: r for r in engine.config.notify}
        self.hub = hub
        self.outbox: Outbox | None = None
        self.sent_total = 0
        self._events_in, self._events = trio.open_memory_channel[Event](math.inf)
        self._wake = trio.Event()
        self._limiter = trio.CapacityLimiter(1)
        self._seq = 0

    # -- intake ----------------------------------------------------------------------

    def _consume(self, ev: Event) -> None:
        if ev.type in _STREAM_KINDS and ev.job_id:
            self._events_in.send_nowait(ev)

    def _occurrence(self, ev: Event, tags: tuple[str, ...] = ()) -> Occurrence:
        kind = _STREAM_KINDS[ev.type]
        retries = ev.data.get("retry_count", 0)
        error = ev.data.get("error")
        what = "failed for good" if kind == "job.failed" else f"retried {retries} times"
        return Occurrence(ev.origin, kind, ev.ts, self.daemon_id,
            f"job {ev.job_id} ({ev.job_type}) {what}" + (f": {error}" if error else ""),
            ev.job_id, ev.job_type, ev.company_id, tags,
            retries if isinstance(retries, int) else 0, ev.data)  # fmt: skip

    def _tags(self, client: SyncClient, job_id: str, space: str) -> tuple[str, ...]:
        """The tags of a job of `space` (its event's key space: '' the namespace's)."""
        where = self.engine.spaces.of_queue(space) if space else None
        raw = client.hget((where.keys if where else self.engine.keys).job(job_id), "tags")
        try:
            tags = json.loads(raw) if raw else []
        except ValueError:
            return ()
        return tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else ()

    async def _intake(self) -> None:
        async for ev in self._events:
            occ = self._occurrence(ev)
            if needs_tags(self.rules.values(), occ):
                try:
                    assert ev.job_id is not None
                    tags = await self.engine.link.call(self._tags, ev.job_id, ev.space)
                    occ = self._occurrence(ev, tags)
                except (RedisUnavailable, RedisCommandError) as exc:
                    log.warning("notify: tags of job %s not read: %s", ev.job_id, exc)
            await self._record_logged(occ)

    async def _record_logged(self, occ: Occurrence) -> None:
        try:
            await self.record(occ)
        except (sqlite3.Error, OSError) as exc:  # the disk: logged, the daemon goes on
            log.error("notify: %s %s not recorded in %s: %s", occ.kind, occ.id,
                      OUTBOX_FILE, exc)  # fmt: skip

    async def record(self, occ: Occurrence) -> int:
        """Write the deliveries of the rules `occ` matches to the outbox (durable)."""
        rows: list[Delivery] = []
        for rule in matching(self.rules.values(), occ):
            body = payload(rule, occ)
            if rule.webhook_url:
                rows.append(Delivery(f"{occ.id}/{rule.name}/webhook", occ.id, rule.name,
                                     "webhook", body, not occ.shared))  # fmt: skip
            if rule.email_to:
                rows.append(Delivery(f"{occ.id}/{rule.name}/email", occ.id, rule.name,
                                     "email", email_data(rule, body), not occ.shared))  # fmt: skip
        if not rows:
            return 0
        assert self.outbox is not None
        added = await trio.to_thread.run_sync(self.outbox.add, rows, limiter=self._limiter)
        self._wake.set()
        return added

    async def _watch(self) -> None:
        link, spool = self.engine.link, self.engine.spooler
        up, holding = link.ready, bool(spool and spool.jobs)
        while True:
            await trio.sleep(WATCH_EVERY)
            if link.ready != up:
                up = link.ready
                state = "back" if up else "unreachable"
                await self._own(f"redis.{'back' if up else 'lost'}",
                                f"Redis at {link.safe_url} is {state}")  # fmt: skip
            now = bool(spool and spool.jobs)
            if spool is not None and now != holding:
                holding = now
                await self._own("spool.started" if now else "spool.stopped",
                    f"the enqueue spool {spool.spool.path} " + (f"holds {spool.jobs} jobs"
                        if now else "is empty again"))  # fmt: skip

    async def _own(self, kind: str, message: str) -> None:
        self._seq += 1
        occ = Occurrence(f"{self.daemon_id}:{self._seq}", kind, int(time.time() * 1000),
                         self.daemon_id, message)  # fmt: skip
        (log.warning if kind in ("redis.lost", "spool.started") else log.info)(
            "notify: %s: %s", kind, message)  # fmt: skip
        await self._record_logged(occ)

    # -- claim and send --------------------------------------------------------------

    def _claim(self, client: SyncClient, pairs: list[tuple[str, str]]) -> list[bool]:
        assert self.outbox is not None
        prefix = f"{self.engine.keys.prefix}notify:claim:"
        pipe = client.pipeline(transaction=False)
        for event_id, rule in pairs:
            pipe.set(f"{prefix}{event_id}:{rule}", self.outbox.instance, nx=True, ex=CLAIM_TTL)
            pipe.get(f"{prefix}{event_id}:{rule}")
        replies = pipe.execute()
        return [str(replies[2 * n + 1]) == self.outbox.instance for n in range(len(pairs))]

    async def _claims(self) -> bool:
        """Claim every unclaimed delivery; False when Redis did not answer."""
        assert self.outbox is not None
        rows = await trio.to_thread.run_sync(self.outbox.unclaimed, limiter=self._limiter)
        pairs = sorted({(d.event_id, d.rule) for d in rows})
        if not pairs:
            return True
        try:
            won = await self.engine.link.call(self._claim, pairs)
        except (RedisUnavailable, RedisCommandError):
            return False
        for (event_id, rule), mine in zip(pairs, won, strict=True):
            await trio.to_thread.run_sync(self.outbox.mark_claimed, event_id, rule, mine,
                                          limiter=self._limiter)  # fmt: skip
        return True

    async def _deliver(self, d: Delivery) -> None:
        if d.channel == "webhook":
            rule = self.rules[d.rule]
            await trio.to_thread.run_sync(webhook.post, rule.webhook_url, rule.webhook_secret,
                                          d.id, d.body, WEBHOOK_TIMEOUT)  # fmt: skip
        else:
            key = "notify-" + hashlib.sha256(d.id.encode()).hexdigest()[:40]
            req = {"type": EMAIL_TYPE, "data": d.body, "priority": "high", "idempotency_key": key}
            try:
                result = await self.engine.queue.enqueue(req)
            except Exception as exc:
                self._audit(d, None, exc)
                raise
            self._audit(d, result, None)

    def _audit(self, d: Delivery, result: EnqueueResult | None, exc: BaseException | None) -> None:
        """The e-mail job's audit entry: door notify, subject notify:<rule>."""
        if isinstance(exc, RedisUnavailable):
            return  # nothing was written; the next try records its own outcome
        detail = {"type": EMAIL_TYPE, "event_id": d.event_id,
                  "duplicate": result is not None and result.duplicate}  # fmt: skip
        self.engine.audit.submit(AuditEntry(
            Action.JOB_ENQUEUE, f"notify:{d.rule}", Door.NOTIFY, outcome_of(exc),
            target=result.job_id if result else None, detail=detail))  # fmt: skip

    async def _send_due(self) -> None:
        assert self.outbox is not None
        now = time.time()
        for d in await trio.to_thread.run_sync(self.outbox.due, now, limiter=self._limiter):
            rule = self.rules.get(d.rule)
            if rule is None or not (rule.webhook_url if d.channel == "webhook" else rule.email_to):
                log.warning("notify: rule %r no longer sends this: %s dropped", d.rule, d.id)
                await trio.to_thread.run_sync(self.outbox.done, d.id, limiter=self._limiter)
                continue
            take = functools.partial(self.outbox.take, d.id, now, WEBHOOK_TIMEOUT + 5)
            if not await trio.to_thread.run_sync(take, limiter=self._limiter):
                continue
            try:
                await self._deliver(d)
            except (OSError, RedisUnavailable, RedisCommandError, ValueError) as exc:
                error = str(exc) or type(exc).__name__
                if time.time() - d.created_at > GIVE_UP_AFTER:
                    log.error("notify: %s given up after %d tries: %s", d.id, d.attempts + 1, error)
                    await trio.to_thread.run_sync(self.outbox.done, d.id, limiter=self._limiter)
                    continue
                delay = retry_delay(d.attempts + 1)
                log.warning("notify: %s failed (try %d), again in %.1fs: %s",
                            d.id, d.attempts + 1, delay, error)  # fmt: skip
                await trio.to_thread.run_sync(self.outbox.failed, d.id, error, time.time() + delay,
                                              limiter=self._limiter)  # fmt: skip
                continue
            await trio.to_thread.run_sync(self.outbox.done, d.id, limiter=self._limiter)
            self.sent_total += 1
            log.info("notify: %s delivered (%s)", d.id, d.channel)

    async def _sender(self) -> None:
        assert self.outbox is not None
        backoff = Backoff(2.0)
        while True:
            self._wake = trio.Event()
            try:
                if await self._claims():
                    backoff.reset()
                else:
                    await backoff.sleep()
                await self._send_due()
                due = await trio.to_thread.run_sync(self.outbox.next_due, limiter=self._limiter)
            except (sqlite3.Error, OSError) as exc:  # the outbox file: logged, tried again
                log.error("notify: %s: %s", OUTBOX_FILE, exc)
                due = time.time() + 1.0
            wait = 1.0 if due is None else max(0.0, min(1.0, due - time.time()))
            with trio.move_on_after(wait):
                await self._wake.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        cfg = self.engine.config
        self.outbox = await trio.to_thread.run_sync(Outbox, cfg.state_dir / OUTBOX_FILE)
        await trio.to_thread.run_sync(self.outbox.due_all_now)
        own_hub = self.hub is None
        if self.hub is None:  # no api role: read the stream here (a link of its own)
            link = self.engine.link if self.engine.link.embedded else RedisLink(
                cfg.redis.url, max_connections=2, connect_timeout=cfg.redis.connect_timeout,
                command_timeout=cfg.redis.command_timeout,
                reconnect_max_backoff=cfg.redis.reconnect_max_backoff)  # fmt: skip
            self.hub = EventHub(self.engine.keys, link, cfg.events,
                block=min(READ_BLOCK, cfg.redis.command_timeout / 2),
                reconnect_cap=cfg.redis.reconnect_max_backoff,
                spaces=self.engine.spaces)  # fmt: skip
        self.hub.add_consumer(self._consume)
        mails = any(r.email_to for r in self.rules.values())
        if mails and EMAIL_TYPE not in self.engine.registry.types():
            log.error("notify: rules send e-mail but job type %s is not installed here", EMAIL_TYPE)
        try:
            async with trio.open_nursery() as tasks:
                if own_hub:
                    await tasks.start(self.hub.run)
                tasks.start_soon(self._intake)
                tasks.start_soon(self._watch)
                tasks.start_soon(self._sender)
                task_status.started()
        finally:
            self.outbox.close()


async def start_notify(services: trio.Nursery, engine: Engine, daemon_id: str, http: Any) -> None:
    """Start the notification service in `services` when `[[notify]]` has rules (the
    API's event hub when `http`, the daemon's HttpService, is given)."""
    if engine.config.notify:
        hub = http.state.hub if http is not None else None
        await services.start(NotifyService(engine, daemon_id, hub).run)
