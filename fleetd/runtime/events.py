"""The event hub: the one reader of the events stream in a daemon, and its fan-out.

Owns:
- `Event`: one stream entry (docs/ARCHITECTURE.md#events), parsed once — `data`
  decoded from JSON and the WebSocket frame (`frame`) serialized once, the same string
  for every subscriber;
- `EventFilter`: job types, statuses and job ids (OR within a kind, AND between kinds)
  and the one company a subscriber may see (forced by its token);
- `Delivery`: what one XREAD holds for one distinct filter — its events in stream order
  and, built at most once, the batch frame (a JSON array of their frames). Every
  subscriber with that filter gets the same object;
- `Subscriber`: a memory channel of deliveries and the count of events handed to it and
  not yet sent. The hub never waits for one: a subscriber that would have more than
  `[events] buffer` events waiting is marked `behind` and dropped from the fan-out, and
  its session closes it (1013);
- `EventHub.run`: ONE XREAD loop per daemon (short server-side block, `[events]
  read_count` per read, capped backoff while Redis is unreachable) that feeds the
  subscribers — one hand-off per read and subscriber, filtered once per distinct
  filter — and the plain consumers (the /metrics counters, per event);
- stream ids (`id_key`); the replay reads are fleetd.runtime.replay.

Lifecycle: run() pins "now" (the stream's last generated id) once Redis answers and
reads on from there until cancelled; `close_all()` (graceful stop) ends every session
with 1001 and refuses new ones.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import (
    Backoff,
    RedisCommandError,
    RedisLink,
    RedisUnavailable,
    SyncClient,
)
from fleetd.config import EventsConfig
from fleetd.runtime.shares import Shares

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_BATCH_EVENTS",
    "STREAM_ID",
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

# How long one XREAD blocks in Redis. A stop waits for the read in flight (a Redis call
# is never abandoned), so this bounds what it adds to a stop; idle, it costs four small
# round trips a second. Kept below the API link's socket timeout (see EventHub).
READ_BLOCK = 0.25
# A company with a subscriber here is marked watched (Keys.events_watched) until an hour
# after: its events then also go to its own replay stream. Marked again this often
# while it has one, and at once when a new company's subscriber opens.
WATCH_MS = 3_600_000
WATCH_REFRESH = 300.0
STREAM_ID = re.compile(r"\d{1,20}-\d{1,20}")
# Fields of an entry that are "" when they do not apply (an alert has no job): null.
_OPTIONAL = ("job_id", "job_type", "company_id", "status")
# Most events, and about the most characters, in one batch frame: a browser parses a
# frame in one go (500 events of ~250 B: ~125 KB, a few ms), and a subscriber that fell
# far behind still gets frames of bounded size. An event larger than this alone is a
# frame of its own.
MAX_BATCH_EVENTS = 500
MAX_BATCH_BYTES = 1 << 20


def resumable(stream_id: str) -> bool:
    """Whether `stream_id` (STREAM_ID's shape) is one a replay can start after: each part
    an unsigned 64-bit integer (Redis refuses larger ones), and not the largest id
    (nothing can follow it: Redis refuses it as an exclusive start)."""
    top = 2**64 - 1
    ms, seq = id_key(stream_id)
    return ms <= top and seq <= top and (ms, seq) != (top, top)


def id_key(stream_id: str) -> tuple[int, int]:
    """A stream id as a sortable pair: "1700000000000-3" → (1700000000000, 3)."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    type: str
    job_id: str | None
    job_type: str | None
    company_id: str | None
    status: str | None
    ts: int
    data: dict[str, Any]
    frame: str = field(repr=False)
    key: tuple[int, int] = field(repr=False, default=(0, 0))

    @classmethod
    def parse(cls, entry_id: str, fields: dict[str, str]) -> Event:
        """A stream entry, whatever a third party put in it (never raises)."""
        try:
            data = json.loads(fields.get("data") or "{}")
        except (ValueError, RecursionError):  # not JSON, or nested deeper than ~1,000
            data = {}
        if not isinstance(data, dict):
            data = {"value": data}
        ts = fields.get("ts", "")
        body: dict[str, Any] = {"id": entry_id, "type": fields.get("type", "")}
        for name in _OPTIONAL:
            body[name] = fields.get(name) or None
        body["ts"] = int(ts) if ts.isdigit() else id_key(entry_id)[0]
        body["data"] = data
        frame = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        return cls(**body, frame=frame, key=id_key(entry_id))


@dataclass(frozen=True, slots=True)
class EventFilter:
    """What one subscriber sees. An empty set means any; `company_id` None means every
    company — and alert and prune events, which belong to none (platform admins only)."""

    types: frozenset[str] = frozenset()
    statuses: frozenset[str] = frozenset()
    job_ids: frozenset[str] = frozenset()
    company_id: str | None = None

    def matches(self, ev: Event) -> bool:
        return (
            (self.company_id is None or ev.company_id == self.company_id)
            and (not self.types or ev.job_type in self.types)
            and (not self.statuses or ev.status in self.statuses)
            and (not self.job_ids or ev.job_id in self.job_ids)
        )

    def body(self) -> dict[str, Any]:
        return {
            "type": sorted(self.types),
            "status": sorted(self.statuses),
            "job_id": sorted(self.job_ids),
            "company_id": self.company_id,
        }


class Delivery:
    """Events of one read that match `filter`, oldest first (at most MAX_BATCH_EVENTS /
    MAX_BATCH_BYTES), shared by every subscriber with that filter."""

    __slots__ = ("_frame", "events", "filter", "size")

    def __init__(self, flt: EventFilter, events: list[Event], size: int) -> None:
        self.filter = flt
        self.events = events
        self.size = size  # characters of the events' frames
        self._frame: str | None = None

    @property
    def frame(self) -> str:
        """The batch frame: built by the first session that sends it, then reused."""
        if self._frame is None:
            self._frame = "[" + ",".join(ev.frame for ev in self.events) + "]"
        return self._frame


def deliveries(flt: EventFilter, events: list[Event]) -> list[Delivery]:
    """`events` (already filtered) cut into deliveries within the batch limits."""
    out: list[Delivery] = []
    chunk: list[Event] = []
    size = 0
    for ev in events:
        n = len(ev.frame)
        if chunk and (len(chunk) >= MAX_BATCH_EVENTS or size + n > MAX_BATCH_BYTES):
            out.append(Delivery(flt, chunk, size))
            chunk, size = [], 0
        chunk.append(ev)
        size += n + 1
    if chunk:
        out.append(Delivery(flt, chunk, size))
    return out


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
        self, keys: Keys, link: RedisLink, cfg: EventsConfig, *, block: float, reconnect_cap: float
    ) -> None:
        self.keys = keys
        self.link = link
        self.cfg = cfg
        self.block_ms = max(10, int(block * 1000))
        self.reconnect_cap = reconnect_cap
        # Id of the last entry fanned out: a subscriber attached now gets every later one.
        self.position: str | None = None
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
    def position_key(self) -> tuple[int, int]:
        return id_key(self.position or "0-0")

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
        those whose mark ran out (one pipeline after TIME)."""
        seconds, micros = client.time()
        now = int(seconds) * 1000 + int(micros) // 1000
        pipe = client.pipeline(transaction=False)
        pipe.zadd(self.keys.events_watched, dict.fromkeys(companies, now + WATCH_MS), gt=True)
        pipe.zremrangebyscore(self.keys.events_watched, "-inf", now)
        pipe.execute()

    def _newest(self, client: SyncClient) -> str:
        info = client.xinfo_stream(self.keys.events) if client.exists(self.keys.events) else None
        return str(info["last-generated-id"]) if info else "0-0"

    def _read(self, client: SyncClient) -> list[tuple[str, dict[str, str]]]:
        reply = client.xread(
            {self.keys.events: self.position}, count=self.cfg.read_count, block=self.block_ms
        )
        return [entry for _stream, entries in reply or [] for entry in entries]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        backoff = Backoff(self.reconnect_cap)
        task_status.started()
        while True:
            try:
                if self.position is None:
                    # Pin "now" first, so no event between two reads is skipped.
                    self.position = await self.link.call(self._newest)
                if (companies := self._watch_due()) is not None:
                    await self.link.call(self.watch, companies)
                    self._watched, self._watched_at = companies, trio.current_time()
                entries = await self.link.call(self._read)
            except (RedisUnavailable, RedisCommandError) as exc:
                if isinstance(exc, RedisCommandError):
                    log.error("reading the events stream: %s", exc)
                await backoff.sleep()
                continue
            backoff.reset()
            if entries:
                self.position = entries[-1][0]
                self._dispatch([Event.parse(i, f) for i, f in entries])
