"""Progress from process jobs to the daemon (fleetd.runtime.sandbox): one FIFO per slot
of `[isolation] max_children`, made once, each with a relay task that forwards the
lines of the attempt holding the slot to its job's `ctx.progress`.

A FIFO and a relay per job cost the daemon ~0.2 ms of CPU a job (mkfifo, two opens,
a nursery, a task, closes and an unlink: most of what a short job's isolation cost
beyond the child's round trip). A slot's FIFO is kept instead; a child opens its write
end on the first progress of a job in that slot and keeps it for later jobs there.
Each line carries the attempt's tag (its scratch directory's name): a line of an
attempt that no longer holds the slot (a child still dying after a timeout) is dropped.

Lifecycle: `open(nursery)` in the sandbox's service (FIFOs in its private directory,
relays started) → `take(tag, ctx)` / `give(slot)` around each process job (no await:
the sandbox's limiter bounds the takers) → the relays are cancelled with the service
nursery, and `close()` closes the daemon's ends.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

import trio

from fleetd.jobs.context import JobContext

__all__ = ["ProgressSlots", "Slot"]

log = logging.getLogger("fleetd.sandbox")

# A progress line is small JSON; a read takes whatever queued, only the newest counts.
READ_CHUNK = 65536


@dataclass(eq=False)
class Slot:
    path: str
    reader: trio.lowlevel.FdStream
    keep_open: int  # the daemon's write end: reads never see EOF between children
    tag: str = ""
    ctx: JobContext | None = field(default=None, repr=False)


class ProgressSlots:
    """The FIFOs of one sandbox, one per slot (module docstring)."""

    def __init__(self, directory: str, count: int) -> None:
        self._dir = directory
        self._count = count
        self._all: list[Slot] = []
        self._free: list[Slot] = []

    def open(self, nursery: trio.Nursery) -> None:
        for i in range(self._count):
            path = os.path.join(self._dir, f"progress-{i}")
            os.mkfifo(path, 0o600)
            reader = trio.lowlevel.FdStream(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
            slot = Slot(path, reader, os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            self._all.append(slot)
            nursery.start_soon(self._relay, slot)
        self._free = list(self._all)

    def take(self, tag: str, ctx: JobContext) -> Slot:
        slot = self._free.pop()
        slot.tag, slot.ctx = tag, ctx
        return slot

    def give(self, slot: Slot) -> None:
        slot.tag, slot.ctx = "", None
        self._free.append(slot)

    async def close(self) -> None:
        for slot in self._all:
            os.close(slot.keep_open)
            await slot.reader.aclose()
        self._all, self._free = [], []

    async def _relay(self, slot: Slot) -> None:
        """Forward the newest line of each read that belongs to the slot's attempt."""
        pending = b""
        while chunk := await slot.reader.receive_some(READ_CHUNK):
            *lines, pending = (pending + chunk).split(b"\n")
            newest = None
            for line in lines:
                try:
                    got = json.loads(line)
                    if got["tag"] == slot.tag:
                        newest = float(got["percent"]), str(got.get("message", ""))
                except (ValueError, KeyError, TypeError):
                    log.warning("unreadable progress line from a child: %r", line[:200])
            ctx = slot.ctx
            if newest is not None and ctx is not None:
                await ctx.progress(*newest)
