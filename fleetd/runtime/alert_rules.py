"""The alert rules, read and judged: the five built-in ones and `[[alerts.rules]]`.

Owns `rules_of()`: the built-in rules (`failure_rate`, `backlog`, `no_worker`,
`redis_unreachable`, `scheduler_missed`, with the thresholds, window and hold times
of the `[alerts]` keys), each replaced by a user rule of its name or dropped by one
with `enabled = false`, then the user's own rules (fleetd.config.alert_rules).

Owns `RuleSet`: `read()` fetches what the rules need in one pipelined hop after the
other alerts' read — the minute analytics buckets of the longest rule window
(fleetd.analytics.store; closed minutes are final, so each is read and parsed once and
kept, and an evaluation reads the current minute), the ready queue (its length, and
the ready parts), the scheduler's stats (lateness histogram, missed counter) and, for
an unscoped failure rate, the finished jobs of its window from the status sets (ZCOUNT
by finish time, exact to the ms: the built-in's reading of old) — and `readings()` turns
that and the live daemons' heartbeats into one `Reading` per rule (sans-IO; with Redis
unreachable only the redis_down rules read). The buckets, finished jobs and ready parts
are summed over the namespace's key spaces (fleetd.backend.spaces: a queue with a slot
of its own records its jobs there). Hysteresis, events, the webhook and
`fleetd_alert_active` are fleetd.runtime.alerts'.

Metrics: failure_rate (% failed for good of those finished, at least min_jobs; scoped:
from the buckets), backlog, wait_p95 / run_p95 (seconds, at least min_jobs measured), throughput
(finished per minute; raised *below* the threshold), no_completions (none completed in
the window while jobs of the scope were enqueued or waiting), schedule_lateness (p95 of
the firings in the window, seconds: the growth of the cumulative histogram),
daemon_memory (RSS of the largest live daemon, MiB), workers (live daemons with the
worker role; raised below), schedule_missed (growth of the scheduler's missed counter in
the window), redis_down (1 while this daemon cannot reach Redis).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleetd.analytics.histogram import percentile
from fleetd.analytics.store import MINUTE_MS, Figures, Group, merge, parse_bucket, total
from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import SyncClient
from fleetd.config import AlertsConfig
from fleetd.config.alert_rules import BUILTIN_ALERTS, AlertRuleConfig
from fleetd.jobs.model import JobStatus
from fleetd.jobs.parts import Part, ready_parts

__all__ = ["Reading", "RuleSet", "builtin_rules", "rules_of"]

# A failure rate over fewer finished jobs is noise (1 of 2 is not "50% failing").
MIN_SAMPLE = 10

_BUCKET_METRICS = {"failure_rate", "wait_p95", "run_p95", "throughput", "no_completions"}
_MIB = 1024 * 1024


@dataclass
class Reading:
    over: bool
    clear: bool
    value: float
    text: str


def _late(stats: Mapping[str, str]) -> dict[int, int]:
    return {int(k[5:]): int(v) for k, v in stats.items() if k.startswith("late:")}


def builtin_rules(s: AlertsConfig) -> tuple[AlertRuleConfig, ...]:
    """The five built-in alerts as rules, with today's `[alerts]` keys: raised after
    `raise_after`, resolved after `clear_after`, thresholds cleared at 80%."""

    def rule(name: str, threshold: float, **keys: Any) -> AlertRuleConfig:
        return AlertRuleConfig(name=name, metric=BUILTIN_ALERTS[name], threshold=threshold,
                               for_=s.raise_after, resolve_for=s.clear_after, **keys)  # fmt: skip

    return (
        rule("failure_rate", s.failure_rate, window=s.window, min_jobs=MIN_SAMPLE),
        rule("backlog", s.backlog),
        rule("no_worker", 1, resolve=1),  # raised below 1 worker, resolved at 1
        rule("redis_unreachable", 0, resolve=0),
        rule("scheduler_missed", 0, resolve=0, window=s.window),
    )


def rules_of(s: AlertsConfig) -> tuple[AlertRuleConfig, ...]:
    """Every rule this daemon evaluates: the built-ins (a user rule of one's name in its
    place: its metric the built-in's when left out), then the user's; disabled dropped."""
    user = {r.name: r for r in s.rules}
    out = []
    for b in builtin_rules(s):
        r = user.pop(b.name, b)
        out.append(r if r.metric else dataclasses.replace(r, metric=b.metric))
    return tuple(r for r in (*out, *user.values()) if r.enabled)


@dataclass
class RuleSet:
    rules: tuple[AlertRuleConfig, ...]
    _late: deque[tuple[float, dict[int, int]]] = field(default_factory=deque)
    _missed: deque[tuple[float, int]] = field(default_factory=deque)
    # Closed minutes, parsed, by (key space prefix, minute): the scripts write a bucket
    # only during its own minute (by Redis's clock, inside the script), so once Redis's
    # clock is past it, it is final.
    _closed: dict[tuple[str, int], dict[Group, Figures]] = field(default_factory=dict)

    def _needs(self, *metrics: str) -> list[AlertRuleConfig]:
        return [r for r in self.rules if r.metric in metrics]

    @property
    def minutes(self) -> int:
        """Minute buckets the rules read: an unscoped failure rate counts the status
        sets instead (exact over its window), so it needs none."""
        windows = [r.window for r in self._needs(*_BUCKET_METRICS)
                   if not (r.metric == "failure_rate" and not _scoped(r))]  # fmt: skip
        return max((math.ceil(w / 60) for w in windows), default=0)

    def read(
        self,
        client: SyncClient,
        keys: Keys | Sequence[Keys],
        parts: Sequence[Part] | None = None,
    ) -> dict[str, Any]:
        """What the rules need, from Redis (sync: run in the link's thread). `keys`: the
        namespace's key spaces, its own first (fleetd.backend.spaces; one Keys: that
        space alone): the buckets, finished and ready jobs are summed over them, the
        scheduler's stats are the namespace's. `parts`: the ready parts of every space
        when the caller has just read them (the built-in alerts do)."""
        spaces = [keys] if isinstance(keys, Keys) else list(keys)
        sec, usec = client.time()
        now = int(sec) * 1000 + int(usec) // 1000
        last, n = now // MINUTE_MS, self.minutes
        indexes = range(last - n + 1, last + 1)
        missing = [(k, m) for m in indexes for k in spaces
                   if m == last or (k.prefix, m) not in self._closed]  # fmt: skip
        pipe = client.pipeline(transaction=False)
        for k, m in missing:
            pipe.hgetall(k.analytics_minute(m))
        pipe.hgetall(spaces[0].schedules_stats)
        spans = sorted(
            {int(r.window * 1000) for r in self._needs("failure_rate") if not _scoped(r)}
        )
        for span in spans:
            for st in (JobStatus.COMPLETED, JobStatus.FAILED):
                for k in spaces:
                    pipe.zcount(k.status(st), now - span, "+inf")
        replies = pipe.execute()
        counts, w = [int(c) for c in replies[len(missing) + 1 :]], len(spaces)
        finished = {span: (sum(counts[2 * i * w : (2 * i + 1) * w]),
                           sum(counts[(2 * i + 1) * w : (2 * i + 2) * w]))
                    for i, span in enumerate(spans)}  # fmt: skip
        fresh = {(k.prefix, m): parse_bucket(raw)
                 for (k, m), raw in zip(missing, replies, strict=False)}  # fmt: skip
        kept = {(k.prefix, m) for m in indexes if m != last for k in spaces}
        self._closed = {km: self._closed[km] if km in self._closed else fresh[km] for km in kept}
        got = self._closed | fresh
        buckets = [merge([got[(k.prefix, m)] for k in spaces]) for m in indexes]
        stats = replies[len(missing)]
        # Ready jobs are kept per type and company (fleetd.jobs.parts): a scoped backlog
        # is exact, one ZCARD per part with ready jobs.
        if parts is None:
            parts = [p for k in spaces for p in ready_parts(client, k)]
        waiting: Counter[Group] = Counter()
        for part in parts:
            waiting[(part.job_type, part.company_id or "")] += part.ready
        ready = sum(waiting.values())
        return {
            "now": now,
            "start": (last - n + 1) * MINUTE_MS,
            "buckets": buckets,
            "ready": int(ready),
            "waiting": waiting,
            "late": _late(stats),
            "missed": int(stats.get("missed") or 0),
            "finished": finished,
        }

    # -- sans-IO ----------------------------------------------------------------------

    @staticmethod
    def _in_scope(rule: AlertRuleConfig, group: Group) -> bool:
        return (not rule.type or group[0] == rule.type) and (
            not rule.company or group[1] == rule.company
        )

    def _figures(self, rule: AlertRuleConfig, raw: Mapping[str, Any]) -> tuple[Figures, float]:
        """The scope's figures over the rule's window, and the window's span in minutes
        (the current minute counts as far as it has gone)."""
        n = math.ceil(rule.window / 60)
        buckets = raw["buckets"][-n:] if n else []
        fig = total(f for b in buckets for g, f in b.items() if self._in_scope(rule, g))
        start = raw["start"] + (len(raw["buckets"]) - len(buckets)) * MINUTE_MS
        return fig, max((raw["now"] - start) / MINUTE_MS, 1 / 60)

    def _waiting(self, rule: AlertRuleConfig, raw: Mapping[str, Any]) -> int:
        if not (rule.type or rule.company):
            return int(raw["ready"])
        return sum(n for g, n in raw["waiting"].items() if self._in_scope(rule, g))

    def _lateness(self, window: float, late: dict[int, int], now: float) -> float:
        """p95 in s of the firings since the oldest snapshot within `window`."""
        self._late.append((now, late))
        while len(self._late) > 1 and self._late[1][0] <= now - window:
            self._late.popleft()
        base = self._late[0][1]
        grown = {k: v - base.get(k, 0) for k, v in late.items() if v > base.get(k, 0)}
        return (percentile(grown, 95) or 0.0) / 1000

    def _missed_in(self, window: float, now: float) -> int:
        """Growth of the missed counter since the last reading `window` ago (or the first)."""
        base = self._missed[0][1]
        for t, n in self._missed:
            if t > now - window:
                break
            base = n
        return self._missed[-1][1] - base

    def value(
        self, rule: AlertRuleConfig, raw: Mapping[str, Any], daemons: list[dict[str, Any]],
        lateness: float, now: float,
    ) -> tuple[float | None, str]:  # fmt: skip
        """(the rule's value, or None when too few jobs to judge; what it says)."""
        m, scope = rule.metric, _scope(rule)
        if m == "redis_down":
            return 0.0, "Redis ok"
        if m == "workers":
            n = sum(1 for d in daemons if "worker" in d.get("roles", ()))
            return n, f"{n} worker daemons alive"
        if m == "schedule_missed":
            grew = self._missed_in(rule.window, now)
            return grew, f"{grew} scheduled executions missed in the last {rule.window:g}s"
        if m == "failure_rate" and not _scoped(rule):
            completed, failed = raw["finished"][int(rule.window * 1000)]
            done, last = completed + failed, f"in the last {rule.window:g}s"
            if done < rule.min_jobs:
                return None, f"{done} jobs finished {last}: too few to judge"
            rate = 100 * failed / done
            return rate, f"{rate:.0f}% of {done} jobs failed {last}"
        if m == "backlog":
            n = self._waiting(rule, raw)
            return n, f"{n} jobs waiting{scope}"
        if m == "daemon_memory":
            rss = [int((d.get("resources") or {}).get("rss_bytes") or 0) for d in daemons]
            mib = max(rss, default=0) / _MIB
            return mib, f"largest daemon uses {mib:.0f} MiB"
        if m == "schedule_lateness":
            return lateness, f"firings were {lateness:.3f}s late (p95) in the last {rule.window:g}s"
        fig, minutes = self._figures(rule, raw)
        done, last = fig.completed + fig.failed, f"in the last {rule.window:g}s{scope}"
        if m == "failure_rate":
            if done < rule.min_jobs:
                return None, f"{done} jobs finished {last}: too few to judge"
            rate = 100 * fig.failed / done
            return rate, f"{rate:.0f}% of {done} jobs failed {last}"
        if m in ("wait_p95", "run_p95"):
            hist = fig.wait if m == "wait_p95" else fig.run
            n = sum(hist.values())
            if n < rule.min_jobs:
                return None, f"{n} jobs measured {last}: too few to judge"
            p95 = (percentile(hist, 95) or 0.0) / 1000
            return p95, f"{m[:-4]} time p95 {p95:.3f}s over {n} jobs {last}"
        if m == "throughput":
            rate = done / minutes
            return rate, f"{rate:.1f} jobs/min finished {last}"
        pending = fig.enqueued + self._waiting(rule, raw)  # no_completions
        return fig.completed if pending else None, (
            f"{fig.completed} jobs completed, {pending} enqueued or waiting {last}"
        )

    def readings(
        self, raw: Mapping[str, Any] | None, daemons: list[dict[str, Any]], now: float
    ) -> dict[str, Reading]:
        """One reading per rule; with `raw` None (Redis unreachable) the redis_down
        rules' only."""
        if raw is None:
            return {r.name: Reading(r.threshold < 1, r.resolve_at >= 1, 1.0, "Redis unreachable")
                    for r in self._needs("redis_down")}  # fmt: skip
        lateness_rules = self._needs("schedule_lateness")
        window = max((r.window for r in lateness_rules), default=0.0)
        late = self._lateness(window, raw["late"], now) if lateness_rules else 0.0
        if missed_rules := self._needs("schedule_missed"):
            self._missed.append((now, raw["missed"]))
            longest = max(r.window for r in missed_rules)
            while len(self._missed) > 1 and self._missed[1][0] <= now - longest:
                self._missed.popleft()
        out = {}
        for rule in self.rules:
            value, text = self.value(rule, raw, daemons, late, now)
            if value is None:  # too few to judge, or nothing pending: not firing
                out[rule.name] = Reading(False, True, 0.0, text)
                continue
            if rule.metric == "no_completions":
                over, clear = value == 0, value > 0
            elif rule.spec.below:
                over, clear = value < rule.threshold, value >= rule.resolve_at
            else:
                over, clear = value > rule.threshold, value <= rule.resolve_at
            out[rule.name] = Reading(over, clear, round(value, 6), text)
        return out


def _scoped(rule: AlertRuleConfig) -> bool:
    return bool(rule.type or rule.company)


def _scope(rule: AlertRuleConfig) -> str:
    parts = [
        f"type {rule.type}" if rule.type else "",
        f"company {rule.company}" if rule.company else "",
    ]
    return f" ({', '.join(p for p in parts if p)})" if rule.type or rule.company else ""
