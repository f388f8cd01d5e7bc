"""Progress from process jobs to the daemon (fleetd.runtime.sandbox): one FIFO per slot
of `[isolation] max_children`, made once, each with a relay task that forwards the
lines of the attempt holding the slot to its job's `ctx.progress`.

A FIFO and a relay per job cost the daemon ~0.2 ms of CPU a job (mkfifo, two opens,
a nursery, a task, closes and an unlink: most of what a short job's isolation cost
beyond the child's round trip). A slot's FIFO is kept instead; a child opens its write
end on the first progress of a job in that slot and keeps it for later jobs there.
Each line carries the attempt's tag (its scratch directory's name): a line of an
attempt that no longer holds the slot (a child still dying after a timeout) is dropped.
A child that sent progress for a job ends it with an `end` line before its reply, and
the sandbox waits (`drain`, at most DRAIN_TIMEOUT) until the relay has forwarded
everything up to it: the job's last progress is written before its outcome, never
dropped as the slot changes hands nor refused as stale after the job finished.

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
# A child writes lines under PIPE_BUF (4096 bytes). Handler code runs in the child and
# can write anything into its FIFO: what grows past this without a newline is dropped,
# up to the next newline, so the daemon never holds more of it.
MAX_LINE = 8192
# The longest a finished job waits for its progress's end line (the line is in the
# FIFO before the child's reply is sent; only a relay stuck on a slow Redis is slower).
DRAIN_TIMEOUT = 2.0


@dataclass(eq=False)
class Slot:
    path: str
    reader: trio.lowlevel.FdStream
    keep_open: int  # the daemon's write end: reads never see EOF between children
    tag: str = ""
    ctx: JobContext | None = field(default=None, repr=False)
    ended: trio.Event = field(default_factory=trio.Event)  # the attempt's end line seen


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
        slot.tag, slot.ctx, slot.ended = tag, ctx, trio.Event()
        return slot

    async def drain(self, slot: Slot) -> None:
        """Wait until the relay forwarded the slot's attempt's progress up to its end
        line (module docstring); a relay that cannot is logged, not waited for."""
        with trio.move_on_after(DRAIN_TIMEOUT) as waited:
            await slot.ended.wait()
        if waited.cancelled_caught:
            log.warning("the last progress of attempt %s was not relayed in %gs",
                        slot.tag, DRAIN_TIMEOUT)  # fmt: skip

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
        pending, skipping = b"", False
        while chunk := await slot.reader.receive_some(READ_CHUNK):
            *lines, pending = (pending + chunk).split(b"\n")
            if skipping and lines:  # the rest of an overlong line
                lines, skipping = lines[1:], False
            if len(pending) > MAX_LINE:
                log.warning("a progress line over %d bytes from a child, dropped", MAX_LINE)
                pending, skipping = b"", True
            newest, ended = None, False
            for line in lines:
                try:
                    got = json.loads(line)
                    if got["tag"] != slot.tag:
                        continue
                    if got.get("end"):
                        ended = True
                    else:
                        newest = float(got["percent"]), str(got.get("message", ""))
                except (ValueError, KeyError, TypeError):
                    log.warning("unreadable progress line from a child: %r", line[:200])
            ctx, event = slot.ctx, slot.ended
            if newest is not None and ctx is not None:
                try:
                    await ctx.progress(*newest)
                except Exception as exc:  # Redis away: a lost progress, never the sandbox
                    log.warning("progress of attempt %s not recorded: %s", slot.tag, exc)
            if ended:
                event.set()
