"""Artifacts: files a job produces (reports, exports), kept under `[artifacts] dir`.

Owns one folder per job (`<dir>/<job id>/`), writing files into it and recording each
as `{"name", "path" (absolute), "size", "sha256"}`; the worker merges the records into
the job's result under `"artifacts"` (next to the handler's own keys).

Also owns their end: `sweep()` deletes the folders of jobs that no longer exist (cleaned
up, pruned by retention) and any older than `[artifacts] retention`, on the host it runs
on (a job's files live where it ran); maintenance runs it once a minute, `fleetd
cleanup` and `POST /jobs/cleanup` right after deleting jobs. `copy_out()` copies one
artifact out, checking its recorded size and sha256 (`fleetd jobs artifact`).

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
import shutil
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Sequence,
)
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import trio

from fleetd.jobs.artifact_limits import FREE_CHECK_BYTES, Allowance, ArtifactLimits
from fleetd.jobs.counts import jobs_exist

if TYPE_CHECKING:
    from fleetd.config import Config

__all__ = [
    "Artifact",
    "ArtifactStore",
    "ArtifactWriter",
    "artifacts_root",
    "by_age",
    "copy_out",
    "job_folders",
    "jobs_exist",
    "remove",
    "sweep",
    "sweep_async",
]

# Names are single path components: no folders, nothing hidden (temporary files start
# with a dot), at most 200 characters so `<name>.<token>.tmp` stays under NAME_MAX 255.
MAX_NAME_LENGTH = 200
# Copy buffer of add_file: 1 MiB keeps the number of thread hops and syscalls small.
COPY_CHUNK = 1 << 20
# Job ids checked per Redis round trip while sweeping: 500 EXISTS in one pipeline take
# ~5 ms here, short enough not to hold up other clients of the connection.
SWEEP_BATCH = 500
# Job ids (fleetd.jobs.model.new_job_id) start so; nothing else in the folder is swept.
JOB_FOLDER_PREFIX = "job_"


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

    def __init__(self, final: Path, allowance: Allowance) -> None:
        self.final = final
        self.tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.tmp")
        self._file: IO[bytes] | None = None
        self._hash = hashlib.sha256()
        self._allowance = allowance
        self._unchecked = FREE_CHECK_BYTES  # bytes since the free space was last read
        self.size = 0

    def _open(self) -> None:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.tmp, "wb")  # noqa: SIM115 - closed by _finish/_discard

    def _write(self, chunk: bytes) -> None:
        assert self._file is not None
        n = len(chunk)
        if self._unchecked >= FREE_CHECK_BYTES or n > FREE_CHECK_BYTES:
            self._allowance.check_free(self.final.name, self.final.parent, n)
            self._unchecked = 0
        self._allowance.take(self.final.name, n)
        self.size += n  # counted as taken: a failed write is given back by _discard
        self._unchecked += n
        self._file.write(chunk)
        self._hash.update(chunk)

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
        self._allowance.give_back(self.size)


def _as_bytes(chunk: object) -> bytes:
    if isinstance(chunk, bytes | bytearray | memoryview):
        return bytes(chunk)
    raise TypeError(f"artifact chunks must be bytes, got {type(chunk).__name__}")


class ArtifactStore:
    """The artifacts of one job attempt (`ctx.artifacts`), within `[artifacts]
    job_max_bytes` and `min_free_bytes` (fleetd.jobs.artifact_limits)."""

    def __init__(self, root: Path, job_id: str, limits: ArtifactLimits | None = None) -> None:
        self.dir = root / job_id
        self._recorded: dict[str, Artifact] = {}
        self._allowance = Allowance(limits or ArtifactLimits())

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
        writer = ArtifactWriter(self.path(name), self._allowance)
        # A name written again: the file it replaces no longer counts (it stays, and
        # counts again, if this write fails).
        replaced = self._recorded.get(name)
        held = replaced.size if replaced is not None else 0
        self._allowance.give_back(held)
        try:
            await trio.to_thread.run_sync(writer._open)
            yield writer
            artifact = await trio.to_thread.run_sync(writer._finish)
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(writer._discard)
            self._allowance.give_back(-held)
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


def job_folders(root: Path) -> list[tuple[Path, float]]:
    """Each `<root>/<job id>/` folder with its last modification time (epoch s)."""
    if not root.is_dir():
        return []
    out = []
    for path in root.iterdir():
        try:
            if path.name.startswith(JOB_FOLDER_PREFIX) and path.is_dir():
                out.append((path, path.stat().st_mtime))
        except OSError:
            continue  # vanished meanwhile
    return out


def by_age(
    folders: Iterable[tuple[Path, float]], *, min_age: float, retention: float, now: float
) -> tuple[list[Path], list[Path]]:
    """(expired, to check): folders last changed over `retention` s ago (0 = no limit)
    go whatever their job; those over `min_age` s old go if their job is gone."""
    expired, check = [], []
    for path, mtime in folders:
        if retention > 0 and mtime < now - retention:
            expired.append(path)
        elif mtime < now - min_age:
            check.append(path)
    return expired, check


def remove(folders: Iterable[Path]) -> None:
    for path in folders:
        shutil.rmtree(path, ignore_errors=True)


def sweep(
    root: Path,
    exists: Callable[[list[str]], Sequence[bool]],
    *,
    min_age: float,
    retention: float,
) -> int:
    """Delete the job folders under `root` whose job is gone (`exists(ids)` answers for
    a batch of ids) or that expired (`by_age`); returns how many went. Blocking: the
    form for the CLI; `sweep_async` is the same from trio."""
    expired, check = by_age(
        job_folders(root), min_age=min_age, retention=retention, now=time.time()
    )
    gone = expired
    for start in range(0, len(check), SWEEP_BATCH):
        batch = check[start : start + SWEEP_BATCH]
        alive = exists([p.name for p in batch])
        gone.extend(p for p, live in zip(batch, alive, strict=True) if not live)
    remove(gone)
    return len(gone)


async def sweep_async(
    root: Path,
    exists: Callable[[list[str]], Awaitable[Sequence[bool]]],
    *,
    min_age: float,
    retention: float,
) -> int:
    """`sweep` from trio (maintenance, POST /jobs/cleanup): the disk work in worker
    threads, `exists` awaited (a RedisLink hop) for each batch of ids."""
    folders = await trio.to_thread.run_sync(job_folders, root)
    gone, check = by_age(folders, min_age=min_age, retention=retention, now=time.time())
    for start in range(0, len(check), SWEEP_BATCH):
        batch = check[start : start + SWEEP_BATCH]
        alive = await exists([p.name for p in batch])
        gone.extend(p for p, live in zip(batch, alive, strict=True) if not live)
    await trio.to_thread.run_sync(remove, gone)
    return len(gone)


def copy_out(source: Path, target: IO[bytes], record: dict[str, Any]) -> int:
    """Copy the artifact at `source` to `target`; raises ValueError when it is not what
    the job recorded (size or sha256: changed or truncated since). Returns its size."""
    digest = hashlib.sha256()
    size = 0
    with open(source, "rb") as f:
        while chunk := f.read(COPY_CHUNK):
            target.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    if size != record.get("size") or digest.hexdigest() != record.get("sha256"):
        raise ValueError(
            f"{source} is not the file the job recorded (its size or sha256 differ): "
            "it changed since the job wrote it"
        )
    return size
