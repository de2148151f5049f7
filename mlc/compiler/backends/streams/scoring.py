"""A `mode: stream` endpoint: its consumer Deployment, identity, network policy, scrape
target and, where the platform declares KEDA, the ScaledObject that follows its lag.

    streams/deployment-<endpoint>-score.yaml              `python -m mlc.runtime stream-score`
    streams/serviceaccount-<endpoint>-score.yaml          no API token mounted
    streams/networkpolicy-<endpoint>-score.yaml           brokers, MLflow, the feature store
                                                          out; Prometheus in
    streams/podmonitor-<endpoint>-score.yaml              mlc.metrics STREAM_*
    streams/scaledobject-<endpoint>-score.yaml            KEDA's kafka scaler on the group
    streams/triggerauthentication-<endpoint>-score.yaml   its credentials, by reference

The pod is the serving image, locked down as every mlc pod is (backends/pods.py); the model
is the endpoint's registry URI (a pinned version, or the alias) in MLC_MODEL_URI, as the
serving pods have it. Its alerts are a rule set of the monitoring backend (stream_rules.py).
"""

from __future__ import annotations

from typing import Any

from mlc import ingest_contract
from mlc import stream_contract as contract
from mlc.step_contract import FEAST_REPO_ENV, HOME, PROJECT_JSON

from ...ir import Endpoint, ResolvedProject, SecretRef, StreamScoring
from ...names import dns_label
from ..argo.volumes import config_volume, project_json_mount
from ..escape import container_text
from ..feast import (
    DATA_ROOT_ENV,
    ONLINE_SECRET_ENV,
    REPO_MOUNT_PATH,
    repo_volume,
    repo_volume_mounts,
)
from ..network import destinations as d
from ..network import policy
from ..objects import labels, metadata, selector_labels
from ..pods import (
    pod_security_context,
    resources,
    scheduling,
    secret_env,
)
from . import kafka

COMPONENT = "stream-scoring"
CONTAINER = "score"
FEAST_VOLUME = "feast"
SCRATCH_VOLUME = "scratch"
MODEL_URI_ENV = "MLC_MODEL_URI"  # as the serving pods name it (serving/pod.py)
KEDA_API = "keda.sh/v1alpha1"
# KEDA's names for librdkafka's SASL mechanisms
KEDA_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256",
             "SCRAM-SHA-512": "scram_sha512"}
# After SIGTERM the consumer finishes the batch in hand: scores it, flushes the output (at
# most 10 s), commits and leaves the group.
TERMINATION_GRACE_SECONDS = 30


def k8s_name(ep: Endpoint) -> str:
    return dns_label(ep.name, "score")


def _stream(ep: Endpoint) -> StreamScoring:
    assert ep.stream is not None, "resolve sets `stream` on every stream endpoint"
    return ep.stream


def env(project: ResolvedProject, ep: Endpoint) -> list[dict[str, Any]]:
    p = project.platform
    s = _stream(ep)
    out: list[dict[str, Any]] = [
        {"name": "HOME", "value": HOME},
        {"name": contract.METRICS_PORT_ENV, "value": str(contract.METRICS_PORT)},
        {"name": MODEL_URI_ENV, "value": container_text(ep.model_uri)},
        {"name": "MLFLOW_TRACKING_URI", "value": container_text(p.mlflow_tracking_uri)},
        *({"name": k, "value": v} for k, v in ep.env.items()),
        *kafka.tls_env(s.kafka),
    ]
    if s.kafka.sasl_username is not None:  # KEDA reads it here (triggerauthentication)
        out.append({"name": ingest_contract.SASL_USERNAME_ENV,
                    "value": container_text(s.kafka.sasl_username)})
    secrets: dict[str, SecretRef] = {**ep.secrets, **kafka.sasl_secrets(s.kafka)}
    if p.mlflow_credentials:
        secrets["MLFLOW_TRACKING_TOKEN"] = p.mlflow_credentials
    if ep.online_features:
        out += [{"name": FEAST_REPO_ENV, "value": REPO_MOUNT_PATH},
                # Feast insists on the variable; a cluster's stores have no relative paths
                {"name": DATA_ROOT_ENV, "value": HOME}]
        if p.online_store_secret:
            secrets[ONLINE_SECRET_ENV] = p.online_store_secret
    return sorted(out + secret_env(secrets), key=lambda e: e["name"])


def volumes(project: ResolvedProject, ep: Endpoint) -> list[dict[str, Any]]:
    out = [config_volume(project), {"name": SCRATCH_VOLUME, "emptyDir": {}}]
    if ep.online_features:
        out.append(repo_volume(project, FEAST_VOLUME))
    tls = kafka.tls_volume(_stream(ep).kafka)
    if tls is not None:
        out.append(tls)
    return out


def container(project: ResolvedProject, ep: Endpoint) -> dict[str, Any]:
    mounts = [project_json_mount(), {"name": SCRATCH_VOLUME, "mountPath": HOME}]
    if ep.online_features:
        mounts += repo_volume_mounts(FEAST_VOLUME)
    if kafka.tls_files(_stream(ep).kafka):
        mounts.append(kafka.tls_mount())
    return kafka.consumer_container(
        name=CONTAINER, image=ep.image,
        args=["stream-score", "--project", PROJECT_JSON, "--endpoint", container_text(ep.name)],
        env=env(project, ep), resources=resources(project.hardware[ep.hardware]),
        mounts=mounts, port_name=contract.METRICS_PORT_NAME, port=contract.METRICS_PORT)


def deployment(project: ResolvedProject, ep: Endpoint) -> dict[str, Any]:
    name = k8s_name(ep)
    selector = selector_labels(project, name)
    pod_labels = dict(sorted({**labels(project, name, COMPONENT), **selector}.items()))
    s = _stream(ep)
    spec: dict[str, Any] = {
        # KEDA's HPA owns the count where it scales; a count here would fight it on sync
        **({} if s.keda else {"replicas": s.replicas}),
        "selector": {"matchLabels": selector},
        "template": {
            "metadata": {"labels": pod_labels},
            "spec": {
                "serviceAccountName": name,
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "securityContext": pod_security_context(),
                "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
                "containers": [container(project, ep)],
                "volumes": volumes(project, ep),
                **scheduling(project.hardware[ep.hardware]),
            },
        },
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": metadata(project, name, origin=ep.origin, component=COMPONENT),
            "spec": spec}


def service_account(project: ResolvedProject, ep: Endpoint) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": metadata(project, k8s_name(ep), origin=ep.origin,
                                 component=COMPONENT),
            "automountServiceAccountToken": False}


def network_policy(project: ResolvedProject, ep: Endpoint) -> dict[str, Any]:
    p = project.platform
    assert p.network is not None, "resolve sets platform.network"
    name = k8s_name(ep)
    pods = {"matchLabels": selector_labels(project, name)}
    prometheus = d.namespace_peer(p.prometheus_namespace, p.prometheus_pod_labels)
    egress = [*kafka.broker_rules(project, _stream(ep).kafka),
              d.url_rule(project, p.mlflow_tracking_uri),
              # the model's files, wherever the registry keeps its artifacts
              d.url_rule(project, p.artifact_root)]
    if ep.online_features:
        egress += [d.url_rule(project, p.feast_registry), *d.store_rules(project)]
    egress += [d.declared_rule(peer) for peer in p.network.egress]
    out = policy(project, name, pods,
                 ingress=[{"from": [prometheus], "ports": d.tcp(contract.METRICS_PORT)}],
                 egress=d.unique(egress))
    out["metadata"] = metadata(project, name, origin=ep.origin, component=COMPONENT)
    return out


def pod_monitor(project: ResolvedProject, ep: Endpoint) -> dict[str, Any]:
    name = k8s_name(ep)
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": metadata(project, name, origin=ep.origin, component="monitoring"),
        "spec": {
            "selector": {"matchLabels": selector_labels(project, name)},
            # honorLabels keeps the contract's `endpoint` label over the target's
            "podMetricsEndpoints": [{"port": contract.METRICS_PORT_NAME, "path": "/metrics",
                                     "honorLabels": True}],
        },
    }


def _authenticated(s: StreamScoring) -> bool:
    return s.kafka.sasl_mechanism is not None or bool(kafka.tls_files(s.kafka))


def scaled_object(project: ResolvedProject, ep: Endpoint) -> dict[str, Any]:
    """KEDA's kafka scaler reads the group's lag from the brokers itself, so it scales from
    zero too (no consumer needs to run to report it). It never runs more consumers than the
    topic has partitions; more would sit idle."""
    s = _stream(ep)
    assert s.keda is not None
    k = s.kafka
    trigger_metadata = {
        "bootstrapServers": k.bootstrap_servers, "consumerGroup": s.consumer_group,
        "topic": k.topic, "lagThreshold": str(s.keda.lag_per_replica),
        "offsetResetPolicy": s.start_from,
    }
    if k.sasl_mechanism is not None:
        trigger_metadata["sasl"] = KEDA_SASL[k.sasl_mechanism]
    if k.security_protocol in ("SSL", "SASL_SSL"):
        trigger_metadata["tls"] = "enable"
    trigger: dict[str, Any] = {"type": "kafka", "metadata": dict(sorted(
        trigger_metadata.items()))}
    if _authenticated(s):
        trigger["authenticationRef"] = {"name": k8s_name(ep)}
    return {
        "apiVersion": KEDA_API,
        "kind": "ScaledObject",
        "metadata": metadata(project, k8s_name(ep), origin=ep.origin, component=COMPONENT),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                               "name": k8s_name(ep)},
            "minReplicaCount": s.keda.min_replicas,
            "maxReplicaCount": s.keda.max_replicas,
            "pollingInterval": s.keda.polling_interval_seconds,
            "cooldownPeriod": s.keda.cooldown_period_seconds,
            "triggers": [trigger],
        },
    }


def trigger_authentication(project: ResolvedProject, ep: Endpoint) -> dict[str, Any] | None:
    """The scaler's credentials: the consumer's own Secrets, by reference; a plain user name
    from the consumer container's environment."""
    s = _stream(ep)
    if s.keda is None or not _authenticated(s):
        return None
    k = s.kafka
    refs: list[dict[str, str]] = []
    env: list[dict[str, str]] = []
    if k.sasl_username_secret is not None:
        refs.append({"parameter": "username", "name": k.sasl_username_secret.k8s_name,
                     "key": k.sasl_username_secret.key})
    elif k.sasl_username is not None:
        env.append({"parameter": "username", "name": ingest_contract.SASL_USERNAME_ENV,
                    "containerName": CONTAINER})
    if k.sasl_password_secret is not None:
        refs.append({"parameter": "password", "name": k.sasl_password_secret.k8s_name,
                     "key": k.sasl_password_secret.key})
    refs += [{"parameter": part, "name": ref.k8s_name, "key": ref.key}
             for part, ref in sorted(kafka.tls_files(k).items())]
    spec: dict[str, Any] = {"secretTargetRef": refs}
    if env:
        spec["env"] = env
    return {"apiVersion": KEDA_API, "kind": "TriggerAuthentication",
            "metadata": metadata(project, k8s_name(ep), origin=ep.origin,
                                 component=COMPONENT),
            "spec": spec}


def objects(project: ResolvedProject, ep: Endpoint) -> list[dict[str, Any]]:
    out = [deployment(project, ep), service_account(project, ep),
           network_policy(project, ep), pod_monitor(project, ep)]
    if _stream(ep).keda is not None:
        auth = trigger_authentication(project, ep)
        out += [scaled_object(project, ep), *([auth] if auth else [])]
    return out
