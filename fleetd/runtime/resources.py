"""What this daemon process uses: CPU, memory, open files, and how late its trio loop
runs — sampled for the heartbeat, so any daemon (and /metrics, the dashboard's Daemons
page) reports every live daemon's.

Owns `ResourceMeter`: `snapshot()` reads the process's CPU time (os.times, both user
and system, all threads), its resident memory (/proc/self/statm; where there is no
/proc, the peak from getrusage) and its open file descriptors (/proc/self/fd; None
elsewhere), and `probe()`, a task that sleeps LAG_PROBE at a time and notes how much
later than asked it woke: the trio loop's lag, as the worst since the last snapshot.

Lifecycle: probe() runs inside the heartbeat's nursery until cancelled; snapshot() is
called once per heartbeat (CPU % is over the time since the previous one).
"""

from __future__ import annotations

import os
import resource
import sys
import time
from typing import Any

import trio

__all__ = ["LAG_PROBE", "ResourceMeter"]

# The lag probe's sleep: 10 wake-ups a second cost ~0.1 ms of CPU per second, and a
# loop blocked for longer than 100 ms (a handler calling something blocking) shows.
LAG_PROBE = 0.1
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # KiB on Linux


def _open_fds() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


class ResourceMeter:
    """CPU %, RSS, open fds and trio loop lag of this process."""

    def __init__(self) -> None:
        self._cpu = _cpu_seconds()
        self._at = time.monotonic()
        self._lag = 0.0

    def snapshot(self) -> dict[str, Any]:
        """The heartbeat's `resources` object; CPU % and lag are since the last call
        (100 % = one core busy)."""
        cpu, at = _cpu_seconds(), time.monotonic()
        elapsed = at - self._at
        percent = (cpu - self._cpu) / elapsed * 100 if elapsed > 0 else 0.0
        self._cpu, self._at = cpu, at
        lag, self._lag = self._lag, 0.0
        return {
            "cpu_percent": round(max(percent, 0.0), 1),
            "rss_bytes": _rss_bytes(),
            "open_fds": _open_fds(),
            "loop_lag_ms": round(lag * 1000, 1),
        }

    async def probe(self) -> None:
        """Until cancelled: sleep LAG_PROBE, note how late the wake-up came."""
        while True:
            asked = trio.current_time() + LAG_PROBE
            await trio.sleep(LAG_PROBE)
            self._lag = max(self._lag, trio.current_time() - asked)
