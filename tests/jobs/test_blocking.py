"""The batched executor behind `ctx.run_blocking` (fleetd.jobs.blocking): coalescing,
errors kept to their caller, order, cancellation (to_thread's abandon_on_cancel=False
semantics), and the extra lane a stuck batch opens."""

from __future__ import annotations

import threading
import time

import outcome
import pytest
import trio

from fleetd.jobs.blocking import BlockingExecutor, Call


async def test_concurrent_calls_share_thread_hops() -> None:
    ex = BlockingExecutor()
    results: dict[int, int] = {}

    def square(i: int) -> int:
        time.sleep(0.002)  # long enough for the other tasks to queue behind the first
        return i * i

    async def job(i: int) -> None:
        results[i] = await ex.run(square, i)

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(job, i)
    assert results == {i: i * i for i in range(50)}
    assert ex.calls == 50
    # The first call goes alone; the 49 that queued meanwhile share the next hop(s).
    assert ex.hops <= 5


async def test_an_exception_reaches_its_own_caller_only() -> None:
    ex = BlockingExecutor()
    got: dict[int, object] = {}

    def check(i: int) -> int:
        if i % 2:
            raise ValueError(f"odd {i}")
        return i

    async def job(i: int) -> None:
        try:
            got[i] = await ex.run(check, i)
        except ValueError as exc:
            got[i] = str(exc)

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(job, i)
    assert got == {i: (f"odd {i}" if i % 2 else i) for i in range(20)}


async def test_calls_of_one_job_keep_their_order() -> None:
    ex = BlockingExecutor()
    seen: list[tuple[int, int]] = []

    async def job(i: int) -> None:
        for k in range(5):
            await ex.run(seen.append, (i, k))

    async with trio.open_nursery() as nursery:
        for i in range(10):
            nursery.start_soon(job, i)
    for i in range(10):
        assert [k for j, k in seen if j == i] == [0, 1, 2, 3, 4]
    assert len(seen) == 50


async def test_cancel_withdraws_a_queued_call_and_spares_the_running_ones() -> None:
    ex = BlockingExecutor(slow_batch=60.0)  # no extra lane: the second call must queue
    release = threading.Event()
    ran: list[str] = []

    def slow() -> str:
        release.wait(10)
        ran.append("slow")
        return "slow done"

    async def first(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            # Cancelled while its call runs: like to_thread.run_sync(abandon_on_cancel=
            # False), the call finishes and its result comes back.
            assert await ex.run(slow) == "slow done"
            await trio.lowlevel.checkpoint()  # ... and the cancel arrives here
            raise AssertionError("not cancelled")

    async with trio.open_nursery() as nursery:
        slow_scope = await nursery.start(first)
        await trio.sleep(0.05)  # the slow call is running now
        with trio.move_on_after(0.05) as queued:
            await ex.run(ran.append, "queued")  # waits behind the slow batch
        assert queued.cancelled_caught
        slow_scope.cancel()
        release.set()
    assert ran == ["slow"]  # the withdrawn call never ran
    assert await ex.run(lambda: "still works") == "still works"
    assert ex.calls == 2


async def test_a_stuck_batch_opens_an_extra_lane() -> None:
    ex = BlockingExecutor(slow_batch=0.05)
    release = threading.Event()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ex.run, release.wait, 10)
        await trio.sleep(0.1)  # the first batch is now "stuck"
        with trio.fail_after(5):
            assert await ex.run(lambda: 42) == 42
        release.set()
    # Both extra and normal lanes are free again: a call goes straight through.
    with trio.fail_after(5):
        assert await ex.run(lambda: 7) == 7


async def test_a_runner_failing_as_a_whole_fails_each_call_it_left() -> None:
    def runner(batch: list[Call]) -> None:
        for call in batch:
            if call.args == ("ok",):
                call.result = outcome.Value("done")
        raise RuntimeError("connection lost")

    ex = BlockingExecutor(runner)
    got: dict[str, str] = {}

    async def job(arg: str) -> None:
        try:
            got[arg] = await ex.run(str, arg)
        except RuntimeError as exc:
            got[arg] = str(exc)

    async with trio.open_nursery() as nursery:
        for arg in ("x", "ok", "y"):
            nursery.start_soon(job, arg)
    assert got == {"x": "connection lost", "ok": "done", "y": "connection lost"}


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        BlockingExecutor(max_batch=0)
