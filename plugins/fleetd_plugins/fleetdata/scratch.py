"""Artifacts a library writes by path (openpyxl saves to a file, not to a stream).

`scratch_artifact(ctx.artifacts, name)` yields a hidden path in the job's artifact
folder; when the block ends without an error the file is copied in as the artifact
`name` (atomically, hashed: `ArtifactStore.add_file`), and it is removed either way,
shielded, so a cancelled job leaves no stray file behind.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import trio

from fleetd import ArtifactStore

__all__ = ["scratch_artifact"]


@asynccontextmanager
async def scratch_artifact(artifacts: ArtifactStore, name: str) -> AsyncIterator[Path]:
    tmp = artifacts.dir / f".{name}.{secrets.token_hex(4)}.partial"
    await trio.to_thread.run_sync(partial(tmp.parent.mkdir, parents=True, exist_ok=True))
    try:
        yield tmp
        await artifacts.add_file(name, tmp)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(Path.unlink, tmp, True)
