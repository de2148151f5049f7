"""KServe: the same servers as InferenceServices, for clusters that run KServe.

With `kserve: true` each server of the endpoint (primary, shadow or A/B variant) is an
InferenceService whose predictor is the mlc serving runtime as a custom container, instead of
a Deployment or a Knative Service: online endpoints in KServe's Standard mode (a Deployment,
Service and autoscaler made by KServe), serverless ones in its Knative mode. The ConfigMap,
ServiceAccount, NetworkPolicy and disruption budget stay as mlc writes them; they select the
pods by the labels the predictor puts on them.

KServe rolls a predictor out by its own rules: a rolling update in Standard mode, which has
no traffic split (a canary there is refused by `mlc validate`, MLC341); in Knative mode a
canary starts its new revision at `canaryTrafficPercent: 0`, and the delivery workflow
(gate_driver.py) raises the percentage step by step while it measures the gates.
Autoscaling: CPU through the HPA, requests per second and concurrency through KEDA reading
the serving metrics from Prometheus, and Knative's own autoscaler in Knative mode.
"""

from __future__ import annotations

from typing import Any

from mlc import metrics

from ...ir import ResolvedProject
from ..monitoring import engine_queries, promql
from ..objects import metadata
from .pod import KSERVE_CONTAINER, pod_spec, template_metadata
from .workloads import COMPONENT, Workload

API_VERSION = "serving.kserve.io/v1beta1"
PREDICTOR_SUFFIX = "-predictor"  # KServe's name for the predictor's Service/Configuration
MODE = "serving.kserve.io/deploymentMode"
AUTOSCALER = "serving.kserve.io/autoscalerClass"
RATE_WINDOW = "1m"


def keda_query(project: ResolvedProject, w: Workload) -> str:
    """The endpoint's total load, which KEDA divides by the per-replica target."""
    labels = {promql.SCOPE_LABEL: project.platform.namespace, "endpoint": w.endpoint.name}
    if w.endpoint.engine != "mlc":
        # the engine's own series (mlc/engine_metrics.py); resolve refuses a metric the
        # engine does not export (mlc/compiler/resolve/engine_metrics.py)
        select = promql.engine_select(labels)
        if w.endpoint.autoscaling.metric == "rps":
            m = engine_queries.mapping(w.endpoint)
            return engine_queries.rate_sum(select, m.requests, RATE_WINDOW, None)
        inflight = engine_queries.mapping(w.endpoint).inflight
        assert inflight is not None
        return f"sum({engine_queries.counter_selector(select, inflight)})"
    if w.endpoint.autoscaling.metric == "rps":
        # requests for unknown paths (scanners) must not scale the endpoint up
        requests = promql.selector(promql.series(metrics.REQUESTS), labels, None,
                                   promql.NOT_SERVED)
        return f"sum(rate({requests}[{RATE_WINDOW}]))"
    return f"sum({promql.selector(promql.series(metrics.INFLIGHT), labels)})"


def scaling(project: ResolvedProject, w: Workload, knative: bool) -> tuple[dict, dict]:
    """(annotations, predictor fields) for the server's replica range and metric."""
    a = w.endpoint.autoscaling
    lo, hi = (w.replicas, w.replicas) if w.replicas is not None else (w.min_replicas,
                                                                      w.max_replicas)
    fields: dict[str, Any] = {"minReplicas": lo, "maxReplicas": max(hi, lo)}
    if knative:
        return {}, fields | {"scaleMetric": a.metric, "scaleTarget": a.target}
    if a.metric == "cpu":
        return {AUTOSCALER: "hpa"}, fields | {"scaleMetric": "cpu", "scaleTarget": a.target}
    external = {"metric": {"backend": "prometheus",
                           "serverAddress": project.platform.prometheus_url,
                           "query": keda_query(project, w)},
                "target": {"type": "AverageValue", "averageValue": str(a.target)}}
    return {AUTOSCALER: "keda"}, fields | {
        "autoScaling": {"metrics": [{"type": "External", "external": external}]}}


def inference_service(project: ResolvedProject, w: Workload,
                      config_hash: str) -> dict[str, Any]:
    ep = w.endpoint
    knative = ep.mode == "serverless"
    notes, fields = scaling(project, w, knative)
    notes[MODE] = "Knative" if knative else "Standard"
    if knative and ep.rollout.strategy == "canary":
        fields["canaryTrafficPercent"] = 0
    pod = pod_spec(project, w, "knative" if knative else "kubernetes")
    container = pod["containers"][0]
    container["name"] = KSERVE_CONTAINER  # the name KServe requires
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        # KServe's schema wants the port even where Knative would find it by itself
        container[probe]["httpGet"].setdefault("port", ep.port)
    meta = template_metadata(project, w, config_hash)
    return {
        "apiVersion": API_VERSION,
        "kind": "InferenceService",
        "metadata": metadata(project, w.name, origin=ep.origin, component=COMPONENT,
                             annotations=notes),
        "spec": {"predictor": {**fields, **pod, "labels": meta["labels"],
                               "annotations": meta["annotations"]}},
    }


def predictor_url(project: ResolvedProject, name: str) -> str:
    return f"http://{name}{PREDICTOR_SUFFIX}.{project.platform.namespace}.svc.cluster.local"
