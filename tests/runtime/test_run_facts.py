"""A completion's result carries the spec's `processing_time` and `worker_id`
(fleetd.runtime.outcomes.with_run_facts); the handler's own keys win (#19)."""

from __future__ import annotations

import json

import pytest
from pool import Recorder, registry_with, running_pool, wait_status

from fleetd.config import Config
from fleetd.jobs.model import JobStatus
from fleetd.runtime.outcomes import with_run_facts


@pytest.mark.parametrize(
    ("result", "elapsed", "expected"),
    [
        ("{}", 5.0, {"processing_time": "5s", "worker_id": "d1"}),
        ('{"n":1}', 0.25, {"n": 1, "processing_time": "250ms", "worker_id": "d1"}),
        ('{"a":{"b":[1,2]}}', 1.5, {"a": {"b": [1, 2]}, "processing_time": "1.5s",
                                    "worker_id": "d1"}),
    ],
)  # fmt: skip
def test_facts_are_added_to_the_handlers_result(
    result: str, elapsed: float, expected: dict[str, object]
) -> None:
    text = with_run_facts(result, elapsed, "d1")
    assert json.loads(text) == expected
    assert list(json.loads(text))[-2:] == ["processing_time", "worker_id"]


def test_the_handlers_own_keys_win() -> None:
    both = with_run_facts('{"processing_time":"slow","worker_id":7}', 5.0, "d1")
    assert json.loads(both) == {"processing_time": "slow", "worker_id": 7}
    one = with_run_facts('{"worker_id":7}', 5.0, "d1")
    assert json.loads(one) == {"worker_id": 7, "processing_time": "5s"}
    # A value that merely holds a key's name does not stop the key being added.
    named = with_run_facts('{"note":"\\"worker_id\\""}', 0.0, "d1")
    assert json.loads(named) == {"note": '"worker_id"', "processing_time": "0s",
                                 "worker_id": "d1"}  # fmt: skip


def test_text_that_is_not_an_object_is_left_alone() -> None:
    assert with_run_facts("", 1.0, "d1") == ""
    assert with_run_facts("[1]", 1.0, "d1") == "[1]"


async def test_a_completed_job_carries_the_facts(config: Config) -> None:
    async with running_pool(config, registry_with(Recorder())) as (engine, pool):
        r = await engine.queue.enqueue({"type": "record", "data": {"name": "x"}})
        job = await wait_status(engine, r.job_id, JobStatus.COMPLETED)
    assert job.result is not None and job.worker is not None
    assert job.result["worker_id"] == job.worker == pool.daemon_id
    assert isinstance(job.result["processing_time"], str)
    assert job.to_dict()["result"]["worker_id"] == pool.daemon_id
