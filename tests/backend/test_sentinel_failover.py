"""A Sentinel failover under load, with real processes on loopback: a primary, one
replica and three sentinels; a `fleetd run` daemon on `redis+sentinel://` with
`[redis] wait_replicas = 1` answering a steady stream of HTTP enqueues. The primary is
SIGKILLed, the sentinels promote the replica, the daemon finds the new primary, and
every job that was acknowledged (201) is there and completes."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_client import PREFIX, SECRET, auth
from conftest import fleetd_env, make_config
from daemons import Fleet, wait_for
from redis_server import HOST
from redis_topology import LocalSentinels, wait_until

pytestmark = pytest.mark.slow

# Acknowledged jobs wanted before the kill and after the failover.
BEFORE = 40
AFTER = 40


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[LocalSentinels]:
    with LocalSentinels(tmp_path / "sentinel-setup") as started:
        yield started


class Enqueuer:
    """POSTs one noop job after another from a thread; remembers which got a 201."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.acked: list[str] = []
        self.refused: Counter[str] = Counter()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, headers=auth(), timeout=10) as http:
            n = 0
            while not self.stop.is_set():
                n += 1
                try:
                    r = http.post(f"{PREFIX}/enqueue", json={"type": "noop", "data": {"n": n}})
                except httpx.HTTPError as exc:
                    self.refused[type(exc).__name__] += 1
                    continue
                if r.status_code == 201:
                    self.acked.append(r.json()["job_id"])
                else:
                    self.refused[f"{r.status_code} {r.json()['error']['code']}"] += 1
                    self.stop.wait(0.05)


def test_no_acknowledged_job_is_lost_when_the_primary_is_killed(
    sentinels: LocalSentinels, fleet: Fleet, namespace: str, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    env = fleetd_env(make_config(sentinels.url, namespace, state)) | {
        "FLEETD_AUTH_SECRET": SECRET,
        "FLEETD_REDIS_WAIT_REPLICAS": "1",
        # Longer than [http] redis_timeout (1.5 s): the API must still wait the WAIT out.
        "FLEETD_REDIS_WAIT_TIMEOUT": "2s",
        "FLEETD_REDIS_RECONNECT_MAX_BACKOFF": "1s",
        # Without the spool an enqueue during the outage is refused (503), so "201"
        # means "stored in Redis and confirmed by a replica" and nothing else.
        "FLEETD_SPOOL_ENABLED": "false",
        # Jobs running on the lost primary come back through their leases.
        "FLEETD_WORKER_LEASE": "3s",
    }
    fleet.start(env)
    enqueuer = Enqueuer(fleet.api_url(state))
    enqueuer.thread.start()
    try:
        wait_for(lambda: len(enqueuer.acked) >= BEFORE, 30, "enqueues before", fleet.tails)
        old_port = sentinels.primary_port()
        old = sentinels.server_on(old_port)
        old.kill()
        acked_at_kill = len(enqueuer.acked)
        wait_until(
            "every sentinel to name the promoted replica", lambda: sentinels.promoted(old_port)
        )
        # The old primary comes back empty, as the new one's replica, so WAIT 1 can be
        # met again. Started as a replica at once, with replica priority 0: an empty
        # server that comes up as a primary, or is promoted, empties whatever follows
        # it — the jobs included (docs/OPERATIONS.md: keep persistence on). Twice in
        # full runs on a loaded machine every job acknowledged before the kill was lost
        # so (those acknowledged seconds before it too: not an unreplicated tail).
        # That is Redis's hazard, not what this test measures.
        new_port = sentinels.primary_port()
        old.extra_args = (*old.extra_args, "--replica-priority", "0",
                          "--replicaof", HOST, str(new_port))  # fmt: skip
        old.start()
        wait_until("the old primary to follow the new one", sentinels.replica_online)
        wait_for(
            lambda: len(enqueuer.acked) >= acked_at_kill + AFTER,
            60,
            f"enqueues after the failover (refused so far: {dict(enqueuer.refused)})",
            fleet.tails,
        )
    finally:
        enqueuer.stop.set()
        enqueuer.thread.join(15)
    acked = enqueuer.acked
    assert len(set(acked)) == len(acked)

    with httpx.Client(base_url=fleet.api_url(state), headers=auth(), timeout=10) as http:

        def status(job_id: str) -> str:
            r = http.get(f"{PREFIX}/{job_id}")
            assert r.status_code in (200, 404), r.text
            return "lost" if r.status_code == 404 else str(r.json()["status"])

        def all_completed() -> bool:
            states = Counter(status(job_id) for job_id in acked)
            assert states["lost"] == 0, f"acknowledged jobs lost: {states}"
            return states == Counter({"completed": len(acked)})

        wait_for(all_completed, 60, "every acknowledged job to complete", fleet.tails)
    # Until the sentinels turn the restarted old primary into a replica (~10 s here)
    # the new primary has none: those enqueues are refused as not replicated after
    # wait_timeout, not cut off by a socket timeout as "Redis unavailable".
    [daemon] = fleet.procs
    assert "Timeout reading" not in daemon.log(), dict(enqueuer.refused)
