"""The event hub: the one reader of the events stream in a daemon, and its fan-out.

Owns:
- `Event`: one stream entry (DESIGN §5), parsed once — `data` decoded from JSON and the
  WebSocket frame (`frame`) serialized once, the same string for every subscriber;
- `EventFilter`: job types, statuses and job ids (OR within a kind, AND between kinds)
  and the one company a subscriber may see (forced by its token);
- `Subscriber`: a bounded memory channel of `[events] buffer` events. The hub never
  waits for one: a subscriber whose channel is full is marked `behind` and dropped from
  the fan-out, and its session closes it (1013);
- `EventHub.run`: ONE XREAD loop per daemon (short server-side block, `[events]
  read_count` per read, capped backoff while Redis is unreachable) that feeds the
  subscribers and the plain consumers (the /metrics counters);
- stream ids (`id_key`) and the replay reads (`read_after`, `oldest_id`).

Lifecycle: run() pins "now" (the stream's last generated id) once Redis answers and
reads on from there until cancelled; `close_all()` (graceful stop) ends every session
with 1001 and refuses new ones.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from fleetd.config import EventsConfig
from fleetd.keys import Keys
from fleetd.redis_link import Backoff, RedisCommandError, RedisLink, RedisUnavailable, SyncClient

__all__ = ["Event", "EventFilter", "EventHub", "Subscriber", "id_key", "oldest_id", "read_after"]

log = logging.getLogger("fleetd.events")

# How long one XREAD blocks in Redis. A stop waits for the read in flight (a Redis call
# is never abandoned), so this bounds what it adds to a stop; idle, it costs four small
# round trips a second. Kept below the API link's socket timeout (see EventHub).
READ_BLOCK = 0.25
STREAM_ID = re.compile(r"\d{1,20}-\d{1,20}")
# Fields of an entry that are "" when they do not apply (an alert has no job): null.
_OPTIONAL = ("job_id", "job_type", "company_id", "status")


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
        except ValueError:
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


class Subscriber:
    """One session's place in the fan-out. `closing` (code, reason) is set when the hub
    stops; `behind` when its channel overflowed."""

    def __init__(self, flt: EventFilter, buffer: int) -> None:
        self.filter = flt
        self._send, self.receive = trio.open_memory_channel[Event](buffer)
        self.behind = False
        self.closing: tuple[int, str] | None = None

    def _end(self) -> None:
        self._send.close()  # wakes a session waiting on an empty channel


class HubFull(Exception):
    """`[events] max_subscribers` sessions are open already."""


class HubClosed(Exception):
    """The daemon is stopping."""


def read_after(client: SyncClient, keys: Keys, after: str, count: int) -> list[Event]:
    """Up to `count` events after `after` (exclusive), oldest first."""
    return [Event.parse(i, f) for i, f in client.xrange(keys.events, f"({after}", "+", count)]


def oldest_id(client: SyncClient, keys: Keys) -> str | None:
    first = client.xrange(keys.events, "-", "+", 1)
    return str(first[0][0]) if first else None


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
        self._live: list[Subscriber] = []
        self._consumers: list[Callable[[Event], None]] = []
        self.closed = False

    @property
    def position_key(self) -> tuple[int, int]:
        return id_key(self.position or "0-0")

    def add_consumer(self, consume: Callable[[Event], None]) -> None:
        """Call `consume(event)` for every event (it must not block)."""
        self._consumers.append(consume)

    def open(self, flt: EventFilter) -> Subscriber:
        """A new session's subscriber, not yet fed (see attach)."""
        if self.closed:
            raise HubClosed
        if len(self.sessions) >= self.cfg.max_subscribers:
            raise HubFull
        sub = Subscriber(flt, self.cfg.buffer)
        self.sessions.add(sub)
        return sub

    def attach(self, sub: Subscriber) -> None:
        """Feed `sub` every event after `position` (call without awaiting in between)."""
        if sub in self.sessions and sub.closing is None:
            self._live.append(sub)

    def leave(self, sub: Subscriber) -> None:
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

    def _dispatch(self, ev: Event) -> None:
        for consume in self._consumers:
            consume(ev)
        dropped = False
        for sub in self._live:
            if sub.filter.matches(ev):
                try:
                    sub._send.send_nowait(ev)
                except trio.WouldBlock:
                    sub.behind = dropped = True
                    sub._end()
        if dropped:
            self._live = [s for s in self._live if not s.behind]

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
                entries = await self.link.call(self._read)
            except (RedisUnavailable, RedisCommandError) as exc:
                if isinstance(exc, RedisCommandError):
                    log.error("reading the events stream: %s", exc)
                await backoff.sleep()
                continue
            backoff.reset()
            for entry_id, fields in entries:
                self.position = entry_id
                self._dispatch(Event.parse(entry_id, fields))
