"""The endpoint's runtime settings (a ConfigMap) and the identity its pods run as.

`project.json` (the core ConfigMap) tells the serving runtime everything about the project;
the endpoint's ConfigMap holds what differs between the servers of one endpoint: the model
each one loads, its role, where it logs predictions, and where the primary mirrors traffic;
the A/B router's key holds the variants' weights and addresses and the sticky key. Each
server mounts its own key as /etc/mlc/endpoint.json (see pod.py).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ...ir import Endpoint, ResolvedProject
from ..objects import metadata
from .ab_guard import router_guard
from .workloads import COMPONENT, Workload, config_map_name, service_account_name

# What a shadow logs: every answer it computes, since logging them is its only purpose.
SHADOW_LOG_SAMPLE = 1.0


def runtime_settings(w: Workload, mirror_url: str | None, task: str) -> dict:
    ep = w.endpoint
    shadow = w.role == "shadow"
    r = ep.rollout
    return {
        "endpoint": ep.name,
        # the `endpoint` label of the metrics this server exports: a shadow answers mirrored
        # requests, which must not count towards the endpoint's SLOs or rollout gates
        "metrics_endpoint": f"{ep.name}-shadow" if shadow else ep.name,
        "role": w.role,
        "variant": w.variant,
        "model_uri": w.model_uri,
        "port": ep.port,
        "batching": {
            "max_batch_size": ep.batching.max_batch_size,
            "max_latency_seconds": ep.batching.max_latency_seconds,
            "max_queue": ep.batching.max_queue,
        },
        "prediction_log": {
            "sample": SHADOW_LOG_SAMPLE if shadow else ep.prediction_log_sample,
            "uri": ep.rollout.shadow_log_uri if shadow else ep.prediction_log_uri,
        },
        # the primary copies this share of its requests to the shadow after answering and
        # compares the shadow's answer with its own: the shadow logs it, the client never
        # sees it (mlc/runtime/serve/shadow.py)
        "mirror": ({"url": mirror_url, "percent": r.shadow_percent, "task": task,
                    "tolerance": r.shadow_tolerance, "max_queue": r.shadow_max_queue,
                    "timeout_seconds": r.shadow_timeout_seconds}
                   if mirror_url and w.role == "primary" else None),
    }


def router_settings(w: Workload, variant_urls: dict[str, str]) -> dict:
    """The A/B router's settings (mlc/runtime/serve/router.py): which variant Service takes
    which share, and the key that keeps one user on one variant."""
    ep, r = w.endpoint, w.endpoint.rollout
    assignment = ({"header": r.assignment_header} if r.assignment_header else
                  {"field": r.assignment_field} if r.assignment_field else None)
    out = {
        "endpoint": ep.name,
        "role": "router",
        "port": ep.port,
        "timeout_seconds": r.router_timeout_seconds,
        "assignment": assignment,
        "variants": [{"name": v.name, "weight": v.weight, "url": variant_urls[v.name]}
                     for v in r.variants if v.weight > 0],
    }
    guard = router_guard(ep)
    if guard is not None:  # the A/B guard's override (weights_override.py)
        out["guard"] = guard
    return out


def settings_text(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True, indent=2) + "\n"


def config_hash(w: Workload, settings: dict) -> str:
    """Changes when anything the server reads at start changes, so that pods roll.

    The runtime reads its settings and its endpoint's part of project.json once, at start;
    a new value in a mounted ConfigMap would otherwise reach pods only when they restart.
    The endpoint's origin (a line number in ml.yaml) is left out: moving text is no change.
    """
    endpoint = w.endpoint.model_dump_json(exclude={"origin"})
    digest = hashlib.sha256((settings_text(settings) + endpoint).encode("utf-8"))
    return digest.hexdigest()[:16]


def config_map(project: ResolvedProject, ep: Endpoint,
               settings: dict[str, dict]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(project, config_map_name(ep), origin=ep.origin,
                             component=COMPONENT),
        "data": {key: settings_text(value) for key, value in sorted(settings.items())},
    }


def service_account(project: ResolvedProject, ep: Endpoint) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(project, service_account_name(ep), origin=ep.origin,
                             component=COMPONENT),
        # the server never calls the Kubernetes API: no token in its pods
        "automountServiceAccountToken": False,
    }
