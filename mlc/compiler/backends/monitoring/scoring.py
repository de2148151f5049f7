"""The alerts of a batch endpoint: its scoring run failed, or its scores went stale.

A scoring run pushes mlc_batch_scoring_* gauges (mlc/metrics.py) to the Pushgateway at its
end. ScoringFailed fires on a run that did not publish (`up` 0); ScoresStale fires when no
run has published for two of the schedule's longest gaps (or never has), which also covers
a CronWorkflow that stopped starting runs at all.
"""

from __future__ import annotations

from mlc import metrics

from ...ir import Endpoint, ResolvedProject
from . import promql, schedules
from .alerts import Alert, Scenario, Series
from .rules import RuleSet, _by, _overdue, _step, per_endpoint


def scoring_rule_sets(project: ResolvedProject) -> list[RuleSet]:
    return per_endpoint(project, "scoring", lambda e: e.batch is not None, scoring_alerts)


def scoring_alerts(project: ResolvedProject, endpoint: Endpoint) -> list[Alert]:
    assert endpoint.batch is not None
    labels = {**promql.scope(project), "endpoint": endpoint.name}
    interval = schedules.max_interval_seconds(endpoint.batch.schedule)
    step = _step(interval)
    up = promql.selector(promql.series(metrics.SCORING_UP), labels)

    def at(value: int) -> Scenario:
        return Scenario((Series(promql.series(metrics.SCORING_UP), labels, f"{value}+0x20"),),
                        10 * step, interval_seconds=step)
    out = [Alert(
        name="ScoringFailed", severity="critical",
        expr=f"min by ({_by(labels)}) ({up}) == 0",
        summary=(f"Batch scoring of endpoint {endpoint.name} failed.",),
        description=(f"The last run of pipeline {endpoint.pipeline} did not publish scores "
                     f"to {endpoint.batch.output} (model {endpoint.model_uri}); consumers "
                     "read the previous run's. See the logs of its last workflow.",),
        unhealthy=((at(0), labels),), healthy=(at(1),))]
    if interval is not None:
        out.append(_overdue(
            "ScoresStale", metrics.SCORING_LAST_SUCCESS, labels, interval, step,
            summary=(f"Scores of batch endpoint {endpoint.name} are stale.",),
            description=(f"No run of pipeline {endpoint.pipeline} has published scores for "
                         f"more than {promql.duration(2 * interval)} (schedule "
                         f"`{endpoint.batch.schedule}`, {endpoint.batch.timezone}). Check "
                         "its CronWorkflow, its last runs and the Pushgateway.",)))
    return out
