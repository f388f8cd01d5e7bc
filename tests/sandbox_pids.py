"""The sandbox children of this process, from /proc (Linux): what tests and
bench/isolation.py see of fleetd.runtime.sandbox_children's warm children."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["sandbox_children"]


def sandbox_children() -> list[int]:
    """Pids of this process's live sandbox children (`fleetd-sandbox-child` in their
    command line), from /proc."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat[stat.rindex(")") + 2 :].split()[1]) != me:
                continue
            if b"fleetd-sandbox-child" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except (OSError, ValueError):
            continue  # gone meanwhile
    return found
