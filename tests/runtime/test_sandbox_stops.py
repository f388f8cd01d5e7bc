"""Which job a SIGTERM stops (fleetd.runtime.sandbox_child, sandbox_wire.STOPS), on a
real warm child driven over its pipes as the sandbox drives it: a stop sent before the
child has read its job's frame cancels that job as it starts; a stop that arrives after
its job's reply, late, never cancels the next job."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

import trio
from sandbox_handlers import Sandboxed

from fleetd.backend.codec import ClaimedJob
from fleetd.config.isolation_section import IsolationConfig
from fleetd.jobs.artifact_limits import ArtifactLimits
from fleetd.runtime.sandbox_children import Child, Children

LIMIT = 30
LIMITS = (512, ())
# Over a pipe's buffer (64 KiB): the frame cannot be written in one go.
BIG = "x" * 1_000_000
# Time for an idle child's loop to take in a SIGTERM (it has nothing else to do).
COUNTED = 0.5


def call(data: dict[str, Any], tmp_path: Path) -> bytes:
    """A job's message as fleetd.runtime.sandbox builds it."""
    job = ClaimedJob(id="j1", type="sandboxed", data={}, priority=5, attempts=1, retry_count=0,
                     max_retries=0, timeout=None, company_id=None, user_id=None, tags=(),
                     created_at_ms=0, token="")  # fmt: skip
    blob = pickle.dumps(Sandboxed(), pickle.HIGHEST_PROTOCOL)
    fifo = str(tmp_path / "no-progress")  # the handlers here report none
    call = (blob, job, data, None, ArtifactLimits(), 0, fifo, "job-1")
    return pickle.dumps(call, pickle.HIGHEST_PROTOCOL)


async def warm_child(children: Children, tmp_path: Path) -> Child:
    """A child that has run a job: its loop waits for the next frame."""
    child = await children.take(LIMITS)
    assert child.send_nowait(call({}, tmp_path)) == b""
    with trio.fail_after(LIMIT):
        assert "result" in await child.receive()
    return child


async def test_a_stop_sent_before_the_child_reads_its_job_cancels_the_job(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "cleanup"
    children = Children(IsolationConfig(), str(tmp_path), logging.INFO)
    async with trio.open_nursery() as nursery:
        await nursery.start(children.run)
        child = await warm_child(children, tmp_path)
        data = {"do": "term_cleanup", "marker": str(marker), "pad": BIG}
        rest = child.send_nowait(call(data, tmp_path))
        assert rest  # the child holds a part of the frame, not the job
        child.stop()
        await trio.sleep(COUNTED)
        await child.send(rest)
        with trio.fail_after(10):  # cancelled as it starts, not left to the kill
            reply = await child.receive()
        assert reply["error"].startswith("Terminated: stopped by SIGTERM")
        assert marker.read_text() == "cleaned up"
        assert child.process.poll() is None  # it answered: reused
        nursery.cancel_scope.cancel()


async def test_a_late_stop_of_an_earlier_job_does_not_cancel_the_next(tmp_path: Path) -> None:
    children = Children(IsolationConfig(), str(tmp_path), logging.INFO)
    async with trio.open_nursery() as nursery:
        await nursery.start(children.run)
        child = await warm_child(children, tmp_path)
        # The earlier job's reply was out when the daemon's SIGTERM for it arrived.
        child.stop()
        await trio.sleep(COUNTED)
        for data in ({"pad": BIG}, {}):  # its frame read in parts, then whole
            rest = child.send_nowait(call(data, tmp_path))
            if rest:
                await child.send(rest)
            with trio.fail_after(LIMIT):
                reply = await child.receive()
            assert "result" in reply, reply
        nursery.cancel_scope.cancel()
