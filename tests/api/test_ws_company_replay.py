"""Resuming the events WebSocket of one company from that company's own stream
(fleetd.runtime.replay), on the real endpoint and Redis: another company's flood that
trims the shared stream past the cursor causes no gap; a trim of the company's own
stream does, exactly past the cursor, once the shared stream lost those events too
(until then they replay from it); a cursor older than the company's stream falls
back to the shared one; `[events] company_maxlen = 0` behaves as before. A company's
stream is kept once its feed was open (the hub marks it watched), as a dashboard that
reconnects had it open before; a company never watched keeps none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from api_client import Api, api_config, running_api, token
from conftest import make_config
from engine_jobs import enqueue
from test_ws_events import feed, recv, xadd

from fleetd.config import Config
from fleetd.runtime.events import id_key

SHARED_MAXLEN = 1000  # the smallest [redis] events_maxlen


def cfg(redis_url: str, namespace: str, tmp_path: Path, **events: Any) -> Config:
    redis = {"events_maxlen": SHARED_MAXLEN}
    state = tmp_path / "state"
    return api_config(make_config(redis_url, namespace, state, redis=redis, events=events))


def jobs(api: Api, company: str, n: int) -> list[str]:
    """Enqueue `n` jobs of `company`; the ids of their `job.enqueued` events."""
    ids = set(enqueue(api.daemon.engine, [{"type": "noop", "company_id": company}] * n))
    return [i for i, f in stream(api) if f["job_id"] in ids]


def stream(api: Api, key: str | None = None) -> list[tuple[str, dict[str, str]]]:
    eng = api.daemon.engine
    return list(eng.link.client.xrange(key or eng.keys.events))


def oldest(api: Api, key: str | None = None) -> str:
    eng = api.daemon.engine
    ((first, _),) = eng.link.client.xrange(key or eng.keys.events, count=1)
    return str(first)


async def watched(api: Api, company: str) -> None:
    """Open and close a feed of `company`, once its daemon's hub marked it watched (as
    a dashboard that was open before it reconnects)."""
    eng = api.daemon.engine
    async with feed(api, "", tok=token(company)) as ws:
        await recv(ws)  # subscribed
        with trio.fail_after(10):
            while eng.link.client.zscore(eng.keys.events_watched, company) is None:
                await trio.sleep(0.05)


async def frames(api: Api, query: str, n: int, tok: str) -> list[dict[str, Any]]:
    """The `subscribed` frame, then `n` frames of a feed opened with `query`."""
    async with feed(api, query, tok=tok) as ws:
        return [await recv(ws) for _ in range(n + 1)]


async def test_another_companys_flood_leaves_no_gap(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    async with running_api(cfg(redis_url, namespace, tmp_path)) as api:
        await watched(api, "globex")
        (cursor,) = jobs(api, "globex", 1)
        mine = jobs(api, "globex", 2)
        jobs(api, "acme", 700)
        mine += jobs(api, "globex", 2)
        jobs(api, "acme", 800)
        assert id_key(oldest(api)) > id_key(cursor)  # the shared stream lost the cursor
        bound, platform = token("globex"), token()
        for query, tok in ((f"last_event_id={cursor}", bound),
                           (f"last_event_id={cursor}&company_id=globex", platform)):  # fmt: skip
            async with feed(api, query, tok=tok) as ws:
                assert (await recv(ws))["last_event_id"] == cursor
                got = [await recv(ws) for _ in mine]
                assert [f["id"] for f in got] == mine  # no gap frame, nothing missing
                assert {f["company_id"] for f in got} == {"globex"}
                # Then live, with no duplicate, while acme goes on.
                jobs(api, "acme", 50)
                (later,) = jobs(api, "globex", 1)
                assert (await recv(ws))["id"] == later
            mine.append(later)  # the next feed replays it too


async def test_a_trim_of_the_companys_own_stream_is_a_gap_only_once_the_shared_one_lost_it(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    async with running_api(cfg(redis_url, namespace, tmp_path, company_maxlen=100)) as api:
        await watched(api, "globex")
        mine = jobs(api, "globex", 450)
        own = api.daemon.engine.keys.company_events("globex")
        first = oldest(api, own)
        at = mine.index(first)
        cut = mine[at - 1]  # the newest id trimmed from globex's stream
        assert oldest(api) == mine[0]  # the shared stream lost nothing
        tok = token("globex")
        # globex's own volume trimmed its stream, the shared one still holds it all: no gap.
        got = await frames(api, f"last_event_id={mine[0]}", 3, tok)
        assert [f.get("id") for f in got[1:]] == mine[1:4]
        # acme's flood then trims the shared stream past every event of globex: only
        # globex's own stream is left, and the gap is exactly what it lost.
        jobs(api, "acme", 750)
        jobs(api, "acme", 750)
        assert id_key(oldest(api)) > id_key(mine[-1])
        got = await frames(api, f"last_event_id={mine[at - 2]}", 2, tok)
        gap = {"last_event_id": mine[at - 2], "first_available": first}
        assert got[1] == {"type": "gap", "data": gap}
        assert got[2]["id"] == first
        # The trimmed id itself as the cursor: nothing after it was lost.
        got = await frames(api, f"last_event_id={cut}", 2, tok)
        assert [f.get("id") for f in got[1:]] == mine[at : at + 2]


async def test_a_cursor_older_than_the_companys_stream_reads_the_shared_one(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    async with running_api(cfg(redis_url, namespace, tmp_path)) as api:
        await watched(api, "globex")
        cursor = xadd(api, company_id="globex")
        # An event of globex in the shared stream only (as written before an upgrade).
        before = xadd(api, company_id="globex")
        after = jobs(api, "globex", 2)
        assert oldest(api, api.daemon.engine.keys.company_events("globex")) == after[0]
        got = await frames(api, f"last_event_id={cursor}", 3, token("globex"))
        assert [f["id"] for f in got[1:]] == [before, *after]


async def test_company_maxlen_zero_keeps_the_shared_streams_gap(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    async with running_api(cfg(redis_url, namespace, tmp_path, company_maxlen=0)) as api:
        (cursor,) = jobs(api, "globex", 1)
        jobs(api, "acme", 1500)
        mine = jobs(api, "globex", 1)
        assert api.daemon.engine.link.client.exists(
            api.daemon.engine.keys.company_events("globex")
        ) == 0  # fmt: skip
        got = await frames(api, f"last_event_id={cursor}", 2, token("globex"))
        gap = {"last_event_id": cursor, "first_available": oldest(api)}
        assert got[1] == {"type": "gap", "data": gap}
        assert got[2]["id"] == mine[0]


async def test_a_company_never_watched_keeps_no_stream_and_replays_the_shared_one(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    async with running_api(cfg(redis_url, namespace, tmp_path)) as api:
        cursor, *mine = jobs(api, "globex", 3)
        eng = api.daemon.engine
        assert eng.link.client.exists(eng.keys.company_events("globex")) == 0
        got = await frames(api, f"last_event_id={cursor}", 2, token("globex"))
        assert [f["id"] for f in got[1:]] == mine  # from the shared stream, as before
