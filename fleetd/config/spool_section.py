"""The [spool] section: the durable local spool of enqueues made while Redis is away.

Owns the schema of fleetd.spool's settings, each key declared once with `setting()`;
gathered into `Config` by fleetd.config.model like the other core sections.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetd.config.settings import MINUTE, SECOND, setting

__all__ = ["SpoolConfig"]

MIB = 1024 * 1024


@dataclass(frozen=True)
class SpoolConfig:
    enabled: bool = setting(
        True, "keep enqueues in <state_dir>/enqueue-spool.db while Redis is away (202)"
    )
    # 100,000 jobs of ~1 KB: ~100 MB of disk, replayed in well under a minute.
    max_jobs: int = setting(
        100_000, "most jobs held; past it an enqueue answers 503", min=1, max=100_000_000
    )
    max_bytes: int = setting(
        256 * MIB, "most bytes of job rows held; past it 503", min=MIB, max=1024 * 1024 * MIB
    )
    # No company may fill the spool every company needs during the same outage.
    company_share: float = setting(
        0.5,
        "most of max_jobs and max_bytes one company's spooled jobs may hold (1 = all)",
        kind="float",
        min=0.01,
        max=1.0,
    )
    replay_batch: int = setting(500, "jobs sent to Redis per replay round trip", min=1, max=1000)
    replay_interval: float = setting(
        1 * SECOND,
        "how often a daemon looks for spooled jobs while Redis is away",
        kind="duration",
        min=0.05,
        max=MINUTE,
    )
