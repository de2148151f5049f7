"""The EventSources of `training.triggers`: one per trigger, so that each pod holds only its
own credentials and, for a pipeline trigger only, a token to watch Workflows.

- `object`: Argo Events' `minio` source, listening with MinIO's bucket notifications for
  `s3:ObjectCreated:*` under the prefix and suffix; keys by secret reference. An AWS S3
  bucket: its `sqs` source, reading the queue the bucket notifies; a GCS bucket: its `pubsub`
  source, pulling an existing subscription of the bucket's notification topic (never creating
  one). Both take keys by secret reference, or the cloud identity of a ServiceAccount of the
  trigger's own (`cloud_identity`); the Sensor filters their events by bucket, key and event
  type (retrain_triggers.py);
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
# SQS long polling: a receive waits up to 20 seconds (SQS's maximum) for a message
SQS_WAIT_SECONDS = 20
IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"
WORKLOAD_IDENTITY_ANNOTATION = "iam.gke.io/gcp-service-account"
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
    if o.sqs is not None:
        sqs: dict[str, Any] = {"region": o.sqs.region, "queue": o.sqs.queue,
                               "waitTimeSeconds": SQS_WAIT_SECONDS, "jsonBody": True}
        if o.access_key is not None and o.secret_key is not None:
            sqs["accessKey"] = _selector(o.access_key)
            sqs["secretKey"] = _selector(o.secret_key)
        return {"sqs": {t.k8s_name: sqs}}
    if o.pubsub is not None:
        pubsub: dict[str, Any] = {"projectID": o.pubsub.project,
                                  "subscriptionID": o.pubsub.subscription, "jsonBody": True}
        if o.pubsub.credentials is not None:
            pubsub["credentialSecret"] = _selector(o.pubsub.credentials)
        return {"pubSub": {t.k8s_name: pubsub}}
    assert o.access_key is not None and o.secret_key is not None
    return {"minio": {t.k8s_name: {
        "endpoint": o.endpoint, "bucket": {"name": o.bucket}, "events": [OBJECT_CREATED],
        "filter": {"prefix": o.prefix, "suffix": o.suffix}, "insecure": o.insecure,
        "accessKey": _selector(o.access_key), "secretKey": _selector(o.secret_key)}}}


def cloud_identity(t: EventTrigger) -> dict[str, str]:
    """The annotation that binds a cloud bucket trigger's own ServiceAccount to its cloud
    identity (IRSA, GKE Workload Identity); none for an identity bound outside ml.yaml."""
    o = t.object
    if o is not None and o.sqs is not None and o.sqs.role_arn is not None:
        return {IRSA_ANNOTATION: o.sqs.role_arn}
    if o is not None and o.pubsub is not None and o.pubsub.service_account is not None:
        return {WORKLOAD_IDENTITY_ANNOTATION: o.pubsub.service_account}
    return {}


def own_account(project: ResolvedProject, t: EventTrigger) -> str | None:
    """A cloud bucket trigger that authenticates as its pod gets an identity of its own, so
    that no other pod holds its bucket's notifications."""
    if t.object is None or not t.object.own_account:
        return None
    return trigger_event_source_name(project, t.k8s_name)


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
        spec = _object(t)
        account = own_account(project, t) or trigger_source_account(project)
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
