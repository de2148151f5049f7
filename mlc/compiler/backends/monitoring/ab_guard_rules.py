"""The alerts of an A/B endpoint's guard: a variant stopped, a run failing, runs missing.

Each guard run (mlc/runtime/ab_guard.py) pushes mlc_ab_guard_* gauges to the Pushgateway.
ABVariantStopped tells the owners that a variant's traffic was taken away and why to look
(its gate values are in mlc_ab_guard_gate_value); ABGuardFailing fires on runs that could not
read Prometheus (`up` 0), during which no variant is measured; ABGuardNotRunning when no run
has reported for two intervals (or never has), which also covers a CronWorkflow that stopped
starting runs.
"""

from __future__ import annotations

from mlc import metrics

from ...ir import Endpoint, ResolvedProject
from . import promql
from .alerts import Alert, Scenario, Series
from .gotemplate import Label
from .rules import RUN_GRACE, RuleSet, _by, _overdue, _step, per_endpoint


def ab_guard_rule_sets(project: ResolvedProject) -> list[RuleSet]:
    return per_endpoint(project, "ab-guard", lambda e: e.rollout.ab_guard is not None,
                        ab_guard_alerts)


def ab_guard_alerts(project: ResolvedProject, endpoint: Endpoint) -> list[Alert]:
    guard = endpoint.rollout.ab_guard
    assert guard is not None
    labels = {**promql.scope(project), "endpoint": endpoint.name}
    by = _by(labels)
    interval = guard.interval_seconds
    step = _step(interval)
    overdue = max(interval, RUN_GRACE)
    state = promql.series(metrics.AB_GUARD_STATE)
    up = promql.series(metrics.AB_GUARD_UP)
    variant = guard.guarded[0] if guard.guarded else guard.baseline

    def at(*series: Series) -> Scenario:
        return Scenario(series, 10 * step, interval_seconds=step)

    def states(current: str) -> tuple[Series, ...]:
        return tuple(Series(state, {**labels, "variant": variant, "state": s},
                            f"{int(s == current)}+0x20") for s in metrics.AB_GUARD_STATES)

    stopped = {**labels, "variant": variant}
    out = [
        Alert(
            name="ABVariantStopped", severity="warning",
            expr=(f"max by ({by}, variant) "
                  f"({promql.selector(state, labels, {'state': 'stopped'})}) == 1"),
            summary=("A/B variant ", Label("variant"), f" of endpoint {endpoint.name} was "
                     "stopped by its guardrails.",),
            description=("Variant ", Label("variant"), " failed its gates (error rate above "
                         f"{promql.number(guard.max_error_rate)} or p99 above "
                         f"{promql.number(guard.max_latency_p99_seconds)}s) in more than "
                         f"{guard.failure_limit} guard runs in a row; the routers send its "
                         f"requests to the other variants (baseline {guard.baseline}). It "
                         "serves again once ml.yaml gives it another version, or once the "
                         f"ConfigMap {guard.config_map} is cleared.",),
            unhealthy=((at(*states("stopped")), stopped),),
            healthy=(at(*states("ok")), at(*states("failing")))),
        Alert(
            name="ABGuardFailing", severity="warning",
            expr=f"min by ({by}) ({promql.selector(up, labels)}) == 0",
            summary=(f"The A/B guard of endpoint {endpoint.name} cannot measure its "
                     "variants.",),
            description=(f"The last run of CronWorkflow {guard.workflow} could not query "
                         f"Prometheus ({project.platform.prometheus_url}): no variant is "
                         "measured, and none is stopped, until it can.",),
            unhealthy=((at(Series(up, labels, "0+0x20")), labels),),
            healthy=(at(Series(up, labels, "1+0x20")),)),
        # a run that is late by a few minutes (a pod pulling the image, a busy controller)
        # is no outage: the alert counts in the runs' grace, not in guard intervals
        _overdue(
            "ABGuardNotRunning", metrics.AB_GUARD_LAST_RUN, labels, overdue, _step(overdue),
            summary=(f"The A/B guard of endpoint {endpoint.name} has stopped running.",),
            description=(f"CronWorkflow {guard.workflow} has not reported a run for more than "
                         f"{promql.duration(2 * overdue)}: no variant's guardrails are "
                         "measured. Check the CronWorkflow and the Pushgateway.",)),
    ]
    return out
