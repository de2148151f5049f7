"""The delivery workflow: canary steps and gates where Argo Rollouts cannot run them.

Knative Services and KServe InferenceServices (in KServe's Knative mode) have a traffic split
but nothing that measures a new revision before it gets more traffic. For a canary endpoint in
those forms the serving backend writes an Argo Workflow that does what an Argo Rollout does:

1. `revisions` reads the object: the newest ready revision and the one that serves today
   (Knative: `status.latestReadyRevisionName` and the revision pinned in `status.traffic`;
   KServe: `status.components.predictor.latestReadyRevision` and `latestRolledoutRevision`);
2. when they differ, for each step of `rollout.steps`: give the new revision the step's weight
   (a patch of the Knative Service's `spec.traffic`, or of KServe's `canaryTrafficPercent`),
   then measure the gates for the step's pause (`python -m mlc.runtime gate`, the queries of
   the AnalysisTemplate in analysis.py, in the endpoint's ConfigMap as `gates.json`); a step
   without a pause is measured once and then waits for a person (`argo resume`);
   A canary with a shadow phase (`shadowFirst`) first measures the shadow gates for the
   phase's duration (`shadow-gates.json`: the new version, running as `<endpoint>-shadow`,
   compared with the stable revision that copies requests to it), before the first step
   gives the new revision any traffic; a failed shadow gate ends the workflow there;
3. all steps passed: the new revision gets all traffic and is pinned as the stable one;
4. any failure (a gate, a patch, a step stopped by a person): the exit handler gives all
   traffic back to the previous revision.
When the revisions are the same (a sync that changed no pod), the current one is pinned
(KServe: the split is set to 0), so that the revision a later sync creates starts with no
traffic. After a promotion KServe gets 100 percent, then 0 again once it has recorded the new
revision as rolled out, for the same reason.

Trigger: the Workflow is an Argo CD PostSync hook, so it starts after every sync of the
environment, once the synced objects are healthy (the new revision is ready), and Argo CD's
sync lasts until the workflow ends. Argo CD must leave the traffic fields to it:
`ignored_fields` is what the Application ignores (argocd.py), together with
`RespectIgnoreDifferences=true`. The workflow's service account may only read and patch the
one object of the endpoint, and report its steps' results to Argo.
"""

from __future__ import annotations

import json
from typing import Any

from hera.workflows import Container, Parameter, Resource, Step, Steps, Suspend, Workflow
from hera.workflows import models as m

from ...ir import Endpoint, ResolvedProject
from ...names import dns_label
from .. import pods
from ..argo.steps import executor_patch
from ..monitoring.servicemonitors import KNATIVE_REVISION_LABEL
from ..objects import account_with_role, metadata
from . import analysis, knative, kserve, shadow_queries
from .pod import CONFIG_DIR
from .workloads import COMPONENT, config_map_name, form, workload_name

GATES_KEY = "gates.json"  # the gate file's key in the endpoint's ConfigMap
GATES_PATH = f"{CONFIG_DIR}/{GATES_KEY}"
SHADOW_GATES_KEY = "shadow-gates.json"  # the shadow phase's gate file, beside it
SHADOW_GATES_PATH = f"{CONFIG_DIR}/{SHADOW_GATES_KEY}"
REVISION_LABEL = KNATIVE_REVISION_LABEL.replace(".", "_").replace("/", "_")  # in Prometheus
# Argo Rollouts' default for a Prometheus metric: errors tolerated in a row.
CONSECUTIVE_ERROR_LIMIT = 4
HOOK = {"argocd.argoproj.io/hook": "PostSync",
        # the previous run stays for inspection until the next sync replaces it
        "argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation"}
GATE_RESOURCES = {"requests": {"cpu": "50m", "memory": "128Mi"},
                  "limits": {"cpu": "500m", "memory": "256Mi"}}
# A step without a pause waits for a person this long, at most; then the workflow fails and
# rolls back: a canary nobody approved does not stay. (Until it ends, Argo CD's sync of the
# environment waits for this hook.)
APPROVAL_WINDOW_SECONDS = 24 * 3600
# Reading the object, the patches, pulling the serve image for each gate pod.
OVERHEAD_SECONDS = 600
NEW, STABLE = "new", "stable"
REARM = "rearm"
# The workflow's own tags: our text, never from ml.yaml.
NEW_REVISION = "{{workflow.outputs.parameters.new-revision}}"
STABLE_REVISION = "{{workflow.outputs.parameters.stable-revision}}"


def driven(ep: Endpoint) -> bool:
    """Whether the endpoint's canary is stepped and gated by the delivery workflow."""
    if ep.rollout.strategy != "canary":
        return False
    shape = form(ep)
    return shape == "knative" or (shape == "kserve" and ep.mode == "serverless")


def workflow_name(ep: Endpoint) -> str:
    return dns_label(ep.k8s_name, "delivery")


def account_name(ep: Endpoint) -> str:
    return dns_label(ep.k8s_name, "delivery")


def _target(project: ResolvedProject, ep: Endpoint) -> dict[str, Any]:
    """apiVersion, kind and metadata of the object whose traffic the workflow moves."""
    if form(ep) == "kserve":
        api, kind = kserve.API_VERSION, "InferenceService"
    else:
        api, kind = knative.API_VERSION, "Service"
    return {"apiVersion": api, "kind": kind,
            "metadata": {"name": workload_name(ep), "namespace": project.platform.namespace}}


def ignored_fields(project: ResolvedProject) -> list[dict[str, Any]]:
    """What Argo CD must not reset while (or after) the workflow moves traffic."""
    out = []
    for name in sorted(project.endpoints):
        ep = project.endpoints[name]
        if not driven(ep):
            continue
        target = _target(project, ep)
        pointer = ("/spec/predictor/canaryTrafficPercent" if form(ep) == "kserve"
                   else "/spec/traffic")
        out.append({"group": target["apiVersion"].split("/")[0], "kind": target["kind"],
                    "name": target["metadata"]["name"], "namespace": project.platform.namespace,
                    "jsonPointers": [pointer]})
    return out


def gate_settings(project: ResolvedProject, ep: Endpoint) -> dict[str, Any]:
    """The gate file: the AnalysisTemplate's queries, on the Knative revision label."""
    gates = ep.rollout.gates
    return {
        "prometheus": project.platform.prometheus_url,
        "intervalSeconds": gates.interval_seconds,
        "initialDelaySeconds": gates.interval_seconds,  # as the AnalysisTemplate's initialDelay
        "failureLimit": gates.failure_limit,
        "inconclusiveLimit": analysis.INCONCLUSIVE_LIMIT,
        "consecutiveErrorLimit": CONSECUTIVE_ERROR_LIMIT,
        "placeholders": {NEW: analysis.arg(analysis.NEW_ARG),
                         STABLE: analysis.arg(analysis.STABLE_ARG)},
        "gates": [{"name": name, "query": analysis.for_label(query, REVISION_LABEL),
                   "max": limit}
                  for name, query, limit in analysis.gate_checks(project, ep)],
    }


def shadow_gate_settings(project: ResolvedProject, ep: Endpoint) -> dict[str, Any]:
    """The shadow phase's gate file: the shadow comparison's queries (shadow_queries.py),
    whose first measurement waits for the stable pods' mirror, then one rate window (the
    new version's answers only)."""
    phase = ep.rollout.shadow_phase
    assert phase is not None
    g = phase.gates
    return {
        "prometheus": project.platform.prometheus_url,
        "intervalSeconds": g.interval_seconds,
        "initialDelaySeconds": shadow_queries.first_measurement_seconds(ep),
        "failureLimit": g.failure_limit,
        "inconclusiveLimit": analysis.INCONCLUSIVE_LIMIT,
        "consecutiveErrorLimit": CONSECUTIVE_ERROR_LIMIT,
        "placeholders": {},
        "gates": [{"name": c.name, "query": c.query, ("min" if c.minimum else "max"): c.bound}
                  for c in shadow_queries.phase_checks(project, ep)],
    }


def _manifest(obj: dict[str, Any]) -> str:
    # JSON is YAML: Argo reads it as is, and the revision tags sit inside JSON strings
    return json.dumps(obj, sort_keys=True, indent=2) + "\n"


def _traffic_patch(project: ResolvedProject, ep: Endpoint,
                   entries: list[tuple[str, int | str]]) -> str:
    """A merge patch of the traffic: (revision, percent) pairs, or KServe's canary percent.

    A percent is a number or an Argo tag, which Argo replaces by a number before it parses
    the patch: the tag is written without quotes.
    """
    target = _target(project, ep)
    if form(ep) == "kserve":
        spec: dict[str, Any] = {"predictor": {"canaryTrafficPercent": entries[-1][1]}}
    else:
        spec = {"traffic": [{"revisionName": rev, "percent": pct} for rev, pct in entries]}
    text = _manifest({**target, "spec": spec})
    for _, pct in entries:
        if isinstance(pct, str):
            text = text.replace(json.dumps(pct), pct)
    return text


def _inputs(*names: str) -> list[Parameter]:
    return [Parameter(name=n) for n in names]


def _param(name: str) -> str:
    return "{{inputs.parameters." + name + "}}"


def _resource(name: str, action: str, manifest: str, **extra: Any) -> Resource:
    return Resource(name=name, action=action, manifest=manifest,
                    # a resource step's pod is argoexec alone: its `main` gets the same rules
                    pod_spec_patch=executor_patch("main"), **extra)


def _revisions(project: ResolvedProject, ep: Endpoint) -> Resource:
    if form(ep) == "kserve":
        paths = {NEW: "{.status.components.predictor.latestReadyRevision}",
                 STABLE: "{.status.components.predictor.latestRolledoutRevision}"}
    else:
        # the pinned revision; right after the first sync, the one serving `latestRevision`
        paths = {NEW: "{.status.latestReadyRevisionName}",
                 STABLE: "{.status.traffic[0].revisionName}"}
    outputs = [Parameter(name=key, global_name=f"{key}-revision",
                         value_from=m.ValueFrom(json_path=path))
               for key, path in sorted(paths.items())]
    return _resource("revisions", "get", _manifest(_target(project, ep)), outputs=outputs)


def _templates(project: ResolvedProject, ep: Endpoint) -> list[Any]:
    kserve_form = form(ep) == "kserve"
    set_weight = _resource("set-weight", "patch", _traffic_patch(
        project, ep, [(_param(STABLE), _param("stable-percent")),
                      (_param(NEW), _param("new-percent"))]),
        merge_strategy="merge", inputs=_inputs(NEW, STABLE, "new-percent", "stable-percent"))
    if kserve_form:
        # KServe makes the canary the rolled-out revision at 100 percent; the workflow waits
        # for that before it sets the split back to 0, the start of the next rollout (and
        # the rollback: 0 percent sends everything to the rolled-out revision)
        pin = _resource("pin", "patch", _traffic_patch(project, ep, [("", 100)]),
                        merge_strategy="merge", inputs=_inputs("revision"),
                        success_condition="status.components.predictor."
                                          "latestRolledoutRevision == " + _param("revision"))
        extra = [_resource(REARM, "patch", _traffic_patch(project, ep, [("", 0)]),
                           merge_strategy="merge")]
    else:
        pin = _resource("pin", "patch", _traffic_patch(project, ep, [(_param("revision"), 100)]),
                        merge_strategy="merge", inputs=_inputs("revision"))
        extra = []
    gates = [_gate_container(ep, "gate", GATES_PATH)]
    if ep.rollout.shadow_phase is not None:
        gates.append(_gate_container(ep, "shadow-gate", SHADOW_GATES_PATH))
    approve = Suspend(name="approve")
    return [set_weight, pin, *extra, *gates, approve]


def _gate_container(ep: Endpoint, name: str, gates_path: str) -> Container:
    return Container(
        name=name, image=ep.image.ref,
        image_pull_policy=pods.pull_policy(ep.image),
        command=["python", "-m", "mlc.runtime"],
        args=["gate", "--gates", gates_path, "--new", _param(NEW), "--stable", _param(STABLE),
              "--duration", _param("duration")],
        inputs=_inputs(NEW, STABLE, "duration"),
        env=[m.EnvVar(name="HOME", value="/tmp")],
        resources=m.ResourceRequirements.parse_obj(GATE_RESOURCES),
        security_context=m.SecurityContext.parse_obj(pods.container_security_context()),
        volume_mounts=[m.VolumeMount(name="gates", mount_path=CONFIG_DIR, read_only=True)],
        # the gate reads Prometheus only: no API token in its container; Argo's own `wait`
        # container reports the result with the executor's
        automount_service_account_token=False,
        executor=m.ExecutorConfig(service_account_name=account_name(ep)),
        pod_spec_patch=executor_patch("wait"))


def _rollout_steps(ep: Endpoint) -> Steps:
    revs = {NEW: _param(NEW), STABLE: _param(STABLE)}
    sub: list[Any] = []
    phase = ep.rollout.shadow_phase
    if phase is not None:
        # phase 1: the new version as a shadow; no traffic moves unless its gates pass
        sub.append(Step(name="shadow", template="shadow-gate",
                        arguments={**revs, "duration": str(phase.duration_seconds)}))
    for i, step in enumerate(ep.rollout.steps, start=1):
        sub.append(Step(name=f"weight-{i}", template="set-weight", arguments={
            **revs, "new-percent": str(step.weight), "stable-percent": str(100 - step.weight)}))
        seconds = step.pause_seconds or ep.rollout.gates.interval_seconds
        sub.append(Step(name=f"gate-{i}", template="gate",
                        arguments={**revs, "duration": str(seconds)}))
        if step.pause_seconds is None:
            sub.append(Step(name=f"approve-{i}", template="approve"))
    sub.append(Step(name="promote", template="pin", arguments={"revision": _param(NEW)}))
    if form(ep) == "kserve":
        sub.append(Step(name=REARM, template=REARM))
    return Steps(name="rollout", inputs=_inputs(NEW, STABLE), sub_steps=sub)


def deadline_seconds(ep: Endpoint) -> int:
    """The longest a rollout may take: each step's gates (after their initial delay), the
    approvals, and the overhead; past it Argo fails the workflow, which rolls back."""
    interval = ep.rollout.gates.interval_seconds
    total = OVERHEAD_SECONDS
    if ep.rollout.shadow_phase is not None:
        total += (shadow_queries.first_measurement_seconds(ep)
                  + ep.rollout.shadow_phase.duration_seconds)
    for step in ep.rollout.steps:
        total += interval + (step.pause_seconds or interval)
        if step.pause_seconds is None:
            total += APPROVAL_WINDOW_SECONDS
    return total


def workflow(project: ResolvedProject, ep: Endpoint) -> dict[str, Any]:
    meta = metadata(project, workflow_name(ep), origin=ep.origin, component=COMPONENT,
                    annotations=HOOK)
    # quoted: Argo's `when` would read a revision name's hyphens as minus signs
    changed = "'{{steps.revisions.outputs.parameters.new}}' != " \
              "'{{steps.revisions.outputs.parameters.stable}}'"
    same = "'{{steps.revisions.outputs.parameters.new}}' == " \
           "'{{steps.revisions.outputs.parameters.stable}}'"
    revs = {NEW: "{{steps.revisions.outputs.parameters.new}}",
            STABLE: "{{steps.revisions.outputs.parameters.stable}}"}
    deliver = Steps(name="deliver", sub_steps=[
        Step(name="revisions", template="revisions"),
        [Step(name="rollout", template="rollout", arguments=revs, when=changed),
         # KServe: a 0 split (100 would give the next revision all traffic at once)
         Step(name="pin-current", template=REARM, when=same) if form(ep) == "kserve" else
         Step(name="pin-current", template="pin", arguments={"revision": revs[STABLE]},
              when=same)],
    ])
    # anything but success gives all traffic back to the revision that served before
    failed = (f"'{{{{workflow.status}}}}' != 'Succeeded' && "
              f"'{NEW_REVISION}' != '{STABLE_REVISION}'")
    back = (Step(name="rollback", template=REARM, when=failed) if form(ep) == "kserve" else
            Step(name="rollback", template="pin", arguments={"revision": STABLE_REVISION},
                 when=failed))
    finish = Steps(name="finish", sub_steps=[back])
    gates_volume = m.Volume(name="gates", config_map=m.ConfigMapVolumeSource(
        name=config_map_name(ep), items=[m.KeyToPath(key=key, path=key) for key in (
            GATES_KEY, *([SHADOW_GATES_KEY] if ep.rollout.shadow_phase is not None else []))]))
    wf = Workflow(
        name=meta["name"], namespace=meta["namespace"], labels=meta["labels"],
        annotations=meta["annotations"], entrypoint="deliver", on_exit="finish",
        templates=[deliver, _revisions(project, ep), _rollout_steps(ep),
                   *_templates(project, ep), finish],
        service_account_name=account_name(ep),
        active_deadline_seconds=deadline_seconds(ep),
        security_context=m.PodSecurityContext.parse_obj(pods.pod_security_context()),
        volumes=[gates_volume],
        pod_gc=m.PodGC(strategy="OnPodSuccess"),
    )
    return wf.to_dict()


def rbac(project: ResolvedProject, ep: Endpoint) -> list[dict[str, Any]]:
    """The workflow's identity: read and patch its one object, report step results."""
    name = account_name(ep)
    target = _target(project, ep)
    group = target["apiVersion"].split("/")[0]
    plural = "inferenceservices" if target["kind"] == "InferenceService" else "services"
    meta = metadata(project, name, origin=ep.origin, component=COMPONENT)
    rules = [
        {"apiGroups": [group], "resources": [plural],
         "resourceNames": [target["metadata"]["name"]], "verbs": ["get", "patch"]},
        {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"],
         "verbs": ["create", "patch"]},
    ]
    # a token: the workflow's resource steps patch the object with it
    return account_with_role(project, meta, rules)
