"""The alerts of a model-quality monitor: a drop against training, a run failing, runs missing.

A monitor's run pushes mlc_model_quality_* gauges (mlc/metrics.py) to the Pushgateway at its
end, grouped by `monitor`. ModelQualityDropped fires when a metric is worse than the served
version's training evaluation by more than `maxDrop` (the run pushes the drop only when it
scored, so a run still waiting for labels cannot fire it); ModelQualityFailing on a run that
could not read the log, the labels or the registry (`up` 0); ModelQualityNotRunning when no
run has reported for two of the schedule's longest gaps (or never has).
"""

from __future__ import annotations

from mlc import metrics

from ...ir import QualityMonitor, ResolvedProject
from ..argo.retrain_triggers import QUALITY_ALERT
from . import promql, schedules
from .alerts import Alert, Group, Scenario, Series
from .gotemplate import Label
from .rules import RuleSet, _by, _failed_run, _overdue, _step


def quality_rule_sets(project: ResolvedProject) -> list[RuleSet]:
    return [RuleSet(f"quality-{q.k8s_name}", q.origin,
                    (Group(f"quality-{q.k8s_name}-alerts", tuple(quality_alerts(project, q))),))
            for q in project.quality_monitors.values()]


def quality_alerts(project: ResolvedProject, q: QualityMonitor) -> list[Alert]:
    labels = {**promql.scope(project), "monitor": q.name, "endpoint": q.endpoint}
    by = _by(labels)
    interval = schedules.max_interval_seconds(q.schedule)
    step = _step(interval)
    drop = promql.series(metrics.QUALITY_DROP)
    first = q.metrics[0]

    def at(*series: Series) -> Scenario:
        return Scenario(series, 10 * step, interval_seconds=step)

    def dropped(value: float) -> Series:
        return Series(drop, {**labels, "metric": first}, f"{promql.number(value)}+0x20")

    out = [
        Alert(
            name=QUALITY_ALERT, severity="warning",
            expr=(f"max by ({by}, metric) ({promql.selector(drop, labels)}) > "
                  f"{promql.number(q.max_drop)}"),
            summary=(f"The {', '.join(q.metrics)} of endpoint {q.endpoint} dropped: ",
                     Label("metric"), " is worse than in training by more than "
                     f"{promql.number(q.max_drop)}."),
            description=(f"Quality monitor {q.name} (pipeline {q.pipeline}) joined the "
                         f"endpoint's predictions with labels from `{q.labels_source}` and "
                         "found ", Label("metric"), " worse than the served version's "
                         "training evaluation by more than the monitor's maxDrop. Its last "
                         "run's quality.json has the figures; retrain the model or roll back "
                         "the version.",),
            unhealthy=((at(dropped(2 * q.max_drop)), {**labels, "metric": first}),),
            healthy=(at(dropped(q.max_drop / 2)), at(dropped(-q.max_drop)))),
        _failed_run(
            "ModelQualityFailing", metrics.QUALITY_UP, labels, step,
            summary=(f"The quality monitor {q.name} of endpoint {q.endpoint} failed.",),
            description=(f"The last run of pipeline {q.pipeline} could not score the endpoint "
                         f"(prediction log, labels source `{q.labels_source}` or the model "
                         "registry unreadable, or a column missing); see the logs of its "
                         "last workflow.",)),
    ]
    if interval is not None:
        out.append(_overdue(
            "ModelQualityNotRunning", metrics.QUALITY_LAST_RUN, labels, interval, step,
            summary=(f"The quality monitor {q.name} has stopped running.",),
            description=(f"Pipeline {q.pipeline} has not reported a run for more than "
                         f"{promql.duration(2 * interval)} (schedule `{q.schedule}`). Check "
                         "its CronWorkflow and the Pushgateway.",)))
    return out
