"""NetworkPolicy: a serving pod accepts connections only from those allowed to call it.

Ingress is denied by default: the endpoint's live pods accept its port from the clients
listed in `allowFrom` and from Prometheus (its scrapes use the same port); a shadow accepts
only its primary's mirrored requests and Prometheus. Where `platform.gateway` routes the
endpoint, the gateway's namespace is a client of the live pods, and the shadow's mirror;
A/B variants behind the router accept the router's pods besides the clients. Egress is left
open: the server calls MLflow, the artifact store and the online store, whose addresses
ml.yaml does not hold.
"""

from __future__ import annotations

from typing import Any

from ...ir import AllowFrom, Endpoint, ResolvedProject
from ...names import dns_label
from ..objects import metadata
from .pod import PORT_NAME
from .workloads import COMPONENT, Workload, form, selector

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by Kubernetes on every namespace


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


def network_policy(project: ResolvedProject, ep: Endpoint, w: Workload,
                   peers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(project, dns_label(w.name, "ingress"), origin=ep.origin,
                             component=COMPONENT),
        "spec": {
            "podSelector": {"matchLabels": selector(project, w)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"port": PORT_NAME, "protocol": "TCP"}]}],
        },
    }


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
