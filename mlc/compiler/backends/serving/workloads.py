"""The plan of one endpoint: which model servers it runs, before any choice of API object.

A rollout strategy decides how many servers an endpoint runs and what each one serves: one
primary (rolling, canary, blue-green), a primary and its shadow (the shadow strategy, or a
canary's shadow phase, whose shadow serves the new version), or one server per A/B
variant, plus the A/B router where it splits the traffic (`Rollout.traffic == "router"`).
The form those servers take (a Deployment or an Argo Rollout, a Knative Service, a KServe
InferenceService) is decided separately, so every form renders the same plan and the
ConfigMap, Services and policies agree with whichever form is chosen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ...ir import Endpoint, ResolvedProject
from ...names import dns_1035_label, dns_label, label_value
from ...resolve.traffic import ROUTER, replicas_for_share
from ..objects import labels as object_labels
from ..objects import selector_labels

Role = Literal["primary", "shadow", "variant", "router"]
Form = Literal["kubernetes", "knative", "kserve"]

# Every pod of an endpoint carries `app.kubernetes.io/name: <endpoint>`, which the monitoring
# backend's PodMonitor selects (servicemonitors.py), and a role: the endpoint's Services and
# NetworkPolicies tell the live pods from a shadow's by ROLE_LABEL, so no client request can
# ever reach a shadow directly; A/B variants add VARIANT_LABEL.
ROLE_LABEL = "mlc.dev/role"
VARIANT_LABEL = "mlc.dev/variant"
COMPONENT = "serving"


@dataclass(frozen=True)
class Workload:
    """One model server of an endpoint: a Deployment, Rollout, Knative or KServe service."""

    endpoint: Endpoint
    role: Role
    name: str  # the workload's object name; its Service (if any) has the same name
    variant: str | None
    model_uri: str | None  # None: the router, which serves no model
    config_key: str  # its runtime settings in the endpoint's ConfigMap
    replicas: int | None  # fixed replicas, or None when autoscaled between min and max
    min_replicas: int
    max_replicas: int
    weight: int  # percent of live traffic (the shadow's mirrored share is not live traffic)


def form(endpoint: Endpoint) -> Form:
    if endpoint.kserve:
        return "kserve"
    return "knative" if endpoint.mode == "serverless" else "kubernetes"


def workload_name(endpoint: Endpoint, suffix: str | None = None) -> str:
    """`<endpoint>` or `<endpoint>-<suffix>`: a workload, or a Service of the endpoint.

    DNS-1035 (a leading letter), as Services need; Knative and KServe derive Service names
    from their objects' names.
    """
    parts = (endpoint.k8s_name, suffix) if suffix else (endpoint.k8s_name,)
    return dns_1035_label(*parts)


def plan(endpoint: Endpoint) -> list[Workload]:
    """The endpoint's servers, primary (or variants, in the user's order) first."""
    if endpoint.mode == "batch":
        return []  # the Argo backend schedules batch scoring; it reads only the ConfigMap
    if endpoint.mode == "stream":
        return []  # a consumer, not a server: the streams backend (streams/scoring.py)
    r = endpoint.rollout
    if r.strategy == "ab":
        variants = [_scaled(endpoint, "variant", workload_name(endpoint, v.name), v.name,
                            v.model_uri or endpoint.model_uri, f"variant-{v.name}.json",
                            v.weight) for v in r.variants]
        if r.traffic != "router":
            return variants
        router = Workload(endpoint=endpoint, role="router", name=router_name(endpoint),
                          variant=None, model_uri=None, config_key="router.json",
                          replicas=r.router_replicas, min_replicas=r.router_replicas,
                          max_replicas=r.router_replicas, weight=0)
        return [*variants, router]
    primary = _scaled(endpoint, "primary", workload_name(endpoint), None, endpoint.model_uri,
                      "primary.json", 100)
    if r.strategy != "shadow" and r.shadow_phase is None:
        return [primary]
    assert r.shadow_model_uri is not None  # resolve sets it for the shadow strategy
    # sized for the share of requests mirrored to it, none of which is live traffic
    shadow = _scaled(endpoint, "shadow", workload_name(endpoint, "shadow"), None,
                     r.shadow_model_uri, "shadow.json", r.shadow_percent, live=False)
    return [primary, shadow]


def _scaled(endpoint: Endpoint, role: Role, name: str, variant: str | None, uri: str,
            key: str, share: int, *, live: bool = True) -> Workload:
    """Replicas for a server that takes `share` percent of the endpoint's traffic
    (see replicas_for_share)."""
    a = endpoint.autoscaling

    def part(n: int, floor: int) -> int:
        return replicas_for_share(n, share, floor)

    fixed = part(endpoint.replicas, 1) if endpoint.replicas is not None else None
    lo = part(a.min_replicas, 1 if a.min_replicas else 0)
    hi = max(lo, part(a.max_replicas, 1))
    return Workload(endpoint=endpoint, role=role, name=name, variant=variant, model_uri=uri,
                    config_key=key, replicas=fixed, min_replicas=lo, max_replicas=hi,
                    weight=share if live else 0)


def selector(project: ResolvedProject, w: Workload) -> dict[str, str]:
    """The immutable selector of the workload's own pods."""
    out = {**selector_labels(project, w.endpoint.k8s_name), ROLE_LABEL: w.role}
    if w.variant:
        out[VARIANT_LABEL] = label_value(w.variant)
    return out


def router_name(endpoint: Endpoint) -> str:
    return workload_name(endpoint, ROUTER)


def live_selector(project: ResolvedProject, endpoint: Endpoint) -> dict[str, str]:
    """Every pod that answers the endpoint's clients: the primary, the A/B router, or (split
    by pod count) all A/B variants."""
    r = endpoint.rollout
    role = ("router" if r.traffic == "router" else "variant" if r.strategy == "ab"
            else "primary")
    return {**selector_labels(project, endpoint.k8s_name), ROLE_LABEL: role}


def endpoint_selector(project: ResolvedProject, endpoint: Endpoint) -> dict[str, str]:
    """Every pod of the endpoint, shadow included."""
    return selector_labels(project, endpoint.k8s_name)


def pod_labels(project: ResolvedProject, w: Workload) -> dict[str, str]:
    out = {**object_labels(project, w.endpoint.k8s_name, COMPONENT), **selector(project, w)}
    return dict(sorted(out.items()))


def config_map_name(endpoint: Endpoint) -> str:
    """The endpoint's runtime ConfigMap; the Argo backend's batch scoring mounts it too."""
    return dns_label(endpoint.k8s_name, "serve")


def service_account_name(endpoint: Endpoint) -> str:
    return dns_label(endpoint.k8s_name, "serve")
