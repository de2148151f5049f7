"""The prediction log of an engine endpoint: KServe's payload logger and mlc's receiver.

Where a drift check or a quality monitor reads an engine endpoint's log (resolve sets
`engine_serving.payload_log`, resolve/engines.py), the InferenceService's predictor gets
`logger: {mode: all, url: <the receiver's Service>}`: KServe's agent, a sidecar of every
predictor pod, posts each request and each response as a CloudEvent to the receiver, which
pairs them and writes the log that mlc's server would write (mlc/runtime/payload_log/).
The receiver's objects sit beside the endpoint's, under `payloadlog/`:

    payloadlog/deployment-<e>.yaml      `python -m mlc.runtime payload-log` in mlc's serve
                                        image, as the endpoint's identity (its store access)
    payloadlog/service-<e>.yaml         the address the logger posts to
    payloadlog/networkpolicy-<e>.yaml   ingress from the endpoint's predictor pods (the
                                        agent) and Prometheus only
    payloadlog/podmonitor-<e>.yaml      its mlc_payload_log_* counters

Its pods are labelled as serving pods (`app.kubernetes.io/component`), so the namespace's
model-servers policy gives them the egress a server has (MLflow, the object store), and the
predictors' egress to servers' ports reaches it; their own name keeps the endpoint's
selectors (Services, PodMonitor, policies) off them. The registry and the store are reached
with the credentials mlc's server gets: the platform's MLflow token, the endpoint's `env`
and `secrets` (by reference), and its service account.
"""

from __future__ import annotations

from typing import Any

from ...ir import Endpoint, PayloadLogReceiver, ResolvedProject
from ...resolve import PROJECT_JSON
from ..core import config_map_name as project_config_map_name
from ..escape import container_text
from ..monitoring.servicemonitors import API_VERSION as MONITORING_API
from ..monitoring.servicemonitors import METRICS_PATH
from ..objects import metadata, selector_labels
from ..pods import container_security_context, pod_security_context, pull_policy, secret_env
from .network import ingress_policy, prometheus_peer
from .pod import (
    CONFIG_DIR,
    DRAIN_ENV,
    DRAIN_SECONDS,
    IN_FLIGHT_ENV,
    IN_FLIGHT_SECONDS,
    LIVE_PATH,
    PORT_NAME,
    READY_PATH,
    SCRATCH_DIR,
    TERMINATION_GRACE_SECONDS,
    fetch_resources,
    registry_env,
)
from .workloads import COMPONENT, Workload, selector, service_account_name

CONTAINER = "payload-log"
LOGGER_MODE = "all"  # the request and the response: the receiver pairs them
REPLICAS = 1  # the pairing is in memory: both halves of a request must reach one pod


def receiver(ep: Endpoint) -> PayloadLogReceiver | None:
    return ep.engine_serving.payload_log if ep.engine_serving is not None else None


def url(project: ResolvedProject, r: PayloadLogReceiver) -> str:
    return f"http://{r.name}.{project.platform.namespace}.svc.cluster.local:{r.port}"


def logger(project: ResolvedProject, ep: Endpoint) -> dict[str, Any] | None:
    """The predictor's `logger` field, or None where no receiver is built."""
    r = receiver(ep)
    return None if r is None else {"mode": LOGGER_MODE, "url": url(project, r)}


def pod_selector(project: ResolvedProject, r: PayloadLogReceiver) -> dict[str, str]:
    return selector_labels(project, r.name)


def env(project: ResolvedProject, ep: Endpoint) -> list[dict[str, Any]]:
    out = [*registry_env(project),
           {"name": DRAIN_ENV, "value": str(DRAIN_SECONDS)},
           {"name": IN_FLIGHT_ENV, "value": str(IN_FLIGHT_SECONDS)},
           *({"name": k, "value": v} for k, v in ep.env.items())]
    return sorted(out + secret_env(dict(ep.secrets)), key=lambda e: e["name"])


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": PORT_NAME}, "periodSeconds": period,
            "failureThreshold": failures, "timeoutSeconds": 2}


def container(project: ResolvedProject, w: Workload, r: PayloadLogReceiver) -> dict[str, Any]:
    ep = w.endpoint
    return {
        "name": CONTAINER,
        "image": ep.image.ref,
        "imagePullPolicy": pull_policy(ep.image),
        "command": ["python", "-m", "mlc.runtime"],
        "args": ["payload-log", "--project", PROJECT_JSON, "--endpoint",
                 container_text(ep.name), "--port", str(r.port)],
        "env": env(project, ep),
        "ports": [{"name": PORT_NAME, "containerPort": r.port, "protocol": "TCP"}],
        "resources": fetch_resources(project, w),
        "livenessProbe": _probe(LIVE_PATH, 10, 3),
        "readinessProbe": _probe(READY_PATH, 5, 2),
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                         {"name": "scratch", "mountPath": SCRATCH_DIR}],
    }


def deployment(project: ResolvedProject, w: Workload, r: PayloadLogReceiver) -> dict[str, Any]:
    ep = w.endpoint
    labels = {**metadata(project, r.name, component=COMPONENT)["labels"],
              **pod_selector(project, r)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(project, r.name, origin=ep.origin, component=COMPONENT),
        "spec": {
            "replicas": REPLICAS,
            "revisionHistoryLimit": 5,
            # one pod: the old one stops (and flushes its rows) before the new one starts
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": pod_selector(project, r)},
            "template": {
                "metadata": {"labels": dict(sorted(labels.items()))},
                "spec": {
                    "serviceAccountName": service_account_name(ep),
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security_context(),
                    "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
                    "containers": [container(project, w, r)],
                    "volumes": [
                        {"name": "config", "configMap": {
                            "name": project_config_map_name(project),
                            "items": [{"key": "project.json", "path": "project.json"}]}},
                        {"name": "scratch", "emptyDir": {}}],
                },
            },
        },
    }


def service(project: ResolvedProject, ep: Endpoint, r: PayloadLogReceiver) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(project, r.name, origin=ep.origin, component=COMPONENT),
        "spec": {
            "type": "ClusterIP",
            "selector": pod_selector(project, r),
            "ports": [{"name": PORT_NAME, "port": r.port, "targetPort": PORT_NAME,
                       "protocol": "TCP", "appProtocol": "http"}],
        },
    }


def network_policy(project: ResolvedProject, ep: Endpoint, workloads: list[Workload],
                   r: PayloadLogReceiver) -> dict[str, Any]:
    predictors = [{"podSelector": {"matchLabels": selector(project, w)}} for w in workloads]
    ports = [{"port": r.port, "protocol": "TCP"}]
    policy = ingress_policy(project, ep, workloads[0], [
        {"from": predictors, "ports": ports},
        {"from": [prometheus_peer(project)], "ports": ports}])
    policy["metadata"] = metadata(project, f"{r.name}-ingress", origin=ep.origin,
                                  component=COMPONENT)
    policy["spec"]["podSelector"] = {"matchLabels": pod_selector(project, r)}
    return policy


def pod_monitor(project: ResolvedProject, ep: Endpoint, r: PayloadLogReceiver) -> dict[str, Any]:
    return {
        "apiVersion": MONITORING_API,
        "kind": "PodMonitor",
        "metadata": metadata(project, r.name, origin=ep.origin, component="monitoring"),
        "spec": {
            "selector": {"matchLabels": pod_selector(project, r)},
            "podMetricsEndpoints": [{"port": PORT_NAME, "path": METRICS_PATH}],
        },
    }


def files(project: ResolvedProject, ep: Endpoint,
          workloads: list[Workload]) -> dict[str, list[dict[str, Any]]]:
    """The receiver's objects by file, or none."""
    r = receiver(ep)
    if r is None or not workloads:
        return {}
    primary = next(w for w in workloads if w.role == "primary") if any(
        w.role == "primary" for w in workloads) else workloads[0]
    return {
        f"payloadlog/deployment-{ep.k8s_name}.yaml": [deployment(project, primary, r)],
        f"payloadlog/service-{ep.k8s_name}.yaml": [service(project, ep, r)],
        f"payloadlog/networkpolicy-{ep.k8s_name}.yaml": [
            network_policy(project, ep, workloads, r)],
        f"payloadlog/podmonitor-{ep.k8s_name}.yaml": [pod_monitor(project, ep, r)],
    }
