"""maintenance_reminder: the due rule (sans-IO), and on seeded SQLite and PostgreSQL fleets
the reminders it creates, exactly once per due service, and the e-mails it enqueues to
the company's fleet managers, never twice: not on a second run, not on a retry after a
crash between enqueueing and recording (two jobs racing: test_fleetdata_daemon.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fleetd_plugins.fleetdata.due import service_due
from fleetdata_db import (
    BACKENDS,
    Raw,
    assert_refused_at_enqueue,
    company_ids,
    data_config,
    drop,
    fresh_url,
    handlers,
)

from fleetd import PermanentError
from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.testing import Harness

TODAY = date(2024, 6, 1)


# -- the due rule ------------------------------------------------------------------------


def due(**kw: Any) -> Any:
    base: dict[str, Any] = dict(
        odometer_km=50_000.0, interval_km=15_000, interval_days=365,
        last_date=date(2024, 1, 1), last_km=40_000.0, in_service=date(2020, 1, 1), today=TODAY,
    )  # fmt: skip
    return service_due(**(base | kw))


def test_due_by_distance_by_days_both_or_not() -> None:
    ok = due()
    assert (ok.due, ok.due_odometer_km, ok.due_date) == (False, 55_000, date(2024, 12, 31))
    assert (ok.km_left, ok.days_left) == (5_000.0, 213)
    assert due(odometer_km=55_000.0).reason == "distance"  # reached exactly
    assert due(odometer_km=56_000.0).km_left == -1_000.0  # overdue shows negative
    assert due(today=date(2024, 12, 31)).reason == "days"
    assert due(odometer_km=60_000.0, today=date(2025, 2, 1)).reason == "distance_and_days"


def test_due_windows_flag_a_vehicle_early() -> None:
    assert due(odometer_km=54_600.0).due is False
    assert due(odometer_km=54_600.0, within_km=500).reason == "distance"
    assert due(today=date(2024, 12, 25), within_days=7).reason == "days"


def test_without_a_service_on_record_it_counts_from_entering_service() -> None:
    never = due(last_date=None, last_km=None, odometer_km=9_000.0)
    assert (never.due_odometer_km, never.due_date) == (15_000, date(2020, 12, 31))
    assert never.reason == "days"


# -- on the fleet databases ---------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    url = fresh_url(request.param, tmp_path)
    yield url
    drop(url)


def vehicles_of(raw: Raw, company: str) -> list[tuple[Any, ...]]:
    return raw.rows(
        f"SELECT {raw.text('id')}, odometer_km, service_interval_km, service_interval_days, "
        f"{raw.text('in_service_date')}, status FROM vehicles WHERE company_id = ? ORDER BY id",
        company,
    )


def expected_due(raw: Raw, company: str) -> set[str]:
    """Due vehicles by the definition, from plain SQL: the next routine_check at the last
    one + the interval, flagged 500 km or 7 days early, active vehicles only."""
    today = datetime.now(UTC).date()
    out = set()
    for vid, odo, ikm, idays, _in_service, status in vehicles_of(raw, company):
        last_day, last_km = raw.rows(
            f"SELECT {raw.text('service_date')}, odometer_km FROM maintenance_logs "
            "WHERE vehicle_id = ? AND maintenance_type = 'routine_check' "
            "ORDER BY service_date DESC, odometer_km DESC LIMIT 1", vid,
        )[0]  # fmt: skip
        by_km = odo >= round(last_km + ikm) - 500
        by_days = today >= date.fromisoformat(last_day) + timedelta(days=idays - 7)
        if status == "active" and (by_km or by_days):
            out.add(vid)
    return out


def make_due(raw: Raw, company: str) -> list[str]:
    """Push two active vehicles past their service point: one by distance, one by days."""
    active = [v[0] for v in vehicles_of(raw, company) if v[5] == "active"]
    raw.execute("UPDATE vehicles SET odometer_km = odometer_km + 200000 WHERE id = ?", active[0])
    raw.execute("UPDATE vehicles SET status = 'active' WHERE id = ?", active[1])
    raw.execute(
        "UPDATE maintenance_logs SET service_date = ? WHERE vehicle_id = ?",
        (datetime.now(UTC).date() - timedelta(days=800)).isoformat(), active[1],
    )  # fmt: skip
    return active[:2]


def managers_of(raw: Raw, company: str) -> list[tuple[str, str]]:
    rows = raw.rows(
        "SELECT id, email FROM drivers WHERE company_id = ? AND role = 'fleet_manager' "
        "AND status = 'active'", company,
    )  # fmt: skip
    return sorted((str(i), e) for i, e in rows)


async def test_every_due_vehicle_of_the_company_gets_one_reminder_and_its_emails(
    config: Config, url: str, tmp_path: Path
) -> None:
    raw = Raw(url)
    company, other = company_ids(url)
    pushed = make_due(raw, company)
    expected = expected_due(raw, company)
    assert set(pushed) <= expected
    managers = managers_of(raw, company)
    assert len(managers) == 2
    cfg = data_config(config, url)
    with Harness(handlers(cfg), tmp_path=tmp_path, config=cfg) as h:
        result = await h.run("maintenance_reminder", {}, company_id=company)
        mails = h.enqueued("email_notification")
    assert result["due"] == result["created"] == len(expected)
    assert {r["vehicle_id"] for r in result["reminders"]} == expected
    assert result["vehicles_checked"] == sum(
        1 for v in vehicles_of(raw, company) if v[5] == "active"
    )
    stored = raw.rows(
        f"SELECT {raw.text('vehicle_id')}, {raw.text('company_id')}, reason, emails, "
        "notified_at FROM maintenance_reminders"
    )
    assert {r[0] for r in stored} == expected and {r[1] for r in stored} == {company}
    assert all(r[3] == 2 and r[4] is not None for r in stored)
    reasons = {r[0]: r[2] for r in stored}
    assert reasons[pushed[0]] in ("distance", "distance_and_days")
    assert reasons[pushed[1]] in ("days", "distance_and_days")
    # One e-mail per reminder and manager, to the company's managers, keyed by both.
    assert result["emails"] == len(mails) == len(expected) * len(managers)
    assert {m.company_id for m in mails} == {company}
    assert {m.data["to"].split("<")[1].rstrip(">") for m in mails} == {e for _, e in managers}
    keys = {m.idempotency_key for m in mails}
    assert len(keys) == len(mails)
    assert all(k and k.startswith("maintenance-reminder:") for k in keys)
    plates = dict(raw.rows(f"SELECT {raw.text('id')}, plate_number FROM vehicles"))
    vehicle_of = {r["id"]: r["vehicle_id"] for r in result["reminders"]}
    for m in mails:
        reminder = (m.idempotency_key or "").split(":")[1]
        plate = plates[vehicle_of[reminder]]
        assert m.data["subject"].startswith("Maintenance due: ") and plate in m.data["subject"]
        assert f"{plate}) is due for routine check" in m.data["body"]
    assert raw.value("SELECT COUNT(*) FROM maintenance_reminders WHERE company_id = ?", other) == 0


async def test_a_second_run_and_a_retry_create_and_send_nothing_new(
    config: Config, url: str, tmp_path: Path
) -> None:
    raw = Raw(url)
    company = company_ids(url)[0]
    make_due(raw, company)
    cfg = data_config(config, url)
    with Harness(handlers(cfg), tmp_path=tmp_path, config=cfg) as h:
        first = await h.run("maintenance_reminder", {}, company_id=company)
        first_job = h.last_job_id
        mails = len(h.enqueued("email_notification"))
        again = await h.run("maintenance_reminder", {}, company_id=company)
        assert (again["created"], again["already_reminded"]) == (0, first["due"])
        assert (again["emails"], again["notified"]) == (0, 0)
        # The crash window: e-mails enqueued, the daemon died before notified_at was
        # written. The retry enqueues again with the same keys: fleetd keeps the first.
        raw.execute("UPDATE maintenance_reminders SET notified_at = NULL, emails = 0")
        retry = await h.rerun(first_job)
        assert retry["notified"] == first["due"] and retry["emails"] == 0
        assert retry["emails_already_enqueued"] == mails
        assert len(h.enqueued("email_notification")) == mails
    assert raw.value("SELECT COUNT(*) FROM maintenance_reminders") == first["due"]
    assert raw.value("SELECT COUNT(*) FROM maintenance_reminders WHERE notified_at IS NULL") == 0


async def test_a_serviced_vehicle_gets_a_new_reminder_at_its_next_due_point(
    config: Config, url: str, tmp_path: Path
) -> None:
    raw = Raw(url)
    company = company_ids(url)[0]
    vehicle = make_due(raw, company)[0]
    cfg = data_config(config, url)
    today = datetime.now(UTC).date().isoformat()
    with Harness(handlers(cfg), tmp_path=tmp_path, config=cfg) as h:
        one = await h.run("maintenance_reminder", {"vehicle_id": vehicle}, company_id=company)
        odo = raw.value("SELECT odometer_km FROM maintenance_reminders")
        raw.execute(
            "INSERT INTO maintenance_logs (id, company_id, vehicle_id, maintenance_type, "
            "service_date, odometer_km, cost) VALUES (?, ?, ?, 'routine_check', ?, ?, 300)",
            "00000000-0000-4000-8000-000000000001", company, vehicle, today, odo,
        )  # fmt: skip
        serviced = await h.run("maintenance_reminder", {}, company_id=company)
        assert vehicle not in {r["vehicle_id"] for r in serviced["reminders"]}
        raw.execute("UPDATE vehicles SET odometer_km = odometer_km + 100000 WHERE id = ?", vehicle)
        later = await h.run("maintenance_reminder", {"vehicle_id": vehicle}, company_id=company)
    [first_due] = one["reminders"]
    [next_due] = later["reminders"]
    assert later["created"] == 1 and next_due["id"] != first_due["id"]
    assert next_due["due_date"] > first_due["due_date"]
    count = "SELECT COUNT(*) FROM maintenance_reminders WHERE vehicle_id = ?"
    assert raw.value(count, vehicle) == 2


async def test_one_vehicle_on_request_even_when_not_due(
    config: Config, url: str, tmp_path: Path
) -> None:
    raw = Raw(url)
    company, other = company_ids(url)
    cfg = data_config(config, url)
    not_due = [v[0] for v in vehicles_of(raw, company) if v[5] == "active"
               and v[0] not in expected_due(raw, company)]  # fmt: skip
    foreign = vehicles_of(raw, other)[0][0]
    with Harness(handlers(cfg), tmp_path=tmp_path, config=cfg) as h:
        result = await h.run(
            "maintenance_reminder", {"vehicle_id": not_due[0].upper()}, company_id=company
        )
        # Another type has its own due point: with no brake inspection on record, it
        # counts from the day the vehicle entered service, so it is overdue.
        brakes = await h.run(
            "maintenance_reminder",
            {"vehicle_id": not_due[0], "maintenance_type": "brake_inspection"},
            company_id=company,
        )
        with pytest.raises(PermanentError, match=f"vehicle {foreign} not found in company"):
            await h.run("maintenance_reminder", {"vehicle_id": foreign}, company_id=company)
    [reminder] = result["reminders"]
    assert (reminder["vehicle_id"], reminder["reason"]) == (not_due[0], "requested")
    assert reminder["km_left"] > 500 and result["emails"] == 2
    [other_type] = brakes["reminders"]
    assert brakes["maintenance_type"] == "brake_inspection" and brakes["created"] == 1
    assert other_type["id"] != reminder["id"]
    types = raw.rows("SELECT maintenance_type FROM maintenance_reminders ORDER BY 1")
    assert [t for (t,) in types] == ["brake_inspection", "routine_check"]


async def test_a_manager_with_a_broken_address_does_not_stop_the_others(
    config: Config, url: str, tmp_path: Path
) -> None:
    raw = Raw(url)
    company = company_ids(url)[0]
    make_due(raw, company)
    (broken, _), (fine_id, fine) = managers_of(raw, company)
    raw.execute("UPDATE drivers SET email = 'dispatch at example' WHERE id = ?", broken)
    cfg = data_config(config, url)
    with Harness(handlers(cfg), tmp_path=tmp_path, config=cfg) as h:
        result = await h.run("maintenance_reminder", {}, company_id=company)
        mails = h.enqueued("email_notification")
    assert result["due"] >= 2 and result["notified"] == result["due"]
    assert result["skipped_recipients"] == result["due"] and result["emails"] == len(mails)
    assert len({m.data["to"] for m in mails}) == 1  # the one manager with a good address
    assert all(fine in m.data["to"] and fine_id in (m.idempotency_key or "") for m in mails)


BAD: list[tuple[dict[str, Any], str]] = [
    ({"vehicle_id": "truck-7"}, "data.vehicle_id: 'truck-7' is not a valid UUID"),
    ({"maintenance_type": "car_wash"}, "data.maintenance_type: must be one of"),
    ({"within_days": -1}, "data.within_days: must be at least 0"),
]


@pytest.mark.parametrize(("data", "error"), BAD)
async def test_bad_data_is_refused_at_enqueue(
    engine: Engine, data: dict[str, Any], error: str
) -> None:
    await assert_refused_at_enqueue(engine, "maintenance_reminder", data, error)
