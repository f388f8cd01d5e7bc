"""One subscriber's session on the events WebSocket, after the handshake was accepted.

Owns:
- `Session.run`: the first frame (`subscribed`, with the id after which this socket
  delivers every event: the hub's cursor at connect, or the asked `last_event_id` when
  resuming), the replay from `last_event_id` — a cursor over every key space's stream
  (fleetd.runtime.cursor): each stream read after its part (XRANGE exclusive, in
  chunks, one hop for all streams; within a round the chunks are merged by id and each
  event's id is the replay's cursor just after it), with a `gap` frame before a chunk
  whenever that stream was trimmed past where the replay stands in it (`queue` names a
  queue's stream) — a filter of one company reads that company's own stream of each
  space when it covers the cursor, so another company's flood does not cause one:
  fleetd.runtime.replay — and the switch to the hub's live feed with no duplicate and
  no hole; `subscribe` messages (answered `subscribed`, or an `error` frame; the
  filters are fleetd.api.ws_filters); and the close: 1008 when the token expires,
  1013 when the subscriber fell behind or Redis failed during a replay (reasons
  REASON_BEHIND, REASON_REDIS, with the id to resume from when it fits), 1001 when the
  daemon stops.

Frame modes: one event per frame, or with `batch` (`?batch=1`, or `"batch": true` in a
`subscribe` message) a JSON array of the events that queued while the previous frame
was being sent — nothing waits for a batch to fill, so an idle feed sends arrays of one
and a busy one sends fewer, larger frames (at most MAX_BATCH_EVENTS / MAX_BATCH_BYTES).
A frame costs ~30–50 µs of quart, hypercorn and wsproto whatever its size, so this is
what lets one daemon serve many subscribers of a busy stream. Control frames
(`subscribed`, `gap`, `error`) are objects in both modes.

Frames are sent one at a time (a lock): with permessage-deflate, frames share one
compression context and must leave in the order they were built.
"""

from __future__ import annotations

import json
import time
from collections import deque
from typing import Any

import trio
from quart import Websocket

from fleetd.api.auth import Principal
from fleetd.api.errors import ApiError, error_body, validation_error
from fleetd.api.ws_filters import parse_batch, parse_filter
from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import RedisLink, RedisUnavailable, SyncClient
from fleetd.jobs.model import ValidationError
from fleetd.runtime.cursor import Cursor
from fleetd.runtime.events import (
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    Delivery,
    Event,
    EventFilter,
    EventHub,
    Subscriber,
    deliveries,
    id_key,
)
from fleetd.runtime.replay import ReplayRead, read_replay

__all__ = [
    "CLOSE_EXPIRED",
    "CLOSE_GOING_AWAY",
    "CLOSE_TRY_AGAIN",
    "REASON_BEHIND",
    "REASON_COMPANY_FULL",
    "REASON_FULL",
    "REASON_REDIS",
    "Session",
]

CLOSE_GOING_AWAY = 1001
CLOSE_EXPIRED = 1008
CLOSE_TRY_AGAIN = 1013
# What a 1013 close reason starts with: the one code (RFC 6455: try again later) for
# three causes that call for different clients. Only a subscriber that fell behind
# should reconnect at once (its replay catches up); a full hub or an unreachable Redis
# is not fixed by hammering the daemon, so clients back off for those.
REASON_BEHIND = "subscriber fell behind"
REASON_FULL = "too many subscribers"
REASON_COMPANY_FULL = "too many subscribers of this company"
REASON_REDIS = "redis unavailable"
# Events per XRANGE of a replay: ~200 B each, so one read is ~100 KB and one hop.
REPLAY_CHUNK = 500
# The longest close reason a WebSocket carries (RFC 6455: 125 bytes less the code).
MAX_REASON_BYTES = 123


class Session:
    def __init__(
        self, ws: Websocket, hub: EventHub, sub: Subscriber, link: RedisLink, who: Principal
    ) -> None:
        self.ws = ws
        self.hub = hub
        self.sub = sub
        self.link = link
        self.who = who
        self.last_id = "0-0"  # the last event the client got (from run() on)
        self._lock = trio.Lock()
        self._replayed = Cursor({})
        # After a replay: per stream, the last entry replayed, skipped again when it
        # comes live (a stream leaves once the hub's cursor reached it there).
        self._seen: dict[str, tuple[int, int]] | None = None

    async def _send(self, frame: str) -> None:
        async with self._lock:
            await self.ws.send(frame)

    async def _send_json(self, body: dict[str, Any]) -> None:
        """A control message (an answer, an error quoting what the client sent); a lone
        surrogate in it, which a text frame cannot carry, is escaped as JSON allows."""
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        try:
            text.encode()
        except UnicodeEncodeError:
            text = json.dumps(body, separators=(",", ":"))
        await self._send(text)

    def _subscribed(self, **more: Any) -> dict[str, Any]:
        body = {"type": "subscribed", "filters": self.sub.filter.body(), **more}
        if self.sub.batch:
            body["batch"] = True
        return body

    async def run(self, token_exp: float, resume: str | None) -> None:
        if resume is None:
            # Fed from before the first await: what the hub reads during the handshake
            # waits in the channel, so every event after the id `subscribed` announces
            # comes on this socket.
            self.last_id = self.hub.position or "0-0"
            self.hub.attach(self.sub)
        else:
            self.last_id = resume  # the replay, after `subscribed`, starts from there
        await self.ws.accept()
        await self._send_json(self._subscribed(last_event_id=self.last_id))
        code, reason = CLOSE_EXPIRED, "token expired"
        with trio.move_on_after(max(0.0, token_exp - time.time())):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._client_messages)
                try:
                    code, reason = await self._deliver(resume)
                except RedisUnavailable:  # only a replay calls Redis
                    code, reason = CLOSE_TRY_AGAIN, self._resume_reason(REASON_REDIS)
                nursery.cancel_scope.cancel()
        await self.ws.close(code, reason)

    async def _deliver(self, resume: str | None) -> tuple[int, str]:
        sub = self.sub
        if resume is not None:
            start = Cursor.parse(resume)
            assert start is not None  # checked by the handshake
            done = await self._replay(start)
            if done is not None:
                return done
            self._seen = {q: self._replayed.key(q) for q in self._replayed}
            self.hub.attach(sub)  # no await since _replay saw the hub's position: no hole
        pending: deque[Delivery] = deque()
        while True:
            if not pending:
                try:
                    pending.append(await sub.receive.receive())
                except trio.EndOfChannel:
                    break
            # Everything that queued while the previous frame was being sent.
            while True:
                try:
                    pending.append(sub.receive.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            if sub.closing is not None or sub.behind:
                break
            if sub.batch:
                await self._send_batch(_take(pending))
            else:
                part = pending.popleft()
                await self._send_events(self._wanted([part]))
                sub.queued -= len(part.events)
        if sub.closing is not None:
            return sub.closing
        return CLOSE_TRY_AGAIN, self._resume_reason(REASON_BEHIND)

    def _resume_reason(self, why: str) -> str:
        """A 1013 reason with the id to resume from, when it fits in a close frame (a
        cursor over many queue spaces may not: clients keep the last id they got)."""
        reason = f"{why}; resume with last_event_id={self.last_id}"
        if len(reason.encode()) <= MAX_REASON_BYTES:
            return reason
        return f"{why}; resume with the last event id received"

    def _wanted(self, parts: list[Delivery]) -> list[Event]:
        """The events of `parts` to send: all of them, unless the filter changed since
        the hub filtered them (a subscribe message) or some were replayed already."""
        flt, seen = self.sub.filter, self._seen
        if seen is None and all(p.filter == flt for p in parts):
            return [ev for p in parts for ev in p.events]
        out = [ev for p in parts for ev in p.events if flt.matches(ev)]
        if seen is not None:
            out = [self._past_replay(ev) for ev in out if ev.key > seen.get(ev.space, (-1, -1))]
            at = parts[-1].events[-1].at  # the hub's cursor after these
            if at is not None:
                left = {q: k for q, k in seen.items() if q not in at or at.key(q) < k}
                self._seen = left or None
        return out

    def _past_replay(self, ev: Event) -> Event:
        """A live event after a replay that read some stream further than the hub had:
        its id must still say the client has that stream up to where the replay went
        (else a resume from it would repeat those events)."""
        if ev.at is None:
            return ev
        at = ev.at.join(self._replayed)
        return ev if at is ev.at else ev.placed(ev.space, at)

    async def _send_batch(self, parts: list[Delivery]) -> None:
        flt = self.sub.filter
        if self._seen is None and all(p.filter == flt for p in parts):
            # The common case: frames built once per read and filter, for every session.
            if len(parts) == 1:
                frame = parts[0].frame
            else:
                frame = "[" + ",".join(p.frame[1:-1] for p in parts) + "]"
            await self._send(frame)
            self.last_id = parts[-1].events[-1].id
        else:
            await self._send_events(self._wanted(parts))
        self.sub.queued -= sum(len(p.events) for p in parts)

    async def _send_events(self, events: list[Event]) -> None:
        """`events` in this session's frame mode (a batch: within the batch limits)."""
        if not events:
            return
        if self.sub.batch:
            await self._send("[" + ",".join(ev.frame for ev in events) + "]")
            self.last_id = events[-1].id
            return
        for ev in events:
            await self._send(ev.frame)
            self.last_id = ev.id

    async def _replay(self, cur: Cursor) -> tuple[int, str] | None:
        """The events after `cur`, chunk by chunk, until caught up with the hub. Each
        chunk is read with its stream's head: MAXLEN trimming goes on during a long
        replay, so whenever a stream lost events after where the replay stands in it, a
        `gap` frame says so before the chunk. A filter of one company reads that
        company's stream while it covers the cursor (`[events] company_maxlen` > 0),
        else the shared one. A queue stream the cursor does not name (or names at
        `0-0`) is read from its start, with no gap (fleetd.runtime.cursor)."""
        own_streams = self.hub.cfg.company_maxlen > 0
        streams = await self.link.call(self.hub.replay_streams, cur)
        cur = Cursor({q: cur.get(q) for q in streams})
        while True:
            if self.sub.closing is not None:
                return self.sub.closing
            for queue, keys in self.hub.streams.items():  # a space the hub found since
                streams.setdefault(queue, keys)
            known = self.hub.cursor or Cursor({})  # the hub has read up to here
            flt = self.sub.filter
            company = flt.company_id if own_streams else None
            todo = [(q, streams[q], cur.get(q)) for q in sorted(streams)]
            got = await self.link.call(_read_round, todo, REPLAY_CHUNK, company)
            merged: list[tuple[str, Event]] = []
            for queue, read in got:
                if self._gap(queue, read, cur, known):
                    data = {"last_event_id": cur.render(), "first_available": read.first}
                    if queue:
                        data["queue"] = queue
                    await self._send_json({"type": "gap", "data": data})
                    if read.first is None:  # an empty stream: everything up to there is gone
                        cur = cur.moved(queue, known.get(queue))
                merged += [(queue, ev) for ev in read.events]
            merged.sort(key=lambda item: item[1].key)  # stable: each stream's in order
            out: list[Event] = []
            for queue, ev in merged:
                cur = cur.moved(queue, ev.entry)
                if flt.matches(ev):
                    out.append(ev.placed(queue, cur))
            for part in deliveries(flt, out):
                await self._send_events(part.events)
            caught = all(q in streams for q in self.hub.streams)
            for queue, read in got:
                short = len(read.events) < REPLAY_CHUNK
                if short and read.through is not None and id_key(read.through) > cur.key(queue):
                    # A company's stream read to its end: it held every event of the
                    # company up to the shared stream's newest id; the replay stands there.
                    cur = cur.moved(queue, read.through)
                hub = self.hub.cursor
                ahead = hub is not None and queue in hub and hub.key(queue) > cur.key(queue)
                caught = caught and short and not ahead
            self._replayed = cur
            if caught:
                # Caught up with the hub in every stream: the caller attaches it without
                # awaiting, and skips what it gets live up to here.
                return None

    @staticmethod
    def _gap(queue: str, read: ReplayRead, cur: Cursor, known: Cursor) -> bool:
        """Whether `read` shows its stream trimmed past where `cur` stands in it."""
        at = cur.key(queue)
        if read.trimmed is not None:
            return read.trimmed
        if queue and at == (0, 0):
            return False  # from the stream's start: nothing of it was delivered
        if read.first is not None:
            return at < id_key(read.first)
        return at < known.key(queue)

    async def _client_messages(self) -> None:
        while True:
            raw = await self.ws.receive()
            try:
                flt, batch = self._subscribe(raw)
            except ValidationError as exc:
                err = validation_error(exc)
                await self._send_json(
                    {"type": "error", **error_body(err.code, err.message, err.details)}
                )
            except ApiError as err:
                await self._send_json(
                    {"type": "error", **error_body(err.code, err.message, err.details)}
                )
            else:
                self.sub.filter = flt
                if batch is not None:
                    self.sub.batch = batch
                await self._send_json(self._subscribed())

    def _subscribe(self, raw: str | bytes) -> tuple[EventFilter, bool | None]:
        try:
            msg = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than ~1,000
            raise ApiError(
                400, "bad_request", "the message is not valid JSON (or is nested too deeply)"
            ) from None
        if not isinstance(msg, dict) or msg.get("action") != "subscribe":
            raise ApiError(
                400, "bad_request", 'messages are JSON objects {"action": "subscribe", ...}'
            )
        batch = None if msg.get("batch") is None else parse_batch(msg["batch"])
        return parse_filter(msg, self.who), batch


def _read_round(
    client: SyncClient, todo: list[tuple[str, Keys, str]], count: int, company: str | None
) -> list[tuple[str, ReplayRead]]:
    """One chunk of each stream of a replay, `(space, keys, after)`, in one thread hop."""
    return [(q, read_replay(client, keys, after, count, company)) for q, keys, after in todo]


def _take(pending: deque[Delivery]) -> list[Delivery]:
    """The first deliveries of `pending` that fit one batch frame (at least one)."""
    parts = [pending.popleft()]
    count, size = len(parts[0].events), parts[0].size
    while pending:
        nxt = pending[0]
        count += len(nxt.events)
        size += nxt.size
        if count > MAX_BATCH_EVENTS or size > MAX_BATCH_BYTES:
            break
        parts.append(pending.popleft())
    return parts
