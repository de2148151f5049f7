"""Argo Rollouts: canary and blue-green primaries, gated by the AnalysisTemplate.

Canary without a traffic router: Argo Rollouts reaches each step's weight by the ratio of
new to stable pods behind the one Service (so weights are as exact as the replica count
allows), which needs no service mesh. The gates run in the background from the first step
to the last; a failed gate aborts the rollout, which scales the new pods down and leaves the
stable version serving everything: the automatic rollback.

Canary with a shadow phase (`shadowFirst`): the first step is an inline analysis over the
shadow comparison (shadow_queries.phase_checks), before any `setWeight`. Until it ends, the new
ReplicaSet has no pods; the new version runs in the `<endpoint>-shadow` Deployment, which a sync
updates at once, and the stable pods copy requests to it and compare. A failed or inconclusive
shadow gate fails the step, which aborts the rollout: no client ever reached the new version.
A passed one hands on to the canary steps, gated as above.

Blue-green: the new version comes up behind `<endpoint>-preview`; promotion (by a person, or
automatic with `autoPromote`) switches `<endpoint>` to it, and the gates then watch it with
live traffic. The previous version stays up until they pass, so a failure switches straight
back.
"""

from __future__ import annotations

from typing import Any

from ...ir import Endpoint, ResolvedProject
from ..objects import metadata
from . import shadow_queries
from .analysis import (
    NEW_ARG,
    STABLE_ARG,
    analysis_seconds,
    shadow_template,
    shadow_template_name,
    template_name,
)
from .deployment import PROGRESS_DEADLINE_SECONDS, REVISION_HISTORY, ROLLING_UPDATE, replicas_field
from .pod import pod_spec, template_metadata
from .service import preview_service_name
from .workloads import COMPONENT, Workload, selector, workload_name

API_VERSION = "argoproj.io/v1alpha1"
HASH_LABEL = "rollouts-pod-template-hash"  # what Argo Rollouts labels each version's pods with
# After a blue-green switch the previous version waits at least this long before it is
# scaled down (Argo Rollouts' default is 30 s); longer while the gates still run.
MIN_SCALE_DOWN_DELAY_SECONDS = 30


def analysis(ep: Endpoint) -> dict[str, Any]:
    return {
        "templates": [{"templateName": template_name(ep)}],
        "args": [
            {"name": NEW_ARG, "valueFrom": {"podTemplateHashValue": "Latest"}},
            {"name": STABLE_ARG, "valueFrom": {"podTemplateHashValue": "Stable"}},
        ],
    }


def canary_steps(w: Workload) -> list[dict[str, Any]]:
    """setWeight, then pause: for the step's `pause`, or until a person promotes it."""
    steps: list[dict[str, Any]] = []
    if w.endpoint.rollout.shadow_phase is not None:
        steps.append({"analysis": {"templates": [
            {"templateName": shadow_template_name(w.endpoint)}]}})
    for step in w.endpoint.rollout.steps:
        steps.append({"setWeight": step.weight})
        pause = {"duration": f"{step.pause_seconds}s"} if step.pause_seconds else {}
        steps.append({"pause": pause})
    return steps


def shadow_analysis_template(project: ResolvedProject, ep: Endpoint) -> dict[str, Any]:
    """The shadow phase's gates, measured for the phase's duration; the first measurement
    waits for the stable pods to pick up their mirror, then one rate window, so that it
    reads the new version's answers only (once its pods are up: a sync updates them while
    the step starts)."""
    checks = [(c.name, c.query, c.bound, c.minimum)
              for c in shadow_queries.phase_checks(project, ep)]
    return shadow_template(project, ep, checks, shadow_queries.measurements(ep),
                           shadow_queries.first_measurement_seconds(ep))


def strategy(project: ResolvedProject, w: Workload) -> dict[str, Any]:
    ep = w.endpoint
    if ep.rollout.strategy == "canary":
        background = analysis(ep)
        if ep.rollout.shadow_phase is not None:
            # the canary gates measure the new pods, which the shadow step leaves at none:
            # they start with the first setWeight (else they would stop the rollout as
            # inconclusive while the shadow is being measured)
            background["startingStep"] = 1
        return {"canary": {**ROLLING_UPDATE, "analysis": background,
                           "steps": canary_steps(w)}}
    return {"blueGreen": {
        "activeService": workload_name(ep),
        "previewService": preview_service_name(ep),
        "autoPromotionEnabled": ep.rollout.auto_promote,
        "postPromotionAnalysis": analysis(ep),
        "scaleDownDelaySeconds": max(MIN_SCALE_DOWN_DELAY_SECONDS, analysis_seconds(ep)),
    }}


def rollout(project: ResolvedProject, w: Workload, config_hash: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Rollout",
        "metadata": metadata(project, w.name, origin=w.endpoint.origin, component=COMPONENT),
        "spec": {
            **replicas_field(w),
            "revisionHistoryLimit": REVISION_HISTORY,
            "progressDeadlineSeconds": PROGRESS_DEADLINE_SECONDS,
            # a version whose pods never become ready (the model does not load) is rolled
            # back like one that fails a gate
            "progressDeadlineAbort": True,
            "selector": {"matchLabels": selector(project, w)},
            "template": {
                "metadata": template_metadata(project, w, config_hash),
                "spec": pod_spec(project, w, "kubernetes", hash_label=HASH_LABEL),
            },
            "strategy": strategy(project, w),
        },
    }
