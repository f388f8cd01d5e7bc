"""Quotas at the door: a company over its cap of waiting jobs or its enqueue rate gets
429 with Retry-After (nothing stored), the CLI exits 2 with the reason, other companies
are unaffected, and the quota_exceeded alert names the company."""

from __future__ import annotations

import dataclasses
import json

import pytest
import trio
from api_client import PREFIX, api_config, running_api
from conftest import fleetd_env
from daemons import run_cli, settings
from trio.testing import wait_all_tasks_blocked

from fleetd.api.batcher import EnqueueBatcher
from fleetd.backend.codec import JobRow
from fleetd.config import Config
from fleetd.config.limit_sections import LimitsConfig
from fleetd.engine import Engine
from fleetd.jobs.errors import QuotaExceeded
from fleetd.jobs.model import JobStatus
from fleetd.runtime.alerts import Alerts


def with_quota(cfg: Config, **limits: object) -> Config:
    return dataclasses.replace(cfg, limits=LimitsConfig(**limits))  # type: ignore[arg-type]


async def test_pending_cap_answers_429_and_spares_other_companies(config: Config) -> None:
    cfg = with_quota(api_config(config), company_max_pending=3)
    async with running_api(cfg, roles=("api",)) as api:  # no worker: jobs stay ready
        for _ in range(3):
            await api.enqueue({"type": "noop", "company_id": "A"})
        r = await api.post(f"{PREFIX}/enqueue", json={"type": "noop", "company_id": "A"})
        assert r.status_code == 429, r.text
        assert int(r.headers["Retry-After"]) >= 1
        err = r.json()["error"]
        assert err["code"] == "quota_exceeded"
        assert err["details"]["company_id"] == "A" and err["details"]["quota"] == "pending"
        assert err["details"]["limit"] == 3
        # A bulk request over the cap stores nothing; another company is not refused.
        bulk = {"jobs": [{"type": "noop", "company_id": "B"}] * 4}
        r = await api.post(f"{PREFIX}/enqueue/bulk", json=bulk)
        assert r.status_code == 429
        r = await api.post(f"{PREFIX}/enqueue/bulk", json={"jobs": bulk["jobs"][:3]})
        assert r.status_code == 201
        stats = (await api.get(f"{PREFIX}/stats")).json()
        assert stats["stats"]["pending"] == 6


async def test_enqueue_rate_answers_429_until_the_window_passes(config: Config) -> None:
    cfg = with_quota(api_config(config), company_enqueue_rate="2/1h")
    async with running_api(cfg, roles=("api",)) as api:
        for _ in range(2):
            await api.enqueue({"type": "noop", "company_id": "A"})
        r = await api.post(f"{PREFIX}/enqueue", json={"type": "noop", "company_id": "A"})
        assert r.status_code == 429
        assert r.json()["error"]["details"]["quota"] == "rate"
        assert 1 <= int(r.headers["Retry-After"]) <= 3600
        # Jobs without a company are not a company's: not counted.
        await api.enqueue({"type": "noop"})


def test_quota_refusal_in_the_queue_and_the_alert(engine: Engine, config: Config) -> None:
    cfg = with_quota(config, company_max_pending=1)
    quota = cfg.limits.build().encode_quota(engine.registry.types())
    ops = engine.ops
    ops.quota = quota
    rows = ops.prepare_many([{"type": "noop", "company_id": "A"}])
    engine.link.run_sync(ops.enqueue_rows, rows)
    alerts = Alerts(engine, "a", dataclasses.replace(cfg.alerts, raise_after=0, window=60))
    trio.run(alerts.evaluate)  # the baseline
    more = ops.prepare_many([{"type": "noop", "company_id": "A"}, {"type": "noop"}])
    with pytest.raises(QuotaExceeded) as info:
        engine.link.run_sync(ops.enqueue_rows, more)
    assert info.value.companies == ["A"]
    # All or none: the job without a company in that call was not stored either.
    assert engine.link.client.zcard(engine.keys.status(JobStatus.PENDING)) == 1
    trio.run(alerts.evaluate)
    assert "quota_exceeded" in alerts.active
    assert alerts.values["quota_exceeded"].text.endswith("company(ies) A")


def test_cli_enqueue_over_quota_exits_2_with_the_reason(config: Config) -> None:
    env = fleetd_env(config) | settings(limits_company_max_pending=1)
    first = run_cli(env, "enqueue", "noop", "--data", "{}", "--company", "A")
    assert first.returncode == 0, first.stderr
    done = run_cli(env, "enqueue", "noop", "--data", "{}", "--company", "A")
    assert done.returncode == 2
    assert done.stderr.startswith("fleetd: refused: company 'A' is over its quota")
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_cli_jobs_show_says_why_a_job_waits(config: Config) -> None:
    env = fleetd_env(config)  # no daemon runs: no live daemon has a handler for noop
    done = run_cli(env, "enqueue", "noop", "--data", "{}", "--json")
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout)["job_id"]
    shown = run_cli(env, "jobs", "show", job_id, "--json")
    assert shown.returncode == 0, shown.stderr
    body = json.loads(shown.stdout)
    assert body["waiting"] == "no running daemon has a handler for job type 'noop'"
    text = run_cli(env, "jobs", "show", job_id)
    assert "waiting: no running daemon has a handler" in text.stdout


async def test_a_refused_company_in_a_batch_refuses_no_other(engine: Engine) -> None:
    """The API batches concurrent enqueues into one script call: a call with a company
    over its quota stores nothing, and the batcher writes the others' requests again."""
    ops = engine.ops
    ops.quota = LimitsConfig(company_max_pending=1).build().encode_quota(["noop"])
    batcher = EnqueueBatcher(engine.link, ops)
    over = ops.prepare_many([{"type": "noop", "company_id": "A"}] * 2)
    fine = ops.prepare_many([{"type": "noop", "company_id": "B"}])
    got: dict[str, object] = {}

    async def send(name: str, rows: list[JobRow]) -> None:
        try:
            got[name] = await batcher.enqueue(rows)
        except QuotaExceeded as exc:
            got[name] = exc

    async with trio.open_nursery() as nursery:
        # Both requests wait in the batcher's queue before its flusher runs, so they go
        # to Redis in one call (what concurrent API requests do).
        batcher._running = True
        nursery.start_soon(send, "A", over)
        nursery.start_soon(send, "B", fine)
        await wait_all_tasks_blocked()
        calls = engine.link.client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
        nursery.start_soon(batcher._flusher)
        with trio.fail_after(10):
            while len(got) < 2:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert isinstance(got["A"], QuotaExceeded) and got["A"].companies == ["A"]
    assert isinstance(got["B"], list) and [r.job_id for r in got["B"]] == [fine[0].id]
    pending = engine.link.client.zrange(engine.keys.status(JobStatus.PENDING), 0, -1)
    assert pending == [fine[0].id]
    after = engine.link.client.info("commandstats")["cmdstat_evalsha"]["calls"]
    assert after - calls == 2  # the mixed call (refused), then B's again alone


async def test_two_refused_companies_in_a_batch_each_hear_only_of_their_own(
    engine: Engine,
) -> None:
    """One call refusing two companies names the first; each request is answered with
    its own company's refusal, so no company learns of another's (nor of its quota)."""
    ops = engine.ops
    ops.quota = LimitsConfig(company_max_pending=1).build().encode_quota(["noop"])
    batcher = EnqueueBatcher(engine.link, ops)
    rows = {c: ops.prepare_many([{"type": "noop", "company_id": c}] * 2) for c in ("A", "B")}
    got: dict[str, object] = {}

    async def send(name: str) -> None:
        try:
            got[name] = await batcher.enqueue(rows[name])
        except QuotaExceeded as exc:
            got[name] = exc

    async with trio.open_nursery() as nursery:
        batcher._running = True  # both wait before the flusher runs: one call
        nursery.start_soon(send, "A")
        nursery.start_soon(send, "B")
        await wait_all_tasks_blocked()
        nursery.start_soon(batcher._flusher)
        with trio.fail_after(10):
            while len(got) < 2:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    for mine, other in (("A", "B"), ("B", "A")):
        exc = got[mine]
        assert isinstance(exc, QuotaExceeded), exc
        assert exc.company_id == mine and exc.companies == [mine], exc.companies
        assert repr(other) not in str(exc) and exc.quota == "pending" and exc.limit == 1
    assert engine.link.client.zcard(engine.keys.status(JobStatus.PENDING)) == 0
