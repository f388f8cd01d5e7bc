"""data_export on seeded SQLite and PostgreSQL fleets: every type in every format, read
back with csv, json and openpyxl and checked against independent counts; date ranges,
company scoping, progress, Excel's row limit, flat memory, and refusals at enqueue."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from fleetdata_db import (
    BACKENDS,
    Raw,
    assert_refused_at_enqueue,
    bounds,
    company_ids,
    data_config,
    handlers,
    period_inside,
    shared_url,
)

from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.testing import Harness

# The headers users get, spelled out here (not taken from the code under test).
HEADERS = {
    "vehicles": ["id", "company_id", "name", "plate_number", "make", "model", "year",
                 "fuel_type", "status", "odometer_km", "service_interval_km",
                 "service_interval_days", "in_service_date", "created_at"],
    "drivers": ["id", "company_id", "name", "email", "phone", "role", "license_number",
                "status", "hired_on", "created_at"],
    "trips": ["id", "company_id", "vehicle_id", "vehicle_name", "plate_number", "driver_id",
              "driver_name", "started_at", "ended_at", "distance_km", "duration_s",
              "fuel_used_l"],
    "gps_tracks": ["id", "company_id", "vehicle_id", "trip_id", "recorded_at", "latitude",
                   "longitude", "speed_kmh", "heading"],
}  # fmt: skip
TIME_COLUMN = {"trips": "started_at", "gps_tracks": "recorded_at"}


async def export(
    config: Config, url: str, tmp_path: Path, data: dict[str, Any], company: str | None,
    **data_settings: Any,
) -> tuple[dict[str, Any], Harness]:  # fmt: skip
    cfg = data_config(config, url, **data_settings)
    with Harness(handlers(cfg), tmp_path=tmp_path, config=cfg) as h:
        result = await h.run("data_export", data, company_id=company)
        return result, h


def read_back(path: Path, fmt: str) -> tuple[list[Any], list[list[Any]]]:
    """(header, rows) of an export file, parsed by the standard tools."""
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8") as f:
            table = list(csv.reader(f))
        return table[0], table[1:]
    if fmt == "json":
        objects = json.loads(path.read_text(encoding="utf-8"))
        assert isinstance(objects, list)
        return (list(objects[0]) if objects else []), [list(o.values()) for o in objects]
    book = openpyxl.load_workbook(path, read_only=True)
    header: list[Any] = []
    rows: list[list[Any]] = []
    for sheet in book.worksheets:
        values = list(sheet.iter_rows(values_only=True))
        header = list(values[0])
        rows += [list(r) for r in values[1:]]
    book.close()
    return header, rows


def expected_count(url: str, kind: str, company: str, lo: str | None, hi: str | None) -> int:
    raw, sql, params = Raw(url), f"SELECT COUNT(*) FROM {kind} WHERE company_id = ?", [company]
    if kind in TIME_COLUMN and lo and hi:
        sql += f" AND {TIME_COLUMN[kind]} >= ? AND {TIME_COLUMN[kind]} < ?"
        params += [lo, hi]
    return int(raw.value(sql, *params))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fmt", ["csv", "json", "xlsx"])
@pytest.mark.parametrize("kind", ["vehicles", "drivers", "trips", "gps_tracks"])
async def test_every_type_in_every_format(
    config: Config, tmp_path: Path, backend: str, fmt: str, kind: str
) -> None:
    url = shared_url(backend)
    company = company_ids(url)[1]
    data: dict[str, Any] = {"export_type": kind, "format": fmt}
    lo = hi = None
    if kind in TIME_COLUMN:
        start, end = period_inside()
        if kind == "gps_tracks":  # a few days: ~5,000 points (XLSX writes ~14,000 rows/s)
            start = (date.fromisoformat(end) - timedelta(days=3)).isoformat()
        data |= {"start_date": start, "end_date": end}
        lo, hi = bounds(start, end)
    result, _ = await export(config, url, tmp_path, data, company)
    [artifact] = result["artifacts"]
    header, rows = read_back(Path(artifact["path"]), fmt)
    count = expected_count(url, kind, company, lo, hi)
    assert count > 0
    assert header == HEADERS[kind] == result["columns"]
    assert len(rows) == result["rows"] == count
    assert {r[1] for r in rows} == {company}  # company_id: only the job's company
    assert artifact["name"] == result["file"] and artifact["size"] > 0
    if kind in TIME_COLUMN:
        at = header.index(TIME_COLUMN[kind])
        times = [r[at] if fmt != "xlsx" else r[at].strftime("%Y-%m-%dT%H:%M:%SZ") for r in rows]
        assert times == sorted(times)  # oldest first
        assert lo is not None and hi is not None and lo <= times[0] and times[-1] < hi
        assert result["period"] == {"start_date": data["start_date"], "end_date": data["end_date"]}
        assert result["file"] == f"{kind}_{data['start_date']}_{data['end_date']}.{fmt}"
    if fmt == "xlsx" and kind in TIME_COLUMN:
        assert isinstance(rows[0][header.index(TIME_COLUMN[kind])], datetime)  # a real date cell


async def test_open_ended_ranges_and_all_companies(config: Config, tmp_path: Path) -> None:
    url = shared_url("postgresql")
    start, end = period_inside()
    raw = Raw(url)
    from_start, _ = await export(config, url, tmp_path / "a",
                                 {"export_type": "trips", "start_date": start}, None)  # fmt: skip
    until_end, _ = await export(config, url, tmp_path / "b",
                                {"export_type": "trips", "end_date": end}, None)  # fmt: skip
    everything, _ = await export(config, url, tmp_path / "c", {"export_type": "trips"}, None)
    lo, hi = bounds(start, end)
    assert from_start["rows"] == raw.value("SELECT COUNT(*) FROM trips WHERE started_at >= ?", lo)
    assert until_end["rows"] == raw.value("SELECT COUNT(*) FROM trips WHERE started_at < ?", hi)
    assert everything["rows"] == raw.value("SELECT COUNT(*) FROM trips")
    assert everything["file"] == "trips_all.csv" and everything["format"] == "csv"
    assert from_start["file"] == f"trips_{start}_end.csv"


async def test_progress_is_published_while_it_runs(config: Config, tmp_path: Path) -> None:
    url = shared_url("sqlite")
    company = company_ids(url)[0]
    cfg = data_config(config, url, export_batch=500)
    with Harness(handlers(cfg), tmp_path=tmp_path, config=cfg) as h:
        result = await h.run("data_export", {"export_type": "gps_tracks", "format": "json"},
                             company_id=company)  # fmt: skip
        progress = h.job(h.last_job_id).progress
    assert progress is not None
    assert progress["percent"] == 100.0
    assert progress["message"] == f"exported {result['rows']:,} rows"


async def test_xlsx_continues_on_a_new_sheet_at_the_row_limit(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fleetd_plugins.fleetdata import formats

    monkeypatch.setattr(formats, "XLSX_MAX_ROWS", 1000)  # Excel's is 1,048,576
    url = shared_url("sqlite")
    company = company_ids(url)[0]
    start, end = period_inside()
    start = (date.fromisoformat(end) - timedelta(days=4)).isoformat()
    data = {"export_type": "gps_tracks", "format": "xlsx", "start_date": start, "end_date": end}
    result, _ = await export(config, url, tmp_path, data, company)
    book = openpyxl.load_workbook(result["artifacts"][0]["path"], read_only=True)
    sizes = [len(list(s.iter_rows(values_only=True))) for s in book.worksheets]
    book.close()
    n = result["rows"]
    assert n > 2000
    assert book.sheetnames[:3] == ["gps_tracks", "gps_tracks (2)", "gps_tracks (3)"]
    assert all(size == 1000 for size in sizes[:-1]) and sum(sizes) - len(sizes) == n


async def test_an_empty_export_is_still_a_valid_file(config: Config, tmp_path: Path) -> None:
    url = shared_url("postgresql")
    for fmt in ("csv", "json", "xlsx"):
        data = {"export_type": "gps_tracks", "format": fmt,
                "start_date": "2019-01-01", "end_date": "2019-01-02"}  # fmt: skip
        result, _ = await export(config, url, tmp_path / fmt, data, None)
        path = Path(result["artifacts"][0]["path"])
        assert result["rows"] == 0
        if fmt == "json":
            assert json.loads(path.read_text()) == []
        else:
            header, rows = read_back(path, fmt)
            assert (header, rows) == (HEADERS["gps_tracks"], [])


async def test_a_retry_rewrites_the_same_file(config: Config, tmp_path: Path) -> None:
    url = shared_url("sqlite")
    cfg = data_config(config, url)
    with Harness(handlers(cfg), tmp_path=tmp_path, config=cfg) as h:
        first = await h.run("data_export", {"export_type": "vehicles", "format": "json"})
        again = await h.rerun(h.last_job_id)
    assert first["artifacts"] == again["artifacts"]  # same path, same bytes (sha256)


# -- memory ----------------------------------------------------------------------------


def _fill(url: str, points: int) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--fill-only", "--points", str(points), "--url", url],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def _measure(url: str, fmt: str, work: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--measure", fmt, "--url", url, "--work", str(work)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


BENCH = Path(__file__).resolve().parents[2] / "bench" / "export_memory.py"
# Points per format: enough that holding the rows would show (a list of 60,000 GPS rows
# alone is ~30 MB in Python, as dicts for JSON far more; an openpyxl workbook not in
# write-only mode holds ~500 bytes per cell, ~90 MB for 20,000 rows), few enough for the
# suite (XLSX writes ~14,000 rows/s). A streaming export grows by ~9 MB (the batch in
# flight, threads, buffers) whatever the size. bench/export_memory.py measures 1,000,000.
MEMORY_POINTS = {"csv": 60_000, "json": 60_000, "xlsx": 20_000}
MEMORY_BOUND_MB = 20


def test_memory_stays_flat_while_streaming(tmp_path: Path) -> None:
    """Peak RSS growth of the export job, measured in a fresh process by the bench
    script (VmHWM reset just before the job): the batch in flight, not the data."""
    urls = {}
    for points in sorted(set(MEMORY_POINTS.values())):
        urls[points] = f"sqlite:///{tmp_path / f'points-{points}.db'}"
        _fill(urls[points], points)
    for fmt, points in MEMORY_POINTS.items():
        m = _measure(urls[points], fmt, tmp_path / fmt)
        assert m["rows"] == points
        assert m["growth_mb"] < MEMORY_BOUND_MB, m


# -- refused at enqueue -----------------------------------------------------------------

BAD: list[tuple[dict[str, Any], str]] = [
    ({"export_type": "trips", "end_date": "9999-12-31"},
     "data.end_date: must be from 1970-01-01 to 8999-12-31"),
    ({"export_type": "invoices"}, "data.export_type: must be one of 'vehicles'"),
    ({"export_type": "trips", "format": "parquet"}, "data.format: must be one of 'json'"),
    ({"export_type": "vehicles", "start_date": "2024-01-01"},
     "data.start_date: applies to the trips and gps_tracks exports only"),
    ({"export_type": "gps_tracks", "start_date": "2024-01-05", "end_date": "2024-01-01"},
     "data.end_date: must not be before start_date"),
    ({"export_type": "gps_tracks", "start_date": "yesterday"},
     "data.start_date: 'yesterday' is not a valid date"),
    ({"format": "csv"}, "data.export_type: is required"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "error"), BAD)
async def test_bad_data_is_refused_at_enqueue_naming_the_field(
    engine: Engine, data: dict[str, Any], error: str
) -> None:
    await assert_refused_at_enqueue(engine, "data_export", data, error)
