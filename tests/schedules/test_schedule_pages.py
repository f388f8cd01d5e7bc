"""fleetd.schedules.pages against the real test redis-server: schedules created in the
same millisecond come in id order, and the cursor (the last schedule shown, not a count
of those seen) neither skips nor repeats any of them when the cursor's own schedule, or
others of that millisecond, are deleted between two page reads."""

from __future__ import annotations

from typing import Any

import pytest

from fleetd.engine import Engine
from fleetd.jobs.model import ValidationError
from fleetd.schedules.pages import SchedulePage, decode_cursor, list_page
from fleetd.schedules.store import ScheduleOps


def page(eng: Engine, **kw: Any) -> SchedulePage:
    result: SchedulePage = eng.link.run_sync(lambda c: list_page(eng.keys, c, **kw))
    return result


def made_in_one_millisecond(eng: Engine, ops: ScheduleOps, count: int, company: str) -> list[str]:
    """`count` schedules whose index entries all hold one creation time, as when they
    were created within the same millisecond; their ids in listing order."""
    body = {"job_type": "noop", "schedule": "1h", "company_id": company}
    ids = [
        eng.link.run_sync(lambda c, i=i: ops.add(c, {**body, "name": f"{company} {i}"})).id
        for i in range(count)
    ]
    client = eng.link.client
    ms = int(client.zscore(eng.keys.schedules_all, ids[0]))
    for index in (eng.keys.schedules_all, eng.keys.schedules_of(company)):
        client.zadd(index, dict.fromkeys(ids, ms), xx=True)
    return sorted(ids)


@pytest.mark.parametrize("company", [None, "acme"])
def test_a_deleted_cursor_within_one_millisecond_skips_nothing(
    engine: Engine, company: str | None
) -> None:
    ops = ScheduleOps.from_engine(engine)
    # Another company's schedules (of another millisecond) never show in acme's pages.
    ids = made_in_one_millisecond(engine, ops, 12, "globex")
    if company is not None:
        ids = made_in_one_millisecond(engine, ops, 12, company)
    first = page(engine, company_id=company, limit=5)
    assert [j.id for j in first.schedules] == ids[:5] and first.next_cursor is not None
    assert decode_cursor(first.next_cursor)[1] == ids[4]
    # The cursor's schedule, one before it and the next one go, all of that millisecond.
    for sid in (ids[4], ids[1], ids[5]):
        engine.link.run_sync(ops.remove, sid)
    body = {"job_type": "noop", "schedule": "1h", "name": "later", "company_id": company}
    later = engine.link.run_sync(lambda c: ops.add(c, body))
    seen: list[str] = []
    cursor: str | None = first.next_cursor
    while cursor is not None:
        nxt = page(engine, company_id=company, limit=5, cursor=cursor)
        seen += [j.id for j in nxt.schedules]
        cursor = nxt.next_cursor
    assert seen == [*ids[6:], later.id]


def test_a_cursor_that_names_no_schedule_is_a_position(engine: Engine) -> None:
    ops = ScheduleOps.from_engine(engine)
    ids = made_in_one_millisecond(engine, ops, 6, "")
    ms = int(engine.link.client.zscore(engine.keys.schedules_all, ids[0]))
    # Between the third and the fourth id of that millisecond: the last three follow.
    between = ids[2] + "~"
    assert ids[2] < between < ids[3]
    rest = page(engine, limit=10, cursor=f"{ms}.{between}")
    assert [j.id for j in rest.schedules] == ids[3:] and rest.next_cursor is None
    assert page(engine, limit=10, cursor=f"{ms + 1}.a").schedules == []
    assert [j.id for j in page(engine, limit=10, cursor=f"{ms - 1}.~").schedules] == ids


@pytest.mark.parametrize("cursor", ["", "7", "x.y", "1.", ".a", "1.a b", "-5.a"])
def test_a_malformed_cursor_is_refused_on_the_cursor(engine: Engine, cursor: str) -> None:
    with pytest.raises(ValidationError) as caught:
        page(engine, cursor=cursor)
    assert caught.value.field == "cursor"
