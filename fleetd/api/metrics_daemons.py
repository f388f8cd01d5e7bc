"""Resource use of every live daemon on `/metrics`, from their heartbeats.

Owns `daemon_families(client, keys)`, read in the scrape's Redis hop: per live daemon
(`daemon` label: its id) `fleetd_daemon_cpu_percent` (100 = one core),
`fleetd_daemon_rss_bytes`, `fleetd_daemon_open_fds` and
`fleetd_daemon_loop_lag_seconds` (the worst lateness of its trio loop over its last
heartbeat interval), as fleetd.runtime.resources measured them.
"""

from __future__ import annotations

import json

from prometheus_client.core import GaugeMetricFamily, Metric

from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import SyncClient

__all__ = ["daemon_families"]

_GAUGES = (
    ("cpu_percent", "fleetd_daemon_cpu_percent", "CPU use of a daemon process (100 = one core)", 1),
    ("rss_bytes", "fleetd_daemon_rss_bytes", "Resident memory of a daemon process", 1),
    ("open_fds", "fleetd_daemon_open_fds", "Open file descriptors of a daemon process", 1),
    ("loop_lag_ms", "fleetd_daemon_loop_lag_seconds",
     "Worst lateness of a daemon's trio loop over its last heartbeat interval", 0.001),
)  # fmt: skip


def daemon_families(client: SyncClient, keys: Keys) -> list[Metric]:
    sec, usec = client.time()
    now = int(sec) * 1000 + int(usec) // 1000
    alive = client.zrangebyscore(keys.heartbeats, now, "+inf")
    payloads = client.hmget(keys.daemons, alive) if alive else []
    families = [GaugeMetricFamily(name, text, labels=["daemon"]) for _, name, text, _ in _GAUGES]
    for raw in payloads:
        if not raw:
            continue
        d = json.loads(raw)
        used = d.get("resources") or {}
        for family, (field, _, _, scale) in zip(families, _GAUGES, strict=True):
            value = used.get(field)
            if isinstance(value, int | float):
                family.add_metric([str(d.get("daemon_id", "?"))], value * scale)
    return list(families)
