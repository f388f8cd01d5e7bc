"""The worker pool's claims: one Redis round trip each, from a worker thread or from
the trio thread.

Owns `Claims`, which the pool's fetch loop (fleetd.runtime.worker) calls once per claim:
- with outcomes riding (claims come back full: a busy pool, fleetd.runtime.outcomes):
  through the threaded client, one hop — write the outcomes, then claim;
- otherwise: the claim and, if nothing was ready, the wait for a wake-up token with the
  claim that follows it, in one round trip (Scripts.wait_then_claim) — sent from the
  trio thread over fleetd.backend.native_lane on a direct server (`redis://`,
  `unix://`), else through the threaded client.

Why the trio thread: such a claim starts a job enqueued to an idle daemon. Through
the threaded client its reply wakes a worker thread, which then wakes the trio thread:
0.16–0.21 ms at the median of a 0.85 ms enqueue→handler start (bench/throughput.py,
latency phase), 0.01 ms from the trio thread, where the reply wakes the loop directly.
The CPU per job of a draining pool is the same either way (bench/drain_blocking.py).

Either way a claim that left is not abandoned on cancel: its jobs are leased to this
daemon (the thread hop cannot be abandoned; the trio-thread call and a hop carrying
outcomes are shielded). A stop ends the wait with the fetch poke, and a claim made
after it is given back by the fetch loop. The trio-thread path raises the lane's
RedisUnavailable (the fetch loop backs off as for the threaded client); a script Redis
forgot (NOSCRIPT) goes through the threaded client once, which loads it; any other
error reply of claim.lua is RedisCommandError, as through the threaded client.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence

import trio

from fleetd.backend.codec import ClaimResult, decode_claim
from fleetd.backend.native_lane import CONNECT_TIMEOUT, NativeLane, raise_unless_forgotten
from fleetd.backend.redis_link import RedisLink, RedisUnavailable, SyncClient
from fleetd.backend.scripts import Scripts
from fleetd.runtime.outcomes import Outcome, OutcomeWriter

__all__ = ["MIN_WAIT", "Claims"]

# Shortest idle wait: a delayed job due "now" still costs a round trip.
MIN_WAIT = 0.005

Written = dict[str, list[int]]


class Claims:
    def __init__(
        self,
        link: RedisLink,
        scripts: Scripts,
        writer: OutcomeWriter,
        daemon_id: str,
        *,
        lease_ms: int,
        wake_keys: Sequence[str],
        max_wait: float,
        command_timeout: float,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        """`max_wait`: the longest wait for a wake-up (below half the command timeout,
        which bounds a round trip on either path)."""
        self.link = link
        self.scripts = scripts
        self.writer = writer
        self.daemon_id = daemon_id
        self.lease_ms = lease_ms
        self.wake_keys = list(wake_keys)
        self.max_wait = max_wait
        # Read by the claim thread: once set, a wake-up no longer claims.
        self.stop_flag = threading.Event()
        self._tokens = itertools.count(1)
        self._lane: NativeLane | None = None
        if NativeLane.supports(link.url):  # one connection: a pool has one fetcher
            self._lane = NativeLane(link.url, max_idle=1, connect_timeout=connect_timeout,
                                    command_timeout=command_timeout)  # fmt: skip

    async def claim(
        self, count: int, outcomes: list[Outcome]
    ) -> tuple[Written, ClaimResult | RedisUnavailable]:
        """Write `outcomes`, then claim up to `count` (waiting for a wake-up when there
        are none and nothing is ready). A claim that fails after the outcomes were
        written is returned, not raised, so that they are accounted all the same."""
        lane = self._lane if not outcomes else None
        with trio.CancelScope(shield=bool(outcomes) or lane is not None):
            if lane is not None:
                done: tuple[Written, ClaimResult | RedisUnavailable] = (
                    {},
                    await self._on_lane(lane, count),
                )
            else:
                done = await self.link.call(self._write_then_claim, count, outcomes)
        return done

    def _write_then_claim(
        self, client: SyncClient, count: int, outcomes: list[Outcome]
    ) -> tuple[Written, ClaimResult | RedisUnavailable]:
        """In the worker thread; without waiting for work when outcomes ride, so that
        they are accounted now."""
        if not outcomes:
            return {}, self._claim_or_wait(client, count)
        written = self.writer.write(client, outcomes)
        try:
            return written, self.link.run_sync(self._claim_or_wait, count, False)
        except RedisUnavailable as exc:
            return written, exc

    def _claim_or_wait(self, client: SyncClient, count: int, wait: bool = True) -> ClaimResult:
        """In the worker thread: claim; if nothing was ready, wait for a wake-up token
        (or the next delayed job's due time) and claim once more, in the same round
        trip as the wait."""
        token = self._token()
        result = self.scripts.claim(client, count, self.lease_ms, token, self.daemon_id)
        if result.jobs or not wait or self.stop_flag.is_set():
            return result
        return self.scripts.wait_then_claim(
            client, self.wake_keys, self._wait(result), count, self.lease_ms, token,
            self.daemon_id,
        )  # fmt: skip

    async def _on_lane(self, lane: NativeLane, count: int) -> ClaimResult:
        """`_claim_or_wait` from the trio thread."""
        token = self._token()
        keys, args = self.scripts.claim_call(count, self.lease_ms, token, self.daemon_id)
        claim = self.scripts.command("claim", keys, args)
        [reply] = await lane.pipeline([claim])
        if not isinstance(reply, Exception):
            result = decode_claim(reply, token)
            if result.jobs or self.stop_flag.is_set():
                return result
            wait = ("BLPOP", *self.wake_keys, self._wait(result))
            _, reply = await lane.pipeline([wait, claim])
            if not isinstance(reply, Exception):
                return decode_claim(reply, token)
        raise_unless_forgotten("claim.lua", reply)
        return await self.link.call(self._claim_or_wait, count)

    def _token(self) -> str:
        return f"{self.daemon_id}:{next(self._tokens)}"

    def _wait(self, result: ClaimResult) -> float:
        """How long to wait for a wake-up after `result` found nothing ready: at most
        max_wait, less when a delayed job falls due sooner."""
        if result.next_due_ms is None:
            return self.max_wait
        return max(MIN_WAIT, min(self.max_wait, (result.next_due_ms - result.now_ms) / 1000))

    def close(self) -> None:
        """Close the trio-thread connection (the pool's teardown)."""
        if self._lane is not None:
            self._lane.close()
