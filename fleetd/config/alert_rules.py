"""User-defined alert rules: the `[[alerts.rules]]` tables of the [alerts] section.

Owns `AlertRuleConfig` (one rule: a metric, a scope, a threshold, a resolve threshold,
how long each must hold, and the look-back of rate metrics), `METRICS` (what each
metric measures, its unit and direction, and which scopes it takes) and
`rule_problems()`, the checks across a rule's keys and across rules (a name used twice,
a scope the metric has no figures for, a resolve threshold on the wrong side of the
threshold), all reported at once at start-up. `BUILTIN_ALERTS` names the five built-in
rules (built from the `[alerts]` keys by fleetd.runtime.alert_rules) and their
metrics: a rule of the same name replaces one (its `metric` may be left out: the
built-in's), and `enabled = false` turns it off. Evaluated by fleetd.runtime.alert_rules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from fleetd.config.settings import HOUR, MINUTE, SECOND, setting

__all__ = ["BUILTIN_ALERTS", "METRICS", "AlertRuleConfig", "Metric", "rule_problems"]

# The built-in rules (fleetd.runtime.alert_rules.builtin_rules) and their metrics: a rule
# of the same name overrides or (enabled = false) disables one.
BUILTIN_ALERTS = {
    "failure_rate": "failure_rate",
    "backlog": "backlog",
    "no_worker": "workers",
    "redis_unreachable": "redis_down",
    "scheduler_missed": "schedule_missed",
}
# The other built-in alerts name what they find (not one metric's threshold): no rule
# may take their names.
RESERVED = (
    "unhandled_type", "unserved_queue", "quota_exceeded", "quarantined", "enqueue_anomaly",
    "payload_anomaly",
)  # fmt: skip
_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


@dataclass(frozen=True)
class Metric:
    unit: str
    below: bool  # raised below the threshold (else above)
    scoped: bool  # takes a type / company scope
    text: str


METRICS: dict[str, Metric] = {
    "failure_rate": Metric("%", False, True, "% of finished jobs that failed for good"),
    "backlog": Metric("jobs", False, True, "jobs ready and waiting to run"),
    "wait_p95": Metric("s", False, True, "95th percentile wait (due to start)"),
    "run_p95": Metric("s", False, True, "95th percentile run time of ended attempts"),
    "throughput": Metric("/min", True, True, "jobs completed or failed for good per minute"),
    "no_completions": Metric("jobs", False, True, "no job completed while work was pending"),
    "schedule_lateness": Metric("s", False, False, "95th percentile lateness of firings"),
    "daemon_memory": Metric("MiB", False, False, "resident memory of the largest daemon"),
    "workers": Metric("daemons", True, False, "live daemons with the worker role"),
    "schedule_missed": Metric("runs", False, False, "scheduled occurrences missed"),
    "redis_down": Metric("", False, False, "1 while this daemon cannot reach Redis"),
}


@dataclass(frozen=True)
class AlertRuleConfig:
    name: str = setting("", "the alert's name (events, webhook, fleetd_alert_active)")
    metric: str = setting("", "what is measured", choices=(*METRICS,))
    type: str = setting("", "scope: only jobs of this type ('' = all)")
    company: str = setting("", "scope: only jobs of this company ('' = all)")
    threshold: float = setting(0.0, "raised beyond this value (below it for throughput)",
                               kind="float", min=0)  # fmt: skip
    resolve: float = setting(
        -1.0, "resolved back past this value; -1 = 80% of threshold (125% when below)",
        kind="float", min=-1,
    )  # fmt: skip
    for_: float = setting(30 * SECOND, "the condition holds this long before it is raised",
                          kind="duration", min=0, key="for")  # fmt: skip
    resolve_for: float = setting(60 * SECOND, "the resolve condition holds this long",
                                 kind="duration", min=0)  # fmt: skip
    window: float = setting(5 * MINUTE, "rates and percentiles look back this far (minutes)",
                            kind="duration", min=MINUTE, max=HOUR)  # fmt: skip
    min_jobs: int = setting(10, "failure rate and percentiles need this many jobs", min=1)
    enabled: bool = setting(True, "false: the rule (or the built-in of its name) is off")

    @property
    def spec(self) -> Metric:
        return METRICS[self.metric]

    @property
    def local(self) -> bool:
        """Each daemon's own (redis_down): sent by every daemon that sees it."""
        return self.metric == "redis_down"

    @property
    def resolve_at(self) -> float:
        if self.resolve >= 0:
            return self.resolve
        return self.threshold * (1.25 if self.spec.below else 0.8)


def rule_problems(label: str, rules: Mapping[int, AlertRuleConfig]) -> list[str]:
    """Every problem across the rules read cleanly ({1-based place: rule})."""
    errors: list[str] = []
    seen: dict[str, int] = {}
    for n, given in rules.items():
        where = f"{label}[{n}]"
        # An override of a built-in that leaves out its metric has the built-in's.
        r = given if given.metric else replace(given, metric=BUILTIN_ALERTS.get(given.name, ""))
        if not r.name:
            errors.append(f"{where}.name: is required")
        elif not _NAME.fullmatch(r.name):
            errors.append(f"{where}.name: must be a-z 0-9 _ starting with a letter, got {r.name!r}")
        elif r.name in RESERVED:
            errors.append(f"{where}.name: {r.name!r} is a built-in alert's name")
        elif r.name in seen:
            errors.append(f"{where}.name: {r.name!r} is also {label}[{seen[r.name]}]'s name")
        else:
            seen[r.name] = n
        if not r.enabled:
            continue  # off: its other keys do not matter
        if not r.metric:
            errors.append(f"{where}.metric: is required (one of {', '.join(METRICS)})")
            continue
        if (r.type or r.company) and not r.spec.scoped:
            errors.append(f"{where}: {r.metric} takes no type or company scope")
        if r.metric == "failure_rate" and r.threshold > 100:
            errors.append(f"{where}.threshold: a failure rate is 0 to 100 (%), got {r.threshold:g}")
        if r.resolve >= 0 and (
            r.resolve < r.threshold if r.spec.below else r.resolve > r.threshold
        ):
            side = "at or above" if r.spec.below else "at or below"
            errors.append(f"{where}.resolve: must be {side} the threshold ({r.threshold:g}), "
                          f"got {r.resolve:g}")  # fmt: skip
    return errors
