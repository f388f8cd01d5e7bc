"""What the event feed carries: events, the filters that pick them, and the deliveries
that hand them out (fleetd.runtime.events fans them out; fleetd.runtime.replay reads
them back).

Owns:
- `Event`: one stream entry (docs/ARCHITECTURE.md#events), parsed once — `data`
  decoded from JSON and the WebSocket frame (`frame`) serialized once, the same string
  for every subscriber. Its `id` is the feed's cursor just after it
  (fleetd.runtime.cursor: the plain stream id while only the namespace's stream is
  read); `space`, `entry` and `key` say where it sits in its own stream, and `origin`
  names it the same way on every daemon;
- `EventFilter`: job types, statuses and job ids (OR within a kind, AND between kinds)
  and the one company a subscriber may see (forced by its token);
- `Delivery`: what one read holds for one distinct filter — its events in feed order
  and, built at most once, the batch frame (a JSON array of their frames). Every
  subscriber with that filter gets the same object; `deliveries` cuts events into them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from fleetd.runtime.cursor import Cursor, id_key

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_BATCH_EVENTS",
    "Delivery",
    "Event",
    "EventFilter",
    "deliveries",
]

# Fields of an entry that are "" when they do not apply (an alert has no job): null.
_OPTIONAL = ("job_id", "job_type", "company_id", "status")
# Most events, and about the most characters, in one batch frame: a browser parses a
# frame in one go (500 events of ~250 B: ~125 KB, a few ms), and a subscriber that fell
# far behind still gets frames of bounded size. An event larger than this alone is a
# frame of its own.
MAX_BATCH_EVENTS = 500
MAX_BATCH_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Event:
    id: str  # the wire id: the feed's cursor just after this event
    type: str
    job_id: str | None
    job_type: str | None
    company_id: str | None
    status: str | None
    ts: int
    data: dict[str, Any]
    frame: str = field(repr=False)
    key: tuple[int, int] = field(repr=False, default=(0, 0))  # `entry` as a sortable pair
    space: str = field(repr=False, default="")  # its stream's space: '' or the queue
    entry: str = field(repr=False, default="")  # its id in that stream
    at: Cursor | None = field(repr=False, default=None)  # the cursor `id` spells

    @classmethod
    def parse(
        cls, entry_id: str, fields: dict[str, str], space: str = "", at: Cursor | None = None
    ) -> Event:
        """A stream entry, whatever a third party put in it (never raises). Its id: `at`
        (the cursor just after it) when given, else its stream id."""
        try:
            data = json.loads(fields.get("data") or "{}")
        except (ValueError, RecursionError):  # not JSON, or nested deeper than ~1,000
            data = {}
        if not isinstance(data, dict):
            data = {"value": data}
        ts = fields.get("ts", "")
        wire = entry_id if at is None else at.render()
        body: dict[str, Any] = {"id": wire, "type": fields.get("type", "")}
        for name in _OPTIONAL:
            body[name] = fields.get(name) or None
        body["ts"] = int(ts) if ts.isdigit() else id_key(entry_id)[0]
        body["data"] = data
        frame = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        return cls(**body, frame=frame, key=id_key(entry_id), space=space, entry=entry_id, at=at)

    @property
    def origin(self) -> str:
        """The same name for this event on every daemon: its stream id, after
        `<queue>=` for a queue's space (stream ids of two spaces may be equal)."""
        entry = self.entry or self.id
        return f"{self.space}={entry}" if self.space else entry

    def placed(self, space: str, at: Cursor) -> Event:
        """This event (parsed from its stream alone) as the event of `space` delivered
        at cursor `at`: its id and frame say `at`."""
        wire = at.render()
        entry = self.entry or self.id
        if wire == self.id and space == self.space:
            return dataclasses.replace(self, entry=entry, at=at)
        head = '{"id":' + json.dumps(self.id)
        assert self.frame.startswith(head)
        frame = '{"id":' + json.dumps(wire) + self.frame[len(head) :]
        return dataclasses.replace(self, id=wire, frame=frame, space=space, entry=entry, at=at)


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
