"""Services: the endpoint's stable address, and the per-server addresses a rollout needs.

`<endpoint>` reaches the live pods (the primary, or every A/B variant, weighted by replica
count); `<endpoint>-shadow` reaches the shadow, for the primary's mirror only; blue-green
adds `<endpoint>-preview`, which Argo Rollouts points at the new version before promotion.
"""

from __future__ import annotations

from typing import Any

from ...ir import Endpoint, ResolvedProject
from ..objects import metadata
from .pod import PORT_NAME
from .workloads import COMPONENT, Workload, live_selector, selector, workload_name


def service(project: ResolvedProject, ep: Endpoint, name: str,
            pod_selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(project, name, origin=ep.origin, component=COMPONENT),
        "spec": {
            "type": "ClusterIP",
            "selector": pod_selector,
            "ports": [{"name": PORT_NAME, "port": ep.port, "targetPort": PORT_NAME,
                       "protocol": "TCP", "appProtocol": "http"}],
        },
    }


def preview_service_name(ep: Endpoint) -> str:
    return workload_name(ep, "preview")


def services(project: ResolvedProject, ep: Endpoint,
             workloads: list[Workload]) -> list[dict[str, Any]]:
    live = [service(project, ep, workload_name(ep), live_selector(project, ep))]
    if ep.rollout.strategy == "blueGreen":
        live.append(service(project, ep, preview_service_name(ep),
                            live_selector(project, ep)))
    # A/B variants get an address each, to try one variant on purpose
    own = [service(project, ep, w.name, selector(project, w)) for w in workloads
           if w.role == "shadow" or (w.role == "variant" and w.max_replicas > 0)]
    return live + own


def url(project: ResolvedProject, name: str, port: int | None) -> str:
    host = f"{name}.{project.platform.namespace}.svc.cluster.local"
    return f"http://{host}:{port}" if port else f"http://{host}"
