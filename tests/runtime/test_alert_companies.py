"""The alerts that name companies (fleetd.runtime.alert_companies): `enqueue_anomaly`
from the analytics minute buckets against a real Redis, with a real burst of enqueues
through enqueue.lua after an hour of baseline; the reading's rules sans-IO."""

from __future__ import annotations

from fleetd.config import AlertsConfig
from fleetd.engine import Engine
from fleetd.runtime.alert_companies import EnqueueHistory, anomaly_reading
from fleetd.runtime.alerts import Alerts

NOW = AlertsConfig(interval=600.0, raise_after=0.0, clear_after=0.0, window=60.0)


def seed_baseline(engine: Engine, per_minute: dict[str, int]) -> None:
    """The hour before the last minute, as enqueue.lua's _analytics.lua recorded it:
    `in\\n<type>\\n<company>` in each minute bucket (the test cannot wait an hour)."""
    sec, _ = engine.link.client.time()
    now = int(sec) // 60
    pipe = engine.link.client.pipeline(transaction=False)
    for minute in range(now - 61, now - 1):
        for company, n in per_minute.items():
            pipe.hincrby(engine.keys.analytics_minute(minute), f"in\nnoop\n{company}", n)
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
