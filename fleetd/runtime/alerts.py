"""Alerts from the spec's Monitoring section, with hysteresis.

Owns the evaluation of every alert once per `[alerts] interval`, each fed to a
`Hysteresis`: the rules (fleetd.runtime.alert_rules reads and judges them) — the five
built-in ones, made from the `[alerts]` keys, and the user's `[[alerts.rules]]` —

    failure_rate       failed / finished jobs over `window` above `failure_rate` %
                       (at least 10 finished jobs; clears at 80% of it)
    backlog            ready jobs waiting (the queue) above `backlog` (clears at 80%)
    no_worker          no live daemon has the worker role
    redis_unreachable  this daemon's link to Redis is down
    scheduler_missed   the scheduler's `missed` counter grew within `window`

and six alerts that name what they find (not thresholds of one metric):

    unhandled_type     ready jobs of a type no live worker daemon serving their queue has
                       a handler for (a daemon claims only the types it can run: they
                       wait, named here)
    unserved_queue     ready jobs in a named queue no live worker daemon serves ([worker]
                       queues: they wait, the queues are named)
    quota_exceeded     a company's enqueues were refused by its quota ([limits]) within
                       `window` (the companies are named)
    quarantined        a job type of a company is quarantined
    enqueue_anomaly    a company enqueues far above its own baseline rate, and
    payload_anomaly    its payloads grow far above their baseline size
                       (both fleetd.runtime.alert_companies)

An alert is raised once its condition held for `raise_after` and resolved once its
clear condition held for `clear_after`, so a value hovering at a threshold does not
flap. Each transition is logged, kept in `active` (the daemon's state, its heartbeat,
`fleetd_alert_active` on /metrics), appended to the events stream as `alert.raised` /
`alert.resolved`, and POSTed as JSON to `[alerts] webhook_url` if set.

The jobs' figures are read from every key space of the namespace (fleetd.backend.spaces:
a queue with a slot of its own keeps its jobs, analytics, quota refusals and
quarantines there) and summed; what was sent and the alert events stay in the
namespace's own.

Every daemon evaluates the cluster-wide alerts; only the leader (the live daemon with
the smallest id among those evaluating) writes events and calls the webhook, so one
cluster sends one of each. What was sent is kept in Redis (`alerts:sent`: each alert's
last transition sent), and the leader sends what its own state says and that does
not: so a leader that takes over sends the raise or the resolve that its predecessor
died before sending (the daemons' transitions are seconds apart: each has its own
hysteresis), and two daemons that both think they lead for a moment send it once (a
WATCH on that hash). A resolve of an alert a daemon never raised itself waits until it
has evaluated for longer than any alert's hysteresis (`settle`): a daemon that just
started has raised nothing yet. `redis_unreachable` is each daemon's own: it is sent
by the daemon that sees it, and its events are written once Redis answers again.

Lifecycle: run() → first evaluation → started → every interval until cancelled.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from fleetd.backend.redis_link import RedisCommandError, RedisUnavailable, SyncClient
from fleetd.config import AlertsConfig
from fleetd.config.alert_rules import BUILTIN_ALERTS
from fleetd.engine import Engine
from fleetd.jobs.parts import ready_parts
from fleetd.jobs.quarantine import list_quarantines
from fleetd.jobs.queues import served_by
from fleetd.runtime.alert_companies import (
    EnqueueHistory,
    anomaly_reading,
    payload_reading,
    quarantine_reading,
)
from fleetd.runtime.alert_rules import Reading, RuleSet, rules_of

__all__ = ["ALERTS", "Alerts", "Hysteresis"]

log = logging.getLogger("fleetd.alerts")

ALERTS = (
    "failure_rate", "backlog", "no_worker", "redis_unreachable", "scheduler_missed",
    "unhandled_type", "unserved_queue", "quota_exceeded", "quarantined", "enqueue_anomaly",
    "payload_anomaly",
)  # fmt: skip
# Webhook posts waiting to be sent; past this, new ones are dropped (and logged): a dead
# webhook must not grow the daemon's memory.
WEBHOOK_QUEUE = 100


@dataclass
class Hysteresis:
    """Sans-IO: raised after `over` held `raise_after` s, resolved after `clear` held
    `clear_after` s. update() returns "raised", "resolved" or None."""

    raise_after: float
    clear_after: float
    active: bool = False
    since: float | None = None  # when the pending transition's condition started

    def update(self, over: bool, clear: bool, now: float) -> str | None:
        want = clear if self.active else over
        if not want:
            self.since = None
            return None
        if self.since is None:
            self.since = now
        if now - self.since < (self.clear_after if self.active else self.raise_after):
            return None
        self.active, self.since = not self.active, None
        return "raised" if self.active else "resolved"


class AlertCollector:
    def __init__(self, alerts: Alerts) -> None:
        self.alerts = alerts

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily  # role api only

        family = GaugeMetricFamily(
            "fleetd_alert_active", "1 while an alert is raised on this daemon", labels=["alert"]
        )
        for name, rule in self.alerts.rules.items():
            family.add_metric([name], 1 if rule.active else 0)
        yield family


@dataclass
class Alerts:
    engine: Engine
    daemon_id: str
    settings: AlertsConfig
    clock: Callable[[], float] = time.monotonic
    rules: dict[str, Hysteresis] = field(init=False)
    values: dict[str, Reading] = field(default_factory=dict)
    _refused: deque[tuple[float, dict[str, int]]] = field(default_factory=deque)
    _unsent: list[dict[str, Any]] = field(default_factory=list)  # redis_unreachable events
    _enqueues: EnqueueHistory = field(default_factory=EnqueueHistory)
    _first: float | None = None  # when this daemon first evaluated
    _raised: set[str] = field(default_factory=set)  # alerts raised here since it started

    def __post_init__(self) -> None:
        s = self.settings
        rules = rules_of(s)
        self.custom = RuleSet(rules)
        # The built-ins' events keep their shape of old; the user's (overrides included)
        # say their metric, thresholds and scope.
        self.defined = {r.name: r for r in s.rules}
        self.local = {r.name for r in rules if r.local}
        by_name = {r.name: Hysteresis(r.for_, r.resolve_for) for r in rules}
        # The alerts that are not rules (a disabled built-in rule is in neither).
        fixed = {n: Hysteresis(s.raise_after, s.clear_after) for n in ALERTS
                 if n not in BUILTIN_ALERTS}  # fmt: skip
        # In ALERTS' order, then the user's rules in theirs.
        self.rules = {n: by_name.pop(n) if n in by_name else fixed[n] for n in ALERTS
                      if n in by_name or n in fixed}  # fmt: skip
        self.rules.update(by_name)
        # How long this daemon evaluates before its "not raised" is an answer, not "not
        # yet": the longest hysteresis, and one interval.
        self.settle = s.interval + max(
            (max(h.raise_after, h.clear_after) for h in self.rules.values()), default=0.0
        )
        self._hooks_send, self._hooks_recv = trio.open_memory_channel[dict[str, Any]](WEBHOOK_QUEUE)

    @property
    def active(self) -> list[str]:
        return [name for name, rule in self.rules.items() if rule.active]

    def collector(self) -> AlertCollector:
        """`fleetd_alert_active{alert}`, for the API's Prometheus registry."""
        return AlertCollector(self)

    # -- readings ---------------------------------------------------------------------

    def _read(self, client: SyncClient) -> dict[str, Any]:
        """The jobs' figures of every key space, summed; the namespace's daemons and sent."""
        k = self.engine.keys
        spaces = self.engine.spaces.all_keys(client)
        pipe = client.pipeline(transaction=False)
        for space in spaces:
            pipe.hgetall(space.quota_refused)
        refused: dict[str, int] = {}
        for got in pipe.execute():
            for c, n in got.items():
                refused[str(c)] = refused.get(str(c), 0) + int(n)
        parts = ready_parts(client, spaces)
        rules = self.custom.read(client, spaces, parts) if self.custom.rules else None
        if self.settings.anomaly_factor > 0 or self.settings.payload_factor > 0:
            self._enqueues.read(client, spaces)
        return {
            "rules": rules,
            "quarantines": list_quarantines(client, spaces),
            "ready": sorted({(p.queue, p.job_type) for p in parts}),
            "refused": refused,
            "daemons": self.engine.ops.daemons(client),
            "sent": client.hgetall(k.alerts_sent),
        }

    def readings(self, raw: Mapping[str, Any] | None, now: float) -> dict[str, Reading]:
        """Sans-IO: every alert's reading from one Redis read (None: Redis unreachable,
        when only the redis_down rules read)."""
        s = self.settings
        if raw is None:
            return self.custom.readings(None, [], now)
        out: dict[str, Reading] = {}
        if raw.get("rules") is not None:
            out.update(self.custom.readings(raw["rules"], raw["daemons"], now))
        out.update(self._routing_readings(raw["daemons"], raw.get("ready", ())))
        out["quota_exceeded"] = self._quota_reading(raw.get("refused", {}), now)
        out["quarantined"] = Reading(*quarantine_reading(raw.get("quarantines", ())))
        out["enqueue_anomaly"] = Reading(
            *anomaly_reading(self._enqueues, s.anomaly_factor, s.anomaly_min)
        )
        out["payload_anomaly"] = Reading(
            *payload_reading(self._enqueues, s.payload_factor, s.payload_min_kib)
        )
        return out

    @staticmethod
    def _routing_readings(daemons: list[dict[str, Any]], ready: Any) -> dict[str, Reading]:
        """unserved_queue: the queues with ready jobs no live worker serves;
        unhandled_type: the types of ready jobs in served queues that no worker serving
        their queue has a handler for. With no worker at all, no_worker says it."""
        workers = [d for d in daemons if "worker" in d.get("roles", ())]
        handled: dict[str, set[str]] = {}  # queue -> the types its workers run
        for d in workers:
            for q in served_by(d):
                handled.setdefault(q, set()).update(d.get("job_types", ()))
        queues = sorted({q for q, _t in ready if q not in handled}) if workers else []
        lost = sorted({t for q, t in ready if q in handled and t not in handled[q]})
        return {
            "unhandled_type": Reading(bool(lost), not lost, len(lost),
                "jobs waiting for a handler no live daemon has: job type(s) "
                + ", ".join(lost) if lost else "every waiting job type has a daemon"),
            "unserved_queue": Reading(bool(queues), not queues, len(queues),
                "jobs waiting in queue(s) no live daemon serves: " + ", ".join(queues)
                if queues else "every queue with waiting jobs has a daemon"),
        }  # fmt: skip

    def _quota_reading(self, refused: dict[str, int], now: float) -> Reading:
        """Companies refused by their quotas within the window (the counts grew)."""
        s = self.settings
        self._refused.append((now, refused))
        while len(self._refused) > 1 and self._refused[1][0] <= now - s.window:
            self._refused.popleft()
        before = self._refused[0][1]  # the first reading is the baseline
        grew = sorted(c for c, n in refused.items() if n > before.get(c, 0))
        text = (f"enqueues refused by their quota in the last {s.window:g}s: "
                f"company(ies) {', '.join(grew)}") if grew else "no quota refusals"  # fmt: skip
        return Reading(bool(grew), not grew, len(grew), text)

    def leader(self, daemons: list[dict[str, Any]]) -> bool:
        ids = [d["daemon_id"] for d in daemons if isinstance(d.get("alerts"), list)]
        return not ids or min([*ids, self.daemon_id]) == self.daemon_id

    # -- evaluation -------------------------------------------------------------------

    async def evaluate(self) -> None:
        link = self.engine.link
        raw: dict[str, Any] | None
        try:
            raw = await link.call(self._read)
        except (RedisUnavailable, RedisCommandError):
            raw = None
        now = self.clock()
        if self._first is None:
            self._first = now
        self.values = self.readings(raw, now)
        for name, reading in self.values.items():
            change = self.rules[name].update(reading.over, reading.clear, now)
            if change is None:
                continue
            if change == "raised":
                self._raised.add(name)
            level = logging.WARNING if change == "raised" else logging.INFO
            log.log(level, "alert %s %s: %s", name, change, reading.text,
                    extra={"alert": name, "change": change})  # fmt: skip
            if name in self.local:
                event = self._event(name, change, reading)
                self._unsent.append(event)
                self._webhook(event)
        if raw is None:
            return
        due = self._due(raw["sent"], now) if self.leader(raw["daemons"]) else []
        if not due and not self._unsent:
            return
        unsent, self._unsent = self._unsent, []
        try:
            sent = await link.call(self._write_events, unsent, due)
        except (RedisUnavailable, RedisCommandError):
            self._unsent[:0] = unsent
            return
        for event in sent:
            self._webhook(event)

    def _due(self, sent: Mapping[str, str], now: float) -> list[dict[str, Any]]:
        """The leader's: a transition for each cluster-wide alert whose state here is
        not the last one sent — a raise for one raised here; a resolve for one not
        raised here, nor about to be, if it was raised here before or this daemon has
        evaluated for `settle` (else its "not raised" may only be "not yet")."""
        settled = self._first is not None and now - self._first >= self.settle
        due = []
        for name, rule in self.rules.items():
            reading = self.values.get(name)
            if name in self.local or reading is None:
                continue
            was = sent.get(name)
            if rule.active and was != "raised":
                due.append(self._event(name, "raised", reading))
            elif (not rule.active and was == "raised" and rule.since is None
                  and (settled or name in self._raised)):  # fmt: skip
                due.append(self._event(name, "resolved", reading))
        return due

    def _event(self, name: str, change: str, reading: Reading) -> dict[str, Any]:
        event = {"type": f"alert.{change}", "alert": name, "value": reading.value,
                 "message": reading.text, "daemon_id": self.daemon_id,
                 "ts": int(time.time() * 1000)}  # fmt: skip
        if (rule := self.defined.get(name)) is not None:
            event |= {"metric": rule.metric, "threshold": rule.threshold,
                      "resolve": rule.resolve_at, "type_scope": rule.type,
                      "company_scope": rule.company}  # fmt: skip
        return event

    def _write_events(
        self, client: SyncClient, unsent: list[dict[str, Any]], due: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Append this daemon's own events and, of the leader's `due` transitions, those
        still not sent when the write happens (WATCH on `alerts:sent`: a daemon that
        also led meanwhile may have sent them); returns the cluster-wide ones written."""
        key = self.engine.keys.alerts_sent
        maxlen = self.engine.config.redis.events_maxlen
        written: list[dict[str, Any]] = []

        def write(pipe: Any) -> None:
            written.clear()
            if due:
                now = pipe.hmget(key, [e["alert"] for e in due])
                written.extend(e for e, was in zip(due, now, strict=True)
                               if was != e["type"].removeprefix("alert."))  # fmt: skip
            pipe.multi()
            for e in [*unsent, *written]:
                fields = {"type": e["type"], "job_id": "", "job_type": "", "company_id": "",
                          "status": "", "ts": e["ts"], "data": json.dumps(e)}  # fmt: skip
                pipe.xadd(self.engine.keys.events, fields, maxlen=maxlen, approximate=True)
            for e in written:
                pipe.hset(key, e["alert"], e["type"].removeprefix("alert."))

        client.transaction(write, key)
        return written

    # -- webhook ----------------------------------------------------------------------

    def _webhook(self, event: dict[str, Any]) -> None:
        if not self.settings.webhook_url:
            return
        try:
            self._hooks_send.send_nowait(event)
        except trio.WouldBlock:
            log.warning("alert webhook queue full: %s not sent", event["type"])

    def _post(self, event: dict[str, Any]) -> None:
        req = urllib.request.Request(
            self.settings.webhook_url,
            data=json.dumps(event).encode(),
            headers={"Content-Type": "application/json", "User-Agent": "fleetd"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=self.settings.webhook_timeout) as resp:
            resp.read()

    async def _sender(self) -> None:
        async for event in self._hooks_recv:
            try:
                await trio.to_thread.run_sync(self._post, event)
            except OSError as exc:  # URLError, HTTPError and timeouts are OSErrors
                log.warning(
                    "alert webhook failed for %s %s: %s", event["type"], event["alert"], exc
                )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as tasks:
            tasks.start_soon(self._sender)
            await self.evaluate()
            task_status.started()
            while True:
                await trio.sleep(self.settings.interval)
                await self.evaluate()
