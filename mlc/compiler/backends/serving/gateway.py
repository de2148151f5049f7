"""The endpoint's HTTPRoute (Gateway API), where `platform.gateway` names a Gateway.

The route attaches to that Gateway and takes the requests under `/<endpoint>/`, with the
prefix stripped (the servers answer on `/predict` and `/v2/...`). What it sends where
follows `Rollout.traffic` (resolve/traffic.py):

- `gateway`, A/B: weighted `backendRefs` over the variants' own Services;
- `gateway`, shadow: the primary's Service, and a `RequestMirror` filter that copies
  `shadow.percent` of requests to the shadow's Service (the gateway drops its answers; the
  shadow logs them under the request's `x-request-id`, which the gateway forwards);
- otherwise the endpoint's Service: the primary, or the A/B router where a sticky key is
  named (an HTTPRoute cannot hash a key into weights).
"""

from __future__ import annotations

from typing import Any

from ...ir import Endpoint, ResolvedProject
from ..objects import metadata
from .workloads import COMPONENT, Workload, workload_name

API_VERSION = "gateway.networking.k8s.io/v1"
GROUP = "gateway.networking.k8s.io"


def route_prefix(ep: Endpoint) -> str:
    return f"/{ep.k8s_name}"


def _backend(ep: Endpoint, service: str) -> dict[str, Any]:
    return {"group": "", "kind": "Service", "name": service, "port": ep.port}


def http_route(project: ResolvedProject, ep: Endpoint,
               workloads: list[Workload]) -> dict[str, Any]:
    g = project.platform.gateway
    assert g is not None  # the serving backend emits a route only for a declared gateway
    parent: dict[str, Any] = {"group": GROUP, "kind": "Gateway", "name": g.name,
                              "namespace": g.namespace}
    if g.section_name:
        parent["sectionName"] = g.section_name
    r = ep.rollout
    filters: list[dict[str, Any]] = [{"type": "URLRewrite", "urlRewrite": {
        "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}]
    if r.traffic == "gateway" and r.strategy == "ab":
        backends = [{**_backend(ep, w.name), "weight": w.weight} for w in workloads
                    if w.role == "variant" and w.weight > 0]
    else:
        backends = [_backend(ep, workload_name(ep))]
    if r.traffic == "gateway" and r.strategy == "shadow":
        shadow = next(w for w in workloads if w.role == "shadow")
        filters.append({"type": "RequestMirror", "requestMirror": {
            "backendRef": _backend(ep, shadow.name), "percent": r.shadow_percent}})
    return {
        "apiVersion": API_VERSION,
        "kind": "HTTPRoute",
        "metadata": metadata(project, workload_name(ep), origin=ep.origin, component=COMPONENT),
        "spec": {
            "parentRefs": [parent],
            "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": route_prefix(ep)}}],
                "filters": filters,
                "backendRefs": backends,
            }],
        },
    }
