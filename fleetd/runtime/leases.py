"""Leases and cancel requests of the jobs one worker pool holds (running, and claimed
ahead in its buffer).

- `renew_loop`: renews every held lease in one script call each lease/3 (a lease
  survives two missed renewals). A job whose lease was lost (recovered elsewhere after
  this daemon stalled) has its handler cancelled with reason "lost" and writes nothing;
  one with a cancel request pending is cancelled ("cancel"); a claimed-ahead one is
  just dropped from the buffer (aborted if cancelled).
- `control_loop`: blocks on this daemon's control list (a short server-side timeout,
  never a blocking pop of a job) for cancel requests of jobs it runs, and carries them
  out at once rather than at the next renewal.

Both run in the pool's service nursery until it closes. They share the pool's `running`
dict and `buffer` deque (the same objects, never copies) and emit outcomes through the
pool's completion batcher.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

import trio

from fleetd.backend.redis_link import Backoff, RedisLink, RedisUnavailable, SyncClient
from fleetd.backend.scripts import Scripts
from fleetd.runtime.outcomes import Outcome
from fleetd.runtime.running import Running

__all__ = ["LeaseKeeper"]

log = logging.getLogger("fleetd.worker")


class LeaseKeeper:
    def __init__(
        self,
        link: RedisLink,
        scripts: Scripts,
        daemon_id: str,
        *,
        running: dict[str, Running],
        buffer: deque[Running],
        emit: Callable[[Outcome], None],
        lease: float,
        max_wait: float,
        max_backoff: float,
    ) -> None:
        self.link = link
        self.scripts = scripts
        self.daemon_id = daemon_id
        self._running = running
        self._buffer = buffer
        self._emit = emit
        self._interval = lease / 3
        self._lease_ms = int(lease * 1000)
        self._max_wait = max_wait
        self._max_backoff = max_backoff
        keys = scripts.keys
        # Our control list, and the poke that ends our wait on it now (at shutdown).
        self.control_keys = [keys.control(daemon_id), keys.poke(daemon_id, "control")]

    def _holds(self, entry: Running) -> bool:
        return self._running.get(entry.job.id) is entry or any(e is entry for e in self._buffer)

    def _held(self) -> list[Running]:
        """Every job this daemon holds a lease on: running and claimed ahead."""
        return [*self._running.values(), *self._buffer]

    async def renew_loop(self) -> None:
        interval = self._interval
        while True:
            await trio.sleep(interval)
            held = {r.job.id: r for r in self._held()}
            items = [(job_id, r.job.token) for job_id, r in held.items()]
            if not items:
                continue
            try:
                results = await self.link.call(self.scripts.renew, self._lease_ms, items)
            except RedisUnavailable:
                continue
            for (job_id, _token), res in zip(items, results, strict=True):
                entry = held[job_id]
                if res == 1 or not self._holds(entry):
                    continue  # renewed, or finished while the renewal was in flight
                if entry.job.id not in self._running:  # never started: nothing to interrupt
                    self._buffer.remove(entry)
                    if res == 2:
                        self._emit(Outcome("abort", entry.job, 0.0))
                    continue
                if res == 0:
                    log.warning("job %s: lease lost (recovered elsewhere); cancelling here", job_id)
                    entry.stop("lost")
                else:
                    entry.stop("cancel")

    async def control_loop(self) -> None:
        key = self.scripts.keys.control(self.daemon_id)
        backoff = Backoff(self._max_backoff)
        while True:
            try:
                job_ids = await self.link.call(self._wait_control, key)
            except RedisUnavailable:
                await backoff.sleep()
                continue
            backoff.reset()
            for job_id in job_ids:
                waiting = next((e for e in self._buffer if e.job.id == job_id), None)
                if waiting is not None:
                    self._buffer.remove(waiting)
                    self._emit(Outcome("abort", waiting.job, 0.0))
                    continue
                entry = self._running.get(job_id)
                if entry is not None:
                    log.info("job %s: cancel requested; cancelling its handler", job_id)
                    entry.stop("cancel")

    def _wait_control(self, client: SyncClient, key: str) -> list[str]:
        first = client.blpop(self.control_keys, timeout=self._max_wait)
        if first is None or first[0] != key:
            return []
        rest = client.lpop(key, 100) or []
        return [first[1], *rest]
