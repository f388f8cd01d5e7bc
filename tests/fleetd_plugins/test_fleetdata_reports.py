"""report_generation on seeded SQLite and PostgreSQL fleets: every figure checked against
independent SQL (plain sqlite3/psycopg, simple aggregates), company scoping, the three
formats read back with json, csv and openpyxl, and bad data refused at enqueue."""

from __future__ import annotations

import csv
import json
from datetime import UTC, date, datetime, timedelta
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
from fleetd.jobs.model import ValidationError
from fleetd.testing import Harness


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest) -> str:
    return shared_url(request.param)


async def report(
    config: Config, url: str, tmp_path: Path, data: dict[str, Any], company: str | None
) -> dict[str, Any]:
    cfg = data_config(config, url)
    with Harness(handlers(cfg), tmp_path=tmp_path, config=cfg) as h:
        return await h.run("report_generation", data, company_id=company)


def artifact(result: dict[str, Any]) -> Path:
    [a] = result["artifacts"]
    assert a["name"] == result["file"]
    return Path(a["path"])


def approx(value: float) -> Any:
    return pytest.approx(value, abs=0.011)


# -- figures ---------------------------------------------------------------------------


async def test_fleet_summary_figures(config: Config, url: str, tmp_path: Path) -> None:
    raw = Raw(url)
    company = company_ids(url)[0]
    start, end = period_inside()
    lo, hi = bounds(start, end)
    result = await report(
        config, url, tmp_path,
        {"report_type": "fleet_summary", "start_date": start, "end_date": end}, company,
    )  # fmt: skip
    s = result["summary"]
    trips, km, secs, fuel = raw.rows(
        "SELECT COUNT(*), SUM(distance_km), SUM(duration_s), SUM(fuel_used_l) FROM trips "
        "WHERE company_id = ? AND started_at >= ? AND started_at < ?", company, lo, hi,
    )[0]  # fmt: skip
    assert trips > 50  # the period has real content
    assert s["trips"] == trips
    assert s["distance_km"] == approx(km)
    assert s["driving_hours"] == approx(secs / 3600)
    assert s["fuel_used_l"] == approx(fuel)
    assert s["avg_trip_km"] == approx(km / trips)
    assert s["l_per_100km"] == approx(fuel / km * 100)
    assert s["vehicles"] == raw.value("SELECT COUNT(*) FROM vehicles WHERE company_id = ?", company)
    active = raw.value(
        "SELECT COUNT(*) FROM vehicles WHERE company_id = ? AND status = 'active'", company
    )
    used = raw.value(
        "SELECT COUNT(DISTINCT vehicle_id) FROM trips WHERE company_id = ? AND started_at >= ? "
        "AND started_at < ?", company, lo, hi,
    )  # fmt: skip
    assert (s["active_vehicles"], s["vehicles_used"]) == (active, used)
    assert s["utilization_pct"] == pytest.approx(used / active * 100, abs=0.05)
    fuel_cost = float(raw.value(
        "SELECT SUM(total_cost) FROM fuel_logs WHERE company_id = ? AND filled_at >= ? "
        "AND filled_at < ?", company, lo, hi,
    ))  # fmt: skip
    maint = float(raw.value(
        "SELECT COALESCE(SUM(cost), 0) FROM maintenance_logs WHERE company_id = ? "
        "AND service_date >= ? AND service_date <= ?", company, start, end,
    ))  # fmt: skip
    assert s["fuel_cost"] == approx(fuel_cost)
    assert s["maintenance_cost"] == approx(maint)
    assert s["cost_per_km"] == pytest.approx((fuel_cost + maint) / km, abs=0.001)
    assert result["period"] == {"start_date": start, "end_date": end}
    assert result["company_id"] == company

    # The JSON artifact: one row per vehicle of the company, trips per vehicle right.
    doc = json.loads(artifact(result).read_text())
    assert doc["summary"] == s and doc["report_type"] == "fleet_summary"
    per_vehicle = dict(raw.rows(
        f"SELECT {raw.text('vehicle_id')}, COUNT(*) FROM trips WHERE company_id = ? "
        "AND started_at >= ? AND started_at < ? GROUP BY vehicle_id", company, lo, hi,
    ))  # fmt: skip
    assert len(doc["rows"]) == s["vehicles"] == result["rows"]
    assert {r["vehicle_id"]: r["trips"] for r in doc["rows"] if r["trips"]} == per_vehicle
    assert {r["company_id"] for r in doc["rows"]} == {company}


async def test_driver_performance_figures(config: Config, url: str, tmp_path: Path) -> None:
    raw = Raw(url)
    company = company_ids(url)[1]
    start, end = period_inside()
    lo, hi = bounds(start, end)
    result = await report(
        config, url, tmp_path,
        {"report_type": "driver_performance", "start_date": start, "end_date": end}, company,
    )  # fmt: skip
    s = result["summary"]
    by_type = dict(raw.rows(
        "SELECT e.event_type, COUNT(*) FROM driver_events e JOIN drivers d ON d.id = e.driver_id "
        "WHERE e.company_id = ? AND e.occurred_at >= ? AND e.occurred_at < ? "
        "AND d.role = 'driver' GROUP BY e.event_type", company, lo, hi,
    ))  # fmt: skip
    assert sum(by_type.values()) > 10
    assert s["events_by_type"] == {t: by_type.get(t, 0) for t in s["events_by_type"]}
    assert s["events"] == sum(by_type.values())
    assert s["drivers"] == raw.value(
        "SELECT COUNT(*) FROM drivers WHERE company_id = ? AND role = 'driver'", company
    )
    # Each driver's score from the definition: 100 - 10 x weighted events per 100 km.
    km = dict(raw.rows(
        f"SELECT {raw.text('driver_id')}, SUM(distance_km) FROM trips WHERE company_id = ? "
        "AND started_at >= ? AND started_at < ? GROUP BY driver_id", company, lo, hi,
    ))  # fmt: skip
    weighted: dict[str, int] = {}
    for driver, kind, n in raw.rows(
        f"SELECT {raw.text('driver_id')}, event_type, COUNT(*) FROM driver_events "
        "WHERE company_id = ? AND occurred_at >= ? AND occurred_at < ? "
        "GROUP BY driver_id, event_type", company, lo, hi,
    ):  # fmt: skip
        weighted[driver] = weighted.get(driver, 0) + n * (2 if kind == "speeding" else 1)
    scores = {d: max(0.0, 100 - 10 * weighted.get(d, 0) / k * 100) for d, k in km.items() if k}
    assert s["active_drivers"] == len(scores)
    assert s["avg_score"] == pytest.approx(sum(scores.values()) / len(scores), abs=0.06)
    best = max(scores, key=lambda d: (round(scores[d], 1), d))
    assert s["best_driver"]["driver_id"] == best
    doc = json.loads(artifact(result).read_text())
    for row in doc["rows"]:
        if row["driver_id"] in scores:
            assert row["score"] == pytest.approx(scores[row["driver_id"]], abs=0.051)
        else:
            assert row["score"] is None and row["trips"] == 0


async def test_fuel_consumption_figures(config: Config, url: str, tmp_path: Path) -> None:
    raw = Raw(url)
    company = company_ids(url)[0]
    start, end = period_inside()
    lo, hi = bounds(start, end)
    result = await report(
        config, url, tmp_path,
        {"report_type": "fuel_consumption", "start_date": start, "end_date": end,
         "format": "csv"}, company,
    )  # fmt: skip
    s = result["summary"]
    fills, liters, cost = raw.rows(
        "SELECT COUNT(*), SUM(liters), SUM(total_cost) FROM fuel_logs WHERE company_id = ? "
        "AND filled_at >= ? AND filled_at < ?", company, lo, hi,
    )[0]  # fmt: skip
    km, fuel = raw.rows(
        "SELECT SUM(distance_km), SUM(fuel_used_l) FROM trips WHERE company_id = ? "
        "AND started_at >= ? AND started_at < ?", company, lo, hi,
    )[0]  # fmt: skip
    assert fills > 3
    assert s["fill_ups"] == fills
    assert s["liters"] == approx(liters)
    assert s["fuel_cost"] == approx(float(cost))
    assert s["avg_price_per_liter"] == pytest.approx(float(cost) / liters, abs=0.001)
    assert s["l_per_100km"] == approx(fuel / km * 100)
    assert s["cost_per_km"] == pytest.approx(float(cost) / km, abs=0.001)
    # CSV: the csv module reads the header and one row per vehicle.
    with artifact(result).open(newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == s["vehicles"] == result["rows"]
    assert sum(int(r["fill_ups"]) for r in table) == fills
    assert sum(float(r["liters"] or 0) for r in table) == pytest.approx(liters, abs=0.05)


async def test_maintenance_figures(config: Config, url: str, tmp_path: Path) -> None:
    raw = Raw(url)
    company = company_ids(url)[1]
    # A year (the longest range allowed): services before the seeded days count too.
    end = period_inside()[1]
    start = (date.fromisoformat(end) - timedelta(days=365)).isoformat()
    result = await report(
        config, url, tmp_path,
        {"report_type": "maintenance", "start_date": start, "end_date": end, "format": "xlsx"},
        company,
    )  # fmt: skip
    s = result["summary"]
    services, cost = raw.rows(
        "SELECT COUNT(*), SUM(cost) FROM maintenance_logs WHERE company_id = ? "
        "AND service_date >= ? AND service_date <= ?", company, start, end,
    )[0]  # fmt: skip
    assert services >= 4
    assert (s["services"], s["cost"]) == (services, approx(float(cost)))
    by_type = {t: (n, float(c)) for t, n, c in raw.rows(
        "SELECT maintenance_type, COUNT(*), SUM(cost) FROM maintenance_logs WHERE company_id = ? "
        "AND service_date >= ? AND service_date <= ? GROUP BY maintenance_type",
        company, start, end,
    )}  # fmt: skip
    assert {t: (v["services"], v["cost"]) for t, v in s["by_type"].items()} == {
        t: (n, approx(c)) for t, (n, c) in by_type.items()
    }
    # Due vehicles, from the definition: next routine_check at last + interval (km or
    # days), last = the latest routine_check on record.
    today = datetime.now(UTC).date()
    due = 0
    for vid, odo, ikm, idays, status in raw.rows(
        f"SELECT {raw.text('id')}, odometer_km, service_interval_km, service_interval_days, "
        "status FROM vehicles WHERE company_id = ?", company,
    ):  # fmt: skip
        last_day, last_km = raw.rows(
            f"SELECT {raw.text('service_date')}, odometer_km FROM maintenance_logs "
            "WHERE vehicle_id = ? AND maintenance_type = 'routine_check' "
            "ORDER BY service_date DESC LIMIT 1", vid,
        )[0]  # fmt: skip
        overdue = odo >= last_km + ikm or today >= date.fromisoformat(last_day) + timedelta(idays)
        due += overdue and status == "active"
    assert s["vehicles_due"] == due
    # XLSX: openpyxl opens it; Summary, the vehicles and the by-type sheet.
    book = openpyxl.load_workbook(artifact(result), read_only=True)
    assert book.sheetnames == ["Summary", "Vehicles", "By type"]
    rows = list(book["Vehicles"].iter_rows(values_only=True))
    assert rows[0][:3] == ("vehicle_id", "company_id", "name")
    assert len(rows) - 1 == s["vehicles"]
    assert isinstance(rows[1][rows[0].index("next_due_date")], datetime)
    summary: dict[Any, Any] = {k: v for k, v in book["Summary"].iter_rows(values_only=True)}
    assert summary["services"] == services and summary["company_id"] == company
    assert len(list(book["By type"].iter_rows())) == len(by_type) + 1
    book.close()


async def test_a_report_without_company_spans_all_companies(
    config: Config, url: str, tmp_path: Path
) -> None:
    start, end = period_inside()
    data = {"report_type": "fleet_summary", "start_date": start, "end_date": end}
    everyone = await report(config, url, tmp_path / "all", data, None)
    each = [await report(config, url, tmp_path / c, data, c) for c in company_ids(url)]
    assert everyone["company_id"] is None
    assert everyone["summary"]["trips"] == sum(r["summary"]["trips"] for r in each)
    assert everyone["summary"]["vehicles"] == sum(r["summary"]["vehicles"] for r in each)
    assert each[0]["summary"]["trips"] != each[1]["summary"]["trips"]


async def test_without_dates_the_previous_calendar_month(config: Config, tmp_path: Path) -> None:
    url = shared_url("sqlite")
    result = await report(config, url, tmp_path, {"report_type": "fleet_summary"}, None)
    today = datetime.now(UTC).date()
    last = today.replace(day=1) - timedelta(days=1)
    assert result["period"] == {"start_date": last.replace(day=1).isoformat(),
                                "end_date": last.isoformat()}  # fmt: skip
    assert result["file"] == f"fleet_summary_{last.replace(day=1)}_{last}.json"


async def test_an_unknown_company_id_fails_for_good(config: Config, tmp_path: Path) -> None:
    from fleetd import PermanentError

    with pytest.raises(PermanentError, match="is not a UUID"):
        await report(config, shared_url("sqlite"), tmp_path, {"report_type": "maintenance"}, "acme")


# -- refused at enqueue -----------------------------------------------------------------

BAD: list[tuple[dict[str, Any], str]] = [
    ({"report_type": "weekly_gossip"}, "data.report_type: must be one of 'fleet_summary'"),
    ({"report_type": "maintenance", "format": "pdf"}, "data.format: must be one of 'json'"),
    ({"report_type": "maintenance", "start_date": "2024-02-30", "end_date": "2024-03-01"},
     "data.start_date: '2024-02-30' is not a valid date"),
    ({"report_type": "maintenance", "start_date": "2024-03-05", "end_date": "2024-03-01"},
     "data.end_date: must not be before start_date"),
    ({"report_type": "maintenance", "start_date": "2020-01-01", "end_date": "2024-01-01"},
     "data.end_date: the range covers 1462 days; at most 366"),
    ({"report_type": "maintenance", "start_date": "2024-03-01"},
     "data.end_date: is required with start_date"),
    ({"report_type": "maintenance", "end_date": "03/01/2024"},
     "data.end_date: '03/01/2024' is not a valid date"),
    ({"start_date": "2024-03-01", "end_date": "2024-03-02"}, "data.report_type: is required"),
    ({"report_type": "maintenance", "fromat": "csv"}, "data.fromat: unknown field"),
    # Valid dates that would raise at run time (the midnight after 9999-12-31) or lie
    # beyond fleetd's times: refused at enqueue, not retried in vain.
    ({"report_type": "maintenance", "start_date": "9999-12-31", "end_date": "9999-12-31"},
     "data.start_date: must be from 1970-01-01 to 8999-12-31"),
    ({"report_type": "maintenance", "start_date": "2024-01-01", "end_date": "9999-12-31"},
     "data.end_date: must be from 1970-01-01 to 8999-12-31"),
    ({"report_type": "maintenance", "start_date": "0001-01-01", "end_date": "0001-01-02"},
     "data.start_date: must be from 1970-01-01"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "error"), BAD)
async def test_bad_data_is_refused_at_enqueue_naming_the_field(
    engine: Engine, data: dict[str, Any], error: str
) -> None:
    await assert_refused_at_enqueue(engine, "report_generation", data, error)


async def test_the_span_limit_comes_from_the_config(config: Config, tmp_path: Path) -> None:
    cfg = data_config(config, shared_url("sqlite"), report_max_days=7)
    with Harness(handlers(cfg), tmp_path=tmp_path, config=cfg) as h:
        with pytest.raises(ValidationError, match="at most 7"):
            await h.run("report_generation", {"report_type": "maintenance",
                        "start_date": "2024-01-01", "end_date": "2024-01-08"})  # fmt: skip
        ok = await h.run("report_generation", {"report_type": "maintenance",
                         "start_date": "2024-01-01", "end_date": "2024-01-07"})  # fmt: skip
    assert ok["period"]["end_date"] == "2024-01-07"
    assert ok["summary"]["services"] == 0  # long before the seeded days


@pytest.mark.parametrize("kind", ["fleet_summary", "driver_performance", "fuel_consumption"])
async def test_a_period_without_activity_gives_zeros_not_errors(
    config: Config, tmp_path: Path, kind: str
) -> None:
    url = shared_url("sqlite")
    data = {"report_type": kind, "start_date": "2019-01-01", "end_date": "2019-01-31"}
    result = await report(config, url, tmp_path, data, company_ids(url)[0])
    s = result["summary"]
    assert s["distance_km"] == 0 and s.get("trips", 0) == 0
    assert s.get("l_per_100km") is None and s.get("avg_score") is None
    doc = json.loads(artifact(result).read_text())
    assert len(doc["rows"]) == result["rows"] > 0  # every vehicle or driver, with zeros
