"""The pipelines' Prometheus metrics, emitted by Argo's controller from each workflow.

Names, labels and help strings come from mlc/metrics.py, the one metrics contract. Argo's
controller (v3.6 and later, v4) exports custom metrics through its OpenTelemetry Prometheus
exporter with the namespace `argo_workflows`, so a metric declared as `mlc_pipeline_runs_total`
is scraped as `argo_workflows_mlc_pipeline_runs_total` (counters get no extra `_total`). A
contract name that already carries that prefix is declared without it; see `declared_name`.
"""

from __future__ import annotations

from hera.workflows import models as m

from .... import metrics as contract
from ...ir import Pipeline
from .expressions import (
    WORKFLOW_CREATED_UNIX,
    WORKFLOW_DURATION,
    WORKFLOW_NAMESPACE,
    WORKFLOW_STATUS,
)


def declared_name(metric: contract.Metric) -> str:
    """The name to declare in a workflow so that Prometheus stores `metric.name`."""
    return metric.name.removeprefix(contract.ARGO_PROMETHEUS_PREFIX)


def _labels(metric: contract.Metric, values: dict[str, str]) -> list[m.MetricLabel]:
    if set(values) != set(metric.labels):
        raise ValueError(f"{metric.name} needs labels {metric.labels}, got {sorted(values)}")
    return [m.MetricLabel(key=key, value=values[key]) for key in metric.labels]


def workflow_metrics(pipeline: Pipeline) -> m.Metrics:
    """Runs by final status, the last run's duration, and the time of the last success."""
    ident = {"pipeline": pipeline.name, "kind": pipeline.kind,
             "workflow_namespace": WORKFLOW_NAMESPACE}
    runs, duration, last = (contract.PIPELINE_RUNS, contract.PIPELINE_DURATION,
                            contract.PIPELINE_LAST_SUCCESS)
    return m.Metrics(prometheus=[
        m.Prometheus(name=declared_name(runs), help=runs.help,
                     labels=_labels(runs, {**ident, "status": WORKFLOW_STATUS}),
                     counter=m.Counter(value="1")),
        m.Prometheus(name=declared_name(duration), help=duration.help,
                     labels=_labels(duration, ident),
                     gauge=m.Gauge(value=WORKFLOW_DURATION, realtime=False)),
        # the creation time of the run that succeeded: a model or a feature table is as fresh
        # as the data that run read when it started
        m.Prometheus(name=declared_name(last), help=last.help,
                     labels=_labels(last, ident),
                     when=f"{WORKFLOW_STATUS} == Succeeded",
                     gauge=m.Gauge(value=WORKFLOW_CREATED_UNIX, realtime=False)),
    ])
