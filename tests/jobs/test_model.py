"""fleetd.jobs.model: enqueue validation, the Job JSON shape, job ids and timestamps (no I/O)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from fleetd.jobs.model import (
    MAX_IDEMPOTENCY_KEY_LENGTH,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    MAX_TYPE_LENGTH,
    EnqueueRequest,
    Job,
    JobStatus,
    ValidationError,
    format_ts,
    new_job_id,
    parse_ts,
)

JOB_ID = re.compile(r"^job_[0-9A-HJKMNP-TV-Z]{26}$")
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# 2024-01-15T10:30:00.123Z, the spec's example time plus milliseconds.
T0 = 1_705_314_600_123


def req(**fields: Any) -> EnqueueRequest:
    return EnqueueRequest.from_dict({"type": "noop", **fields})


def rejected(raw: object) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        EnqueueRequest.from_dict(raw)
    return info.value


# --- EnqueueRequest.from_dict ---------------------------------------------------------


def test_minimal_request_takes_defaults() -> None:
    r = req()
    assert r == EnqueueRequest(type="noop")
    assert (r.priority, r.max_retries, r.timeout, r.run_at_ms, r.tags) == (
        None,
        None,
        None,
        None,
        (),
    )


def test_full_request_is_parsed() -> None:
    r = req(
        data={"to": "user@example.com"},
        priority="high",
        max_retries=5,
        timeout="1m30s",
        company_id="c1",
        user_id="u1",
        tags=["test", "notification"],
        run_at="2024-01-15T10:30:00Z",
        idempotency_key="k-1",
    )
    assert r.data == {"to": "user@example.com"}
    assert r.priority == 10
    assert r.max_retries == 5
    assert r.timeout == 90.0
    assert (r.company_id, r.user_id) == ("c1", "u1")
    assert r.tags == ("test", "notification")
    assert r.run_at_ms == 1_705_314_600_000
    assert r.idempotency_key == "k-1"


@pytest.mark.parametrize("name", ["bogus", "job_type", "Priority", "status", "id"])
def test_unknown_field_is_rejected_by_name(name: str) -> None:
    err = rejected({"type": "noop", name: 1})
    assert err.field == name
    assert "unknown field" in err.message


def test_first_unknown_field_in_sorted_order_is_named() -> None:
    assert rejected({"type": "noop", "zzz": 1, "aaa": 2}).field == "aaa"


@pytest.mark.parametrize("raw", [[], "noop", None, 5])
def test_body_must_be_an_object(raw: object) -> None:
    assert rejected(raw).field == "body"


@pytest.mark.parametrize("job_type", [None, "", "   ", 5, ["noop"], "x" * (MAX_TYPE_LENGTH + 1)])
def test_bad_type_is_rejected(job_type: object) -> None:
    raw: dict[str, object] = {"data": {}}
    if job_type is not None:
        raw["type"] = job_type
    assert rejected(raw).field == "type"


def test_type_is_stripped() -> None:
    assert req(type="  noop ").type == "noop"


@pytest.mark.parametrize("data", [[], [1, 2], "text", 5, True])
def test_data_must_be_an_object(data: object) -> None:
    assert rejected({"type": "noop", "data": data}).field == "data"


def test_null_data_is_an_empty_object() -> None:
    assert req(data=None).data == {}


@pytest.mark.parametrize("priority", [0, 21, 99, -1, "urgent", True, False, 5.0, "", "5.5"])
def test_bad_priority_is_rejected(priority: object) -> None:
    assert rejected({"type": "noop", "priority": priority}).field == "priority"


@pytest.mark.parametrize(
    ("priority", "expected"),
    [
        ("low", 1),
        ("normal", 5),
        ("high", 10),
        ("critical", 20),
        ("CRITICAL", 20),
        (" High ", 10),
        ("10", 10),
        ("1", 1),
        ("20", 20),
        (1, 1),
        (7, 7),
        (20, 20),
    ],
)
def test_priority_names_and_numbers_are_accepted(priority: object, expected: int) -> None:
    assert req(priority=priority).priority == expected


@pytest.mark.parametrize("value", ["0", "21", "-1"])
def test_priority_number_strings_out_of_range_are_rejected(value: str) -> None:
    err = rejected({"type": "noop", "priority": value})
    assert err.field == "priority"
    assert "from 1 to 20" in err.message


@pytest.mark.parametrize("value", [-1, 101, 1000, True, False, "3", 1.5, [3]])
def test_bad_max_retries_is_rejected(value: object) -> None:
    assert rejected({"type": "noop", "max_retries": value}).field == "max_retries"


@pytest.mark.parametrize("value", [0, 1, 3, 100])
def test_max_retries_in_range_is_accepted(value: int) -> None:
    assert req(max_retries=value).max_retries == value


@pytest.mark.parametrize(
    ("run_at", "words"),
    [
        ("2024-01-15T10:30:00", "offset"),
        ("2024-01-15", "offset"),
        ("garbage", "ISO 8601"),
        ("", "ISO 8601"),
        ("2024-13-45T10:30:00Z", "ISO 8601"),
        (1_705_314_600, "ISO 8601"),
        (["2024-01-15T10:30:00Z"], "ISO 8601"),
    ],
)
def test_bad_run_at_is_rejected(run_at: object, words: str) -> None:
    err = rejected({"type": "noop", "run_at": run_at})
    assert err.field == "run_at"
    assert words in err.message


@pytest.mark.parametrize(
    ("run_at", "ms"),
    [
        ("2024-01-15T10:30:00Z", 1_705_314_600_000),
        ("2024-01-15T10:30:00z", 1_705_314_600_000),
        ("2024-01-15T10:30:00.123Z", T0),
        ("2024-01-15T11:30:00+01:00", 1_705_314_600_000),
        ("2024-01-15T05:30:00-05:00", 1_705_314_600_000),
    ],
)
def test_run_at_with_offset_is_accepted(run_at: str, ms: int) -> None:
    assert req(run_at=run_at).run_at_ms == ms


@pytest.mark.parametrize(
    "tags",
    [
        "test",
        ["a", ""],
        ["a", 1],
        [None],
        {"a": 1},
        ["x"] * (MAX_TAGS + 1),
        ["x" * (MAX_TAG_LENGTH + 1)],
    ],
)
def test_bad_tags_are_rejected(tags: object) -> None:
    assert rejected({"type": "noop", "tags": tags}).field == "tags"


@pytest.mark.parametrize(
    "tags", [["a"], ["test", "notification"], ["x"] * MAX_TAGS, ["x" * MAX_TAG_LENGTH]]
)
def test_tags_are_kept_in_order(tags: list[str]) -> None:
    assert req(tags=tags).tags == tuple(tags)


@pytest.mark.parametrize("tags", [False, 0, {}])
def test_falsy_non_list_tags_are_rejected(tags: object) -> None:
    assert rejected({"type": "noop", "tags": tags}).field == "tags"


@pytest.mark.parametrize(
    ("timeout", "seconds"),
    [("30s", 30.0), ("500ms", 0.5), ("1m30s", 90.0), ("5m", 300.0), (30, 30.0), (2.5, 2.5)],
)
def test_timeout_as_duration_or_number(timeout: object, seconds: float) -> None:
    r = req(timeout=timeout)
    assert r.timeout == seconds
    assert isinstance(r.timeout, float)


@pytest.mark.parametrize("timeout", [0, -1, -0.5, "0s", "30", "abc", "-5s", True, [30], {}])
def test_bad_timeout_is_rejected(timeout: object) -> None:
    assert rejected({"type": "noop", "timeout": timeout}).field == "timeout"


def test_nan_timeout_is_rejected() -> None:
    # json.loads accepts NaN by default, so an HTTP body can carry one.
    raw = json.loads('{"type": "noop", "timeout": NaN}')
    assert rejected(raw).field == "timeout"


@pytest.mark.parametrize("name", ["company_id", "user_id", "idempotency_key"])
def test_id_fields_must_be_strings(name: str) -> None:
    assert rejected({"type": "noop", name: 5}).field == name


def test_id_field_lengths_are_capped() -> None:
    assert rejected({"type": "noop", "company_id": "c" * 129}).field == "company_id"
    long_key = "k" * (MAX_IDEMPOTENCY_KEY_LENGTH + 1)
    assert rejected({"type": "noop", "idempotency_key": long_key}).field == "idempotency_key"
    key = "k" * MAX_IDEMPOTENCY_KEY_LENGTH
    assert req(idempotency_key=key).idempotency_key == key


def test_empty_id_fields_mean_absent() -> None:
    r = req(company_id="", user_id="", idempotency_key="")
    assert (r.company_id, r.user_id, r.idempotency_key) == (None, None, None)


def test_every_problem_is_reported_at_once_unknown_fields_last() -> None:
    err = rejected({"type": "noop", "zzz": 1, "priority": 0, "tags": "a", "run_at": 5, "aaa": 2})
    assert [e.field for e in err.errors] == ["priority", "tags", "run_at", "aaa", "zzz"]
    assert err.field == "priority" and "from 1 to 20" in err.message
    assert "unknown field" in err.errors[-1].message
    assert str(err) == "; ".join(map(str, err.errors))


def test_wire_names_only() -> None:
    assert rejected({"type": "noop", "run_at_ms": 5}).field == "run_at_ms"
    assert req(run_at="2024-01-15T10:30:00Z").run_at_ms == 1_705_314_600_000


def test_validation_error_carries_field_and_message() -> None:
    err = rejected({"type": "noop", "priority": 0})
    assert str(err) == f"priority: {err.message}"
    assert isinstance(err, ValueError)


# --- Job JSON shape -------------------------------------------------------------------


def full_job() -> Job:
    return Job(
        id=new_job_id(T0),
        type="email_notification",
        data={"to": "user@example.com", "n": [1, 2, {"x": None}]},
        priority=10,
        status=JobStatus.PROCESSING,
        created_at_ms=T0,
        started_at_ms=T0 + 1_000,
        completed_at_ms=T0 + 5_000,
        retry_count=2,
        max_retries=5,
        error="boom",
        result={"processing_time": "5s", "worker_id": 1},
        company_id="c1",
        user_id="u1",
        tags=("test", "notification"),
        run_at_ms=T0 + 60_000,
        timeout=30.0,
        attempts=3,
        stalls=1,
        idempotency_key="k-1",
        worker="host:1:abc",
        progress={"percent": 50, "message": "half"},
        traceback="Traceback ...",
        cancel_requested=True,
        updated_at_ms=T0 + 6_000,
    )


def minimal_job(status: JobStatus = JobStatus.PENDING) -> Job:
    return Job(id=new_job_id(T0), type="noop", data={}, priority=5, status=status, created_at_ms=T0)


def test_full_job_round_trips_through_json() -> None:
    job = full_job()
    assert Job.from_dict(job.to_dict()) == job
    assert Job.from_dict(json.loads(job.to_json())) == job


@pytest.mark.parametrize("status", list(JobStatus))
def test_minimal_job_round_trips_in_every_status(status: JobStatus) -> None:
    job = minimal_job(status)
    assert Job.from_dict(json.loads(job.to_json())) == job


def test_minimal_job_omits_empty_fields() -> None:
    d = minimal_job().to_dict()
    assert d == {
        "id": d["id"],
        "type": "noop",
        "data": {},
        "priority": 5,
        "status": "pending",
        "created_at": "2024-01-15T10:30:00.123Z",
        "retry_count": 0,
        "max_retries": 3,
        "attempts": 0,
        "queue": "default",
    }


def test_spec_fields_keep_their_names_and_formats() -> None:
    d = full_job().to_dict()
    assert d["status"] == "processing"
    assert d["created_at"] == "2024-01-15T10:30:00.123Z"
    assert d["started_at"] == "2024-01-15T10:30:01.123Z"
    assert d["completed_at"] == "2024-01-15T10:30:05.123Z"
    assert d["tags"] == ["test", "notification"]
    assert d["result"] == {"processing_time": "5s", "worker_id": 1}
    assert d["cancel_requested"] is True
    assert d["stalls"] == 1
    # The spec's fields come first, in the spec's order.
    spec = ["id", "type", "data", "priority", "status", "created_at", "started_at"]
    assert list(d)[: len(spec)] == spec


def test_cancel_requested_only_shown_while_processing() -> None:
    job = full_job()
    done = Job.from_dict({**job.to_dict(), "status": "completed"})
    assert "cancel_requested" not in done.to_dict()


def test_job_from_hash_reads_script_fields() -> None:
    h = {
        "id": "job_X",
        "type": "noop",
        "data": '{"a":1}',
        "priority": "10",
        "status": "retrying",
        "created_at": str(T0),
        "updated_at": str(T0 + 5),
        "retry_count": "1",
        "max_retries": "3",
        "attempts": "1",
        "timeout": "30.0",
        "tags": '["a","b"]',
        "error": "boom",
        "run_at": str(T0 + 1000),
        "cancel_requested": "1",
    }
    job = Job.from_hash(h)
    assert job.data == {"a": 1}
    assert job.priority == 10
    assert job.status is JobStatus.RETRYING
    assert (job.retry_count, job.max_retries, job.attempts) == (1, 3, 1)
    assert job.timeout == 30.0
    assert job.tags == ("a", "b")
    assert job.run_at_ms == T0 + 1000
    assert job.cancel_requested is True
    assert job.started_at_ms is None
    assert job.result is None


def test_job_from_dict_requires_created_at() -> None:
    d = minimal_job().to_dict()
    del d["created_at"]
    with pytest.raises(ValidationError) as info:
        Job.from_dict(d)
    assert info.value.field == "created_at"


# --- ids and timestamps ---------------------------------------------------------------


def test_job_id_format() -> None:
    for _ in range(200):
        assert JOB_ID.match(new_job_id())
    assert JOB_ID.match(new_job_id(0))
    assert JOB_ID.match(new_job_id(2**48 - 1))


def test_job_id_encodes_its_millisecond() -> None:
    job_id = new_job_id(T0)
    value = 0
    for ch in job_id[4:]:
        value = value * 32 + CROCKFORD.index(ch)
    assert value >> 80 == T0


def test_job_ids_sort_by_time() -> None:
    times = [0, 1, 2, 999, 1000, T0 - 1, T0, T0 + 1, T0 + 86_400_000, 2**47, 2**48 - 1]
    ids = [new_job_id(ms) for ms in times]
    assert sorted(ids) == ids
    # Many ids per millisecond still sort ahead of every id of the next millisecond.
    same = [new_job_id(T0) for _ in range(500)]
    later = [new_job_id(T0 + 1) for _ in range(500)]
    assert max(same) < min(later)


def test_job_ids_are_unique_within_a_millisecond() -> None:
    assert len({new_job_id(T0) for _ in range(5000)}) == 5000


def test_format_ts() -> None:
    assert format_ts(None) is None
    assert format_ts(0) == "1970-01-01T00:00:00.000Z"
    assert format_ts(T0) == "2024-01-15T10:30:00.123Z"
    assert format_ts(1_705_314_600_000) == "2024-01-15T10:30:00.000Z"
    assert format_ts(1_705_314_600_999) == "2024-01-15T10:30:00.999Z"


def test_parse_ts() -> None:
    assert parse_ts("2024-01-15T10:30:00.123Z") == T0
    assert parse_ts("2024-01-15T10:30:00+00:00") == T0 - 123
    assert parse_ts("2024-01-15T12:30:00.123+02:00") == T0
    with pytest.raises(ValidationError) as info:
        parse_ts("2024-01-15T10:30:00", "created_at")
    assert info.value.field == "created_at"


def test_parse_ts_inverts_format_ts_for_current_times() -> None:
    for ms in range(T0, T0 + 5000, 7):
        assert parse_ts(format_ts(ms) or "") == ms


@pytest.mark.parametrize(
    "ms",
    [
        545_754_428_027,  # 1987-04-18T14:27:08.027Z
        2_171_524_956_029,  # 2038-10-24T09:22:36.029Z
        2_175_797_599_982,  # 2038-12-12T20:13:19.982Z
    ],
)
def test_parse_ts_inverts_format_ts_exactly(ms: int) -> None:
    assert parse_ts(format_ts(ms) or "") == ms
