"""Scrape configuration: a PodMonitor per serving endpoint, a ServiceMonitor for drift metrics.

Serving pods are scraped directly (PodMonitor), not through their Service: during a canary
the stable and canary pods sit behind different Services, and a rollout gate needs both.

Drift-check runs are short-lived pods, so they push their metrics to a Pushgateway and
Prometheus scrapes that. The Pushgateway is not emitted by mlc; it is assumed to run in the
environment's namespace as the prometheus-community chart installs it (Service labelled
`app.kubernetes.io/name: prometheus-pushgateway`, port named `http`, 9091). One per
environment keeps dev's pushes out of prod's alerts, and Prometheus adds the namespace label
that every query is scoped by.
"""

from __future__ import annotations

from typing import Any

from ...ir import Endpoint, ResolvedProject
from ...names import dns_label
from ..objects import metadata, selector_labels
from ..serving.workloads import ROLE_LABEL
from . import engine_queries

API_VERSION = "monitoring.coreos.com/v1"
METRICS_PATH = "/metrics"
PUSHGATEWAY_SELECTOR = {"app.kubernetes.io/name": "prometheus-pushgateway"}
PUSHGATEWAY_PORT = "http"
# Argo Rollouts labels canary and stable pods with this; kept on the series (as
# `rollouts_pod_template_hash`) so that a rollout gate can compare the two.
ROLLOUT_POD_LABEL = "rollouts-pod-template-hash"
# Knative labels each revision's pods with its name; kept (as `serving_knative_dev_revision`)
# for the gates of Knative and KServe canaries, which the delivery workflow measures.
KNATIVE_REVISION_LABEL = "serving.knative.dev/revision"


def pod_monitors(project: ResolvedProject,
                 endpoint: Endpoint) -> dict[str, Any] | list[dict[str, Any]]:
    """The endpoint's PodMonitor; an engine's A/B adds one for mlc's router in front of it,
    whose mlc_router_* series (by variant) the A/B guard reads."""
    if endpoint.engine != "mlc" and endpoint.rollout.traffic == "router":
        return [engine_pod_monitor(project, endpoint), engine_router_pod_monitor(project,
                                                                                 endpoint)]
    return pod_monitor(project, endpoint)


def engine_router_pod_monitor(project: ResolvedProject, endpoint: Endpoint) -> dict[str, Any]:
    """mlc's A/B router before an engine's variants: mlc's port and labels, as pod_monitor."""
    doc = pod_monitor(project, endpoint.model_copy(update={"engine": "mlc"}))
    doc["metadata"] = metadata(project, f"{endpoint.k8s_name}-router", origin=endpoint.origin,
                               component="monitoring")
    doc["spec"]["selector"] = {"matchLabels": {
        **selector_labels(project, endpoint.k8s_name), ROLE_LABEL: "router"}}
    return doc


def pod_monitor(project: ResolvedProject, endpoint: Endpoint) -> dict[str, Any]:
    if endpoint.engine != "mlc":
        return engine_pod_monitor(project, endpoint)
    return {
        "apiVersion": API_VERSION,
        "kind": "PodMonitor",
        "metadata": metadata(project, endpoint.k8s_name, origin=endpoint.origin,
                             component="monitoring"),
        "spec": {
            "selector": {"matchLabels": selector_labels(project, endpoint.k8s_name)},
            "podTargetLabels": [ROLLOUT_POD_LABEL, KNATIVE_REVISION_LABEL],
            "podMetricsEndpoints": [{
                # By number: the container port is named `http` on Deployments and Rollouts
                # but must be named `http1` under Knative; its number is the same everywhere.
                "portNumber": endpoint.port,
                "path": METRICS_PATH,
                # The operator may set an `endpoint` target label (to the port's name), which
                # would overwrite the contract's `endpoint` label (the endpoint's name) on
                # every series. Honouring the exported labels keeps ours; the serving runtime
                # is ours too, so it is trusted not to fake `namespace` or `pod`.
                "honorLabels": True,
            }],
        },
    }


def uses_pushgateway(project: ResolvedProject) -> bool:
    """Drift checks, batch scoring, A/B verdicts and guards, and quality monitors push their
    results; nothing else does."""
    return bool(project.drift_checks or project.quality_monitors) or any(
        e.batch or e.rollout.verdict or e.rollout.ab_guard for e in project.endpoints.values())


def pushgateway_monitor(project: ResolvedProject) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "ServiceMonitor",
        "metadata": metadata(project, dns_label(project.name, "pushgateway"),
                             component="monitoring"),
        "spec": {
            "selector": {"matchLabels": dict(PUSHGATEWAY_SELECTOR)},
            "endpoints": [{
                "port": PUSHGATEWAY_PORT,
                "path": METRICS_PATH,
                # Pushed series carry the job (and grouping) labels of the run that pushed
                # them; without this Prometheus would rename them to exported_job.
                "honorLabels": True,
            }],
        },
    }


def engine_selector(project: ResolvedProject, endpoint: Endpoint) -> dict[str, Any]:
    """The engine's pods: every pod of the endpoint but mlc's A/B router in front of them."""
    out: dict[str, Any] = {"matchLabels": selector_labels(project, endpoint.k8s_name)}
    if endpoint.rollout.traffic == "router":
        out["matchExpressions"] = [{"key": ROLE_LABEL, "operator": "NotIn",
                                    "values": ["router"]}]
    return out


def engine_pod_monitor(project: ResolvedProject, endpoint: Endpoint) -> dict[str, Any]:
    """An endpoint of another engine: its metrics port and path (mlc/engine_metrics.py), and
    the contract's `endpoint` label set on every series, which the engine does not export
    (every query scopes by it). The engine's own labels are not honoured: it is not ours, so
    a label of its own named `namespace` or `pod` must not overwrite the target's."""
    m = engine_queries.mapping(endpoint)
    return {
        "apiVersion": API_VERSION,
        "kind": "PodMonitor",
        "metadata": metadata(project, endpoint.k8s_name, origin=endpoint.origin,
                             component="monitoring"),
        "spec": {
            "selector": engine_selector(project, endpoint),
            "podTargetLabels": [ROLLOUT_POD_LABEL, KNATIVE_REVISION_LABEL],
            "podMetricsEndpoints": [{
                # `engine: custom`: the port its `container.metrics` (or `container`)
                # declares
                "portNumber": (endpoint.engine_serving.scrape_port
                               if endpoint.engine_serving else m.scrape_port),
                "path": m.scrape_path,
                "honorLabels": False,
                "relabelings": [{"action": "replace", "targetLabel": "endpoint",
                                 "replacement": endpoint.name}],
            }],
        },
    }
