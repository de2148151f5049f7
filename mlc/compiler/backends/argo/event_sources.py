"""The EventSources of `training.triggers`: one per trigger, so that each pod holds only its
own credentials and, for a pipeline trigger only, a token to watch Workflows.

- `object`: Argo Events' `minio` source, listening with MinIO's bucket notifications for
  `s3:ObjectCreated:*` under the prefix and suffix; keys by secret reference;
- `topic`: its `kafka` source, with the Kafka source's brokers, SASL and TLS secrets, in a
  consumer group of its own, the message's JSON as the event's body;
- `pipeline`: its `resource` source, watching this namespace's Workflows for an update that
  carries Argo's labels of the watched WorkflowTemplate and of the phase Succeeded. Argo sets
  both labels on every run of a template (scheduled, gated, submitted by hand), so no step of
  the watched pipeline has to announce its success, and no webhook can be forged.
The Sensor of each (events.py) submits the training run through the cooldown gate.
"""

from __future__ import annotations

from typing import Any

from ...ir import EventTrigger, ResolvedProject, SecretRef
from ...names import dns_label
from ..objects import metadata
from .events import API_VERSION, pod_template
from .retrain_triggers import trigger_event_source_name

COMPONENT = "event-triggers"
OBJECT_CREATED = "s3:ObjectCreated:*"
# Argo's labels on each Workflow (the controller's, not a user's)
TEMPLATE_LABEL = "workflows.argoproj.io/workflow-template"
PHASE_LABEL = "workflows.argoproj.io/phase"


def watcher_account(project: ResolvedProject) -> str:
    """The one EventSource identity with a token: it watches Workflows."""
    return dns_label(project.name, "pipeline-watch")


def trigger_source_account(project: ResolvedProject) -> str:
    return dns_label(project.name, "trigger-source")


def _selector(ref: SecretRef) -> dict[str, str]:
    return {"name": ref.k8s_name, "key": ref.key}


def _object(t: EventTrigger) -> dict[str, Any]:
    o = t.object
    assert o is not None
    return {"minio": {t.k8s_name: {
        "endpoint": o.endpoint, "bucket": {"name": o.bucket}, "events": [OBJECT_CREATED],
        "filter": {"prefix": o.prefix, "suffix": o.suffix}, "insecure": o.insecure,
        "accessKey": _selector(o.access_key), "secretKey": _selector(o.secret_key)}}}


def _topic(t: EventTrigger) -> dict[str, Any]:
    w = t.topic
    assert w is not None
    k = w.kafka
    source: dict[str, Any] = {
        "url": ",".join(s.strip() for s in k.bootstrap_servers.split(",")), "topic": k.topic,
        "jsonBody": True, "consumerGroup": {"groupName": w.consumer_group, "oldest": False}}
    if k.sasl_mechanism is not None and k.sasl_password_secret is not None \
            and k.sasl_username_secret is not None:
        source["sasl"] = {"mechanism": k.sasl_mechanism,
                          "userSecret": _selector(k.sasl_username_secret),
                          "passwordSecret": _selector(k.sasl_password_secret)}
    if k.security_protocol in ("SSL", "SASL_SSL"):
        tls: dict[str, Any] = {}
        if k.tls_ca is not None:
            tls["caCertSecret"] = _selector(k.tls_ca)
        if k.tls_cert is not None and k.tls_key is not None:
            tls["clientCertSecret"] = _selector(k.tls_cert)
            tls["clientKeySecret"] = _selector(k.tls_key)
        source["tls"] = tls
    return {"kafka": {t.k8s_name: source}}


def _pipeline(project: ResolvedProject, t: EventTrigger) -> dict[str, Any]:
    return {"resource": {t.k8s_name: {
        "namespace": project.platform.namespace, "group": "argoproj.io",
        "version": "v1alpha1", "resource": "workflows", "eventTypes": ["UPDATE"],
        "filter": {"labels": [{"key": TEMPLATE_LABEL, "operation": "==",
                               "value": t.watched_pipeline or ""},
                              {"key": PHASE_LABEL, "operation": "==",
                               "value": "Succeeded"}]}}}}


def event_source(project: ResolvedProject, t: EventTrigger) -> dict[str, Any]:
    if t.kind == "object":
        spec, account = _object(t), trigger_source_account(project)
    elif t.kind == "topic":
        spec, account = _topic(t), trigger_source_account(project)
    else:
        spec, account = _pipeline(project, t), watcher_account(project)
    return {
        "apiVersion": API_VERSION,
        "kind": "EventSource",
        "metadata": metadata(project, trigger_event_source_name(project, t.k8s_name),
                             origin=t.origin, component=COMPONENT),
        "spec": {"template": pod_template(account), **spec},
    }
