"""A schedule whose template is a workflow makes each occurrence's workflows exactly
once, against real Redis: they are stored by the script call that wins the occurrence,
so a scheduler dying right after winning (injected in-process, where the gap used to
be: the workflows were submitted by a second call) loses nothing, a second scheduler
makes no second copy, and schedulers SIGKILLed at random leave every occurrence with
its workflows once."""

from __future__ import annotations

import dataclasses
import random
import signal
import time
from typing import Any

import pytest
from conftest import fleetd_env
from daemons import Fleet, FleetdProcess, settings, wait_for

from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.schedules import firing
from fleetd.schedules.fire_call import schedule_fire
from fleetd.schedules.firing import FiringOps
from fleetd.schedules.store import ScheduleOps
from fleetd.schedules.templated import occurrence_workflow_id, workflow_args
from fleetd.templates.model import TemplateSpec
from fleetd.templates.store import TemplateOps
from fleetd.workflows.store import WorkflowOps

COMPANIES = ["acme", "globex", "initech"]
FLOW = TemplateSpec.model_validate({
    "name": "report-flow",
    "params": {"type": "object", "properties": {"company": {"type": "string"}},
               "required": ["company"]},
    "workflow": {"company_id": {"$param": "company"},
                 "chain": [{"type": "noop"}, {"type": "noop"}]},
})  # fmt: skip


class SchedulerDied(Exception):
    pass


def _schedule(engine: Engine, every: str = "1h") -> tuple[ScheduleOps, str]:
    client = engine.link.client
    TemplateOps(engine.ops).save(client, FLOW)
    ops = ScheduleOps.from_engine(engine)
    job = ops.add(client, {
        "name": "flows", "schedule": every, "template": {"name": "report-flow"},
        "for_each": [{"company": c} for c in COMPANIES],
    })  # fmt: skip
    return ops, job.id


def _workflow_ids(engine: Engine) -> list[str]:
    return sorted(engine.link.client.zrange(engine.keys.workflows, 0, -1))


def test_a_scheduler_dying_right_after_winning_loses_no_workflow(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    ops, schedule_id = _schedule(engine)
    client = engine.link.client
    now = ops.now_ms(client)
    client.zadd(engine.keys.schedules_due, {schedule_id: now})
    real = schedule_fire

    def won_then_died(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        raise SchedulerDied  # the process ends here: nothing of the firing runs after

    monkeypatch.setattr(firing, "schedule_fire", won_then_died)
    with pytest.raises(SchedulerDied):
        FiringOps(ops).fire_due(client, schedule_id, now, now, 60_000)
    monkeypatch.undo()
    # The occurrence is won (the schedule advanced) and its three workflows are stored.
    schedule = ops.require(client, schedule_id)
    assert schedule.runs == 1 and schedule.last_occurrence_ms is not None
    occurrence = schedule.last_occurrence_ms
    expected = sorted(occurrence_workflow_id(schedule_id, occurrence, i) for i in range(3))
    assert _workflow_ids(engine) == expected
    workflows = WorkflowOps(engine.ops)
    answers = [workflows.get(client, wid) for wid in expected]
    assert sorted(a.company_id or "" for a in answers if a is not None) == COMPANIES
    assert schedule.last_job_id == occurrence_workflow_id(schedule_id, occurrence, 0)
    # Another scheduler that read the same due time before the advance wins nothing.
    assert FiringOps(ops).fire_due(client, schedule_id, now, now, 60_000) is None
    assert _workflow_ids(engine) == expected
    # The same workflows handed to the script again are not stored twice.
    plans = [workflows.plan({"company_id": c, "chain": [{"type": "noop"}]}) for c in COMPANIES]
    args = workflow_args([
        dataclasses.replace(p, workflow_id=wid) for p, wid in zip(plans, expected, strict=True)
    ])  # fmt: skip
    code, _, job_id, *_ = schedule_fire(
        ops.scripts, client, schedule_id, "manual", event_data="{}", rows=[], workflows=args
    )
    assert (code, job_id) == (1, expected[0])
    assert _workflow_ids(engine) == expected
    assert all(client.hlen(engine.keys.workflow_nodes(w)) == 2 for w in expected)
    # The next occurrence makes its own three.
    due = int(client.zscore(engine.keys.schedules_due, schedule_id) or 0)
    later = ops.now_ms(client)  # the due time the scheduler reads is the one stored
    client.zadd(engine.keys.schedules_due, {schedule_id: later})
    fired = FiringOps(ops).fire_due(client, schedule_id, later, later, 3_600_000)
    assert fired is not None and fired.action == "fire" and due > occurrence
    assert len(_workflow_ids(engine)) == 6


@pytest.mark.slow
def test_schedulers_sigkilled_at_random_make_each_occurrences_workflows_once(
    config: Config, engine: Engine, fleet: Fleet
) -> None:
    ops, schedule_id = _schedule(engine, "1s")
    env = fleetd_env(config) | settings(daemon_log_format="json",
                                        daemon_heartbeat_interval="500ms")  # fmt: skip
    first_due = ops.require(engine.link.client, schedule_id).next_run_ms
    assert first_due is not None
    live = [fleet.start(env, "--roles", "scheduler", name=f"d{i}") for i in (1, 2)]
    killed: list[FleetdProcess] = []
    rng = random.Random(20)
    for round_ in range(5):  # one of the two SIGKILLed at a random moment, then replaced
        time.sleep(rng.uniform(0.4, 1.6))
        victim = live.pop(rng.randrange(len(live)))
        victim.kill()
        killed.append(victim)
        live.append(fleet.start(env, "--roles", "scheduler", name=f"r{round_}"))
    time.sleep(1.5)
    for d in live:
        d.send(signal.SIGTERM)
    for d in live:
        assert d.wait_exit(10) == 0, d.tail()
    time.sleep(0.1)
    client = engine.link.client
    schedule = ops.require(client, schedule_id)
    assert schedule.last_occurrence_ms is not None
    last = schedule.last_occurrence_ms
    occurrences = list(range(first_due, last + 1, 1000))
    assert len(occurrences) >= 6 and schedule.missed == 0
    expected = sorted(
        occurrence_workflow_id(schedule_id, o, i) for o in occurrences for i in range(3)
    )
    wait_for(lambda: len(_workflow_ids(engine)) >= len(expected), 5, "every workflow")
    assert _workflow_ids(engine) == expected  # each occurrence's three, none twice
    assert schedule.runs == len(occurrences)
    workflows = WorkflowOps(engine.ops)
    for wid in expected:
        answer = workflows.get(client, wid)
        assert answer is not None and answer.total == 2
    for d in live:
        assert "Traceback" not in d.log(), d.tail()
