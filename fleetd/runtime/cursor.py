"""Event ids and the feed's cursor over every key space (fleetd.backend.spaces).

Owns:
- stream ids: `STREAM_ID` (their shape), `id_key` (a sortable pair), `resumable`;
- `Cursor`: where a feed stands in each space's events stream — the namespace's ('')
  and each queue's with a slot of its own — and its wire form, which is every event's
  `id` and what `last_event_id` takes back.

Wire form: the namespace's stream id alone (`1700000000000-3`) while the feed reads no
queue space: exactly the ids of a namespace without spaces. Otherwise that id followed
by one `,<queue>=<stream id>` per queue space, by queue name
(`1700000000000-3,bulk=1700000000100-0`). An event's id is the cursor just after it: in
each stream, the position of the last entry delivered before it, or its own. Every
stream is read in order, so the events delivered up to and including an event are
exactly, in each stream, those at or before its part: resuming after it replays, per
stream, what comes after its part (none lost, none twice), whichever daemon serves the
reconnect. A queue the cursor does not name (an id from before the queue had a space,
or from a daemon that had not learnt of it yet) stands at `0-0`: nothing of it was
delivered, so its whole stream follows. Queue names hold no ',' or '='
(QUEUE_NAME_PATTERN), so the form is unambiguous.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

__all__ = ["MAX_CURSOR_SPACES", "STREAM_ID", "ZERO", "Cursor", "id_key", "resumable"]

STREAM_ID = re.compile(r"\d{1,20}-\d{1,20}")
_PART = re.compile(r"([a-z0-9][a-z0-9_-]{0,31})=(\d{1,20}-\d{1,20})")
# Queue parts one cursor may carry: far more than a namespace has queue spaces, and a
# bound on what a client's id makes the server parse.
MAX_CURSOR_SPACES = 256
ZERO = "0-0"


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


class Cursor:
    """Stream id per space ('' = the namespace's, always present). Immutable: `moved`
    makes a new one."""

    __slots__ = ("_ids", "_wire")

    def __init__(self, ids: Mapping[str, str]) -> None:
        self._ids = dict(ids)
        self._ids.setdefault("", ZERO)
        self._wire: str | None = None

    @classmethod
    def parse(cls, text: str) -> Cursor | None:
        """The cursor of a wire id, or None if `text` is not one (each id resumable, each
        queue named once, at most MAX_CURSOR_SPACES of them)."""
        home, *parts = text.split(",")
        if not STREAM_ID.fullmatch(home) or not resumable(home):
            return None
        if len(parts) > MAX_CURSOR_SPACES:
            return None
        ids = {"": home}
        for part in parts:
            m = _PART.fullmatch(part)
            if m is None or m[1] in ids or not resumable(m[2]):
                return None
            ids[m[1]] = m[2]
        return cls(ids)

    def get(self, queue: str) -> str:
        """The position in `queue`'s stream ('' the namespace's); `0-0` if not named."""
        return self._ids.get(queue, ZERO)

    def key(self, queue: str) -> tuple[int, int]:
        return id_key(self.get(queue))

    def __contains__(self, queue: object) -> bool:
        return queue in self._ids

    def __iter__(self) -> Iterator[str]:
        """The spaces named: the namespace's, then the queues by name."""
        return iter(sorted(self._ids))

    def moved(self, queue: str, stream_id: str) -> Cursor:
        return Cursor({**self._ids, queue: stream_id})

    def join(self, other: Cursor) -> Cursor:
        """Per stream the later of the two positions (self when that is all of them)."""
        ids = dict(self._ids)
        for queue, at in other._ids.items():
            if queue not in ids or id_key(at) > id_key(ids[queue]):
                ids[queue] = at
        return self if ids == self._ids else Cursor(ids)

    @property
    def home(self) -> str:
        return self._ids[""]

    def render(self) -> str:
        """The wire form (module docstring)."""
        if self._wire is None:
            queues = sorted(q for q in self._ids if q)
            self._wire = ",".join([self._ids[""], *(f"{q}={self._ids[q]}" for q in queues)])
        return self._wire

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"Cursor({self.render()!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cursor) and self._ids == other._ids

    def __hash__(self) -> int:
        return hash(self.render())
