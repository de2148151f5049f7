"""Where alerts go: one AlertmanagerConfig with the notification routes of ml.yaml.

Routing, first match wins unless a route says `continue`:
1. `DriftDetected` of a check whose onDrift.action is retrain (or `ModelQualityDropped` of a
   quality monitor whose onDrop.action is) -> that trigger's endpoint of the Argo Events
   webhook that the Argo backend emits (argo/events.py), whose Sensor starts the retraining;
   then on, since it is a trigger, not a notification. It sends the bearer token of
   `monitoring.webhookSecret`, which the webhook requires. Alertmanager posts a still-firing
   group again every `repeatInterval`, set to the trigger's cooldown; the Sensor enforces
   cooldown and maxRuns itself.
2. alerts of a drift check (label `check`) or a quality monitor (label `monitor`) that lists
   `routes` -> those routes, and nowhere else;
3. `severity` critical / warning -> `alerts.critical` / `alerts.warning`.
A route with several receivers is a parent with one child per receiver, each `continue`.

Receivers reference Kubernetes Secrets (name and key in the environment's namespace, synced
there by the ExternalSecrets that the secrets of ml.yaml compile to); they never contain a
secret value. Fields that Alertmanager expands as templates (channel, e-mail addresses) are
escaped, so a `{{` in ml.yaml stays text.
"""

from __future__ import annotations

from typing import Any

from ...ir import ResolvedProject, Route, SecretRef
from ...names import dns_label
from ..argo import events, retrain_triggers
from ..objects import metadata
from . import gotemplate, promql

API_VERSION = "monitoring.coreos.com/v1alpha1"
# Receiver names of our own contain a dot, which the names of routes in ml.yaml cannot.
NULL_RECEIVER = "mlc.none"

def retrain_receiver(check: events.RetrainTrigger) -> str:
    return f"mlc.retrain.{check.k8s_name}"


def alertmanager_config(project: ResolvedProject) -> dict[str, Any] | None:
    retrain = retrain_triggers.retrain_checks(project)
    routed = [c for c in project.drift_checks.values() if c.routes]
    # a quality monitor's alerts carry its name in `monitor`, as a drift check's in `check`
    monitors = [q for q in project.quality_monitors.values() if q.routes]
    alerts = project.alerts
    if not (retrain or routed or monitors or alerts.critical_routes or alerts.warning_routes):
        return None
    routes: list[dict[str, Any]] = []
    for check in retrain:
        routes.append({
            "receiver": retrain_receiver(check),
            "matchers": [_eq("alertname", check.alert), _eq(check.label, check.name)],
            "groupBy": ["alertname", promql.SCOPE_LABEL, check.label],
            "repeatInterval": promql.duration(check.on_drift.cooldown_seconds),
            "continue": True,
        })
    for check in routed:
        routes.append(_fan_out([_eq("check", check.name)], check.routes))
    for monitor in monitors:
        routes.append(_fan_out([_eq("monitor", monitor.name)], monitor.routes))
    for severity, names in (("critical", alerts.critical_routes),
                            ("warning", alerts.warning_routes)):
        if names:
            routes.append(_fan_out([_eq("severity", severity)], names))
    receivers: list[dict[str, Any]] = [{"name": NULL_RECEIVER}]
    receivers += [{"name": retrain_receiver(check), "webhookConfigs": [
        _retrain_webhook(project, check)]} for check in retrain]
    used = {n for c in [*routed, *monitors] for n in c.routes} | set(
        alerts.critical_routes) | set(alerts.warning_routes)
    receivers += [_receiver(project.routes[name]) for name in sorted(used)]
    return {
        "apiVersion": API_VERSION,
        "kind": "AlertmanagerConfig",
        "metadata": metadata(project, dns_label(project.name, "alerts"), component="monitoring"),
        "spec": {
            "route": {
                "receiver": NULL_RECEIVER,
                "groupBy": ["alertname", promql.SCOPE_LABEL],
                "routes": routes,
            },
            "receivers": receivers,
        },
    }


def _retrain_webhook(project: ResolvedProject, check: events.RetrainTrigger) -> dict[str, Any]:
    webhook: dict[str, Any] = {
        "url": events.webhook_url(project, check),
        "sendResolved": False,  # a trigger: only a firing alert means "retrain"
    }
    token = project.alerts.webhook_secret
    if token is not None:  # None only in development (resolve refuses it elsewhere)
        webhook["httpConfig"] = {"authorization": {"type": "Bearer",
                                                   "credentials": _secret(token)}}
    return webhook


def _eq(name: str, value: str) -> dict[str, str]:
    return {"name": name, "matchType": "=", "value": value}


def _fan_out(matchers: list[dict[str, str]], receivers: list[str]) -> dict[str, Any]:
    return {"matchers": matchers,
            "routes": [{"receiver": name, "continue": True} for name in receivers]}


def _secret(ref: SecretRef | None) -> dict[str, str]:
    if ref is None:
        raise ValueError("a notification route needs its secret (resolve checks this)")
    return {"name": ref.k8s_name, "key": ref.key}


def _receiver(route: Route) -> dict[str, Any]:
    settings = route.settings
    if route.type == "slack":
        return {"name": route.name, "slackConfigs": [{
            "apiURL": _secret(route.secret),
            "channel": gotemplate.literal(str(settings["channel"])),
            "sendResolved": True,
        }]}
    if route.type == "pagerduty":
        return {"name": route.name, "pagerdutyConfigs": [{
            "routingKey": _secret(route.secret), "sendResolved": True}]}
    if route.type == "email":
        to = settings["to"]
        config: dict[str, Any] = {
            "to": gotemplate.literal(", ".join(to) if isinstance(to, list) else str(to)),
            "from": gotemplate.literal(str(settings["from"])),
            "smarthost": str(settings["smarthost"]),
            "sendResolved": True,
        }
        if route.secret is not None:
            # SMTP servers log in with the sender's address unless told otherwise.
            config["authUsername"] = str(settings["from"])
            config["authPassword"] = _secret(route.secret)
        return {"name": route.name, "emailConfigs": [config]}
    webhook: dict[str, Any] = {"url": str(settings["url"]), "sendResolved": True}
    if route.secret is not None:
        webhook["httpConfig"] = {"authorization": {"type": "Bearer",
                                                   "credentials": _secret(route.secret)}}
    return {"name": route.name, "webhookConfigs": [webhook]}
