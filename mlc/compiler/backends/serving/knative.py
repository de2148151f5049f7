"""Serverless endpoints: Knative Services, or Configurations behind one Route for A/B.

Knative scales each revision between min-scale and max-scale on the endpoint's metric
(concurrency or requests per second per pod; CPU through Knative's HPA class, which cannot
scale to zero), down to zero when `minReplicas` is 0. Endpoints are cluster-local: clients
in the cluster call them, nothing outside does.

Rollouts in Knative terms:
- rolling: Knative's own behaviour; traffic moves to a new revision only once
  it is ready, all at once;
- canary: the delivery workflow (gate_driver.py) moves `spec.traffic` step by step and
  measures the AnalysisTemplate's gates; the Service declares all traffic on the latest
  revision only for its creation, and Argo CD leaves the field to the workflow after that;
- A/B: one Configuration per variant and a Route that splits traffic by the variants'
  weights, exactly; each variant is also reachable on its own at `<variant>-<endpoint>`;
- shadow: a second, cluster-local Knative Service that only the primary calls.
Node selectors, tolerations and priority classes (GPU profiles) need Knative's
`kubernetes.podspec-nodeselector`, `-tolerations` and `-priorityclassname` feature flags.
"""

from __future__ import annotations

from typing import Any

from ...ir import Endpoint, ResolvedProject
from ...names import dns_label
from ..objects import metadata
from .pod import pod_spec, template_metadata
from .workloads import COMPONENT, Workload

API_VERSION = "serving.knative.dev/v1"
VISIBILITY = {"networking.knative.dev/visibility": "cluster-local"}
AUTOSCALING = "autoscaling.knative.dev/"


def scale_annotations(w: Workload) -> dict[str, str]:
    a = w.endpoint.autoscaling
    lo, hi = (w.replicas, w.replicas) if w.replicas is not None else (w.min_replicas,
                                                                      w.max_replicas)
    if a.metric == "cpu":
        # Knative's HPA class scales on CPU but never to zero
        out = {"class": "hpa.autoscaling.knative.dev", "metric": "cpu"}
        lo = max(lo, 1)
    else:
        out = {"class": "kpa.autoscaling.knative.dev", "metric": a.metric}
    out |= {"target": str(a.target), "min-scale": str(lo)}
    if hi > 0:  # 0 would mean "no limit" to Knative
        out["max-scale"] = str(max(hi, lo))
    return {AUTOSCALING + key: value for key, value in sorted(out.items())}


def template(project: ResolvedProject, w: Workload, config_hash: str) -> dict[str, Any]:
    return {"metadata": template_metadata(project, w, config_hash, scale_annotations(w)),
            "spec": pod_spec(project, w, "knative")}


def service(project: ResolvedProject, w: Workload, config_hash: str) -> dict[str, Any]:
    ep = w.endpoint
    return {
        "apiVersion": API_VERSION,
        "kind": "Service",
        "metadata": metadata(project, w.name, origin=ep.origin, component=COMPONENT,
                             extra_labels=VISIBILITY),
        "spec": {
            "template": template(project, w, config_hash),
            "traffic": [{"latestRevision": True, "percent": 100}],
        },
    }


def configuration(project: ResolvedProject, w: Workload, config_hash: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Configuration",
        "metadata": metadata(project, w.name, origin=w.endpoint.origin, component=COMPONENT),
        "spec": {"template": template(project, w, config_hash)},
    }


def route(project: ResolvedProject, ep: Endpoint, name: str, workloads: list[Workload],
          configuration_suffix: str = "") -> dict[str, Any]:
    """Splits the endpoint's traffic over the variants' latest revisions by weight.

    `configuration_suffix`: KServe names the Configuration of an InferenceService `<name>`
    plus "-predictor".
    """
    return {
        "apiVersion": API_VERSION,
        "kind": "Route",
        "metadata": metadata(project, name, origin=ep.origin, component=COMPONENT,
                             extra_labels=VISIBILITY),
        "spec": {"traffic": [
            {"configurationName": w.name + configuration_suffix, "percent": w.weight,
             "tag": dns_label(w.variant or w.name)}
            for w in workloads]},
    }
