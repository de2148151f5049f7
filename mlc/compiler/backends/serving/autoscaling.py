"""HorizontalPodAutoscalers and PodDisruptionBudgets of an online endpoint's servers.

Metrics: `cpu` is the resource metric every cluster has. `rps` and `concurrency` are
per-pod custom metrics that a metrics adapter must serve from Prometheus:

- `mlc_requests_per_second` (RPS_METRIC): the per-pod rate of `mlc_requests_total`, which is
  what prometheus-adapter's default rule for `*_total` counters exposes (it strips `_total`
  and appends `_per_second`);
- `mlc_inflight_requests` (CONCURRENCY_METRIC): the gauge itself, as the default rule for
  gauges exposes it.

Both are derived from the metrics contract here, never spelled out, so a renamed metric
renames the adapter's metric too. The adapter's default rule counts every request, 404s for
unknown paths (`route="unmatched"`) included; a cluster that faces scanners should give the
adapter a rule with `route!="unmatched"` (KEDA's query, kserve.py, leaves them out).
"""

from __future__ import annotations

from typing import Any

from mlc import metrics

from ...ir import ResolvedProject
from ..objects import metadata
from .workloads import COMPONENT, Workload, selector

RPS_METRIC = metrics.REQUESTS.name.removesuffix("_total") + "_per_second"
CONCURRENCY_METRIC = metrics.INFLIGHT.name
# Scale down slowly: a model server is expensive to start again (model load, warm-up).
SCALE_DOWN_WINDOW_SECONDS = 300


def hpa_metric(w: Workload) -> dict[str, Any]:
    a = w.endpoint.autoscaling
    if a.metric == "cpu":
        return {"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": a.target}}}
    name = RPS_METRIC if a.metric == "rps" else CONCURRENCY_METRIC
    return {"type": "Pods", "pods": {
        "metric": {"name": name},
        "target": {"type": "AverageValue", "averageValue": str(a.target)}}}


def autoscaled(w: Workload) -> bool:
    # HPA cannot scale to or from zero (without an alpha feature gate): a fixed size or an
    # A/B variant switched off has none
    return w.replicas is None and w.min_replicas >= 1


def hpa(project: ResolvedProject, w: Workload, target_kind: str,
        target_api: str) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(project, w.name, origin=w.endpoint.origin, component=COMPONENT),
        "spec": {
            "scaleTargetRef": {"apiVersion": target_api, "kind": target_kind, "name": w.name},
            "minReplicas": w.min_replicas,
            "maxReplicas": w.max_replicas,
            "metrics": [hpa_metric(w)],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": SCALE_DOWN_WINDOW_SECONDS}},
        },
    }


def disruption_budget(project: ResolvedProject, w: Workload) -> dict[str, Any]:
    """At most one pod of the server evicted at a time (node drains, upgrades).

    `maxUnavailable` rather than `minAvailable`, so that a one-replica server never blocks a
    drain; unhealthy pods may always go, so a crash-looping pod cannot block one either.
    """
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(project, w.name, origin=w.endpoint.origin, component=COMPONENT),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector(project, w)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
