"""The CLI's side of job artifacts (the files reports and exports write): `fleetd jobs
artifact ID [NAME] -o FILE` copies one out of this host's `[artifacts] dir`, checked
against the size and sha256 the job recorded; `fleetd cleanup` deletes this host's
folders of the jobs it removed (`sweep_here`).

Artifacts live on the host whose daemon ran the job (or on a folder shared between
hosts: `[artifacts] dir` on NFS or a volume). On another host `jobs artifact` says so
and names the HTTP endpoint that serves the file from the API daemon's host; each
worker daemon's maintenance sweeps its own host's folders of gone jobs.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, BinaryIO

from fleetd.cli.common import fail

if TYPE_CHECKING:
    from fleetd.engine import Engine
    from fleetd.jobs.model import Job

__all__ = ["download", "sweep_here"]


def download(engine: Engine, job: Job, a: argparse.Namespace) -> int:
    """Copy one artifact from this host's [artifacts] dir, where the job's daemon wrote
    it when it ran here (or the folder is shared). The HTTP API serves the same file
    from the API daemon's host (GET /jobs/{id}/artifact)."""
    # Not at module level: fleetd.jobs.artifacts imports trio (~50 ms) that only this
    # command and cleanup need; no cycle (tests/test_architecture.py checks).
    from fleetd.jobs.artifacts import artifacts_root, check_name, copy_out

    listed = [r for r in (job.result or {}).get("artifacts") or [] if isinstance(r, dict)]
    if not listed:
        fail(f"job {job.id} has no artifact")
    names = [str(r.get("name")) for r in listed]
    if a.name is None and len(listed) > 1:
        fail(f"job {job.id} has {len(listed)} artifacts; name one: {', '.join(names)}")
    name = a.name or names[0]
    if name not in names:
        fail(f"job {job.id} has no artifact {name!r} (it has: {', '.join(names)})")
    record = listed[names.index(name)]
    try:
        source = artifacts_root(engine.config) / job.id / check_name(name)
    except ValueError as exc:
        fail(str(exc))
    if not source.is_file():
        fail(
            f"artifact {name!r} of job {job.id} is not on this host (deleted by cleanup or "
            f"[artifacts] retention, or written on another host: run this there, share "
            f"[artifacts] dir, or GET /api/v1/admin/jobs/{job.id}/artifact?name=...)"
        )
    output = a.output or name
    target: BinaryIO
    try:
        target = sys.stdout.buffer if output == "-" else open(output, "wb")  # noqa: SIM115
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror}")
    try:
        size = copy_out(source, target, record)
    except ValueError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot copy {source}: {exc.strerror}")
    finally:
        if target is not sys.stdout.buffer:
            target.close()
    if output != "-":
        print(f"{output}: {size} bytes (sha256 {record['sha256']})", file=sys.stderr)
    return 0


def sweep_here(engine: Engine) -> int:
    """Delete this host's artifact folders whose job is gone, or that expired
    ([artifacts] retention); returns how many. No minimum age, unlike maintenance: a
    folder whose job is gone right after a cleanup is one that cleanup left (a running
    job's folder always has its job)."""
    from fleetd.jobs.artifacts import artifacts_root, jobs_exist, sweep

    return sweep(
        artifacts_root(engine.config),
        lambda ids: engine.link.run_sync(
            lambda c: jobs_exist(c, [s.keys.job for s in engine.spaces.known(c)], ids)
        ),
        min_age=0.0,
        retention=engine.config.artifacts.retention,
    )
