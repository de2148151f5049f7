"""NetworkPolicy semantics, as Kubernetes defines them, to ask "is this connection allowed?".

- A pod selected by no policy of a type (Ingress/Egress) is not isolated for that direction.
- A pod selected by one or more: a connection is allowed when any rule of any of them allows
  it (policies add up, never subtract).
- A connection needs both: egress allowed at its source, ingress allowed at its destination.
- Peers: `podSelector` alone means pods of the policy's namespace; `namespaceSelector` alone
  every pod of the matching namespaces; both, the matching pods of those namespaces;
  `ipBlock`, addresses in the CIDR but not in `except` (here only for addresses outside the
  cluster, for which the spec leaves pod IPs implementation-defined).
- Ports: none listed means every port; an entry without `port` every port of its protocol
  (TCP by default); a named port is looked up in the destination pod's containers; `endPort`
  makes a range.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    labels: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)  # named container ports


@dataclass(frozen=True)
class Address:
    """An address outside the cluster (or the API server's)."""

    ip: str


Target = Pod | Address


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"unknown operator {op}")
    return True


def _peer_matches(peer: dict[str, Any], target: Target, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        if not isinstance(target, Address):
            return False
        ip = ipaddress.ip_address(target.ip)
        block = peer["ipBlock"]
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(e) for e in block.get("except") or [])
    if not isinstance(target, Pod):
        return False
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], {NAMESPACE_NAME_LABEL: target.namespace}):
            return False
    elif target.namespace != policy_namespace:
        return False
    return selects(peer.get("podSelector"), target.labels) if "podSelector" in peer else True


def _port_matches(ports: list[dict[str, Any]] | None, port: int, protocol: str,
                  destination: Target) -> bool:
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        wanted = entry.get("port")
        if wanted is None:
            return True
        if isinstance(wanted, str):
            if isinstance(destination, Pod) and destination.ports.get(wanted) == port:
                return True
            continue
        if wanted <= port <= entry.get("endPort", wanted):
            return True
    return False


def _types(policy: dict[str, Any]) -> list[str]:
    spec = policy["spec"]
    if "policyTypes" in spec:
        return spec["policyTypes"]
    return ["Ingress", *(["Egress"] if "egress" in spec else [])]


def _selecting(policies: list[dict[str, Any]], pod: Pod, kind: str) -> list[dict[str, Any]]:
    return [p for p in policies if p["metadata"]["namespace"] == pod.namespace
            and kind in _types(p) and selects(p["spec"]["podSelector"], pod.labels)]


def egress_allowed(policies: list[dict[str, Any]], source: Pod, destination: Target,
                   port: int, protocol: str = "TCP") -> bool:
    isolating = _selecting(policies, source, "Egress")
    if not isolating:
        return True
    return any(
        (not rule.get("to") or any(_peer_matches(peer, destination, source.namespace)
                                   for peer in rule["to"]))
        and _port_matches(rule.get("ports"), port, protocol, destination)
        for p in isolating for rule in p["spec"].get("egress") or [])


def ingress_allowed(policies: list[dict[str, Any]], source: Target, destination: Pod,
                    port: int, protocol: str = "TCP") -> bool:
    isolating = _selecting(policies, destination, "Ingress")
    if not isolating:
        return True
    return any(
        (not rule.get("from") or any(_peer_matches(peer, source, destination.namespace)
                                     for peer in rule["from"]))
        and _port_matches(rule.get("ports"), port, protocol, destination)
        for p in isolating for rule in p["spec"].get("ingress") or [])


def allowed(policies: list[dict[str, Any]], source: Pod | Address, destination: Target,
            port: int, protocol: str = "TCP") -> bool:
    """Both ends agree. Policies of namespaces not given (another team's) are taken as open."""
    if isinstance(source, Pod) and not egress_allowed(policies, source, destination, port,
                                                      protocol):
        return False
    if isinstance(destination, Pod):
        return ingress_allowed(policies, source, destination, port, protocol)
    return True
