"""NetworkPolicy: a serving pod accepts connections only from those allowed to call it.

Ingress is denied by default (backends/network, which also allows the servers' egress). The
live pods of a Deployment, Rollout or KServe Standard endpoint accept its port from the
clients listed in `allowFrom` and from Prometheus (its scrapes use the same port); a shadow
accepts only its primary's mirrored requests and Prometheus. Knative pods (serverless
endpoints, with or without KServe) are reached through Knative: its activator and autoscaler
(in Knative's namespace) and the ingress gateway connect to the queue-proxy, as Knative's
documentation asks NetworkPolicies to allow; clients never reach the pod themselves, so
`allowFrom` is the gateway's to enforce, and resolve refuses it there (MLC271).
Where `platform.gateway` routes the endpoint, the gateway's namespace is a client of the
live pods, and of the shadow's mirror; A/B variants behind the router accept the
router's pods besides the clients.
"""

from __future__ import annotations

from typing import Any

from ...ir import AllowFrom, Endpoint, ResolvedProject
from ...names import dns_label
from ..objects import metadata
from .pod import PORT_NAME
from .workloads import COMPONENT, Workload, form, selector

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by Kubernetes on every namespace
# Knative's queue-proxy: HTTP/1 and h2c from the activator or the gateway, its admin port, and
# the autoscaler's and Prometheus' metrics ports.
QUEUE_PROXY_TRAFFIC_PORTS = (8012, 8013)
QUEUE_PROXY_SYSTEM_PORTS = (8012, 8013, 8022, 9090, 9091)


def client_peer(allow: AllowFrom) -> dict[str, Any]:
    peer: dict[str, Any] = {}
    if allow.namespace is not None:
        peer["namespaceSelector"] = {"matchLabels": {NAMESPACE_NAME_LABEL: allow.namespace}}
    if allow.pod_labels or allow.namespace is None:
        # no namespace: pods of the endpoint's own namespace ({} is all of them)
        peer["podSelector"] = {"matchLabels": dict(allow.pod_labels)}
    return peer


def prometheus_peer(project: ResolvedProject) -> dict[str, Any]:
    p = project.platform
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: p.prometheus_namespace}},
            "podSelector": {"matchLabels": dict(p.prometheus_pod_labels)}}


def _namespace(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: name}}}


def _tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"port": p, "protocol": "TCP"} for p in ports]


def knative_policies(project: ResolvedProject, ep: Endpoint,
                     workloads: list[Workload]) -> list[dict[str, Any]]:
    network = project.platform.network
    assert network is not None
    rules = [
        {"from": [_namespace(network.knative_namespace)],
         "ports": _tcp(*QUEUE_PROXY_SYSTEM_PORTS)},
        {"from": [_namespace(network.gateway_namespace)],
         "ports": _tcp(*QUEUE_PROXY_TRAFFIC_PORTS)},
        {"from": [prometheus_peer(project)], "ports": _tcp(*scrape_ports(ep))},
    ]
    return [ingress_policy(project, ep, w, rules) for w in workloads]


def ingress_policy(project: ResolvedProject, ep: Endpoint, w: Workload,
                   rules: list[dict[str, Any]]) -> dict[str, Any]:
    """The NetworkPolicy of one server's pods: these ingress rules, nothing else."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(project, dns_label(w.name, "ingress"), origin=ep.origin,
                             component=COMPONENT),
        "spec": {"podSelector": {"matchLabels": selector(project, w)},
                 "policyTypes": ["Ingress"], "ingress": rules},
    }


def scrape_ports(ep: Endpoint) -> tuple[int, ...]:
    """Where Prometheus scrapes the pods: mlc's port, or an engine's metrics port."""
    es = ep.engine_serving
    return (ep.port,) if es is None else tuple(sorted({es.scrape_port}))


def network_policy(project: ResolvedProject, ep: Endpoint, w: Workload,
                   peers: list[dict[str, Any]]) -> dict[str, Any]:
    es = ep.engine_serving
    if es is not None and w.role != "router":  # mlc's A/B router listens as mlc's server
        # a stock runtime's container names no port `http`: numbers, and the engine's
        # metrics port for Prometheus (mlc/engine_metrics.py)
        clients = [p for p in peers if p != prometheus_peer(project)]
        ingress = [{"from": clients, "ports": _tcp(es.http_port)}] if clients else []
        ingress.append({"from": [prometheus_peer(project)],
                        "ports": _tcp(*sorted({es.http_port, es.scrape_port}))})
        return ingress_policy(project, ep, w, ingress)
    return ingress_policy(project, ep, w, [
        {"from": peers, "ports": [{"port": PORT_NAME, "protocol": "TCP"}]}])


def gateway_peer(project: ResolvedProject) -> dict[str, Any]:
    g = project.platform.gateway
    assert g is not None
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: g.namespace}}}


def network_policies(project: ResolvedProject, ep: Endpoint,
                     workloads: list[Workload]) -> list[dict[str, Any]]:
    clients = [client_peer(a) for a in ep.allow_from]
    routed = project.platform.gateway is not None and form(ep) == "kubernetes"
    if routed:
        clients.append(gateway_peer(project))
    primary = next((w for w in workloads if w.role == "primary"), None)
    router = next((w for w in workloads if w.role == "router"), None)
    out = []
    for w in workloads:
        if w.role == "shadow" and ep.rollout.traffic == "gateway":
            peers = [gateway_peer(project)]
        elif w.role == "shadow":
            assert primary is not None
            peers = [{"podSelector": {"matchLabels": selector(project, primary)}}]
        elif w.role == "variant" and router is not None:
            peers = [*clients, {"podSelector": {"matchLabels": selector(project, router)}}]
        else:
            peers = list(clients)
        out.append(network_policy(project, ep, w, [*peers, prometheus_peer(project)]))
    return out
