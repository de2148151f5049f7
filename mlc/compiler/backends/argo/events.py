"""Drift-triggered retraining with Argo Events: Alertmanager -> webhook -> Sensor -> Workflow.

One webhook EventSource per environment listens for Alertmanager's notifications, one endpoint
per drift check whose `onDrift.action` is `retrain` (Alertmanager's receiver for that check's
drift alert posts to `webhook_url()`). Its Sensor submits the model's training template, with
`reason=drift`, when the notification says the alert is firing.

The guards, from the inside out:
- a mutex (on the WorkflowTemplate) so that one model never trains twice at once;
- the cooldown and the cap: the Sensor creates its Workflow under one fixed name, and Argo
  deletes that Workflow `lease_seconds()` after it finished. While it exists, creating it again
  fails (AlreadyExists) and the alert is dropped, so a drift retrain starts at least `cooldown`
  after the previous one ended and, spacing starts by per/maxRuns, never more than `maxRuns`
  times in any window of length `per`.
Argo Events has no builder in hera; these objects are plain dicts, checked against Argo
Events' published JSON schema by the tests.
"""

from __future__ import annotations

import math
from typing import Any

from ...ir import DriftCheck, ResolvedProject
from ...names import dns_label
from .. import pods
from ..objects import metadata
from .schedules import REASON_PARAMETER, TRIGGER_LABEL

API_VERSION = "argoproj.io/v1alpha1"
PORT = 12000
# Sensor and EventSource pods are small Go programs.
EVENTS_POD_RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"},
                        "limits": {"cpu": "250m", "memory": "128Mi"}}


def retrain_checks(project: ResolvedProject) -> list[DriftCheck]:
    return [c for c in project.drift_checks.values()
            if c.on_drift.action == "retrain" and project.models[c.model].pipeline]


def event_source_name(project: ResolvedProject) -> str:
    return dns_label(project.name, "alerts")


def sensor_name(check: DriftCheck) -> str:
    return dns_label("retrain", check.k8s_name)


def event_source_account(project: ResolvedProject) -> str:
    return dns_label(project.name, "eventsource")


def sensor_account(project: ResolvedProject) -> str:
    return dns_label(project.name, "sensor")


def endpoint(check: DriftCheck) -> str:
    return f"/drift/{check.k8s_name}"


def service_url(project: ResolvedProject) -> str:
    # Argo Events names the EventSource's Service `<name>-eventsource-svc`.
    return (f"http://{event_source_name(project)}-eventsource-svc."
            f"{project.platform.namespace}.svc:{PORT}")


def webhook_url(project: ResolvedProject, check: DriftCheck) -> str:
    """Where Alertmanager posts the drift alert of `check` (for the monitoring backend)."""
    return service_url(project) + endpoint(check)


def lease_seconds(check: DriftCheck) -> int:
    """How long a finished drift-triggered run blocks the next one."""
    o = check.on_drift
    return max(o.cooldown_seconds, math.ceil(o.per_seconds / o.max_runs))


def _pod_template(account: str) -> dict[str, Any]:
    return {
        "serviceAccountName": account,
        "securityContext": pods.pod_security_context(),
        "container": {"resources": EVENTS_POD_RESOURCES,
                      "securityContext": pods.container_security_context()},
    }


def event_source(project: ResolvedProject, checks: list[DriftCheck]) -> dict[str, Any]:
    webhooks = {c.k8s_name: {"endpoint": endpoint(c), "method": "POST", "port": str(PORT),
                             "url": service_url(project)}
                for c in sorted(checks, key=lambda c: c.k8s_name)}
    return {
        "apiVersion": API_VERSION,
        "kind": "EventSource",
        "metadata": metadata(project, event_source_name(project), component="drift-alerts"),
        "spec": {
            "template": _pod_template(event_source_account(project)),
            "service": {"ports": [{"port": PORT, "targetPort": PORT}]},
            "webhook": webhooks,
        },
    }


def retrain_workflow(project: ResolvedProject, check: DriftCheck) -> dict[str, Any]:
    """The Workflow the Sensor creates: the training template, under the lease's fixed name."""
    pipeline = project.pipelines[project.models[check.model].pipeline or ""]
    meta = metadata(project, dns_label(pipeline.name, "drift"), origin=check.origin,
                    component="training", extra_labels={TRIGGER_LABEL: "drift"})
    spec: dict[str, Any] = {
        "workflowTemplateRef": {"name": pipeline.name},
        # all three: the template's own success/failure TTLs would otherwise win
        "ttlStrategy": {key: lease_seconds(check) for key in (
            "secondsAfterCompletion", "secondsAfterFailure", "secondsAfterSuccess")},
    }
    if any(p.name == REASON_PARAMETER for p in pipeline.parameters):
        spec["arguments"] = {"parameters": [{"name": REASON_PARAMETER, "value": "drift"}]}
    return {"apiVersion": API_VERSION, "kind": "Workflow", "metadata": meta, "spec": spec}


def sensor(project: ResolvedProject, check: DriftCheck) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Sensor",
        "metadata": metadata(project, sensor_name(check), origin=check.origin,
                             component="drift-retraining"),
        "spec": {
            "template": _pod_template(sensor_account(project)),
            "dependencies": [{
                "name": "drift",
                "eventSourceName": event_source_name(project),
                "eventName": check.k8s_name,
                # Alertmanager also posts when the alert resolves: only a firing alert retrains
                "filters": {"data": [{"path": "body.status", "type": "string",
                                      "value": ["firing"]}]},
            }],
            "triggers": [{
                # no retryStrategy: AlreadyExists is the cooldown at work, not an error to retry
                "template": {"name": "retrain", "k8s": {
                    "operation": "create",
                    "source": {"resource": retrain_workflow(project, check)},
                }},
            }],
        },
    }
