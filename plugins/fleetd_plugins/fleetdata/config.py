"""`[data]`: the fleetdata plugin's config section (declared through the hook
`fleetd_config_sections`, checked with the rest of the config file at start-up).

Owns `DataConfig` — which fleet database, the demo fleet of the embedded default, the
limits and batch sizes of reports, exports and clean-up, and where clean-up deletes
(`cleanup_targets()`) — and its declaration
`SECTION`. The plugin's modules read it as `config.section(DataConfig)`.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetd import ConfigSection, setting

from .targets import DEFAULTS, Target, check_target, parse_target

__all__ = ["SECTION", "DataConfig"]

# Clean-up pauses between batches so other database users get their turn; longer than
# 10 s would make a big clean-up take days.
MAX_CLEANUP_PAUSE = 10.0


def _check_data_url(value: str) -> str | None:
    if value == "" or value.startswith(("sqlite:///", "postgresql://", "postgres://")):
        return None
    return (
        "must be '' (SQLite under the state directory), sqlite:///PATH or "
        f"postgresql://user@host/db, got {value!r}"
    )


@dataclass(frozen=True)
class DataConfig:
    url: str = setting(
        "",
        "fleet database: sqlite:///PATH, postgresql://…; '' = <state_dir>/fleet.db",
        check=_check_data_url,
    )
    demo: bool = setting(False, "url '' on a real Redis: use the embedded demo database anyway")
    demo_fleet: bool = setting(True, "url '': a new database starts with a small demo fleet")
    report_max_days: int = setting(366, "longest date range of one report", min=1, max=3660)
    export_batch: int = setting(5000, "rows per batch of an export", min=100, max=100_000)
    cleanup_floor_days: int = setting(
        7, "smallest older_than_days a clean-up job may ask for", min=1, max=3650
    )
    cleanup_batch: int = setting(5000, "rows deleted per transaction", min=100, max=100_000)
    cleanup_pause: float = setting(
        0.05, "pause between clean-up batches", kind="duration", min=0, max=MAX_CLEANUP_PAUSE
    )
    # Where data_cleanup deletes (targets.py): a contract view, or the platform's table.
    cleanup_gps_tracks: str = setting(
        str(DEFAULTS["gps_tracks"]),
        "data_cleanup gps_tracks deletes from [schema.]relation.timestamp_column",
        check=check_target,
    )
    cleanup_audit_logs: str = setting(
        str(DEFAULTS["audit_logs"]),
        "data_cleanup audit_logs deletes from [schema.]relation.timestamp_column",
        check=check_target,
    )
    cleanup_driver_events: str = setting(
        str(DEFAULTS["driver_events"]),
        "data_cleanup driver_events deletes from [schema.]relation.timestamp_column",
        check=check_target,
    )

    def cleanup_targets(self) -> dict[str, Target]:
        """cleanup_type → where it deletes (the values were checked at load)."""
        return {
            "gps_tracks": parse_target(self.cleanup_gps_tracks),
            "audit_logs": parse_target(self.cleanup_audit_logs),
            "driver_events": parse_target(self.cleanup_driver_events),
        }


SECTION = ConfigSection("data", DataConfig)
