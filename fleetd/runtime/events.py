"""The event hub: the one reader of the events streams in a daemon, and its fan-out.

Owns:
- `Subscriber`: a memory channel of deliveries (fleetd.runtime.event_model) and the
  count of events handed to it and not yet sent. The hub never waits for one: a
  subscriber that would have more than `[events] buffer` events waiting is marked
  `behind` and dropped from the fan-out, and its session closes it (1013);
- `EventHub.run`: ONE read loop per daemon over every key space's events stream
  (fleetd.backend.spaces: the namespace's and each queue's with a slot of its own;
  short server-side block, `[events] read_count` per stream and read, capped backoff
  while Redis is unreachable) that feeds the subscribers — one hand-off per read and
  subscriber, filtered once per distinct filter — and the plain consumers (the
  /metrics counters and alerts, per event);
- the `events:watched` zset of every space (`watch`): a company with a subscriber
  here has its events also written to its own replay stream, in every space;
- `cursor`: where the hub stands in every stream (fleetd.runtime.cursor), each
  event's id. Stream ids, `Event`, `EventFilter`, `Delivery` are re-exported from
  fleetd.runtime.cursor and fleetd.runtime.event_model; the replay reads are
  fleetd.runtime.replay.

Reading spans the spaces in turn, in one thread hop per read: a non-blocking XREAD of
each queue space's stream, then, only when none of them had anything, the one blocking
XREAD (READ_BLOCK) of the namespace's stream. One XREAD of several streams would block
on all at once, but on a Redis Cluster the streams sit in different slots and one
command cannot name them (CROSSSLOT); a reader task per space would hold a pooled
connection and a thread per space in a blocking read, taken from the API's requests.
So the namespace's events (alerts, workflows, every queue without a slot) wake the hub
at once, a queue space's wait at most READ_BLOCK when everything is idle (none while
events flow: a read that found some makes the next one at once), one link connection
is used, and an idle hub costs 1 + spaces small round trips per READ_BLOCK. Within
one read the events of all streams are merged by id (their servers' clocks) and
delivered in that order.

Spaces appear while running (another process gives a queue a slot): the hub asks
Spaces.known every SPACE_CHECK seconds. At start it pins "now" in every stream (their
last generated ids) once Redis answers; a space found later is read from its start
(`0-0`): its stream began after the hub last looked, so it holds nothing the hub
should skip. `close_all()` (graceful stop) ends every session with 1001 and refuses new
ones.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import trio

from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import (
    Backoff,
    RedisCommandError,
    RedisLink,
    RedisUnavailable,
    SyncClient,
)
from fleetd.backend.spaces import Spaces
from fleetd.config import EventsConfig
from fleetd.runtime.cursor import STREAM_ID, ZERO, Cursor, id_key, resumable
from fleetd.runtime.event_model import (
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    Delivery,
    Event,
    EventFilter,
    deliveries,
)
from fleetd.runtime.shares import Shares

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_BATCH_EVENTS",
    "STREAM_ID",
    "Cursor",
    "Delivery",
    "Event",
    "EventFilter",
    "EventHub",
    "Subscriber",
    "deliveries",
    "id_key",
    "resumable",
]

log = logging.getLogger("fleetd.events")

# One stream entry read: (space, stream id, fields).
Entry = tuple[str, str, dict[str, str]]

# How long one XREAD blocks in Redis. A stop waits for the read in flight (a Redis call
# is never abandoned), so this bounds what it adds to a stop; idle, it costs four small
# round trips a second per stream. Kept below the API link's socket timeout (see
# EventHub).
READ_BLOCK = 0.25
# How often the hub asks which key spaces there are (Spaces.known reads Redis at most
# every spaces.REFRESH_S).
SPACE_CHECK = 1.0
# A company with a subscriber here is marked watched (Keys.events_watched) until an hour
# after: its events then also go to its own replay stream. Marked again this often
# while it has one, and at once when a new company's subscriber opens.
WATCH_MS = 3_600_000
WATCH_REFRESH = 300.0


class Subscriber:
    """One session's place in the fan-out. `queued` counts the events handed to it and
    not yet sent (the session lowers it after each send); `batch` is the session's frame
    mode (read by the session only). `closing` (code, reason) is set when the hub stops;
    `behind` when it fell `buffer` events behind."""

    def __init__(
        self, flt: EventFilter, buffer: int, *, batch: bool = False, owner: str | None = None
    ) -> None:
        self.filter = flt
        self.batch = batch
        self.owner = owner  # the company of a company-bound token (its share is counted)
        # Unbounded: the bound is `queued`, in events (see EventHub._dispatch), and the
        # deliveries are shared objects, so a subscriber holds references, not copies.
        self._send, self.receive = trio.open_memory_channel[Delivery](math.inf)
        self.queued = 0
        self.behind = False
        self.closing: tuple[int, str] | None = None

    def _end(self) -> None:
        self._send.close()  # wakes a session waiting on an empty channel


class HubFull(Exception):
    """`[events] max_subscribers` sessions are open already, or (`company` set) that
    company's tokens hold their `company_share` of them."""

    def __init__(self, company: str | None = None) -> None:
        super().__init__(company)
        self.company = company


class HubClosed(Exception):
    """The daemon is stopping."""


class EventHub:
    def __init__(
        self,
        keys: Keys,
        link: RedisLink,
        cfg: EventsConfig,
        *,
        block: float,
        reconnect_cap: float,
        spaces: Spaces | None = None,
    ) -> None:
        """`spaces`: the namespace's key spaces (None: the namespace's stream only)."""
        self.keys = keys
        self.link = link
        self.cfg = cfg
        self.spaces = spaces
        self.block_ms = max(10, int(block * 1000))
        self.reconnect_cap = reconnect_cap
        # The streams read, by space ('' the namespace's), and where each stands.
        self.streams: dict[str, Keys] = {"": keys}
        self._pos: dict[str, str] = {}
        # Just after the last event fanned out: a subscriber attached now gets every
        # later one. None until the streams were first pinned.
        self.cursor: Cursor | None = None
        self._check_at = -math.inf
        self.sessions: set[Subscriber] = set()
        # Sessions of company-bound tokens, per company ([events] company_share).
        self._owned = Shares(cfg.max_subscribers, cfg.company_share)
        self._live: list[Subscriber] = []
        self._consumers: list[Callable[[Event], None]] = []
        self.closed = False
        # The companies marked watched by the last `watch`, and when (trio clock).
        self._watched: frozenset[str] = frozenset()
        self._watched_at = -math.inf

    @property
    def position(self) -> str | None:
        """The cursor's wire form (the id a subscriber attached now starts after)."""
        return None if self.cursor is None else self.cursor.render()

    @property
    def position_key(self) -> tuple[int, int]:
        """Where the hub stands in the namespace's stream."""
        return (0, 0) if self.cursor is None else self.cursor.key("")

    def add_consumer(self, consume: Callable[[Event], None]) -> None:
        """Call `consume(event)` for every event (it must not block)."""
        self._consumers.append(consume)

    def open(
        self, flt: EventFilter, *, batch: bool = False, owner: str | None = None
    ) -> Subscriber:
        """A new session's subscriber, not yet fed (see attach). `owner`: the company of
        a company-bound token, whose sessions hold at most `company_share` of
        `max_subscribers` (no company fills the feed every company's dashboards need)."""
        if self.closed:
            raise HubClosed
        if len(self.sessions) >= self.cfg.max_subscribers:
            raise HubFull
        if owner is not None and not self._owned.take(owner):
            raise HubFull(owner)
        sub = Subscriber(flt, self.cfg.buffer, batch=batch, owner=owner)
        self.sessions.add(sub)
        return sub

    def attach(self, sub: Subscriber) -> None:
        """Feed `sub` every event after `position` (call without awaiting in between)."""
        if sub in self.sessions and sub.closing is None:
            self._live.append(sub)

    def leave(self, sub: Subscriber) -> None:
        if sub in self.sessions and sub.owner is not None:
            self._owned.give(sub.owner)
        self.sessions.discard(sub)
        if sub in self._live:
            self._live.remove(sub)
        sub._end()

    def close_all(self, code: int, reason: str) -> None:
        self.closed = True
        self._live.clear()
        for sub in self.sessions:
            sub.closing = (code, reason)
            sub._end()

    def _dispatch(self, events: list[Event]) -> None:
        """Hand one read's events out: filtered once per distinct filter (a subscriber's
        filter is hashable, company included, so dashboards with the same filter share
        the work and the frames), one hand-off per subscriber.

        A subscriber that has events waiting and would then have more than `buffer` is
        behind. One with none waiting always takes a whole read, whatever its size: so
        `buffer` may be smaller than `read_count`, and a burst read at once closes no
        subscriber that was keeping up."""
        for consume in self._consumers:
            for ev in events:
                consume(ev)
        groups: dict[EventFilter, list[Subscriber]] = {}
        for sub in self._live:
            groups.setdefault(sub.filter, []).append(sub)
        limit = self.cfg.buffer
        dropped = False
        for flt, subs in groups.items():
            matched = [ev for ev in events if flt.matches(ev)]
            if not matched:
                continue
            parts = deliveries(flt, matched)
            n = len(matched)
            for sub in subs:
                if sub.queued and sub.queued + n > limit:
                    sub.behind = dropped = True
                    sub._end()
                    continue
                sub.queued += n
                for part in parts:
                    sub._send.send_nowait(part)
        if dropped:
            self._live = [s for s in self._live if not s.behind]

    def _watch_due(self) -> frozenset[str] | None:
        """The companies to mark watched now, or None: a company's subscriber opened
        since the last mark, or WATCH_REFRESH passed with some open."""
        if self.cfg.company_maxlen <= 0:
            return None
        companies = frozenset(
            s.filter.company_id for s in self.sessions if s.filter.company_id is not None
        )
        stale = trio.current_time() - self._watched_at >= WATCH_REFRESH
        if not companies or (companies <= self._watched and not stale):
            return None
        return companies

    def watch(self, client: SyncClient, companies: frozenset[str]) -> None:
        """Mark `companies` watched until WATCH_MS from now (Redis time), and forget
        those whose mark ran out: in every space read (a space's scripts read its own
        `events:watched`), one pipeline each after TIME."""
        seconds, micros = client.time()
        now = int(seconds) * 1000 + int(micros) // 1000
        for keys in list(self.streams.values()):
            pipe = client.pipeline(transaction=False)
            pipe.zadd(keys.events_watched, dict.fromkeys(companies, now + WATCH_MS), gt=True)
            pipe.zremrangebyscore(keys.events_watched, "-inf", now)
            pipe.execute()

    def replay_streams(self, client: SyncClient, cursor: Cursor) -> dict[str, Keys]:
        """The streams a replay from `cursor` reads: the hub's, and those of the queues
        `cursor` names that have a space (the spaces read again first if the hub does
        not read one of them yet); a queue without a space is left out."""
        streams = dict(self.streams)
        if self.spaces is None or all(q in streams for q in cursor):
            return streams
        self.spaces.refresh(client)
        for queue in cursor:
            space = self.spaces.of_queue(queue) if queue else None
            if space is not None:
                streams.setdefault(queue, space.keys)
        return streams

    def _discover(self, client: SyncClient) -> list[tuple[str, Keys, str]]:
        """The spaces not read yet, each with where to start: its stream's newest id at
        the first pin, its start (`0-0`) when it appeared since (module docstring)."""
        first = self.cursor is None
        if self.spaces is None:
            spaces = [("", self.keys)]
        else:
            if first:
                self.spaces.refresh(client)  # not a set up to REFRESH_S old
            spaces = [(s.queue, s.keys) for s in self.spaces.known(client)]
        found = [(q, k) for q, k in spaces if q not in self._pos]
        return [(q, k, self._newest(client, k) if first else ZERO) for q, k in found]

    def _adopt(self, found: list[tuple[str, Keys, str]]) -> None:
        self._check_at = trio.current_time() + SPACE_CHECK
        if not found:
            return
        for queue, keys, start in found:
            self.streams[queue] = keys
            self._pos[queue] = start
        self.cursor = Cursor(self._pos)
        self._watched_at = -math.inf  # mark the watched companies in the new spaces

    @staticmethod
    def _newest(client: SyncClient, keys: Keys) -> str:
        info = client.xinfo_stream(keys.events) if client.exists(keys.events) else None
        return str(info["last-generated-id"]) if info else ZERO

    def _read(self, client: SyncClient, pos: dict[str, str]) -> list[Entry]:
        """One read of every stream after `pos` (module docstring): the queue spaces'
        without blocking, then the namespace's, blocking only if they had nothing."""
        out: list[Entry] = []
        for queue, at in pos.items():
            if queue:
                out += self._xread(client, queue, at, None)
        out += self._xread(client, "", pos[""], None if out else self.block_ms)
        return out

    def _xread(self, client: SyncClient, queue: str, at: str, block: int | None) -> list[Entry]:
        stream = self.streams[queue].events
        reply = client.xread({stream: at}, count=self.cfg.read_count, block=block)
        return [(queue, i, f) for _stream, entries in reply or [] for i, f in entries]

    def _advance(self, entries: list[Entry]) -> None:
        """Fan out one read: its entries by id across streams (each stream's stay in
        order), each event's id the cursor just after it."""
        if len(self._pos) > 1:
            entries.sort(key=lambda e: id_key(e[1]))
        events: list[Event] = []
        for queue, entry_id, fields in entries:
            self._pos[queue] = entry_id
            at = Cursor(self._pos)
            events.append(Event.parse(entry_id, fields, queue, at))
        self.cursor = events[-1].at
        self._dispatch(events)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        backoff = Backoff(self.reconnect_cap)
        task_status.started()
        while True:
            try:
                if self.cursor is None or trio.current_time() >= self._check_at:
                    # Pin "now" first, so no event between two reads is skipped.
                    self._adopt(await self.link.call(self._discover))
                if (companies := self._watch_due()) is not None:
                    await self.link.call(self.watch, companies)
                    self._watched, self._watched_at = companies, trio.current_time()
                entries = await self.link.call(self._read, dict(self._pos))
            except (RedisUnavailable, RedisCommandError) as exc:
                if isinstance(exc, RedisCommandError):
                    log.error("reading the events streams: %s", exc)
                await backoff.sleep()
                continue
            backoff.reset()
            if entries:
                self._advance(entries)
