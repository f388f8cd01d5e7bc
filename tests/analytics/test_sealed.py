"""Sealed analytics buckets (fleetd.analytics.sealed) against real Redis: the buckets of
a real workload, read as if their minute and hour had closed, are sealed once, read back
from the seal with the same figures and slowest attempts, and a window read over seals
answers what it answers from the hashes."""

from __future__ import annotations

from typing import Any

from pool import registry_with, running_pool, wait_status

from fleetd.analytics import answer, histogram, sealed, store
from fleetd.config import Config
from fleetd.jobs.model import JobStatus

HOUR = store.HOUR_MS
MINUTE = store.MINUTE_MS


async def test_closed_buckets_are_sealed_once_and_read_back_alike(config: Config) -> None:
    plan: list[dict[str, Any]] = [
        {"type": "noop", "data": {"sleep_ms": (i * 29) % 200}} for i in range(30)
    ]
    plan += [{"type": "noop", "company_id": "acme", "data": {"fail_attempts": 1},
              "max_retries": 0} for _ in range(4)]  # fmt: skip
    async with running_pool(config, registry_with(), concurrency=4) as (engine, _pool):
        results = await engine.queue.enqueue_many(plan)
        for r in results:
            await wait_status(engine, r.job_id, JobStatus.COMPLETED, JobStatus.FAILED, limit=30)
        c, keys = engine.link.client, engine.keys
        sec, usec = c.time()
        now = int(sec) * 1000 + int(usec) // 1000
        live = store.read(c, keys, store.WINDOWS["day"])
        hour, minute = now // HOUR, now // MINUTE
        raw_hour = store.parse_bucket(c.hgetall(keys.analytics_hour(hour)))
        raw_slow = c.zrange(keys.analytics_slowest(hour, "", "noop"), 0, -1, withscores=True)

        # Read as if two hours had passed: the current minute and hour are closed.
        later = now + 2 * HOUR
        for step, index in ((MINUTE, minute), (HOUR, hour)):
            first = sealed.read_buckets(c, keys, step, [index], later, store._encode)
            seal = keys.analytics_sealed_hour if step == HOUR else keys.analytics_sealed_minute
            text = c.get(seal(index))
            assert text is not None and sealed.decode(text) == first[0]
            # Kept as long as the hash: 2 hours for minutes, 8 days for hours.
            kept = 7_200_000 if step == MINUTE else 8 * 86_400_000
            assert 0 < c.pttl(seal(index)) <= (index + 1) * step + kept - later
            # Read again: from the seal (the hash gone shows it is not read).
            bucket = keys.analytics_hour(hour) if step == HOUR else keys.analytics_minute(minute)
            c.rename(bucket, keys.prefix + "moved")
            again = sealed.read_buckets(c, keys, step, [index], later, store._encode)
            c.rename(keys.prefix + "moved", bucket)
            assert again == first

    [hour_bucket] = first
    figures = store._decode(hour_bucket.groups, None)
    assert figures == raw_hour
    assert figures[("noop", "")].completed == 30 and figures[("noop", "acme")].failed == 4
    # The seal keeps each group's run and wait p50/p95/p99, as computed from its buckets.
    for group, f in figures.items():
        raw = raw_hour[group]
        assert f.marks == (*histogram.percentiles(raw.run, store.MARKS),
                           *histogram.percentiles(raw.wait, store.MARKS))  # fmt: skip
    assert figures[("noop", "")].marks is not None and None not in figures[("noop", "")].marks
    assert hour_bucket.slowest is not None
    assert hour_bucket.slowest["noop\n"] == [[m, int(s)] for m, s in raw_slow]
    # Percentiles over the seal equal those over the live hashes.
    sealed_day = store._decode(hour_bucket.groups, None)
    live_total = store.total(b.get(("noop", ""), store.Figures()) for b in live.buckets)
    assert sealed_day[("noop", "")].run == live_total.run
    assert histogram.percentile(live_total.run, 95) is not None
    # The whole answer of the live read still adds up.
    [g] = [g for g in answer.build(live, "type").analytics.groups if g.type == "noop"]
    assert g.completed == 30 and g.failed == 4


def test_a_seal_of_another_layout_is_not_read() -> None:
    assert sealed.decode("not json") is None
    assert sealed.decode('{"v": 99, "g": {}}') is None
    assert sealed.decode('{"v": 1, "g": {}, "s": null}') is None  # the layout before marks
    assert sealed.decode('{"v": 2, "g": []}') is None
    assert sealed.decode('{"v": 2, "g": {}, "s": null}') == sealed.Bucket({}, None)


def test_percentiles_agree_with_percentile() -> None:
    hists = [{}, {0: 1}, {3: 5, 10: 1, 40: 2}, {k: k % 7 + 1 for k in range(60)}]
    for h in hists:
        assert histogram.percentiles(h, (50, 95, 99)) == [
            histogram.percentile(h, p) for p in (50, 95, 99)
        ]
