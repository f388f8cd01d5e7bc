"""The daemon/child wire of process isolation (fleetd.runtime.sandbox_wire) and the
child's scratch directories, without processes: replies are checked data, frames are
bounded, a scratch directory that cannot be made ahead is not fatal."""

from __future__ import annotations

import json
import pickle
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import trio

from fleetd.runtime.sandbox_child import _Child
from fleetd.runtime.sandbox_wire import FRAME, BadReply, FrameReader, reply_of


class Chunks:
    """A receive stream that hands out `data` a few bytes at a time."""

    def __init__(self, data: bytes, step: int = 3) -> None:
        self.data, self.step = data, step

    async def receive_some(self, max_bytes: int) -> bytes:
        await trio.lowlevel.checkpoint()
        chunk, self.data = self.data[: self.step], self.data[self.step :]
        return chunk


def framed(*bodies: bytes) -> bytes:
    return b"".join(FRAME.pack(len(b)) + b for b in bodies)


async def test_frames_are_read_whole_however_they_arrive() -> None:
    reader = FrameReader(Chunks(framed(b"first", b"", b"x" * 1000)))
    assert [await reader.frame() for _ in range(3)] == [b"first", b"", b"x" * 1000]
    with pytest.raises(EOFError):
        await reader.frame()


async def test_a_frame_over_the_limit_is_refused_before_it_is_read() -> None:
    reader = FrameReader(Chunks(FRAME.pack(2**31)))
    with pytest.raises(BadReply, match="at most 1024"):
        await reader.frame(limit=1024)


def reply(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def test_a_reply_is_data_with_known_fields_of_their_types() -> None:
    ok = reply(result='{"a":1}', progress_end=None, scratch="/x", leaving=False)
    assert reply_of(ok)["result"] == '{"a":1}'
    assert reply_of(reply(error="e", kind="timeout", retry_after=2, retryable=True))
    for bad in (
        pickle.dumps({"result": "{}"}),  # a pickle is never read
        b"[1, 2]",
        reply(result=5),
        reply(unknown="x"),
        reply(kind="whatever"),
        reply(retry_after=-1),
        b'{"retry_after": NaN}',
        reply(leaving=None),
    ):
        with pytest.raises(BadReply):
            reply_of(bad)


def test_a_scratch_dir_that_cannot_be_made_ahead_is_left_to_the_job(tmp_path: Path) -> None:
    child = _Child({"directory": str(tmp_path / "gone"), "max_jobs": 0})
    assert child._next_scratch() is None  # logged; the job makes it or fails with why
    (tmp_path / "gone").mkdir()
    made = child._next_scratch()
    assert made is not None and Path(made).parent == tmp_path / "gone"
    assert Path(made).is_dir()


class Recorder:
    """The daemon side of ctx.progress: what reached it."""

    def __init__(self) -> None:
        self.got: list[tuple[float, str]] = []

    async def progress(self, percent: float, message: str = "") -> bool:
        self.got.append((percent, message))
        return True


async def test_a_child_flooding_its_progress_fifo_costs_the_daemon_no_memory() -> None:
    """8 MiB without a newline (handler code can write anything into its FIFO) is
    dropped as it comes, never held; the next line is relayed."""
    from fleetd.runtime.sandbox_progress import MAX_LINE, ProgressSlots, Slot

    line = json.dumps({"tag": "job-1", "percent": 50, "message": "after"}).encode()
    chunks = [b"x" * 65536] * 128 + [b"\n" + line + b"\n"]

    class Reader:
        async def receive_some(self, max_bytes: int) -> bytes:
            await trio.lowlevel.checkpoint()
            return chunks.pop(0) if chunks else b""

    ctx = Recorder()
    reader: Any = Reader()
    slot = Slot("unused", reader, -1, tag="job-1", ctx=ctx)  # type: ignore[arg-type]
    tracemalloc.start()
    try:
        await ProgressSlots("unused", 1)._relay(slot)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert ctx.got == [(50.0, "after")]
    assert peak < 1024 * 1024, peak  # held at most a chunk and MAX_LINE, not 8 MiB
    assert MAX_LINE < 65536
