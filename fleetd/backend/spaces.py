"""Key spaces: the namespace's own (its slot holds everything but the queues below) and
one per named queue with a slot of its own (`[queues] own_slot`).

A queue's space is the namespace's whole key layout under the hash tag
`{<namespace>/<queue>}` (`Keys.in_queue`), so every script runs unchanged in it, and a
Redis Cluster may put it on another primary. What a script does stays atomic within one
space; what spans spaces is summed or merged by the readers (fleetd.jobs.queue).

Which queues have a space is kept in Redis too (`Keys.queues_slotted`, in the
namespace's slot): a process whose config lists a queue adds it there, and every process
of the namespace routes by the union of its config and that set, re-read every
`REFRESH_S`. So a daemon or client that lacks the setting still enqueues into, reads and
serves a queue's space, and a queue once given a slot keeps it (moving it back would
strand what its space holds).

Claims read the paused queues of their own space: fleetd.jobs.queues pauses a queue in
the namespace's space and in its own, and the process that gives a queue its slot
copies a pause made before into it (`Spaces._carry_pauses`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import SyncClient
from fleetd.backend.scripts import Scripts
from fleetd.config.queue_section import DEFAULT_QUEUE, EVERY_QUEUE

__all__ = ["REFRESH_S", "Space", "Spaces"]

# How long a process goes by the queues it last read from `queues_slotted`.
REFRESH_S = 5.0


@dataclass(frozen=True, slots=True)
class Space:
    """One key space: `queue` is '' for the namespace's own."""

    queue: str
    keys: Keys
    scripts: Scripts

    @property
    def home(self) -> bool:
        return not self.queue


class Spaces:
    """The spaces of one namespace, as this process knows them. Thread-safe: read from
    the link's worker threads."""

    def __init__(self, scripts: Scripts, own_slot: Iterable[str] = ()) -> None:
        """`own_slot`: `[queues] own_slot`, names or `*` (every named queue: each gets
        its slot on its first enqueue, or when a worker daemon serving it starts)."""
        self.home = Space("", scripts.keys, scripts)
        own = frozenset(own_slot)
        self._every = EVERY_QUEUE in own
        self._configured = own - {EVERY_QUEUE}
        self._spaces: dict[str, Space] = {}
        self._added = False  # the configured queues are in `queues_slotted`
        self._read_at = float("-inf")
        self._lock = threading.Lock()
        for queue in sorted(self._configured):
            self._add(queue)

    def _add(self, queue: str) -> Space:
        space = self._spaces.get(queue)
        if space is None:
            keys = self.home.keys.in_queue(queue)
            space = Space(queue, keys, self.home.scripts.in_space(keys))
            self._spaces = {**self._spaces, queue: space}  # readers see one or the other
        return space

    def known(self, client: SyncClient) -> list[Space]:
        """Every space, the namespace's first, then by queue name; re-reads the set at
        most every REFRESH_S (and adds this process's configured queues to it once)."""
        if time.monotonic() - self._read_at >= REFRESH_S:
            self.refresh(client)
        return [self.home, *(self._spaces[q] for q in sorted(self._spaces))]

    def all_keys(self, client: SyncClient) -> list[Keys]:
        """The keys of every space (`known`'s order): what the readers that sum or merge
        over spaces take."""
        return [s.keys for s in self.known(client)]

    def refresh(self, client: SyncClient) -> None:
        with self._lock:
            if self._configured and not self._added:
                self._register(client, sorted(self._configured))
                self._added = True
            for queue in client.smembers(self.home.keys.queues_slotted):
                self._add(queue)
            self._read_at = time.monotonic()

    def _register(self, client: SyncClient, queues: list[str]) -> None:
        """Give `queues` their slots: in `queues_slotted` for every process, and here."""
        pipe = client.pipeline(transaction=False)
        for queue in queues:
            pipe.sadd(self.home.keys.queues_slotted, queue)
        added = [q for q, n in zip(queues, pipe.execute(), strict=True) if n]
        for queue in queues:
            self._add(queue)
        if added:
            self._carry_pauses(client, added)

    def _carry_pauses(self, client: SyncClient, queues: list[str]) -> None:
        """Queues this process just gave a slot, paused in the namespace's space before
        (`queues:paused`), are paused in their own space too (whose claims read that
        space's set). Read after the slot was added, and fleetd.jobs.queues.pause_queue
        reads the slots after its write: of two racing, one sees the other."""
        paused = client.smembers(self.home.keys.queues_paused)
        for queue in queues:
            if queue in paused:
                client.sadd(self._spaces[queue].keys.queues_paused, queue)

    def routes(self, client: SyncClient) -> bool:
        """Whether a job may go anywhere but the namespace's space (a queue has a slot,
        or `*` gives each its own)."""
        return self._every or len(self.known(client)) > 1

    def for_queue(self, client: SyncClient, queue: str | None) -> Space:
        """Where a job of `queue` (None: the default) is stored; with `*`, a named
        queue without a slot gets one now."""
        self.known(client)  # registers this process's queues on its first call
        if self._every and queue and queue != DEFAULT_QUEUE and queue not in self._spaces:
            with self._lock:
                self._register(client, [queue])
        return self._spaces.get(queue or "", self.home)

    def serving(self, client: SyncClient, queues: Iterable[str]) -> list[Space]:
        """Every space, once a worker daemon serving `queues` gave each named one its
        slot (with `*`; with names, the configured ones already have theirs)."""
        for queue in queues:
            self.for_queue(client, queue)
        return self.known(client)

    def of_queue(self, queue: str) -> Space | None:
        """The space of `queue` if this process knows it has one (no Redis read)."""
        return self._spaces.get(queue)

    def locate(self, client: SyncClient, job_id: str) -> Space:
        """The space holding job `job_id`: one EXISTS per space, in one pipeline (none
        without queue spaces). A job never changes space; a missing job: the
        namespace's (its scripts answer `missing`)."""
        spaces = self.known(client)
        if len(spaces) == 1:
            return self.home
        pipe = client.pipeline(transaction=False)
        for space in spaces:
            pipe.exists(space.keys.job(job_id))
        for space, found in zip(spaces, pipe.execute(), strict=True):
            if found:
                return space
        return self.home
