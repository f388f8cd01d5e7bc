"""fleetd.jobs.retry: the one retry-delay formula (sans-IO; fail.lua only adds it)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fleetd.jobs.retry import DEFAULT_RETRY_POLICY, RETRY_UNIT_MS, RetryPolicy


def test_the_spec_delays_are_n_squared_seconds() -> None:
    assert [DEFAULT_RETRY_POLICY.delay_ms(n) for n in (1, 2, 3)] == [1000, 4000, 9000]
    assert DEFAULT_RETRY_POLICY.next_delay_ms(0, "job_1") == RETRY_UNIT_MS
    assert DEFAULT_RETRY_POLICY.next_delay_ms(2, "job_1") == 9 * RETRY_UNIT_MS
    assert RetryPolicy(unit_ms=10).delay_ms(4) == 160


def test_jitter_only_lengthens_is_stable_per_job_and_spreads_jobs() -> None:
    policy = RetryPolicy(jitter=0.5)
    delays = [policy.delay_ms(2, f"job_{i}") for i in range(200)]
    assert all(4000 <= d < 6000 for d in delays)
    assert delays == [policy.delay_ms(2, f"job_{i}") for i in range(200)]  # recomputable
    assert len(set(delays)) > 150  # a storm of failures does not retry in one instant
    assert policy.delay_ms(1, "job_0") != policy.delay_ms(1, "job_1")


@pytest.mark.parametrize(
    "make", [lambda: RetryPolicy(unit_ms=0), lambda: RetryPolicy(jitter=1.5),
             lambda: RetryPolicy(jitter=-0.1), lambda: RetryPolicy().delay_ms(0)],
)  # fmt: skip
def test_nonsense_is_refused(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        make()
