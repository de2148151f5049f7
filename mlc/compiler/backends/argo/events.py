"""Alert-triggered retraining with Argo Events: Alertmanager -> webhook -> Sensor -> Workflow.

One webhook EventSource per environment listens for Alertmanager's notifications, one endpoint
per retrain trigger: a drift check whose `onDrift.action` is `retrain`, or a quality monitor
whose `onDrop.action` is (Alertmanager's receiver for the trigger's alert posts to
`webhook_url()`). Its Sensor submits the model's training template, with `reason=drift` or
`reason=quality`, when the notification says the alert is firing. Both kinds go through the
same guards below, with the same settings (cooldown, maxRuns per period).

The guards, from the outside in:
- the webhook requires Alertmanager's bearer token (`monitoring.webhookSecret`; only a
  development environment may go without) and refuses bodies over `MAX_PAYLOAD_BYTES`;
- NetworkPolicies let only Alertmanager reach the EventSource (backends/network);
- the Sensor's trigger is rate limited, so a burst of notifications creates few Workflows;
- the cooldown and the cap: the Sensor creates a gate Workflow under a generated name, which
  starts the training run only when it holds the check's cooldown (cooldown.py);
- a mutex (on the WorkflowTemplate) so that one model never trains twice at once.
Argo Events has no builder in hera; these objects are plain dicts, checked against Argo
Events' published JSON schema by the tests.
"""

from __future__ import annotations

from typing import Any

from ...ir import ResolvedProject
from ...names import dns_label
from .. import pods
from ..objects import metadata
from .cooldown import gate_workflow
from .retrain_triggers import RetrainTrigger

API_VERSION = "argoproj.io/v1alpha1"
PORT = 12000
# Alertmanager posts one group of alerts: a few kilobytes. Argo Events' default is 1 MiB.
MAX_PAYLOAD_BYTES = 65536
# Alertmanager repeats a firing group every `repeatInterval` (the cooldown, an hour or more):
# more than a few a minute is a flood, which this holds back before it creates Workflows.
TRIGGER_RATE_LIMIT = {"unit": "Minute", "requestsPerUnit": 1}
# Sensor and EventSource pods are small Go programs.
EVENTS_POD_RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"},
                        "limits": {"cpu": "250m", "memory": "128Mi"}}


def event_source_name(project: ResolvedProject) -> str:
    return dns_label(project.name, "alerts")


def sensor_name(check: RetrainTrigger) -> str:
    return dns_label(check.action, check.k8s_name)


def event_source_account(project: ResolvedProject) -> str:
    return dns_label(project.name, "eventsource")


def sensor_account(project: ResolvedProject) -> str:
    return dns_label(project.name, "sensor")


def endpoint(check: RetrainTrigger) -> str:
    return f"/drift/{check.k8s_name}"


def service_url(project: ResolvedProject) -> str:
    # Argo Events names the EventSource's Service `<name>-eventsource-svc`.
    return (f"http://{event_source_name(project)}-eventsource-svc."
            f"{project.platform.namespace}.svc:{PORT}")


def webhook_url(project: ResolvedProject, check: RetrainTrigger) -> str:
    """Where Alertmanager posts the drift alert of `check` (for the monitoring backend)."""
    return service_url(project) + endpoint(check)


def pod_template(account: str) -> dict[str, Any]:
    return {
        "serviceAccountName": account,
        "securityContext": pods.pod_security_context(),
        "container": {"resources": EVENTS_POD_RESOURCES,
                      "securityContext": pods.container_security_context()},
    }


def event_source(project: ResolvedProject, checks: list[RetrainTrigger]) -> dict[str, Any]:
    webhooks = {}
    for c in sorted(checks, key=lambda c: c.k8s_name):
        hook: dict[str, Any] = {"endpoint": endpoint(c), "method": "POST", "port": str(PORT),
                                "url": service_url(project),
                                "maxPayloadSize": MAX_PAYLOAD_BYTES}
        token = project.alerts.webhook_secret
        if token is not None:
            hook["authSecret"] = {"name": token.k8s_name, "key": token.key}
        webhooks[c.k8s_name] = hook
    return {
        "apiVersion": API_VERSION,
        "kind": "EventSource",
        "metadata": metadata(project, event_source_name(project), component="drift-alerts"),
        "spec": {
            "template": pod_template(event_source_account(project)),
            "service": {"ports": [{"port": PORT, "targetPort": PORT}]},
            "webhook": webhooks,
        },
    }


def sensor(project: ResolvedProject, check: RetrainTrigger) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Sensor",
        "metadata": metadata(project, sensor_name(check), origin=check.origin,
                             component="drift-retraining" if check.event_source is None
                             else "event-triggers"),
        "spec": {
            "template": pod_template(sensor_account(project)),
            "dependencies": [_dependency(project, check)],
            "triggers": [{
                "template": {"name": "retrain", "k8s": {
                    "operation": "create",
                    "source": {"resource": gate_workflow(project, check)},
                }},
                "rateLimit": dict(TRIGGER_RATE_LIMIT),
            }],
        },
    }


def _dependency(project: ResolvedProject, check: RetrainTrigger) -> dict[str, Any]:
    if check.event_source is None:
        return {
            "name": "drift",
            "eventSourceName": event_source_name(project),
            "eventName": check.k8s_name,
            # Alertmanager also posts when the alert resolves: only a firing alert retrains
            "filters": {"data": [{"path": "body.status", "type": "string",
                                  "value": ["firing"]}]},
        }
    out: dict[str, Any] = {"name": "event", "eventSourceName": check.event_source,
                           "eventName": check.k8s_name}
    if check.filters is not None:
        out["filters"] = check.filters
    return out
