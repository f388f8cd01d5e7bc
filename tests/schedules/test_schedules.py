"""fleetd.schedules: the ScheduledJob model, create/update validation, JSON shapes."""

from __future__ import annotations

from typing import Any

import pytest
from fleetd_plugins.fleetdata.plugin import DEFAULT_SCHEDULES

from fleetd.jobs.model import ValidationError
from fleetd.schedules.cadence import MisfirePolicy
from fleetd.schedules.model import (
    ScheduledJob,
    ScheduleSpec,
    default_id,
    list_body,
    name_key,
    occurrence_tags,
    scheduled_job_body,
    stats_body,
)

BODY: dict[str, Any] = {
    "name": "Daily Report Generation",
    "job_type": "report_generation",
    "data": {"report_type": "fleet_summary", "start_date": "2024-01-01"},
    "schedule": "@daily",
    "priority": 5,
    "is_active": True,
}


def test_the_spec_create_body() -> None:
    spec = ScheduleSpec.from_dict(BODY)
    assert (spec.name, spec.job_type, spec.schedule, spec.priority) == (
        "Daily Report Generation", "report_generation", "@daily", 5,
    )  # fmt: skip
    assert spec.is_active and spec.data == BODY["data"]
    assert spec.timezone == "UTC" and spec.misfire_policy is MisfirePolicy.RUN_ONCE
    assert spec.id is None


def test_extensions_and_defaults() -> None:
    spec = ScheduleSpec.from_dict(
        {"name": "n", "job_type": "noop", "schedule": "0  9 * * 1-5", "priority": "high",
         "timezone": "Europe/Berlin", "misfire_policy": "skip", "id": "morning.brief-1",
         "company_id": "acme", "user_id": "u1"},
        default_timezone="America/New_York",
    )  # fmt: skip
    assert spec.schedule == "0 9 * * 1-5"  # whitespace normalised
    assert spec.priority == 10 and spec.timezone == "Europe/Berlin"
    assert spec.misfire_policy is MisfirePolicy.SKIP and spec.id == "morning.brief-1"
    assert ScheduleSpec.from_dict(BODY, default_timezone="Asia/Tokyo").timezone == "Asia/Tokyo"


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"name": ""}, "name", "is required"),
        ({"name": "a\nb"}, "name", "control characters"),
        ({"name": "x" * 201}, "name", "at most 200"),
        ({"job_type": None}, "job_type", "is required"),
        ({"schedule": "61 * * * *"}, "schedule", "61 is out of range 0-59"),
        ({"schedule": "@reboot"}, "schedule", "@reboot is not supported"),
        ({"schedule": "0s"}, "schedule", "shorter than 1s"),
        ({"schedule": None}, "schedule", "is required"),
        ({"timezone": "Moon/Tranquility"}, "timezone", "unknown time zone"),
        ({"data": [1]}, "data", "JSON object"),
        ({"priority": 21}, "priority", "from 1 to 20"),
        ({"is_active": "yes"}, "is_active", "true or false"),
        ({"misfire_policy": "catch_up"}, "misfire_policy", "run_once or skip"),
        ({"id": "has space"}, "id", "A-Z a-z 0-9"),
        ({"id": "x" * 65}, "id", "A-Z a-z 0-9"),
        ({"colour": "red"}, "colour", "unknown field"),
    ],
)
def test_create_errors_name_the_field(change: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        ScheduleSpec.from_dict({**BODY, **change})
    assert info.value.field == field
    assert message in info.value.message


def test_every_problem_is_reported_at_once() -> None:
    bad = {**BODY, "name": "", "priority": 0, "timezone": "Nowhere/Land", "colour": "red"}
    with pytest.raises(ValidationError) as info:
        ScheduleSpec.from_dict(bad)
    assert [e.field for e in info.value.errors] == ["name", "priority", "timezone", "colour"]
    spec = ScheduleSpec.from_dict({**BODY, "id": "r1"})
    with pytest.raises(ValidationError) as info:
        spec.updated({"id": "r2", "is_active": "no", "schedule": "@sometimes"})
    assert [e.field for e in info.value.errors] == ["id", "schedule", "is_active"]


def test_partial_update() -> None:
    spec = ScheduleSpec.from_dict({**BODY, "id": "r1"})
    changed = spec.updated({"schedule": "30m", "data": {"report_type": "maintenance"}})
    assert changed.schedule == "30m" and changed.data == {"report_type": "maintenance"}
    assert changed.name == spec.name and changed.id == "r1"
    assert changed.timing_differs(spec) and not spec.updated({"name": "x"}).timing_differs(spec)
    assert spec.updated({"timezone": "Europe/Berlin"}).timing_differs(spec)
    with pytest.raises(ValidationError, match="cannot be changed"):
        spec.updated({"id": "other"})
    with pytest.raises(ValidationError, match="unknown field"):
        spec.updated({"created_at": "2024-01-01T00:00:00Z"})
    # A new time zone is checked with the current expression (and vice versa).
    with pytest.raises(ValidationError) as info:
        spec.updated({"timezone": "Nowhere/Land"})
    assert info.value.field == "timezone"


HASH = {
    "id": "sch_1", "name": "Nightly", "job_type": "noop", "data": '{"a":1}',
    "schedule": "0 2 * * *", "priority": "5", "is_active": "1", "next_run": "1718409600000",
    "created_at": "1718323200000", "updated_at": "1718323300000", "last_run": "1718323200500",
    "company_id": "acme", "user_id": "", "timezone": "Europe/Berlin",
    "misfire_policy": "skip", "runs": "3", "missed": "2", "last_job_id": "job_X",
    "anchor": "1718323200000", "rev": "7", "name_key": "Nightly\\nacme",
}  # fmt: skip


def test_json_shape_is_the_spec_struct_plus_extensions() -> None:
    job = ScheduledJob.from_hash(HASH)
    d = job.to_dict()
    assert list(d) == [
        "id", "name", "job_type", "data", "schedule", "priority", "is_active", "last_run",
        "next_run", "company_id", "created_at", "updated_at", "timezone", "misfire_policy",
        "runs", "missed", "last_job_id",
    ]  # fmt: skip
    assert d["next_run"] == "2024-06-15T00:00:00.000Z"
    assert d["last_run"] == "2024-06-14T00:00:00.500Z"
    assert d["data"] == {"a": 1} and d["is_active"] is True and d["runs"] == 3
    assert job.rev == 7 and job.anchor_ms == 1718323200000


def test_paused_schedule_has_no_next_run_and_never_run_has_no_last_run() -> None:
    h = {k: v for k, v in HASH.items() if k not in ("next_run", "last_run", "company_id")}
    d = ScheduledJob.from_hash({**h, "is_active": "0"}).to_dict()
    assert d["next_run"] is None and "last_run" not in d and "company_id" not in d
    assert d["is_active"] is False


def test_spec_round_trip_through_the_model() -> None:
    job = ScheduledJob.from_hash(HASH)
    spec = job.spec()
    assert (spec.id, spec.timezone, spec.misfire_policy, spec.company_id) == (
        "sch_1", "Europe/Berlin", MisfirePolicy.SKIP, "acme",
    )  # fmt: skip
    fields = dict(spec.hash_fields())
    assert fields["data"] == '{"a":1}' and fields["is_active"] == 1 and fields["user_id"] == ""
    assert job.cadence().next_after_ms(1718323200000) == 1718409600000  # 02:00 CEST


def test_bodies() -> None:
    job = ScheduledJob.from_hash(HASH)
    assert scheduled_job_body(job) == {"scheduled_job": job.to_dict()}
    assert list_body([job, job], 2, "5.sch_1") == {
        "scheduled_jobs": [job.to_dict()] * 2,
        "count": 2,
        "limit": 2,
        "next_cursor": "5.sch_1",
    }
    stats = {"total_scheduled_jobs": 1, "active_jobs": 1, "inactive_jobs": 0,
             "next_run": None, "missed_executions": 0}  # fmt: skip
    assert stats_body(stats) == {"scheduler_stats": stats}


def test_occurrence_tags_and_idempotency_key() -> None:
    tags, key = occurrence_tags("sch_1", 1718409600000)
    assert tags == ["schedule:sch_1", "occurrence:2024-06-15T00:00:00.000Z"]
    assert key == "schedule:sch_1:2024-06-15T00:00:00.000Z"


def test_defaults_are_the_spec_ones_with_stable_ids() -> None:
    assert [(d["job_type"], d["schedule"]) for d in DEFAULT_SCHEDULES] == [
        ("data_cleanup", "@daily"), ("maintenance_reminder", "@weekly"),
        ("report_generation", "@monthly"),
    ]  # fmt: skip
    assert DEFAULT_SCHEDULES[0]["data"] == {"cleanup_type": "gps_tracks", "older_than_days": 90}
    assert [default_id(d["name"]) for d in DEFAULT_SCHEDULES] == [
        "daily-data-cleanup", "weekly-maintenance-check", "monthly-fleet-report",
    ]  # fmt: skip
    for d in DEFAULT_SCHEDULES:
        ScheduleSpec.from_dict({**d, "id": default_id(d["name"])})
    assert default_id("  Ünïcode!! report  ") == "n-code-report"
    assert default_id("!!!") == "default"


def test_names_are_unique_per_company() -> None:
    assert name_key("Nightly", None) == name_key("Nightly", "") != name_key("Nightly", "acme")
