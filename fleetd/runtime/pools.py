"""A worker daemon's pools: one per key space it serves (fleetd.backend.spaces), all
within the one `[worker] concurrency`.

The namespace's own space always has a pool: it serves every queue of `[worker] queues`
there (jobs stored before a queue had a slot of its own, and those of workflows,
schedules and bypasses, which stay in the namespace's slot). Each served queue with a
slot of its own gets a pool claiming from that space alone. The pools share their slots
(`SharedSlots`): a pool claims only what the daemon as a whole has room for, and a slot
freed in one wakes them all, so a busy queue takes what an idle one leaves, and no queue
waits behind another's backlog for longer than a slot takes to free.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fleetd.backend.scripts import ClaimedJob
    from fleetd.runtime.worker import WorkerPool

__all__ = ["Pools", "SharedSlots"]


class SharedSlots:
    """The slots of one daemon's pools."""

    def __init__(self) -> None:
        self._pools: list[WorkerPool] = []

    def join(self, pool: WorkerPool) -> None:
        self._pools.append(pool)

    def elsewhere(self, pool: WorkerPool) -> tuple[int, int]:
        """(running, claimed ahead) of the other pools."""
        running = buffered = 0
        for other in self._pools:
            if other is not pool:
                running += other.running
                buffered += other.buffered
        return running, buffered

    def freed(self) -> None:
        """A slot came free: every pool may claim."""
        for pool in self._pools:
            pool.wake()


class Pools:
    """The pools of one daemon, seen as one (what the daemon, its reports and reloads
    read and drive). The first is the namespace's."""

    def __init__(self) -> None:
        self.slots = SharedSlots()
        self._pools: list[WorkerPool] = []
        self.queues: set[str] = set()  # the queues whose own space has a pool here

    def add(self, pool: WorkerPool, queue: str = "") -> None:
        self._pools.append(pool)
        if queue:
            self.queues.add(queue)

    def __iter__(self) -> Iterator[WorkerPool]:
        return iter(self._pools)

    @property
    def home(self) -> WorkerPool:
        return self._pools[0]

    @property
    def daemon_id(self) -> str:
        return self.home.daemon_id

    @property
    def concurrency(self) -> int:
        return self.home.concurrency

    @property
    def running(self) -> int:
        return sum(p.running for p in self._pools)

    def running_jobs(self) -> list[ClaimedJob]:
        return [job for p in self._pools for job in p.running_jobs()]

    def each(self, act: Callable[[WorkerPool], None]) -> None:
        for pool in self._pools:
            act(pool)

    def set_concurrency(self, n: int) -> None:
        self.each(lambda p: p.set_concurrency(n))

    def quiet(self) -> None:
        self.each(lambda p: p.quiet())

    def stop_now(self) -> None:
        self.each(lambda p: p.stop_now())
