"""Listing every status at once (fleetd.jobs.listing) against the real test Redis:
newest first across the status indexes, pages that neither skip nor repeat a job (many
jobs share a millisecond), filters, and a bounded cursor."""

from __future__ import annotations

import pytest

from fleetd.engine import Engine
from fleetd.jobs.listing import list_all_statuses
from fleetd.jobs.model import Job, JobStatus, ValidationError


def _score(job: Job) -> int:
    # The index score: creation for waiting jobs, finish for finished ones.
    if job.status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED):
        assert job.completed_at_ms is not None
        return job.completed_at_ms
    return job.created_at_ms


def _all_pages(engine: Engine, limit: int, **filters: str) -> list[list[Job]]:
    pages, cursor = [], None
    while True:
        page = engine.link.run_sync(
            lambda c, at=cursor: list_all_statuses(engine.ops, c, limit=limit, cursor=at, **filters)
        )
        pages.append(page.jobs)
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


def test_pages_cover_every_job_once_newest_first(engine: Engine) -> None:
    # One bulk call: the 120 jobs share a few milliseconds, so pages end mid-tie.
    rows = engine.ops.prepare_many(
        [{"type": "noop", "data": {}, "company_id": "acme" if i % 3 else "globex"}
         for i in range(120)]
    )  # fmt: skip
    ids = [r.job_id for r in engine.link.run_sync(engine.ops.enqueue_rows, rows)]
    for job_id in ids[::4]:
        engine.link.run_sync(engine.ops.cancel, job_id)
    pages = _all_pages(engine, limit=7)
    seen = [j for page in pages for j in page]
    assert sorted(j.id for j in seen) == sorted(ids)
    assert all(0 < len(page) <= 7 for page in pages)
    scores = [_score(j) for j in seen]
    assert scores == sorted(scores, reverse=True)
    assert {j.status for j in seen} == {JobStatus.PENDING, JobStatus.CANCELLED}
    # The cancelled jobs finished after every job was created: they come first.
    assert {j.id for j in seen[:30]} == set(ids[::4])

    globex = [j for page in _all_pages(engine, limit=5, company_id="globex") for j in page]
    assert sorted(j.id for j in globex) == sorted(ids[::3])


def test_user_and_text_filters_span_every_status(engine: Engine) -> None:
    rows = engine.ops.prepare_many(
        [{"type": "noop", "data": {}, "user_id": f"user-{i % 2}"} for i in range(10)]
    )
    ids = [r.job_id for r in engine.link.run_sync(engine.ops.enqueue_rows, rows)]
    for job_id in ids[:4]:
        engine.link.run_sync(engine.ops.cancel, job_id)
    mine = [j for page in _all_pages(engine, limit=2, user_id="user-1") for j in page]
    assert sorted(j.id for j in mine) == sorted(ids[1::2])
    assert {j.status for j in mine} == {JobStatus.PENDING, JobStatus.CANCELLED}
    found = [j for page in _all_pages(engine, limit=3, text="USER-0") for j in page]
    assert sorted(j.id for j in found) == sorted(ids[::2])


def test_one_page_reads_a_bounded_window(engine: Engine) -> None:
    rows = engine.ops.prepare_many([{"type": "noop", "data": {}}] * 30)
    engine.link.run_sync(engine.ops.enqueue_rows, rows)
    page = engine.link.run_sync(lambda c: list_all_statuses(engine.ops, c, limit=10))
    assert len(page.jobs) == 10 and page.next_cursor is not None
    # One position per status; only pending has moved.
    parts = page.next_cursor.split(",")
    assert len(parts) == len(JobStatus)
    assert [bool(p) for p in parts] == [s is JobStatus.PENDING for s in JobStatus]
    # A sparse filter answers an empty page with a cursor rather than reading on.
    empty = engine.link.run_sync(
        lambda c: list_all_statuses(engine.ops, c, limit=1, company_id="nobody")
    )
    assert empty.jobs == [] and empty.next_cursor is not None


@pytest.mark.parametrize("cursor", ["x", "1.0", ",,,,,,", "a.b,,,,,"])
def test_a_malformed_cursor_is_a_validation_error(engine: Engine, cursor: str) -> None:
    with pytest.raises(ValidationError):
        engine.link.run_sync(lambda c: list_all_statuses(engine.ops, c, cursor=cursor))
