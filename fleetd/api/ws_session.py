"""One subscriber's session on the events WebSocket, after the handshake was accepted.

Owns:
- `parse_filter`: a filter from the query string or a `subscribe` message — `type`
  (job types), `status`, `job_id`, each a list or comma-separated, and `company_id`
  (a platform admin's choice; a company-bound token is always its own company);
- `Session.run`: the first frame (`subscribed`, with the id after which this socket
  delivers every event: the newest at connect, or the asked `last_event_id` when
  resuming), the replay from `last_event_id` (XRANGE exclusive, in chunks; a `gap`
  frame before a chunk whenever the stream was trimmed past where the replay stands —
  a filter of one company reads that company's own stream when it covers the cursor,
  so another company's flood does not cause one: fleetd.runtime.replay)
  and the switch to the hub's live feed with no duplicate and no hole; `subscribe`
  messages (answered `subscribed`, or an `error` frame); and the close: 1008 when the
  token expires, 1013 when the subscriber fell behind or Redis failed during a replay
  (reasons REASON_BEHIND, REASON_REDIS, with the id to resume from), 1001 when the
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
from collections.abc import Iterable
from typing import Any

import trio
from quart import Websocket

from fleetd.api.auth import Principal
from fleetd.api.errors import ApiError, error_body, validation_error
from fleetd.backend.redis_link import RedisLink, RedisUnavailable
from fleetd.jobs.model import MAX_ID_LENGTH, MAX_TYPE_LENGTH, FieldError, JobStatus, ValidationError
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
from fleetd.runtime.replay import read_replay

__all__ = [
    "CLOSE_EXPIRED",
    "CLOSE_GOING_AWAY",
    "CLOSE_TRY_AGAIN",
    "REASON_BEHIND",
    "REASON_COMPANY_FULL",
    "REASON_FULL",
    "REASON_REDIS",
    "Session",
    "parse_batch",
    "parse_filter",
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
# Values one filter kind may list: each is a set lookup per event, but a filter is sent
# by anyone holding a token; this keeps one bounded.
MAX_FILTER_VALUES = 100
_STATUSES = frozenset(s.value for s in JobStatus)


def _values(field: str, raw: Any, limit: int, errors: list[FieldError]) -> frozenset[str]:
    items: Iterable[Any] = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else ()
    if raw is not None and not isinstance(raw, str | list):
        errors.append(FieldError(field, "must be a list of strings or a comma-separated string"))
    out: set[str] = set()
    for item in items:
        if not isinstance(item, str):
            errors.append(FieldError(field, "must be a list of strings"))
            continue
        for value in (v.strip() for v in item.split(",")):
            if not value:
                continue
            if len(value) > limit or not value.isprintable():
                errors.append(FieldError(field, f"{value[:40]!r} is too long or not printable"))
            elif field == "status" and value not in _STATUSES:
                errors.append(FieldError(field, f"unknown status {value!r}"))
            else:
                out.add(value)
    if len(out) > MAX_FILTER_VALUES:
        errors.append(FieldError(field, f"at most {MAX_FILTER_VALUES} values"))
    return frozenset(out)


def parse_batch(raw: Any) -> bool:
    """The frame mode of a query string (`1`/`true`, `0`/`false`) or of a subscribe
    message (a JSON boolean); ValidationError (422) naming `batch` otherwise."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("1", "true", "0", "false"):
        return raw.lower() in ("1", "true")
    raise ValidationError.of([FieldError("batch", "must be 1 or 0 (true or false)")])


def parse_filter(raw: dict[str, Any], who: Principal) -> EventFilter:
    """A filter from lists of strings per kind; ValidationError (422) naming the field,
    or ApiError 403 for another company's events."""
    errors: list[FieldError] = []
    types = _values("type", raw.get("type"), MAX_TYPE_LENGTH, errors)
    statuses = _values("status", raw.get("status"), 20, errors)
    job_ids = _values("job_id", raw.get("job_id"), MAX_ID_LENGTH, errors)
    company = raw.get("company_id")
    if isinstance(company, list):  # one company: a list of two is not a choice
        if len(company) > 1:
            errors.append(FieldError("company_id", "names one company, not a list of them"))
        company = company[0] if len(company) == 1 else None
    if company is not None and (not isinstance(company, str) or len(company) > MAX_ID_LENGTH):
        errors.append(FieldError("company_id", "must be a string of at most 128 characters"))
        company = None
    if errors:
        raise ValidationError.of(errors)
    if not who.platform:
        if company not in (None, "", who.company_id):
            raise ApiError(403, "forbidden", "a company-bound token sees its own company only")
        company = who.company_id
    return EventFilter(types, statuses, job_ids, company or None)


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
        self._replayed = (0, 0)
        # After a replay: the last event replayed, skipped again when it comes live.
        self._seen: tuple[int, int] | None = None

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
                    code = CLOSE_TRY_AGAIN
                    reason = f"{REASON_REDIS}; resume with last_event_id={self.last_id}"
                nursery.cancel_scope.cancel()
        await self.ws.close(code, reason)

    async def _deliver(self, resume: str | None) -> tuple[int, str]:
        sub = self.sub
        if resume is not None:
            done = await self._replay(resume)
            if done is not None:
                return done
            self._seen = self._replayed
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
        reason = f"{REASON_BEHIND}; resume with last_event_id={self.last_id}"
        return CLOSE_TRY_AGAIN, reason

    def _wanted(self, parts: list[Delivery]) -> list[Event]:
        """The events of `parts` to send: all of them, unless the filter changed since
        the hub filtered them (a subscribe message) or some were replayed already."""
        flt, seen = self.sub.filter, self._seen
        if seen is None and all(p.filter == flt for p in parts):
            return [ev for p in parts for ev in p.events]
        out = [ev for p in parts for ev in p.events if flt.matches(ev)]
        if seen is not None:
            out = [ev for ev in out if ev.key > seen]
            if parts[-1].events[-1].key > seen:
                self._seen = None
        return out

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

    async def _replay(self, after: str) -> tuple[int, str] | None:
        """The events after `after`, chunk by chunk, until caught up with the hub. Each
        chunk is read with its stream's head: MAXLEN trimming goes on during a long
        replay, so whenever the stream lost events after `after`, a `gap` frame says
        so before the chunk. A filter of one company reads that company's stream while
        it covers `after` (`[events] company_maxlen` > 0), else the shared one."""
        keys = self.hub.keys
        own_streams = self.hub.cfg.company_maxlen > 0
        while True:
            if self.sub.closing is not None:
                return self.sub.closing
            known = self.hub.position or "0-0"  # the hub has read up to here
            flt = self.sub.filter
            company = flt.company_id if own_streams else None
            got = await self.link.call(read_replay, keys, after, REPLAY_CHUNK, company)
            first, chunk, at = got.first, got.events, id_key(after)
            if got.trimmed is not None:
                gap = got.trimmed
            else:
                gap = at < id_key(first) if first is not None else at < id_key(known)
            if gap:
                data = {"last_event_id": after, "first_available": first}
                await self._send_json({"type": "gap", "data": data})
                if first is None:
                    after = known  # an empty stream: everything up to there is gone
            for part in deliveries(flt, [ev for ev in chunk if flt.matches(ev)]):
                await self._send_events(part.events)
            if chunk:
                after = chunk[-1].id
            short = len(chunk) < REPLAY_CHUNK
            if short and got.through is not None and id_key(got.through) > id_key(after):
                # A company's stream read to its end: it held every event of the company
                # up to the shared stream's newest id, so the replay stands there.
                after = got.through
            self._replayed = id_key(after)
            if short and self.hub.position_key <= self._replayed:
                # Caught up with the hub: the caller attaches it without awaiting, and
                # skips what it gets live up to here.
                return None

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
