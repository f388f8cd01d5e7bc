"""Artifact write speed with and without `[artifacts]` limits (fleetd.jobs.artifact_limits).

A handler streaming an export: `--mib` MiB in 64 KiB chunks through
`ArtifactStore.write_chunks` (hashed, fsynced, renamed), into a temporary folder on the
file system of `--dir` (default: the system's temporary folder). Alternates the store
with no limits and with `job_max_bytes` and `min_free_bytes` set (a count per chunk,
a statvfs per MiB), `--rounds` times, and prints each side's median MiB/s: what the
limits cost a real write. Nothing here talks to Redis.

    python bench/artifacts.py [--mib 256] [--rounds 5] [--dir PATH]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import trio
from throughput import loadavg

from fleetd.jobs.artifact_limits import ArtifactLimits
from fleetd.jobs.artifacts import ArtifactStore

CHUNK = 64 * 1024
MIB = 1 << 20


def chunks(total: int) -> Iterator[bytes]:
    block = b"v" * CHUNK
    for _ in range(total // CHUNK):
        yield block


def write_once(root: Path, total: int, limits: ArtifactLimits | None) -> float:
    """Seconds to write one artifact of `total` bytes (the folder removed after)."""
    store = ArtifactStore(root, "job_bench", limits)

    async def main() -> None:
        await store.write_chunks("export.csv", chunks(total))

    started = time.perf_counter()
    trio.run(main)
    elapsed = time.perf_counter() - started
    shutil.rmtree(root / "job_bench")
    return elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mib", type=int, default=256)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--dir", default=None)
    a = p.parse_args()
    total = a.mib * MIB
    limited = ArtifactLimits(job_max_bytes=total * 2, min_free_bytes=MIB)
    print(f"# loadavg before: {loadavg()}")
    times: dict[str, list[float]] = {"no limits": [], "limits": []}
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        write_once(Path(tmp), 8 * MIB, None)  # warm the page cache and the imports
        for _ in range(a.rounds):
            times["no limits"].append(write_once(Path(tmp), total, None))
            times["limits"].append(write_once(Path(tmp), total, limited))
    for side, seconds in times.items():
        rate = a.mib / statistics.median(seconds)
        print(f"artifact write, {side}: {rate:,.0f} MiB/s  (median of {a.rounds}, {a.mib} MiB)")
    print(f"# loadavg after: {loadavg()}")


if __name__ == "__main__":
    main()
