"""One Kafka source's ingestion: its Deployment, identity, network policy and scrape target.

The pod is locked down as every mlc pod is (backends/pods.py), reads the resolved project
and the Feast repository from their ConfigMaps, and gets its credentials only by reference:
the SASL user and password as secretKeyRef variables, the TLS CA, certificate and key as one
projected Secret volume, read-only and readable by the runtime's group alone.
"""

from __future__ import annotations

from typing import Any

from mlc import ingest_contract as contract
from mlc.step_contract import FEAST_REPO_ENV, HOME, PROJECT_JSON

from ...ir import Ingestion, ResolvedProject, SecretRef
from ..argo.volumes import config_volume, project_json_mount
from ..escape import container_text
from ..feast import DATA_ROOT_ENV, ONLINE_SECRET_ENV, repo_volume, repo_volume_mounts
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

COMPONENT = "ingestion"
CONTAINER = "ingest"
FEAST_VOLUME = "feast"
SCRATCH_VOLUME = "scratch"
# After SIGTERM the runtime finishes the batch in hand (its write retries back off for at
# most 7 s), commits and leaves the group.
TERMINATION_GRACE_SECONDS = 30


def tls_files(ingestion: Ingestion) -> dict[str, SecretRef]:
    return kafka.tls_files(ingestion.kafka)


def env(project: ResolvedProject, ingestion: Ingestion) -> list[dict[str, Any]]:
    p = project.platform
    out: list[dict[str, Any]] = [
        {"name": "HOME", "value": HOME},
        {"name": FEAST_REPO_ENV, "value": "/etc/mlc/feast"},
        # Feast insists on the variable; a cluster's stores have no relative paths
        {"name": DATA_ROOT_ENV, "value": HOME},
        {"name": contract.METRICS_PORT_ENV, "value": str(contract.METRICS_PORT)},
    ]
    out += kafka.tls_env(ingestion.kafka)
    secrets = kafka.sasl_secrets(ingestion.kafka)
    if p.online_store_secret:
        secrets[ONLINE_SECRET_ENV] = p.online_store_secret
    return sorted(out + secret_env(secrets), key=lambda e: e["name"])


def volumes(project: ResolvedProject, ingestion: Ingestion) -> list[dict[str, Any]]:
    out = [config_volume(project), repo_volume(project, FEAST_VOLUME),
           {"name": SCRATCH_VOLUME, "emptyDir": {}}]
    tls = kafka.tls_volume(ingestion.kafka)
    if tls is not None:
        out.append(tls)
    return out


def container(project: ResolvedProject, ingestion: Ingestion) -> dict[str, Any]:
    mounts = [project_json_mount(), *repo_volume_mounts(FEAST_VOLUME),
              {"name": SCRATCH_VOLUME, "mountPath": HOME}]
    if tls_files(ingestion):
        mounts.append(kafka.tls_mount())
    return kafka.consumer_container(
        name=CONTAINER, image=ingestion.image,
        args=["ingest", "--project", PROJECT_JSON, "--source", container_text(ingestion.source)],
        env=env(project, ingestion), resources=resources(project.hardware[ingestion.hardware]),
        mounts=mounts, port_name=contract.METRICS_PORT_NAME, port=contract.METRICS_PORT)


def deployment(project: ResolvedProject, ingestion: Ingestion) -> dict[str, Any]:
    selector = selector_labels(project, ingestion.k8s_name)
    pod_labels = dict(sorted({**labels(project, ingestion.k8s_name, COMPONENT),
                              **selector}.items()))
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(project, ingestion.k8s_name, origin=ingestion.origin,
                             component=COMPONENT),
        "spec": {
            "replicas": ingestion.replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "serviceAccountName": ingestion.k8s_name,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security_context(),
                    "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
                    "containers": [container(project, ingestion)],
                    "volumes": volumes(project, ingestion),
                    **scheduling(project.hardware[ingestion.hardware]),
                },
            },
        },
    }


def service_account(project: ResolvedProject, ingestion: Ingestion) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": metadata(project, ingestion.k8s_name, origin=ingestion.origin,
                                 component=COMPONENT),
            "automountServiceAccountToken": False}


def broker_rules(project: ResolvedProject, ingestion: Ingestion) -> list[dict[str, Any]]:
    return kafka.broker_rules(project, ingestion.kafka)


def network_policy(project: ResolvedProject, ingestion: Ingestion) -> dict[str, Any]:
    p = project.platform
    assert p.network is not None, "resolve sets platform.network"
    pods = {"matchLabels": selector_labels(project, ingestion.k8s_name)}
    prometheus = d.namespace_peer(p.prometheus_namespace, p.prometheus_pod_labels)
    egress = [*broker_rules(project, ingestion),
              *(d.url_rule(project, u) for u in (p.feast_registry,)),
              *d.store_rules(project), *(d.declared_rule(peer) for peer in p.network.egress)]
    out = policy(project, ingestion.k8s_name, pods,
                 ingress=[{"from": [prometheus], "ports": d.tcp(contract.METRICS_PORT)}],
                 egress=d.unique(egress))
    out["metadata"] = metadata(project, ingestion.k8s_name, origin=ingestion.origin,
                               component=COMPONENT)
    return out


def pod_monitor(project: ResolvedProject, ingestion: Ingestion) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": metadata(project, ingestion.k8s_name, origin=ingestion.origin,
                             component="monitoring"),
        "spec": {
            "selector": {"matchLabels": selector_labels(project, ingestion.k8s_name)},
            # by name: the one port of the pod; honorLabels keeps the contract's `source`
            "podMetricsEndpoints": [{"port": contract.METRICS_PORT_NAME, "path": "/metrics",
                                     "honorLabels": True}],
        },
    }
