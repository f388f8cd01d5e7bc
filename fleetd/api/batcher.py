"""Enqueue batching of the admin API: concurrent enqueue requests share Redis round trips.

Owns one queue of prepared job rows and a few flusher tasks. A request hands its rows
over and waits; a flusher takes every row queued at that moment (up to MAX_ROWS) and
sends them in one `enqueue_rows` hop — one thread hop and one script call for many
requests instead of one each (docs/ARCHITECTURE.md#redis-access: a thread hop costs
~0.2–0.6 ms here, the script ~20 µs a job). Alone, a request goes out at once: no
timer, no added latency.

Each request still gets its own results, in its order, or the error of its batch
(Redis unreachable → 503); a request refused by its company's quota gets that
company's refusal, never one naming another company of the batch. A batch's hop is
bounded by the API link's socket timeout.

Lifecycle: `run()` in the HTTP service's nursery starts FLUSHERS tasks and serves until
cancelled; rows still queued then fail with RedisUnavailable (answered 503).
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from fleetd.backend.codec import JobRow
from fleetd.backend.redis_link import RedisLink, RedisUnavailable
from fleetd.jobs.errors import QuotaExceeded
from fleetd.jobs.queue import EnqueueResult, QueueOps

__all__ = ["EnqueueBatcher"]

# Rows per hop: enqueue_rows sends 1000 per script call; 500 keeps one hop under ~10 ms.
MAX_ROWS = 500
# Hops in flight at once: while one batch is in Redis the next fills up; two keep both
# cores busy without a thundering herd of threads (the GIL makes more pointless).
FLUSHERS = 2
# Requests waiting for a flusher; beyond it a request waits for room (back-pressure).
QUEUE = 10_000


class _Pending:
    __slots__ = ("done", "error", "results", "rows")

    def __init__(self, rows: Sequence[JobRow]) -> None:
        self.rows = rows
        self.done = trio.Event()
        self.results: list[EnqueueResult] = []
        self.error: BaseException | None = None


class EnqueueBatcher:
    def __init__(self, link: RedisLink, ops: QueueOps) -> None:
        self.link = link
        self.ops = ops
        self._send, self._receive = trio.open_memory_channel[_Pending](QUEUE)
        self._running = False

    async def enqueue(self, rows: Sequence[JobRow]) -> list[EnqueueResult]:
        if not self._running:  # not serving (an app built without the service)
            return await self.link.call(self.ops.enqueue_rows, rows)
        pending = _Pending(rows)
        await self._send.send(pending)
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.results

    async def run(self) -> None:
        self._running = True
        try:
            async with trio.open_nursery() as nursery:
                for _ in range(FLUSHERS):
                    nursery.start_soon(self._flusher)
        finally:
            self._running = False
            while True:
                try:
                    pending = self._receive.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                pending.error = RedisUnavailable("the API is stopping")
                pending.done.set()

    async def _flusher(self) -> None:
        while True:
            batch = [await self._receive.receive()]
            size = len(batch[0].rows)
            while size < MAX_ROWS:
                try:
                    more = self._receive.receive_nowait()
                except trio.WouldBlock:
                    break
                batch.append(more)
                size += len(more.rows)
            while batch:
                try:
                    await self._write(batch)
                    break
                except QuotaExceeded as exc:
                    # Nothing was stored: fail the requests of the refused companies and
                    # write the others' again (one company's flood refuses no other).
                    # Each refused request gets its own company's refusal: the call's
                    # error names the first company refused, maybe another's.
                    refused = set(exc.companies)
                    keep = []
                    for p in batch:
                        mine = [c for r in p.rows if (c := r.company_id or "") in refused]
                        if mine:
                            p.error = exc.of(mine[0])
                            p.done.set()
                        else:
                            keep.append(p)
                    if len(keep) == len(batch):  # not expected: no request names them
                        for p in keep:
                            p.error = exc
                            p.done.set()
                        keep = []
                    batch = keep

    async def _write(self, batch: list[_Pending]) -> None:
        rows = [row for p in batch for row in p.rows]
        try:
            results = await self.link.call(self.ops.enqueue_rows, rows)
        except QuotaExceeded:
            raise
        except Exception as exc:
            for p in batch:
                p.error = exc
                p.done.set()
            return
        offset = 0
        for p in batch:
            p.results = results[offset : offset + len(p.rows)]
            offset += len(p.rows)
            p.done.set()
