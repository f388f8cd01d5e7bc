"""The synchronous client against the real test redis-server."""

from __future__ import annotations

import pytest

from fleetd.client import Client
from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.model import JobStatus, ValidationError


def test_sync_client_round_trip(config: Config, engine: Engine) -> None:
    with Client(config) as client:
        first = client.enqueue("noop", {"n": 1}, priority="high", idempotency_key="k1")
        again = client.enqueue("noop", {"n": 2}, idempotency_key="k1")
        many = client.enqueue_many([{"type": "noop", "data": {"i": i}} for i in range(3)])
        job = client.get(first.job_id)
        assert job is not None
        assert (job.priority, job.data, job.status) == (10, {"n": 1}, JobStatus.PENDING)
        assert again.job_id == first.job_id and again.duplicate
        assert len(many) == 3
        assert client.stats()["pending"] == 4
        page = client.list_jobs("pending", limit=10)
        assert {j.id for j in page.jobs} == {first.job_id, *(r.job_id for r in many)}
        assert client.cancel(first.job_id).status == "cancelled"
        assert client.reset(first.job_id).outcome == "reset"


def test_sync_client_rejects_bad_input_before_sending(config: Config, engine: Engine) -> None:
    with Client(config) as client:
        with pytest.raises(ValidationError) as info:
            client.enqueue("no_such_type", {})
        assert info.value.field == "type"
        with pytest.raises(ValidationError) as info:
            client.enqueue_many([{"type": "noop"}, {"type": "noop", "priority": 0}])
        assert info.value.field == "jobs[1].priority"
        with pytest.raises(ValidationError) as info:
            client.enqueue("noop", {}, priority=0, colour="red")
        assert [e.field for e in info.value.errors] == ["priority", "colour"]
        assert client.stats()["total"] == 0
