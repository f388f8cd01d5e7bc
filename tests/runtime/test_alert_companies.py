"""The alerts that name companies (fleetd.runtime.alert_companies): `enqueue_anomaly`
and `payload_anomaly` from the analytics minute buckets against a real Redis, with a
real burst of enqueues (and of big payloads) through enqueue.lua after an hour of
baseline; the readings' rules sans-IO."""

from __future__ import annotations

from alert_clock import NOW

from fleetd.engine import Engine
from fleetd.runtime.alert_companies import EnqueueHistory, anomaly_reading, payload_reading
from fleetd.runtime.alerts import Alerts


def seed_baseline(
    engine: Engine, per_minute: dict[str, int], size: dict[str, int] | None = None
) -> None:
    """The hour before the last minute, as enqueue.lua's _analytics.lua recorded it:
    `in\\n<type>\\n<company>` (and `inb\\n…`, `size` bytes a job) in each minute bucket
    (the test cannot wait an hour)."""
    sec, _ = engine.link.client.time()
    now = int(sec) // 60
    pipe = engine.link.client.pipeline(transaction=False)
    for minute in range(now - 61, now - 1):
        for company, n in per_minute.items():
            pipe.hincrby(engine.keys.analytics_minute(minute), f"in\nnoop\n{company}", n)
            if size:
                field = f"inb\nnoop\n{company}"
                pipe.hincrby(engine.keys.analytics_minute(minute), field, n * size[company])
    pipe.execute()


async def test_a_burst_far_above_a_companys_baseline_raises_the_alert(engine: Engine) -> None:
    seed_baseline(engine, {"acme": 3, "globex": 20})
    alerts = Alerts(engine, "a", NOW)
    await alerts.evaluate()
    assert "enqueue_anomaly" not in alerts.active
    # A real burst: 200 of acme's jobs (3/min before) and 40 of globex's (20/min before).
    rows = engine.ops.prepare_many(
        [{"type": "noop", "company_id": "acme"}] * 200
        + [{"type": "noop", "company_id": "globex"}] * 40
    )
    engine.link.run_sync(engine.ops.enqueue_rows, rows)
    await alerts.evaluate()
    assert "enqueue_anomaly" in alerts.active
    text = alerts.values["enqueue_anomaly"].text
    assert "acme (200/min, baseline 3.0/min)" in text
    assert "globex" not in text


def history(recent: int, base: int, company: str = "acme") -> EnqueueHistory:
    h = EnqueueHistory(now_minute=1000)
    for m in range(1000 - 61, 1000 - 1):
        h.minutes[m] = {company: base}
    h.minutes[999] = {company: recent}
    h.minutes[1000] = {company: recent // 2}
    return h


def test_the_anomaly_rules() -> None:
    over, clear, value, text = anomaly_reading(history(200, 3), 10, 100)
    assert (over, clear, value) == (True, False, 1.0), text
    # Far above the baseline but under the floor: a small company's busy minute.
    assert anomaly_reading(history(70, 1), 10, 100)[:2] == (False, True)
    # Above the floor but within factor × baseline.
    assert anomaly_reading(history(200, 30), 10, 100)[:2] == (False, True)
    # Back down, but not yet under 80 % of the bar: neither raised nor clear.
    assert anomaly_reading(history(90, 3), 10, 100)[:2] == (False, False)
    # A company with no enqueue in the hour before has no baseline to leave.
    assert anomaly_reading(history(500, 0), 10, 100)[:2] == (False, True)
    # Off.
    assert anomaly_reading(history(200, 3), 0, 100)[:2] == (False, True)


def payloads(company: str, kib: int, n: int) -> list[dict[str, object]]:
    return [{"type": "noop", "company_id": company, "data": {"blob": "x" * (kib * 1024)}}] * n


async def test_payloads_far_above_a_companys_baseline_size_raise_the_alert(
    engine: Engine,
) -> None:
    # An hour of 1 KiB payloads, 10 jobs a minute, for both companies.
    seed_baseline(engine, {"acme": 10, "globex": 10}, {"acme": 1024, "globex": 1024})
    alerts = Alerts(engine, "a", NOW)
    rows = engine.ops.prepare_many(payloads("acme", 1, 5) + payloads("globex", 1, 5))
    engine.link.run_sync(engine.ops.enqueue_rows, rows)
    await alerts.evaluate()
    assert "payload_anomaly" not in alerts.active
    # Real enqueues: acme's payloads jump to 200 KiB; globex's grow to 4 KiB (4x, and
    # under the 64 KiB floor); both keep their rate (no enqueue anomaly).
    rows = engine.ops.prepare_many(payloads("acme", 200, 5) + payloads("globex", 4, 5))
    engine.link.run_sync(engine.ops.enqueue_rows, rows)
    sec, _ = engine.link.client.time()
    bucket = engine.link.client.hgetall(engine.keys.analytics_minute(int(sec) // 60))
    # enqueue.lua counted the bytes of the stored data (the JSON text, quotes and all).
    assert int(bucket["inb\nnoop\nacme"]) >= 5 * 1024 + 5 * 200 * 1024
    await alerts.evaluate()
    assert "payload_anomaly" in alerts.active
    assert "enqueue_anomaly" not in alerts.active
    text = alerts.values["payload_anomaly"].text
    assert "acme (" in text and "baseline 1.0 KiB/job" in text, text
    assert "globex" not in text


def sized(recent_kib: float, base_kib: float, jobs: int = 10) -> EnqueueHistory:
    h = history(jobs, jobs)
    for m in range(1000 - 61, 1000 - 1):
        h.sizes[m] = {"acme": int(jobs * base_kib * 1024)}
    h.minutes[1000] = {"acme": jobs}
    h.sizes[999] = {"acme": 0}
    h.sizes[1000] = {"acme": int(jobs * recent_kib * 1024)}
    return h


def test_the_payload_anomaly_rules() -> None:
    over, clear, value, text = payload_reading(sized(100, 2), 10, 64)
    assert (over, clear, value) == (True, False, 1.0), text
    assert "acme (100.0 KiB/job over 10 jobs, baseline 2.0 KiB/job)" in text
    # Far above the baseline but under the floor.
    assert payload_reading(sized(40, 1), 10, 64)[:2] == (False, True)
    # Above the floor but within factor x baseline.
    assert payload_reading(sized(100, 20), 10, 64)[:2] == (False, True)
    # Back down, but not yet under 80 % of the bar (64 KiB): neither raised nor clear.
    assert payload_reading(sized(60, 1), 10, 64)[:2] == (False, False)
    # No job in the hour before: no baseline.
    assert payload_reading(sized(100, 0, jobs=10), 10, 64)[:2] == (False, True)
    # Off.
    assert payload_reading(sized(100, 2), 0, 64)[:2] == (False, True)
