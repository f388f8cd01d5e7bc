"""Each company's own replay stream (`Keys.company_events`, _lib.lua company_emit)
against the real redis-server: the same entries under the same ids as the shared
stream, the `prev` chain that makes a trim exact, its cap and expiry, kept only while
the company is watched (`Keys.events_watched`, marked by the event hub), `[events]
company_maxlen = 0`, a stream whose ids would go backwards or a key that is not a
stream (the transition still completes), and the embedded `memory://` store.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_config
from engine_jobs import enqueue

from fleetd.config import EventsConfig
from fleetd.engine import Engine
from fleetd.runtime.events import WATCH_MS, EventHub

TTL_S = 3600  # _lib.lua COMPANY_EVENTS_TTL_S


def watch(engine: Engine, *companies: str) -> None:
    """As the event hub of a daemon with subscribers of `companies` marks them."""
    hub = EventHub(engine.keys, engine.link, EventsConfig(), block=0.1, reconnect_cap=1)
    engine.link.run_sync(hub.watch, frozenset(companies))


def build(cfg: Any) -> Engine:
    eng = Engine.build(cfg, daemon=True)
    for script in eng.scripts.all():
        script.load(eng.link.client)
    return eng


@pytest.fixture
def capped(redis_url: str, namespace: str, tmp_path: Path) -> Iterator[Engine]:
    """An engine whose company streams keep ~100 entries."""
    eng = build(make_config(redis_url, namespace, tmp_path / "s", events={"company_maxlen": 100}))
    yield eng
    eng.close()


def shared(engine: Engine) -> list[tuple[str, dict[str, str]]]:
    return list(engine.link.client.xrange(engine.keys.events))


def own(engine: Engine, company: str) -> list[tuple[str, dict[str, str]]]:
    return list(engine.link.client.xrange(engine.keys.company_events(company)))


def test_a_company_stream_holds_its_events_under_the_shared_ids(engine: Engine) -> None:
    watch(engine, "acme", "globex")
    enqueue(engine, [{"type": "noop", "company_id": c} for c in ("acme", "globex", "", "acme")])
    claimed = engine.scripts.claim(engine.link.client, 10, 30_000, "tok", "d1").jobs
    assert len(claimed) == 4
    everything = shared(engine)
    for company in ("acme", "globex"):
        theirs = own(engine, company)
        expected = [(i, f) for i, f in everything if f["company_id"] == company]
        assert [i for i, _ in theirs] == [i for i, _ in expected]
        # The same fields, plus `prev`: the id before it in this stream.
        assert [{k: v for k, v in f.items() if k != "prev"} for _, f in theirs] == [
            f for _, f in expected
        ]
        assert [f["prev"] for _, f in theirs] == ["", *[i for i, _ in theirs[:-1]]]
        ttl = engine.link.client.ttl(engine.keys.company_events(company))
        assert TTL_S - 5 <= ttl <= TTL_S
    assert len(own(engine, "acme")) == 4 and len(own(engine, "globex")) == 2
    # A job of no company has no stream of its own.
    streams = set(engine.link.client.keys(engine.keys.company_events("*")))
    assert streams == {engine.keys.company_events("acme"), engine.keys.company_events("globex")}


def test_a_company_stream_is_capped_and_its_oldest_prev_is_the_last_trimmed(
    capped: Engine,
) -> None:
    watch(capped, "acme")
    enqueue(capped, [{"type": "noop", "company_id": "acme"}] * 450)
    ids = [i for i, f in shared(capped) if f["company_id"] == "acme"]
    theirs = own(capped, "acme")
    assert 100 <= len(theirs) < 450  # MAXLEN ~: whole nodes of 100
    first = ids.index(theirs[0][0])
    assert first > 0 and theirs[0][1]["prev"] == ids[first - 1]
    assert [i for i, _ in theirs] == ids[first:]


def test_company_maxlen_zero_keeps_no_company_stream(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    eng = build(make_config(redis_url, namespace, tmp_path / "s", events={"company_maxlen": 0}))
    try:
        watch(eng, "acme")
        enqueue(eng, [{"type": "noop", "company_id": "acme"}] * 3)
        assert len(shared(eng)) == 3
        assert eng.link.client.exists(eng.keys.company_events("acme")) == 0
    finally:
        eng.close()


def test_ids_going_backwards_start_the_stream_over(engine: Engine) -> None:
    watch(engine, "acme")
    key = engine.keys.company_events("acme")
    # As if `events` had been deleted and Redis' clock were now behind this entry.
    engine.link.client.xadd(key, {"prev": "", "type": "x"}, id="99999999999999-0")
    (job,) = enqueue(engine, [{"type": "noop", "company_id": "acme"}])
    assert engine.link.run_sync(engine.ops.get, job) is not None  # the transition completed
    ((eid, fields),) = shared(engine)
    assert own(engine, "acme") == [(eid, {**fields, "prev": ""})]


def test_a_key_that_is_not_a_stream_does_not_break_the_transition(engine: Engine) -> None:
    watch(engine, "acme")
    key = engine.keys.company_events("acme")
    engine.link.client.set(key, "not a stream")
    (job,) = enqueue(engine, [{"type": "noop", "company_id": "acme"}])
    assert engine.link.run_sync(engine.ops.get, job) is not None
    ((eid, _),) = shared(engine)
    assert [i for i, _ in own(engine, "acme")] == [eid]


def test_the_embedded_store_keeps_company_streams_too(namespace: str, tmp_path: Path) -> None:
    cfg = make_config("memory://", namespace, tmp_path / "s", redis={"memory_listen": ""})
    eng = build(cfg)
    try:
        watch(eng, "acme")
        enqueue(eng, [{"type": "noop", "company_id": c} for c in ("acme", "globex", "acme")])
        ids = [i for i, f in shared(eng) if f["company_id"] == "acme"]
        theirs = own(eng, "acme")
        assert [i for i, _ in theirs] == ids
        assert [f["prev"] for _, f in theirs] == ["", ids[0]]
    finally:
        eng.close()


def test_only_watched_companies_get_a_stream_and_only_while_watched(engine: Engine) -> None:
    """A company nobody's feed watches costs no second write per event; a mark runs
    out WATCH_MS after the hub last renewed it, and a later hub's mark forgets it."""
    watch(engine, "acme")
    enqueue(engine, [{"type": "noop", "company_id": c} for c in ("acme", "globex")])
    assert len(own(engine, "acme")) == 1 and own(engine, "globex") == []
    c = engine.link.client
    till = c.zscore(engine.keys.events_watched, "acme")
    seconds, micros = c.time()
    now = int(seconds) * 1000 + int(micros) // 1000
    assert now + WATCH_MS - 5_000 <= till <= now + WATCH_MS
    # The mark ran out (as an hour after the company's last subscriber left).
    c.zadd(engine.keys.events_watched, {"acme": now - 1})
    enqueue(engine, [{"type": "noop", "company_id": "acme"}])
    assert len(own(engine, "acme")) == 1  # nothing new
    watch(engine, "globex")  # another company's mark: the run-out one is forgotten
    assert c.zrange(engine.keys.events_watched, 0, -1) == ["globex"]
