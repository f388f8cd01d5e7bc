"""Replay reads: the events after a client's cursor, from the stream that holds them.

Owns:
- `ReplayRead`: what one read found — the oldest id of the stream read, up to `count`
  events after the cursor, whether events after the cursor were trimmed (exact for a
  company's stream; for the shared one the session decides from the oldest id), and
  for a company's stream the shared stream's newest id at that moment;
- `read_shared`: the shared `events` stream (every company; today's replay);
- `read_company`: one company's own stream (`Keys.company_events`, written by
  `_lib.lua company_emit` in the same script as the shared entry, under the same id),
  so another company's flood, which trims the shared stream, never trims it. None when
  that stream cannot answer for the cursor: it does not exist (`[events]
  company_maxlen` = 0, or no event of the company within its expiry), or it was created
  after the cursor with nothing trimmed since (events of that company before it, if
  any, are in the shared stream only);
- `read_replay`: one chunk for a filter's company (None = every company): the company's
  stream when it holds everything after the cursor, else whichever stream starts
  earlier, in the same thread hop (a `gap` only when neither holds the events).

Each read is of one key space (fleetd.backend.spaces), given by its `keys`: a space's
scripts write its own shared and company streams, so a replay over several spaces
(fleetd.api.ws_session) reads each space's streams after that space's part of the
cursor. Every read is one MULTI, so the stream's head and the events after the cursor
are seen at the same instant. Exactness of a company's gap: every entry holds `prev`, the id of
the entry before it in that stream ('' for the first since the key was created). The
oldest entry's `prev` is therefore exactly the newest id ever trimmed from it: events
after the cursor were lost if and only if that id is after the cursor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import SyncClient
from fleetd.runtime.cursor import id_key
from fleetd.runtime.event_model import Event

__all__ = ["ReplayRead", "read_company", "read_replay", "read_shared"]


@dataclass(frozen=True, slots=True)
class ReplayRead:
    first: str | None  # the oldest id in the stream read (None: it is empty)
    events: list[Event]  # after the cursor, oldest first
    # A company's stream: whether it was trimmed past the cursor (exact). None for the
    # shared stream, where the session compares the cursor with `first`.
    trimmed: bool | None = None
    # A company's stream: the shared stream's newest id when it was read. A read shorter
    # than asked then holds every event of the company up to that id.
    through: str | None = None


def read_shared(client: SyncClient, keys: Keys, after: str, count: int) -> ReplayRead:
    """The shared stream: its oldest id and up to `count` events after `after`. If that
    oldest id is at most `after`, nothing after `after` was trimmed before these were
    read."""
    pipe = client.pipeline(transaction=True)
    pipe.xrange(keys.events, "-", "+", 1)
    pipe.xrange(keys.events, f"({after}", "+", count)
    first, entries = pipe.execute()
    oldest = str(first[0][0]) if first else None
    return ReplayRead(oldest, [Event.parse(i, f) for i, f in _entries(entries)])


def read_company(
    client: SyncClient, keys: Keys, company: str, after: str, count: int
) -> ReplayRead | None:
    """`company`'s stream after `after`, or None when it cannot answer for `after`."""
    pipe = client.pipeline(transaction=True)
    stream = keys.company_events(company)
    pipe.xrange(stream, "-", "+", 1)
    pipe.xrange(stream, f"({after}", "+", count)
    pipe.xrevrange(keys.events, "+", "-", 1)
    head, entries, top = pipe.execute()
    if not head:
        return None
    ((first, fields),) = _entries(head)
    cursor = id_key(after)
    cut = fields.get("prev") or ""  # the newest id trimmed from this stream, if any
    if cut:
        trimmed = cursor < id_key(cut)
    elif cursor < id_key(first):
        return None  # the stream starts after the cursor: nothing says what came between
    else:
        trimmed = False
    events = [Event.parse(i, f) for i, f in _entries(entries)]
    return ReplayRead(first, events, trimmed, str(top[0][0]) if top else None)


def _entries(raw: list[Any]) -> list[tuple[str, dict[str, str]]]:
    """XRANGE entries as (id, fields). A Redis Cluster client's MULTI returns them
    unparsed (fields a flat [name, value, ...] list): both shapes are taken."""
    out = []
    for entry_id, raw_fields in raw:
        fields = raw_fields
        if isinstance(raw_fields, list):
            fields = dict(zip(raw_fields[::2], raw_fields[1::2], strict=True))
        out.append((str(entry_id), fields))
    return out


def read_replay(
    client: SyncClient, keys: Keys, after: str, count: int, company: str | None = None
) -> ReplayRead:
    """One chunk of a replay after `after`: from `company`'s stream when it holds every
    event of the company after `after`; else from whichever of the two streams starts
    earlier (one thread hop, one to three round trips). A company whose own volume
    passed `company_maxlen` while the shared stream still reaches back to the cursor
    replays from the shared one, with no gap."""
    if company is None:
        return read_shared(client, keys, after, count)
    own = read_company(client, keys, company, after, count)
    if own is not None and not own.trimmed:
        return own
    shared = read_shared(client, keys, after, count)
    if own is None or own.first is None:
        return shared
    if shared.first is not None and id_key(shared.first) < id_key(own.first):
        return shared  # it lost less of what came after the cursor
    return own
