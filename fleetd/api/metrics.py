"""`GET /metrics`: Prometheus text through prometheus-client, one registry per app.

Owns:
- queue depth read from Redis at each scrape: `fleetd_jobs{status}` (every status, exact
  ZCARDs) and `fleetd_queue_depth{status,type}` for the waiting and running statuses
  (pending, processing, retrying), by job type; both summed over every key space (a
  queue with a slot of its own keeps its jobs in its own, fleetd.backend.spaces);
- job outcomes by type — `fleetd_jobs_processed_total`, `…_completed_total`,
  `…_failed_total`, `…_retried_total`, failed attempts by error kind
  (`fleetd_job_errors_total{type,kind}`: error, timeout, crash, resource_exhausted:
  memory / cpu) and the `fleetd_job_duration_seconds` histogram
  of completed jobs — counted from the events stream (one consumer of the daemon's
  event hub, fleetd.events), so they cover every worker of the cluster whichever daemon
  serves the API (counting starts when this API starts; Prometheus' rate() and
  increase() handle the reset);
- `fleetd_websocket_subscribers`: the events WebSocket's open sessions on this daemon;
- every live daemon's resource use from its heartbeat (fleetd.api.metrics_daemons:
  CPU %, RSS, open fds, trio loop lag);
- the scheduler's fires, misses and errors (`fleetd_scheduler_*_total`), durable
  counters kept in Redis by the scheduler's scripts, and schedule accuracy
  (fleetd.analytics.prometheus: the lateness histogram of every firing, and per
  schedule its lateness p50 and p99 and its missed occurrences);
- the API's own requests (`fleetd_http_requests_total{method,route,status}` and a
  latency histogram), and its admission control (fleetd.api.admission):
  `fleetd_http_in_flight` and `fleetd_http_overloaded_total`, the requests refused
  with 503 because `[http] max_in_flight` were in flight;
- the enqueue spool of this daemon (`fleetd_spool_*`: jobs, bytes, the oldest one's
  age, files set aside, spooled and replayed totals) and `fleetd_redis_up`; while Redis
  is away a scrape answers these and the API's own series, without the Redis ones.

No task of its own: the hub calls `count_event` for every event it reads.
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fleetd.analytics.prometheus import schedule_families
from fleetd.api.metrics_daemons import daemon_families
from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import SyncClient
from fleetd.backend.spaces import Spaces
from fleetd.jobs.isolation import error_kind
from fleetd.jobs.model import JobStatus
from fleetd.runtime.events import Event
from fleetd.spool.service import DaemonSpool

__all__ = ["CONTENT_TYPE", "ApiMetrics"]

log = logging.getLogger("fleetd.api.metrics")

# No `*_created` series: they double the output and no dashboard of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ACTIVE = (JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.RETRYING)
# Job ids whose type one scrape looks up per status: a backlog larger than this is
# counted by status exactly and the rest of its types as "other" (bounds scrape cost:
# 100k HGETs pipelined take ~0.1 s here).
MAX_TYPE_SCAN = 100_000
SCAN_CHUNK = 2_000
# Job durations: 5 ms (a no-op) to 10 min (a large export).
DURATION_BUCKETS = (0.005, 0.025, 0.1, 0.25, 1, 2.5, 10, 30, 60, 300, 600)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class _Snapshot(Collector):
    """Metrics read from Redis for one scrape (set just before generate_latest)."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterator[Metric]:
        yield from self.families


class _SpoolCollector(Collector):
    def __init__(self, spool: DaemonSpool) -> None:
        self.spool = spool

    def collect(self) -> Iterator[Metric]:
        sp = self.spool
        for name, text, value in (
            ("jobs", "Jobs in this state directory's enqueue spool, waiting for Redis", sp.jobs),
            ("bytes", "Bytes of job rows in the enqueue spool", sp.bytes),
            ("oldest_age_seconds", "How long the oldest spooled job has waited", sp.age()),
            ("set_aside_files", "Unreadable spool files set aside for an operator",
             len(sp.set_aside)),
        ):  # fmt: skip
            yield GaugeMetricFamily(f"fleetd_spool_{name}", text, value=value)
        for name, text, count in (
            ("spooled", "Jobs this daemon spooled while Redis was away", sp.spooled_total),
            ("replayed", "Spooled jobs this daemon sent to Redis", sp.replayed_total),
        ):
            yield CounterMetricFamily(f"fleetd_spool_{name}", text, value=count)


class ApiMetrics:
    def __init__(self, keys: Keys, spaces: Spaces | None = None) -> None:
        self.keys = keys
        self.spaces = spaces  # None: `keys` alone hold the jobs
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.processed = Counter(
            "fleetd_jobs_processed", "Job attempts finished, by type", ["type"], registry=r
        )
        self.completed = Counter(
            "fleetd_jobs_completed", "Jobs completed, by type", ["type"], registry=r
        )
        self.failed = Counter(
            "fleetd_jobs_failed", "Jobs failed for good, by type", ["type"], registry=r
        )
        self.retried = Counter(
            "fleetd_jobs_retried", "Failed attempts to be retried, by type", ["type"], registry=r
        )
        self.errors = Counter(
            "fleetd_job_errors",
            "Failed attempts by type and error kind (error, timeout, crash, "
            "resource_exhausted: memory / cpu)",
            ["type", "kind"],
            registry=r,
        )
        self.duration = Histogram(
            "fleetd_job_duration_seconds",
            "Run time of completed jobs, by type",
            ["type"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "fleetd_http_requests",
            "Admin API requests, by method, route and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "fleetd_http_request_duration_seconds",
            "Admin API request latency, by route",
            ["route"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "fleetd_http_in_flight",
            "Admin API requests in flight on this daemon (probes not counted)",
            registry=r,
        )
        self.overloaded = Counter(
            "fleetd_http_overloaded",
            "Admin API requests refused with 503 overloaded ([http] max_in_flight)",
            registry=r,
        )
        self.ws_subscribers = Gauge(
            "fleetd_websocket_subscribers",
            "Open sessions of the events WebSocket on this daemon",
            registry=r,
        )
        self._snapshot = _Snapshot()
        r.register(self._snapshot)
        self.redis_up = Gauge(
            "fleetd_redis_up", "1 when the last scrape read Redis, 0 when it could not",
            registry=r,
        )  # fmt: skip

    def watch_spool(self, spool: DaemonSpool) -> None:
        """The enqueue spool's gauges and counters of this daemon (fleetd.spool), read
        at each scrape (and served while Redis is away)."""
        self.registry.register(_SpoolCollector(spool))

    # -- events ----------------------------------------------------------------------

    def count_subscribers(self, count: Callable[[], int]) -> None:
        """Read the gauge of WebSocket sessions from `count()` at each scrape."""
        self.ws_subscribers.set_function(lambda: float(count()))

    def count_in_flight(self, count: Callable[[], int]) -> None:
        """Read the gauge of requests in flight from `count()` at each scrape."""
        self.in_flight.set_function(lambda: float(count()))

    def count_event(self, ev: Event) -> None:
        kind = ev.type
        job_type = ev.job_type or "unknown"
        if kind == "job.completed":
            self.processed.labels(job_type).inc()
            self.completed.labels(job_type).inc()
            ms = ev.data.get("duration_ms")
            if isinstance(ms, int | float):
                self.duration.labels(job_type).observe(ms / 1000)
        elif kind == "job.failed":
            self.processed.labels(job_type).inc()
            self.failed.labels(job_type).inc()
            self._count_error(job_type, ev.data.get("error"))
        elif kind == "job.retrying":
            self.processed.labels(job_type).inc()
            self.retried.labels(job_type).inc()
            self._count_error(job_type, ev.data.get("error"))

    def _count_error(self, job_type: str, error: object) -> None:
        """The attempt's error kind, which opens its error text (fleetd.jobs.isolation)."""
        if isinstance(error, str):
            self.errors.labels(job_type, error_kind(error)).inc()

    # -- scrape ----------------------------------------------------------------------

    def read_redis(self, client: SyncClient) -> list[Metric]:
        """Queue depth and scheduler counters, in one hop."""
        k = self.keys
        spaces = [k] if self.spaces is None else self.spaces.all_keys(client)
        pipe = client.pipeline(transaction=False)
        for keys in spaces:
            for st in JobStatus:
                pipe.zcard(keys.status(st))
        pipe.hgetall(k.schedules_stats)
        *cards, sched = pipe.execute()
        jobs = GaugeMetricFamily("fleetd_jobs", "Jobs in Redis, by status", labels=["status"])
        n_st = len(JobStatus)
        for i, st in enumerate(JobStatus):
            jobs.add_metric([st.value], sum(int(n) for n in cards[i::n_st]))
        depth = GaugeMetricFamily(
            "fleetd_queue_depth",
            "Waiting and running jobs, by status and type",
            labels=["status", "type"],
        )
        for st in ACTIVE:
            for job_type, n in sorted(self._types(client, st, spaces).items()):
                depth.add_metric([st.value, job_type], n)
        out: list[Metric] = [jobs, depth]
        for name, text in (
            ("fired", "Scheduled occurrences enqueued"),
            ("missed", "Scheduled occurrences missed (misfires)"),
            ("errors", "Scheduled occurrences that could not be enqueued"),
        ):
            family = CounterMetricFamily(f"fleetd_scheduler_{name}", text)
            family.add_metric([], int(sched.get(name) or 0))
            out.append(family)
        out.extend(schedule_families(client, k, sched))
        out.extend(daemon_families(client, k))
        return out

    def _types(self, client: SyncClient, status: JobStatus, spaces: list[Keys]) -> Tally[str]:
        """Jobs of `status` by type over `spaces`: the types of MAX_TYPE_SCAN of them
        at most (shared by the spaces, in order), the rest counted as "other"."""
        tally: Tally[str] = Tally()
        budget, other = MAX_TYPE_SCAN, 0
        for keys in spaces:
            key = keys.status(status)
            total = int(client.zcard(key))
            scanned = 0
            while scanned < min(total, budget):
                ids = client.zrange(key, scanned, scanned + SCAN_CHUNK - 1)
                if not ids:
                    break
                pipe = client.pipeline(transaction=False)
                for job_id in ids:
                    pipe.hget(keys.job(job_id), "type")
                tally.update(t or "unknown" for t in pipe.execute())
                scanned += len(ids)
            budget = max(0, budget - scanned)
            other += max(0, total - scanned)
        if other:
            tally["other"] += other
        return tally

    def render(self, snapshot: list[Metric]) -> bytes:
        self._snapshot.families = snapshot
        try:
            return generate_latest(self.registry)
        finally:
            self._snapshot.families = []
