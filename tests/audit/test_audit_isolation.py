"""No caller can erase another's audit trail by volume, against a real daemon and Redis.

Anonymous refusals (a mutating call without a valid token) go to their own capped
stream, so a flood of them never evicts an authenticated caller's entry; each
company's entries are also kept in a capped stream of its own, which its reads use,
so one company's volume never shortens another's trail. The platform admin's
unfiltered read still shows every entry, anonymous ones included, newest first.
"""

from __future__ import annotations

import time
from typing import Any

import trio
from api_client import PREFIX, Api, api_config, auth, running_api

from fleetd.audit.entry import Action, AuditEntry, Door
from fleetd.audit.reader import AuditReader
from fleetd.audit.spool import Stamped
from fleetd.audit.store import AuditCaps, AuditStore, route
from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.model import format_ts

FLOOD = 400  # several times the smallest cap (100): ~ trimming keeps 100-200 entries
# Minted at import: valid for a day, so a long run of the suite cannot outlive them.
ACME = auth("acme", subject="alice", ttl=86_400)
GLOBEX = auth("globex", subject="bob", ttl=86_400)


def capped(config: Config, **http: Any) -> Config:
    return api_config(config, **{"audit_maxlen": 100, "audit_anonymous_maxlen": 100, **http})


async def read_all(api: Api, limit: int = 50, **params: Any) -> list[dict[str, Any]]:
    """Every entry a read shows, through its pages."""
    headers = params.pop("headers", api.headers)
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        r = await api.get(f"{PREFIX}/audit", params=query, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        out.extend(body["entries"])
        cursor = body["next_cursor"]
        if cursor is None:
            return out


async def settle(api: Api) -> None:
    """Every entry submitted so far is in Redis: the writer writes in order, so a
    last call's entry appearing means every earlier one was written."""
    r = await api.delete(f"{PREFIX}/sentinel")
    assert r.status_code == 404
    with trio.fail_after(20):
        while not (await api.get(f"{PREFIX}/audit", params={"target": "sentinel"})).json()[
            "entries"
        ]:
            await trio.sleep(0.05)


def newest_first(entries: list[dict[str, Any]]) -> bool:
    ids = [tuple(map(int, e["id"].split("-"))) for e in entries]
    return ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)


async def test_anonymous_flood_does_not_evict_authenticated_entries(config: Config) -> None:
    async with running_api(capped(config)) as api:
        for _ in range(3):
            await api.enqueue({"type": "noop"}, headers=ACME)
        assert (await api.post(f"{PREFIX}/enqueue", json={"type": "nope"})).status_code == 422
        for _ in range(FLOOD):  # no token at all: refused, and audited as anonymous
            r = await api.client.post(f"{PREFIX}/enqueue", json={"type": "noop"})
            assert r.status_code == 401
        await settle(api)
        everything = await read_all(api, limit=500)
        assert newest_first(everything)
        mine = [(e["subject"], e["outcome"]) for e in everything if e["subject"] != "anonymous"]
        assert (
            mine
            == [("tester", "not_found")] + [("tester", "validation_failed")] + [("alice", "ok")] * 3
        )
        # The anonymous refusals are still shown (their own cap: the newest ones kept)...
        anonymous = [e for e in everything if e["subject"] == "anonymous"]
        assert 100 <= len(anonymous) < FLOOD
        assert all(e["status"] == 401 and e["company_id"] is None for e in anonymous)
        assert anonymous == await read_all(api, limit=7, subject="anonymous")
        # ...newer than everything authenticated before them, older than the sentinel.
        assert everything[0]["target"] == "sentinel" and everything[1] == anonymous[0]
        assert len(await read_all(api, headers=ACME)) == 3


async def test_a_company_flood_leaves_another_company_trail_intact(
    config: Config, engine: Engine
) -> None:
    cfg = capped(config, audit_company_maxlen=100)
    async with running_api(cfg) as api:
        job = (await api.enqueue({"type": "noop"}, headers=GLOBEX))["job_id"]
        await api.delete(f"{PREFIX}/{job}", headers=GLOBEX)
        await api.delete(f"{PREFIX}/{job}", headers=GLOBEX)  # 409
        for i in range(FLOOD):  # cheap refused calls, each audited under acme
            assert (await api.delete(f"{PREFIX}/nope-{i}", headers=ACME)).status_code == 404
        await settle(api)
        want = [("job.cancel", "conflict"), ("job.cancel", "ok"), ("job.enqueue", "ok")]
        for read in (
            read_all(api, headers=GLOBEX),
            read_all(api, company_id="globex"),
            read_all(api, limit=1, headers=GLOBEX),
        ):
            got = await read
            assert [(e["action"], e["outcome"]) for e in got] == want
            assert {e["subject"] for e in got} == {"bob"} and newest_first(got)
        only = await read_all(api, action="job.cancel", outcome="ok", headers=GLOBEX)
        assert [e["target"] for e in only] == [job]
        # The per-company cap trimmed acme's stream only; the shared one is capped too.
        client, keys = engine.link.client, engine.keys
        assert 100 <= client.xlen(keys.audit_company("acme")) <= 200
        assert client.xlen(keys.audit_company("globex")) == 3
        assert client.xlen(keys.audit) <= 200
        # An entry has one id whichever stream it is read from.
        shared = {e["uid"]: e["id"] for e in await read_all(api, limit=500)}
        for e in await read_all(api, headers=GLOBEX):
            assert e["uid"] not in shared or shared[e["uid"]] == e["id"]


async def test_entries_of_the_previous_version_stay_readable(
    config: Config, engine: Engine
) -> None:
    """The previous version wrote everything, anonymous refusals included, to the
    shared stream only: a company's read continues there below its own stream."""
    client, keys = engine.link.client, engine.keys
    minute_ago = int(time.time() * 1000) - 60_000
    olds = (("old-alice", "acme"), ("old-anon", ""), ("old-bob", "globex"))
    for n, (subject, company) in enumerate(olds):
        fields = AuditEntry(Action.JOB_ENQUEUE, subject, Door.HTTP).fields()
        client.xadd(keys.audit, {**fields, "company_id": company}, id=f"{minute_ago}-{n}")
    async with running_api(api_config(config)) as api:
        await api.enqueue({"type": "noop"}, headers=ACME)
        await api.client.post(f"{PREFIX}/enqueue", json={"type": "noop"})  # 401
        await settle(api)
        acme = await read_all(api, limit=1, headers=ACME)
        assert [e["subject"] for e in acme] == ["alice", "old-alice"] and newest_first(acme)
        assert [e["subject"] for e in await read_all(api, company_id="acme")] == [
            "alice",
            "old-alice",
        ]
        # since / until select across the company's stream and the older shared one.
        half = format_ts(minute_ago + 30_000)
        for bound, want in (("until", ["old-alice"]), ("since", ["alice"])):
            query: dict[str, Any] = {bound: half}
            got = await read_all(api, headers=ACME, **query)
            assert [e["subject"] for e in got] == want, bound
        everything = [e["subject"] for e in await read_all(api, limit=2)]
        assert everything == ["tester", "anonymous", "alice", "old-bob", "old-anon", "old-alice"]


def test_one_batch_mixing_the_streams_reads_back_whole(engine: Engine) -> None:
    """Anonymous, company and company-less entries written in one call get ids unique
    across the streams: the merged read pages through each exactly once, in order."""
    store = AuditStore(engine.keys, engine.scripts, AuditCaps(100_000, 100_000, 100_000))
    entries = []
    for i in range(300):
        anonymous = i % 3 == 0
        entries.append(
            AuditEntry(
                Action.JOB_ENQUEUE,
                "anonymous" if anonymous else f"s{i}",
                Door.HTTP if anonymous else Door.CLI,
                company_id=None if anonymous or i % 3 == 1 else "acme",
                anonymous=anonymous,
            )
        )
    stamped = [Stamped("epoch-1", i + 1, e) for i, e in enumerate(entries)]
    client = engine.link.client
    assert store.write(client, "epoch-1", stamped) == 300
    assert store.write(client, "epoch-1", stamped) == 0  # exactly once, as before
    assert client.xlen(engine.keys.audit_anonymous) == 100
    reader = AuditReader(engine.keys)
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        page, cursor = reader.read(client, limit=7, cursor=cursor)
        seen.extend(page)
        if cursor is None:
            break
    assert [e["uid"] for e in seen] == [e.uid for e in reversed(entries)]
    assert newest_first(seen)
    acme, _ = reader.read(client, limit=500, filters={"company_id": "acme"})
    assert [e["uid"] for e in acme] == [e.uid for e in reversed(entries) if e.company_id]


def test_the_anonymous_mark_survives_the_spool() -> None:
    """An anonymous refusal spooled while Redis was away still goes to its own stream
    when written; a line of the previous version (no flag) is told by its subject."""
    entry = AuditEntry(Action.JOB_ENQUEUE, "anonymous", Door.HTTP, status=401, anonymous=True)
    assert AuditEntry.from_json(entry.to_json()).anonymous
    old = entry.to_json()
    del old["anonymous"]
    assert AuditEntry.from_json(old).anonymous
    # A token may name its subject "anonymous": authenticated, audited as any other.
    for company in ("acme", None):
        named = AuditEntry(Action.JOB_ENQUEUE, "anonymous", Door.HTTP, company_id=company)
        assert not AuditEntry.from_json(named.to_json()).anonymous
        assert route(named) == ("cacme" if company else "s")
    assert route(entry) == "a"


def test_any_company_id_names_its_own_stream(engine: Engine) -> None:
    store = AuditStore(engine.keys, engine.scripts, AuditCaps(1000, 1000, 1000))
    odd = ["eu\nwest", 's{"x":1}\n', "é:ü", "c", "a"]
    entries = [AuditEntry(Action.JOB_ENQUEUE, "bob", Door.CLI, company_id=c) for c in odd]
    store.write(engine.link.client, "e", [Stamped("e", i + 1, e) for i, e in enumerate(entries)])
    reader = AuditReader(engine.keys)
    for company, entry in zip(odd, entries, strict=True):
        assert engine.link.client.xlen(engine.keys.audit_company(company)) == 1
        page, _ = reader.read(engine.link.client, limit=10, filters={"company_id": company})
        assert [e["uid"] for e in page] == [entry.uid]
    assert not engine.link.client.exists(engine.keys.audit_anonymous)
