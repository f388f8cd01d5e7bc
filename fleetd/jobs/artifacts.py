"""Artifacts: files a job produces (reports, exports), kept under `[artifacts] dir`.

Owns one folder per job (`<dir>/<job id>/`), writing files into it and recording each
as `{"name", "path" (absolute), "size", "sha256"}`; the worker merges the records into
the job's result under `"artifacts"` (next to the handler's own keys).

Every write is streamed to a hidden temporary file in that folder, hashed as it goes,
fsynced, then renamed into place: a reader never sees half a file, and a retry that
writes the same name replaces it whole. Disk work runs in worker threads
(`trio.to_thread.run_sync`), never on the trio thread; a synchronous iterable of chunks
(a CSV generator, say) is consumed inside the thread too, so its own work does not
block the daemon either.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from fleetd.config import Config

__all__ = ["Artifact", "ArtifactStore", "ArtifactWriter", "artifacts_root"]

# Names are single path components: no folders, nothing hidden (temporary files start
# with a dot), at most 200 characters so `<name>.<token>.tmp` stays under NAME_MAX 255.
MAX_NAME_LENGTH = 200
# Copy buffer of add_file: 1 MiB keeps the number of thread hops and syscalls small.
COPY_CHUNK = 1 << 20


def artifacts_root(cfg: Config) -> Path:
    """`[artifacts] dir`, or `<state_dir>/artifacts` when it is empty; absolute."""
    configured = cfg.artifacts.dir
    root = Path(configured).expanduser() if configured else cfg.state_dir / "artifacts"
    return root.absolute()


def check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"artifact name must be a non-empty string, got {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"artifact name is longer than {MAX_NAME_LENGTH} characters")
    if name.startswith(".") or any(c in name for c in "/\\") or not name.isprintable():
        raise ValueError(
            f"artifact name {name!r} must be a plain file name "
            "(no folders, no leading dot, no control characters)"
        )
    return name


@dataclass(frozen=True, slots=True)
class Artifact:
    name: str
    path: str  # absolute
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "size": self.size, "sha256": self.sha256}


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ArtifactWriter:
    """An artifact being written: `await write(chunk)` as often as needed. Made by
    `ArtifactStore.open()`, which finishes (or discards) it."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.tmp")
        self._file: IO[bytes] | None = None
        self._hash = hashlib.sha256()
        self.size = 0

    def _open(self) -> None:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.tmp, "wb")  # noqa: SIM115 - closed by _finish/_discard

    def _write(self, chunk: bytes) -> None:
        assert self._file is not None
        self._file.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    def _write_all(self, chunks: Iterable[bytes]) -> None:
        for chunk in chunks:
            self._write(_as_bytes(chunk))

    async def write(self, chunk: bytes) -> None:
        await trio.to_thread.run_sync(self._write, _as_bytes(chunk))

    def _finish(self) -> Artifact:
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.tmp, self.final)
        _fsync_dir(self.final.parent)
        return Artifact(self.final.name, str(self.final), self.size, self._hash.hexdigest())

    def _discard(self) -> None:
        if self._file is not None:
            self._file.close()
        self.tmp.unlink(missing_ok=True)


def _as_bytes(chunk: object) -> bytes:
    if isinstance(chunk, bytes | bytearray | memoryview):
        return bytes(chunk)
    raise TypeError(f"artifact chunks must be bytes, got {type(chunk).__name__}")


class ArtifactStore:
    """The artifacts of one job attempt (`ctx.artifacts`)."""

    def __init__(self, root: Path, job_id: str) -> None:
        self.dir = root / job_id
        self._recorded: dict[str, Artifact] = {}

    @property
    def recorded(self) -> list[Artifact]:
        """What this attempt wrote, in order (a name written twice counts once)."""
        return list(self._recorded.values())

    def path(self, name: str) -> Path:
        """Where the artifact `name` lives (absolute), written or not."""
        return self.dir / check_name(name)

    @asynccontextmanager
    async def open(self, name: str) -> AsyncIterator[ArtifactWriter]:
        """Stream an artifact: `async with ctx.artifacts.open("a.csv") as f: await
        f.write(b"...")`. It is recorded when the block ends without an error;
        otherwise the partial file is removed."""
        writer = ArtifactWriter(self.path(name))
        await trio.to_thread.run_sync(writer._open)
        try:
            yield writer
            artifact = await trio.to_thread.run_sync(writer._finish)
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(writer._discard)
            raise
        self._recorded[artifact.name] = artifact

    async def write_chunks(
        self, name: str, chunks: Iterable[bytes] | AsyncIterable[bytes]
    ) -> Artifact:
        """Write an artifact from chunks: a synchronous iterable is consumed in one
        worker thread; an async one chunk by chunk."""
        async with self.open(name) as writer:
            if isinstance(chunks, AsyncIterable):
                async for chunk in chunks:
                    await writer.write(chunk)
            else:
                await trio.to_thread.run_sync(writer._write_all, chunks)
        return self._recorded[name]

    async def write_bytes(self, name: str, data: bytes) -> Artifact:
        return await self.write_chunks(name, [data])

    async def write_text(self, name: str, text: str, encoding: str = "utf-8") -> Artifact:
        return await self.write_chunks(name, [text.encode(encoding)])

    async def add_file(self, name: str, source: str | os.PathLike[str]) -> Artifact:
        """Copy a file some library wrote (openpyxl, a PDF renderer) in as an artifact."""

        def chunks() -> Iterable[bytes]:
            with open(source, "rb") as f:
                yield from iter(lambda: f.read(COPY_CHUNK), b"")

        return await self.write_chunks(name, chunks())

    def merge_into(self, result: object) -> object:
        """The handler's result with the recorded artifacts under "artifacts": added to
        a list the handler returned there itself (entries with the same path are not
        repeated), never replacing its other keys. Raises ValueError when the handler
        used "artifacts" for something other than a list."""
        if not isinstance(result, dict) or not self._recorded:
            return result
        own = result.get("artifacts", [])
        if not isinstance(own, list):
            raise ValueError(
                "the handler's result uses the key 'artifacts' for something other than a "
                "list, but fleetd records the job's artifacts there"
            )
        listed = {a.get("path") for a in own if isinstance(a, dict)}
        extra = [a.to_dict() for a in self._recorded.values() if a.path not in listed]
        return {**result, "artifacts": [*own, *extra]}
