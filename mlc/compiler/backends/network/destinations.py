"""Where the pods of an environment connect to, as NetworkPolicy peers.

A URL of ml.yaml or `platform` becomes a rule by what its host says. An in-cluster Service
(`<name>.<namespace>.svc`, `...svc.cluster.local`) becomes its namespace (and, for Prometheus,
its pods' labels) and port; anything else is outside the cluster, where a NetworkPolicy can
only say the port, to any address. Object stores (`s3://`, `gs://`, ...) are HTTPS. Local
paths (development) name nothing on the network. What no URL here says, such as an online
store whose address is in a secret, the user declares in `platform.network.egress`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ...ir import NetworkPeer, ResolvedProject

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by Kubernetes on every namespace
ANYWHERE = "0.0.0.0/0"
KUBERNETES_API_PORTS = (443, 6443)  # the Service's port, and the API server's own
_SCHEME_PORTS = {"http": 80, "https": 443, "s3": 443, "gs": 443, "gcs": 443, "abfs": 443,
                 "abfss": 443, "az": 443, "wasbs": 443, "redis": 6379, "rediss": 6379,
                 "postgresql": 5432, "postgres": 5432, "grpc": 443}
_SVC_SUFFIXES = (".svc", ".svc.cluster.local")
# The Pushgateway that the monitoring backend's ServiceMonitor scrapes (servicemonitors.py).
PUSHGATEWAY_LABELS = {"app.kubernetes.io/name": "prometheus-pushgateway"}


def namespace_peer(namespace: str, pod_labels: dict[str, str] | None = None) -> dict[str, Any]:
    peer: dict[str, Any] = {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL:
                                                                  namespace}}}
    if pod_labels is not None:
        peer["podSelector"] = {"matchLabels": dict(sorted(pod_labels.items()))}
    return peer


def tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"port": p, "protocol": "TCP"} for p in sorted(set(ports))]


def rule(peers: list[dict[str, Any]], ports: list[dict[str, Any]]) -> dict[str, Any]:
    """One egress rule; no ports: every port of those peers."""
    out: dict[str, Any] = {"to": peers}
    if ports:
        out["ports"] = ports
    return out


def outside(project: ResolvedProject) -> dict[str, Any]:
    """Any address but, where `platform.network.kubernetesApi` names it, the API server's: an
    HTTPS store outside the cluster shares its port with the API, not its addresses."""
    # (an IPv6 range cannot be cut out of an IPv4 block)
    api = [c for c in _network(project).kubernetes_api if c != ANYWHERE and ":" not in c]
    block: dict[str, Any] = {"cidr": ANYWHERE}
    if api:
        block["except"] = sorted(api)
    return {"ipBlock": block}


def url_rule(project: ResolvedProject, url: str) -> dict[str, Any] | None:
    """The egress rule that reaching `url` needs, or None for a local path."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if not parts.hostname or scheme in ("", "file", "sqlite"):
        return None
    port = parts.port or _SCHEME_PORTS.get(scheme, 443)
    if scheme in ("s3", "gs", "gcs", "az", "abfs", "abfss", "wasbs"):
        # the bucket is the "host" here; the store's endpoint is HTTPS somewhere outside
        return rule([outside(project)], tcp(port))
    host = parts.hostname.lower()
    for suffix in _SVC_SUFFIXES:
        if host.endswith(suffix) and host.count(".") >= suffix.count(".") + 1:
            namespace = host[: -len(suffix)].split(".")[-1]
            p = project.platform
            labels = None
            if namespace == p.prometheus_namespace and url == p.prometheus_url:
                labels = p.prometheus_pod_labels
            elif namespace == p.namespace and url == p.pushgateway_url:
                labels = PUSHGATEWAY_LABELS
            return rule([namespace_peer(namespace, labels)], tcp(port))
    return rule([outside(project)], tcp(port))


def declared_rule(peer: NetworkPeer) -> dict[str, Any]:
    target = ({"ipBlock": {"cidr": peer.cidr}} if peer.cidr is not None
              else namespace_peer(peer.namespace or "", peer.pod_labels or None))
    return rule([target], tcp(*peer.ports))


def dns_rule(project: ResolvedProject) -> dict[str, Any]:
    dns = _network(project).dns
    return {"to": [namespace_peer(dns.namespace or "", dns.pod_labels)],
            "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}


def kubernetes_api_rule(project: ResolvedProject) -> dict[str, Any]:
    return rule([{"ipBlock": {"cidr": c}} for c in _network(project).kubernetes_api],
                tcp(*KUBERNETES_API_PORTS))


def store_urls(project: ResolvedProject) -> list[str]:
    """The object store and Feast stores that steps and model servers read and write."""
    p = project.platform
    urls = [p.artifact_root, p.feast_registry, p.mlflow_tracking_uri]
    urls += [e.prediction_log_uri for e in project.endpoints.values()]
    lineage = p.lineage  # every step sends its OpenLineage events there
    if lineage and lineage.transport == "http" and lineage.url:
        urls.append(lineage.url)
    elif lineage and lineage.transport == "kafka" and lineage.bootstrap_servers:
        urls += [f"kafka://{server}" for server in lineage.bootstrap_servers.split(",")]
    return urls


def vector_store_urls(project: ResolvedProject) -> list[str]:
    """The Milvus servers the vectors steps write to (a milvus-lite file names none), with
    the port the connection uses when the uri gives none."""
    stores = {w.store.name: w.store for w in project.vector_writes.values() if w.store.host}
    return [f"{s.uri.split('://', 1)[0]}://{s.host}:{s.port}" for _, s in sorted(stores.items())]


def store_rules(project: ResolvedProject) -> list[dict[str, Any]]:
    """Feast stores and sources that are cloud services: their APIs answer on HTTPS (Redshift
    on its own port). Those at a host of the user's are declared in `platform.network.egress`
    (resolve/network.py refuses them otherwise)."""
    ports = {"bigquery": 443, "snowflake": 443, "redshift": 5439, "dynamodb": 443,
             "bigtable": 443, "datastore": 443}
    p = project.platform
    types = {p.online_store_type, p.offline_store_type, *(s.type for s in
                                                          project.sources.values())}
    wanted = {ports[t] for t in types if t in ports}
    return [rule([outside(project)], tcp(*wanted))] if wanted else []


def unique(rules: list[dict[str, Any] | None]) -> list[dict[str, Any]]:
    """Rules without repeats or gaps, in a stable order."""
    out: list[dict[str, Any]] = []
    for r in rules:
        if r is not None and r not in out:
            out.append(r)
    return out


def _network(project: ResolvedProject):
    network = project.platform.network
    assert network is not None, "resolve sets platform.network"
    return network
