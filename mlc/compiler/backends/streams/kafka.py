"""What every Kafka client pod of the streams backend shares: its credentials by reference
(the SASL user and password as secretKeyRef variables, the TLS CA, certificate and key as
one projected Secret volume, read-only and readable by the runtime's group alone) and its
egress to the bootstrap servers."""

from __future__ import annotations

from typing import Any

from mlc import ingest_contract as contract

from ...ir import Image, KafkaConnection, ResolvedProject, SecretRef
from ..network import destinations as d
from ..pods import container_security_context, pull_policy

TLS_VOLUME = "kafka-tls"
# Owner and group may read the TLS files; the pod's fsGroup is the runtime's group.
TLS_FILE_MODE = 0o440


def tls_files(kafka: KafkaConnection) -> dict[str, SecretRef]:
    refs = {"ca": kafka.tls_ca, "cert": kafka.tls_cert, "key": kafka.tls_key}
    return {part: ref for part, ref in refs.items() if ref is not None}


def tls_env(kafka: KafkaConnection) -> list[dict[str, Any]]:
    return [{"name": contract.TLS_FILE_ENV[part],
             "value": f"{contract.TLS_DIR}/{contract.TLS_FILES[part]}"}
            for part in sorted(tls_files(kafka))]


def sasl_secrets(kafka: KafkaConnection) -> dict[str, SecretRef]:
    """Environment variable -> the Secret key it is read from."""
    out: dict[str, SecretRef] = {}
    if kafka.sasl_username_secret:
        out[contract.SASL_USERNAME_ENV] = kafka.sasl_username_secret
    if kafka.sasl_password_secret:
        out[contract.SASL_PASSWORD_ENV] = kafka.sasl_password_secret
    return out


def tls_volume(kafka: KafkaConnection) -> dict[str, Any] | None:
    files = tls_files(kafka)
    if not files:
        return None
    return {"name": TLS_VOLUME, "projected": {
        "defaultMode": TLS_FILE_MODE,
        "sources": [{"secret": {"name": ref.k8s_name, "items": [
            {"key": ref.key, "path": contract.TLS_FILES[part]}]}}
            for part, ref in sorted(files.items())]}}


def tls_mount() -> dict[str, Any]:
    return {"name": TLS_VOLUME, "mountPath": contract.TLS_DIR, "readOnly": True}


def broker_rules(project: ResolvedProject, kafka: KafkaConnection) -> list[dict[str, Any]]:
    """Each bootstrap server (`host:port`, resolve checked) as a peer: an in-cluster Service's
    namespace, else anywhere on its port. The brokers it answers with sit in the same
    namespace or on the same ports; others are declared in `platform.network.egress`, as for
    every store."""
    return d.unique([d.url_rule(project, f"kafka://{server.strip()}")
                     for server in kafka.bootstrap_servers.split(",")])


def consumer_container(*, name: str, image: Image, args: list[str], env: list[dict[str, Any]],
                       resources: dict[str, Any], mounts: list[dict[str, Any]],
                       port_name: str, port: int) -> dict[str, Any]:
    """The container of a Kafka consumer Deployment (the ingestion, stream scoring): mlc's
    runtime with `args`, its metrics port, probed on /metrics, locked down as every pod."""
    probe = {"httpGet": {"path": "/metrics", "port": port_name},
             "periodSeconds": 10, "failureThreshold": 3, "timeoutSeconds": 2}
    return {
        "name": name,
        "image": image.ref,
        "imagePullPolicy": pull_policy(image),
        "command": ["python", "-m", "mlc.runtime"],
        "args": args,
        "env": env,
        "ports": [{"name": port_name, "containerPort": port, "protocol": "TCP"}],
        "resources": resources,
        "livenessProbe": probe,
        "readinessProbe": {**probe, "periodSeconds": 5},
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
    }
