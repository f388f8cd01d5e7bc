"""The events WebSocket over every key space (`[queues] own_slot`, fleetd.backend.spaces)
against a real redis-server, an in-process daemon and a real WebSocket: a slotted
queue's job events reach a subscriber, with ids that are a cursor over both streams
(fleetd.runtime.cursor); a resume from an id taken mid-stream (live or replayed)
replays exactly the missed events of both spaces; a queue given a slot after the hub
started is read from its start; a company's feed and its replay from the company
streams span the spaces; malformed composite ids are refused (422).

Events are XADDed into each space's stream where a test needs exact contents (marked
by `data.n`), and come from real enqueues where the scripts must write them (company
streams). No test waits for something not to arrive: a final event must be the next.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.lowlevel
from api_client import Api, api_config, running_api, token
from conftest import make_config
from engine_jobs import enqueue
from redis_server import HOST, RedisServerFactory
from redis_topology import wait_until
from test_api_ops import metric
from test_ws_events import FEED, error_of, feed, handshake, recv

from fleetd.api import ws_session
from fleetd.backend.keys import Keys
from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.runtime.cursor import Cursor
from fleetd.runtime.events import EventHub

BULK = "bulk"


def spread(config: Config, *queues: str) -> Config:
    return api_config(
        dataclasses.replace(config, queues=dataclasses.replace(config.queues, own_slot=queues))
    )


def keys_of(api: Api, queue: str) -> Keys:
    keys = api.daemon.engine.keys
    return keys.in_queue(queue) if queue else keys


def put(api: Api, queue: str, n: int, company: str = "") -> str:
    """XADD an event numbered `n` into `queue`'s space ('' the namespace's); its id."""
    row = {"type": "job.completed", "job_id": f"job_{n}", "job_type": "noop",
           "company_id": company, "status": "completed", "ts": int(time.time() * 1000),
           "data": json.dumps({"n": n})}  # fmt: skip
    stream = keys_of(api, queue).events
    return str(api.daemon.engine.link.run_sync(lambda c: c.xadd(stream, row)))


def n_of(frame: dict[str, Any]) -> int:
    n: int = frame["data"]["n"]
    return n


def check_ids(frames: list[dict[str, Any]], where: dict[int, tuple[str, str]]) -> None:
    """Each frame's id is a cursor whose part for its event's stream is that event's
    stream id, and the cursors never go back in any stream."""
    last: Cursor | None = None
    for f in frames:
        at = Cursor.parse(f["id"])
        assert at is not None, f["id"]
        queue, entry = where[n_of(f)]
        assert at.get(queue) == entry
        if last is not None:
            assert all(at.key(q) >= last.key(q) for q in last)
        last = at


async def test_a_slotted_queues_events_reach_a_subscriber(config: Config) -> None:
    async with running_api(spread(config, BULK)) as api, feed(api) as ws:
        hello = await recv(ws)
        start = Cursor.parse(hello["last_event_id"])
        assert start is not None and list(start) == ["", BULK]
        (job,) = enqueue(api.daemon.engine, [{"type": "noop", "queue": BULK}])
        ev = await recv(ws)
        assert (ev["type"], ev["job_id"]) == ("job.enqueued", job)
        (entry, _), *_ = api.daemon.engine.link.client.xrange(keys_of(api, BULK).events)
        assert ev["id"] == f"{start.home},{BULK}={entry}"
        home = put(api, "", 1)
        ev = await recv(ws)
        assert ev["id"] == f"{home},{BULK}={entry}" and n_of(ev) == 1


async def test_a_resume_replays_exactly_what_was_missed_in_every_space(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ws_session, "REPLAY_CHUNK", 5)  # many rounds of both streams
    where: dict[int, tuple[str, str]] = {}
    count = 0

    def produce(queues: str) -> list[int]:
        nonlocal count
        out = []
        for q in queues:
            queue = BULK if q == "b" else ""
            where[count] = (queue, put(api, queue, count))
            out.append(count)
            count += 1
        return out

    async with running_api(spread(config, BULK)) as api:
        async with feed(api) as ws:
            await recv(ws)
            sent = produce("hbbhbhhbbb")
            got = [await recv(ws) for _ in sent]
        assert sorted(n_of(f) for f in got) == sent
        check_ids(got, where)
        cut = 4
        missed = [n_of(f) for f in got[cut + 1 :]]
        missed += produce("bbbbbbbbbbbbhhhbhbhbbbbbbbh")  # while the client is away

        async def more() -> None:  # and while it resumes
            for q in "hbhbbbhhbb":
                missed.extend(produce(q))
                await trio.lowlevel.checkpoint()

        resume = f"last_event_id={got[cut]['id']}"
        async with trio.open_nursery() as nursery, feed(api, resume) as ws:
            assert (await recv(ws))["last_event_id"] == got[cut]["id"]
            nursery.start_soon(more)
            again = [await recv(ws) for _ in range(len(missed) + 10)]
            last = produce("b")
            assert n_of(await recv(ws)) == last[0]  # nothing more came before it
        assert sorted(n_of(f) for f in again) == sorted(missed)  # none lost, none twice
        check_ids(again, where)
        for queue in ("", BULK):  # each stream in its order
            ns = [n_of(f) for f in again if where[n_of(f)][0] == queue]
            assert ns == sorted(ns)
        # An id the replay gave resumes exactly as well.
        mid = again[17]
        async with feed(api, f"last_event_id={mid['id']}") as ws:
            await recv(ws)
            rest = [n_of(await recv(ws)) for _ in range(len(again) - 18 + 1)]
        assert sorted(rest) == sorted([n_of(f) for f in again[18:]] + last)


async def test_a_live_id_after_a_replay_covers_what_the_replay_read_ahead_of_the_hub(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    paused = False
    xread = EventHub._xread

    def lagging(hub: EventHub, client: Any, queue: str, at: str, block: int | None) -> Any:
        return [] if paused and queue == BULK else xread(hub, client, queue, at, block)

    monkeypatch.setattr(EventHub, "_xread", lagging)
    async with running_api(spread(config, BULK)) as api:
        async with feed(api) as ws:
            await recv(ws)
            put(api, "", 1)
            put(api, BULK, 2)
            cursor = [await recv(ws) for _ in range(2)][-1]["id"]
        paused = True  # the hub does not see bulk's next event; the replay does
        b3 = put(api, BULK, 3)
        async with feed(api, f"last_event_id={cursor}") as ws:
            await recv(ws)
            assert n_of(await recv(ws)) == 3  # replayed
            h4 = put(api, "", 4)  # live, while the hub still stands before b3
            ev = await recv(ws)
            assert ev["id"] == f"{h4},{BULK}={b3}"
            paused = False
            put(api, BULK, 5)
            assert n_of(await recv(ws)) == 5  # b3 is not sent twice
        async with feed(api, f"last_event_id={ev['id']}") as ws:
            await recv(ws)
            assert n_of(await recv(ws)) == 5


async def test_a_queue_slotted_after_the_hub_started_is_read_from_its_start(
    config: Config,
) -> None:
    async with running_api(api_config(config)) as api:
        async with feed(api) as ws:
            await recv(ws)
            first = put(api, "", 0)
            assert (await recv(ws))["id"] == first  # no queue space: a plain stream id
            other = Engine.build(spread(config, "late"), daemon=True)
            try:
                (job,) = enqueue(other, [{"type": "noop", "queue": "late"}])
            finally:
                other.close()
            ev = await recv(ws)  # within the spaces' refresh
            assert (ev["job_id"], ev["type"]) == (job, "job.enqueued")
            at = Cursor.parse(ev["id"])
            assert at is not None and list(at) == ["", "late"]
        # An id from before the queue had a space names none of it: the queue's whole
        # stream follows, then the namespace's events after it.
        home = put(api, "", 7)
        async with feed(api, f"last_event_id={first}") as ws:
            await recv(ws)
            assert (await recv(ws))["job_id"] == job
            assert (await recv(ws))["id"] == f"{home},late={at.get('late')}"


async def test_a_companys_feed_and_replay_span_the_spaces(config: Config) -> None:
    async with running_api(spread(config, BULK)) as api:
        eng = api.daemon.engine
        client = eng.link.client
        acme = token("acme")

        def jobs(company: str, *queues: str | None) -> list[str]:
            return enqueue(eng, [{"type": "noop", "company_id": company, "queue": q}
                                 for q in queues])  # fmt: skip

        async with feed(api, tok=acme) as ws:
            await recv(ws)
            with trio.fail_after(10):  # the hub marks acme watched in every space
                while any(client.zscore(keys_of(api, q).events_watched, "acme") is None
                          for q in ("", BULK)):  # fmt: skip
                    await trio.sleep(0.05)
            # Live: acme's events of both spaces, none of globex's.
            jobs("globex", BULK, None)
            mine = jobs("acme", BULK, None)
            got = [await recv(ws) for _ in mine]
            assert sorted(f["job_id"] for f in got) == sorted(mine)
            assert {f["company_id"] for f in got} == {"acme"}
            cursor = got[-1]["id"]
        later = jobs("acme", BULK, None, BULK)
        jobs("globex", BULK, None)
        # The shared streams lose everything; each space's acme stream keeps it.
        for q in ("", BULK):
            client.xtrim(keys_of(api, q).events, maxlen=0, approximate=False)
            assert client.xlen(keys_of(api, q).company_events("acme")) >= 2
        async with feed(api, f"last_event_id={cursor}", tok=acme) as ws:
            await recv(ws)
            again = [await recv(ws) for _ in later]  # a gap frame would be among them
            assert sorted(str(f.get("job_id")) for f in again) == sorted(later)
            (last,) = jobs("acme", BULK)
            assert (await recv(ws))["job_id"] == last


async def test_metrics_count_the_events_of_every_space(config: Config) -> None:
    async with running_api(spread(config, BULK)) as api:
        async with feed(api) as ws:  # the hub reads both streams from here on
            await recv(ws)
            put(api, BULK, 1)
            put(api, "", 2)
            put(api, BULK, 3)
            assert sorted([n_of(await recv(ws)) for _ in range(3)]) == [1, 2, 3]
        assert await metric(api, "fleetd_jobs_completed_total", type="noop") == 3


async def test_malformed_composite_ids_are_refused(config: Config) -> None:
    top = 2**64 - 1
    bad = [
        "1-0,", "1-0,bulk=", "1-0,bulk", "1-0,Bulk=1-0", "1-0,=1-0", ",bulk=1-0", "bulk=1-0",
        "1-0;bulk=1-0", "1-0,bulk=1-0,bulk=2-0", f"1-0,bulk={top}-{top}",
        f"1-0,bulk={top + 1}-0", "1-0,bulk=1-0,x" + "y" * 40 + "=1-0",
        "1-0" + "".join(f",q{i}=1-0" for i in range(300)),
    ]  # fmt: skip
    async with running_api(spread(config, BULK)) as api:
        bearer = {"Authorization": f"Bearer {token()}"}
        for wire in bad:
            r = await handshake(api, f"{FEED}?last_event_id={wire}", bearer)
            assert r.status_code == 422, wire
            (field,) = error_of(r)["details"]["fields"]
            assert field["field"] == "last_event_id" and "bulk=" in field["message"]
        # A well-formed id naming a queue without a space is taken (that part is moot).
        start = put(api, "", 1)
        put(api, "", 2)
        async with feed(api, f"last_event_id={start},bulk=0-0,nosuch=5-0") as ws:
            await recv(ws)
            assert n_of(await recv(ws)) == 2
            put(api, BULK, 3)
            ev = await recv(ws)
            assert n_of(ev) == 3 and "nosuch" not in ev["id"]


async def test_the_feed_spans_spaces_on_a_redis_cluster(
    own_redis: RedisServerFactory, namespace: str, tmp_path: Path
) -> None:
    """One node owning every slot: it refuses a command over two slots (CROSSSLOT) as
    any cluster does, so every read, mark and replay must name one space's keys."""
    server = own_redis(
        extra_args=["--cluster-enabled", "yes", "--cluster-config-file", str(tmp_path / "n")]
    )
    server.command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)

    def formed() -> bool:
        info = server.command("CLUSTER", "INFO")
        return isinstance(info, bytes) and b"cluster_state:ok" in info

    wait_until("cluster_state:ok", formed)
    url = f"redis+cluster://{HOST}:{server.port}"
    config = make_config(url, namespace, tmp_path / "state", events={"company_maxlen": 100})
    async with running_api(spread(config, BULK)) as api:
        async with feed(api, tok=token("acme")) as ws:
            await recv(ws)
            with trio.fail_after(10):  # marked watched in both spaces
                while api.daemon.engine.link.client.zscore(
                    keys_of(api, BULK).events_watched, "acme"
                ) is None:  # fmt: skip
                    await trio.sleep(0.05)
            put(api, BULK, 1, "acme")
            put(api, "", 2, "acme")
            got = [await recv(ws) for _ in range(2)]
        assert sorted(n_of(f) for f in got) == [1, 2]
        cursor = got[0]["id"]
        async with feed(api, f"last_event_id={cursor}", tok=token("acme")) as ws:
            await recv(ws)
            assert n_of(await recv(ws)) == n_of(got[1])
            put(api, BULK, 3, "acme")
            assert n_of(await recv(ws)) == 3


def test_cursor_wire_form() -> None:
    assert Cursor.parse("17-3") == Cursor({"": "17-3"})
    assert Cursor({"": "17-3"}).render() == "17-3"
    at = Cursor.parse("17-3,zz=1-0,bulk=5-2")
    assert at is not None and at.render() == "17-3,bulk=5-2,zz=1-0"
    assert at.moved("new", "9-9").render() == "17-3,bulk=5-2,new=9-9,zz=1-0"
    assert at.get("other") == "0-0" and "other" not in at
    assert Cursor.parse("17-3,bulk=5-2,bulk=5-3") is None
