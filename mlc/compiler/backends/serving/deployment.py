"""A Deployment per server of an online endpoint that no Argo Rollout manages.

Rolling endpoints, a shadow's primary and the shadow itself, and every A/B variant are
Deployments; canary and blue-green primaries are Argo Rollouts (rollouts.py) with the same
pod template.
"""

from __future__ import annotations

from typing import Any

from ...ir import ResolvedProject
from ..objects import metadata
from .pod import pod_spec, template_metadata
from .workloads import COMPONENT, Workload, selector

# Never below the wanted replicas while rolling: a new pod must be ready (its model loaded)
# before an old one goes. Readiness is what makes this safe, so it waits for the model.
ROLLING_UPDATE = {"maxSurge": "25%", "maxUnavailable": 0}
# A model load can take minutes; a rollout that made no progress for this long is failed.
PROGRESS_DEADLINE_SECONDS = 900
REVISION_HISTORY = 5


def replicas_field(w: Workload) -> dict[str, int]:
    """`replicas` only when fixed: with an autoscaler, a value here would fight it on sync."""
    if w.replicas is not None:
        return {"replicas": w.replicas}
    return {"replicas": 0} if w.max_replicas == 0 else {}


def deployment(project: ResolvedProject, w: Workload, config_hash: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(project, w.name, origin=w.endpoint.origin, component=COMPONENT),
        "spec": {
            **replicas_field(w),
            "revisionHistoryLimit": REVISION_HISTORY,
            "progressDeadlineSeconds": PROGRESS_DEADLINE_SECONDS,
            "selector": {"matchLabels": selector(project, w)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": dict(ROLLING_UPDATE)},
            "template": {
                "metadata": template_metadata(project, w, config_hash),
                "spec": pod_spec(project, w, "kubernetes"),
            },
        },
    }
