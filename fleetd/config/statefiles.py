"""Small files fleetd keeps under `[daemon] state_dir` (where the API listens, where the
embedded store serves), written so that a reader never sees half a file.

Several writers may share one state directory — the children of `[daemon] processes = N`
all record the same listen URLs — so each write goes through its own temporary name and
is renamed over the target: the last rename wins, and no writer can rename away another
one's temporary file.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any


def write_json_atomically(path: Path, value: Any) -> None:
    """Write `value` as JSON to `path` (parents created) through a private temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(json.dumps(value))
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
