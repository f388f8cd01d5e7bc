"""data_cleanup on seeded SQLite and PostgreSQL fleets: old rows deleted in bounded
batches (each its own transaction: a cancelled job keeps what it deleted), younger
rows and other companies untouched, counts in the result, and the floor refused at
enqueue."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio
from fleetd_plugins.fleetdata.source import FleetData
from fleetdata_db import (
    BACKENDS,
    SPEC,
    Raw,
    assert_refused_at_enqueue,
    company_ids,
    data_config,
    drop,
    fresh_url,
    handlers,
)

from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.model import ValidationError
from fleetd.testing import Harness

TIME = {"gps_tracks": "recorded_at", "audit_logs": "created_at", "driver_events": "occurred_at"}
BATCH = 100  # the smallest [data] cleanup_batch: many batches on the seeded data


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    url = fresh_url(request.param, tmp_path)
    yield url
    drop(url)


def days_into_seed(fraction: float) -> int:
    """older_than_days that cuts the seeded days at `fraction` (0: all, 1: none)."""
    first = datetime.combine(SPEC.first_day(), datetime.min.time(), UTC)
    span = (datetime.now(UTC) - first).days
    return max(1, round(span * (1 - fraction)))


def count(raw: Raw, table: str, company: str | None = None, before: str | None = None) -> int:
    sql, params = f"SELECT COUNT(*) FROM {table} WHERE 1 = 1", []
    if company:
        sql, params = sql + " AND company_id = ?", [company]
    if before:
        sql, params = sql + f" AND {TIME[table]} < ?", [*params, before]
    return int(raw.value(sql, *params))


@pytest.mark.parametrize("table", ["gps_tracks", "driver_events"])
async def test_old_rows_of_the_company_go_in_batches_the_rest_stays(
    config: Config, url: str, tmp_path: Path, table: str
) -> None:
    raw = Raw(url)
    company, other = company_ids(url)
    days = days_into_seed(0.5)
    before = count(raw, table, company)
    other_before = count(raw, table, other)
    cfg = data_config(config, url, cleanup_batch=BATCH, cleanup_pause=0.0)
    with Harness(handlers(cfg), tmp_path=tmp_path, config=cfg) as h:
        result = await h.run("data_cleanup", {"cleanup_type": table, "older_than_days": days},
                             company_id=company)  # fmt: skip
        progress = h.job(h.last_job_id).progress
    after = count(raw, table, company)
    deleted = result["deleted"]
    assert deleted == before - after > BATCH  # several batches' worth
    assert after > 0 and count(raw, table, company, before=result["cutoff"]) == 0
    assert count(raw, table, other) == other_before  # another company's rows: untouched
    assert result["batches"] == deleted // BATCH + 1  # full batches, then a short one
    assert (result["batch_size"], result["company_id"]) == (BATCH, company)
    cutoff = datetime.fromisoformat(result["cutoff"])
    assert abs(cutoff - (datetime.now(UTC) - timedelta(days=days))) < timedelta(minutes=1)
    assert progress is not None and progress["percent"] == 100.0


async def test_without_a_company_every_company_is_cleaned(
    config: Config, url: str, tmp_path: Path
) -> None:
    raw = Raw(url)
    days = days_into_seed(0.3)
    old = {c: count(raw, "audit_logs", c) for c in company_ids(url)}
    cfg = data_config(config, url)
    with Harness(handlers(cfg), tmp_path=tmp_path, config=cfg) as h:
        dry = await h.run("data_cleanup", {"cleanup_type": "audit_logs", "older_than_days": days,
                                           "dry_run": True})  # fmt: skip
        assert count(raw, "audit_logs") == sum(old.values())  # a dry run deletes nothing
        result = await h.run("data_cleanup", {"cleanup_type": "audit_logs",
                                              "older_than_days": days})  # fmt: skip
    assert dry["would_delete"] == result["deleted"] > 0 and dry["deleted"] == 0
    assert count(raw, "audit_logs", before=result["cutoff"]) == 0
    left = {c: count(raw, "audit_logs", c) for c in old}
    assert all(0 < left[c] < old[c] for c in old)  # both companies lost their old rows
    assert sum(old.values()) - sum(left.values()) == result["deleted"]
    assert result["company_id"] is None and result["batch_size"] == 5000


async def test_each_batch_is_committed_so_a_cancelled_job_keeps_its_work(
    config: Config, url: str, tmp_path: Path
) -> None:
    raw = Raw(url)
    company = company_ids(url)[0]
    before = count(raw, "gps_tracks", company)
    # 0.3 s between batches: the job is cancelled during the third pause.
    cfg = data_config(config, url, cleanup_batch=BATCH, cleanup_pause=0.3)
    data: dict[str, Any] = {"cleanup_type": "gps_tracks", "older_than_days": days_into_seed(0.5)}
    with Harness(handlers(cfg), tmp_path=tmp_path, config=cfg) as h:
        with trio.move_on_after(0.75):
            await h.run("data_cleanup", data, company_id=company)
        cancelled_after = count(raw, "gps_tracks", company)
        gone = before - cancelled_after
        assert gone > 0 and gone % BATCH == 0  # whole batches only (about three)
        early = datetime.now(UTC) - timedelta(days=data["older_than_days"], minutes=1)
        assert count(raw, "gps_tracks", company, before=early.strftime("%Y-%m-%dT%H:%M:%SZ"))
        cfg_fast = data_config(config, url, cleanup_batch=5000, cleanup_pause=0.0)
    with Harness(handlers(cfg_fast), tmp_path=tmp_path / "again", config=cfg_fast) as h:
        rest = await h.run("data_cleanup", data, company_id=company)  # a retry carries on
    assert count(raw, "gps_tracks", company, before=rest["cutoff"]) == 0
    assert rest["deleted"] == cancelled_after - count(raw, "gps_tracks", company)


async def test_the_floor_comes_from_the_config(config: Config, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    source = FleetData(url)  # the test's own database: the tables, no rows
    db = source.connect()
    source.create_schema(db)
    db.close()
    cfg = data_config(config, url, cleanup_floor_days=30)
    with Harness(handlers(cfg), tmp_path=tmp_path, config=cfg) as h:
        with pytest.raises(ValidationError) as info:
            await h.run("data_cleanup", {"cleanup_type": "gps_tracks", "older_than_days": 29})
        ok = await h.run("data_cleanup", {"cleanup_type": "gps_tracks", "older_than_days": 30})
    assert str(info.value) == (
        "data.older_than_days: must be at least 30 days ([data] cleanup_floor_days), got 29"
    )
    assert ok["deleted"] == 0  # a new, empty database: nothing to do, no error


BAD: list[tuple[dict[str, Any], str]] = [
    ({"cleanup_type": "gps_tracks", "older_than_days": 3},
     "data.older_than_days: must be at least 7 days ([data] cleanup_floor_days), got 3"),
    ({"cleanup_type": "gps_tracks", "older_than_days": 0},
     "data.older_than_days: must be at least 1"),
    ({"cleanup_type": "trips", "older_than_days": 90}, "data.cleanup_type: must be one of"),
    ({"cleanup_type": "gps_tracks"}, "data.older_than_days: is required"),
    ({"cleanup_type": "gps_tracks", "older_than_days": "90"},
     "data.older_than_days: must be an integer"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "error"), BAD)
async def test_bad_data_and_the_default_floor_are_refused_at_enqueue(
    engine: Engine, data: dict[str, Any], error: str
) -> None:
    await assert_refused_at_enqueue(engine, "data_cleanup", data, error)
