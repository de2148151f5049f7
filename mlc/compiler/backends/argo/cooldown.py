"""The drift retraining gate: the cooldown and the cap, kept without a name anyone can squat on.

The Sensor (events.py) does not create the training run itself: it creates a small gate
Workflow, under a generated name, whose steps are
1. `cooldown`: given the start time of the check's last drift retrain (read by Argo from the
   ConfigMap `<project>-drift-cooldown`, key = the check; 0 when there is none), the gate's
   own creation time and the lease, it prints `run` when the lease has passed, else `wait`;
2. `record`: on `run`, it writes its creation time into that ConfigMap;
3. `start`: then it creates the training Workflow (a generated name too, the model's
   WorkflowTemplate with `reason=drift`).
The gates of one check hold a mutex, so two alerts arriving together cannot both read the old
time. The ConfigMap is in the tree without `data` (Argo CD leaves what it does not declare
alone) and only the gate's identity may patch it. So a retrain starts at least `lease_seconds()`
after the previous drift retrain started: at least `cooldown`, and, spacing starts by
per/maxRuns, never more than `maxRuns` in any window of length `per`. A gate that has to wait
succeeds without starting anything; Alertmanager posts a still-firing alert again every
`repeatInterval`. (Argo's memoization would be simpler, but its controller drops cache
entries that were not hit for 30 seconds by default.)
"""

from __future__ import annotations

import math
from typing import Any

from ...ir import ResolvedProject
from ...names import dns_label
from ...render import dump_document
from .. import pods
from ..objects import metadata
from .retrain_triggers import RetrainTrigger
from .schedules import REASON_PARAMETER, TRIGGER_LABEL
from .steps import EXECUTOR_RESOURCES, executor_patch

API_VERSION = "argoproj.io/v1alpha1"
ENTRYPOINT = "gate"
COOLDOWN = "cooldown"
RECORD = "record"
START = "start"
LAST_START = "last_start"  # the cooldown step's input: unix seconds, from the ConfigMap
NOW = "{{workflow.creationTimestamp.s}}"
# argv: last start, this gate's creation, lease (seconds). Prints the decision for `when`.
COOLDOWN_SCRIPT = ("import sys; last, now, lease = map(int, sys.argv[1:4]); "
                   "print('run' if now - last >= lease else 'wait')")
MAY_RUN = f"{{{{steps.{COOLDOWN}.outputs.result}}}} == run"
PARAMETER_CONFIGMAP_LABEL = {"workflows.argoproj.io/configmap-type": "Parameter"}
GATE_DEADLINE_SECONDS = 600  # a gate only waits for its mutex and creates one object
KEEP_GATE_SECONDS = 86400  # a finished gate is kept a day, to see why an alert did nothing


def lease_seconds(check: RetrainTrigger) -> int:
    """How long one drift-triggered start holds off the next."""
    o = check.on_drift
    return max(o.cooldown_seconds, math.ceil(o.per_seconds / o.max_runs))


def gate_account(project: ResolvedProject) -> str:
    return dns_label(project.name, "retrain-gate")


def cooldown_config_map_name(project: ResolvedProject) -> str:
    return dns_label(project.name, "drift-cooldown")


def cooldown_config_map(project: ResolvedProject) -> dict[str, Any]:
    """Where the gates keep each check's last start: no `data`, so Argo CD never resets it."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": metadata(project, cooldown_config_map_name(project),
                                 component="drift-retraining",
                                 extra_labels=dict(PARAMETER_CONFIGMAP_LABEL))}


def training_workflow(project: ResolvedProject, check: RetrainTrigger) -> dict[str, Any]:
    """The run that the gate starts: the model's training template (or, for a batch
    endpoint's trigger, its scoring template), `reason=drift` or the trigger's."""
    pipeline = project.pipelines[check.pipeline(project)]
    meta = metadata(project, dns_label(pipeline.name, check.reason), origin=check.origin,
                    component="training" if pipeline.kind == "training" else "scoring",
                    extra_labels={TRIGGER_LABEL: check.reason})
    meta = {"generateName": meta.pop("name") + "-", **meta}
    spec: dict[str, Any] = {"workflowTemplateRef": {"name": pipeline.name}}
    if any(p.name == REASON_PARAMETER for p in pipeline.parameters):
        spec["arguments"] = {"parameters": [{"name": REASON_PARAMETER,
                                             "value": check.reason}]}
    return {"apiVersion": API_VERSION, "kind": "Workflow", "metadata": meta, "spec": spec}


def gate_workflow(project: ResolvedProject, check: RetrainTrigger) -> dict[str, Any]:
    """The Workflow the Sensor creates for each firing drift alert (or event) of `check`."""
    pipeline = project.pipelines[check.pipeline(project)]
    meta = metadata(project, dns_label(pipeline.name, check.reason, "gate"),
                    origin=check.origin, component="drift-retraining",
                    extra_labels={TRIGGER_LABEL: check.reason})
    meta = {"generateName": meta.pop("name") + "-", **meta}
    cooldown = {
        "name": COOLDOWN,
        "inputs": {"parameters": [{"name": LAST_START, "valueFrom": {
            "configMapKeyRef": {"name": cooldown_config_map_name(project),
                                "key": check.k8s_name},
            "default": "0"}}]},  # no drift retrain yet
        "container": {
            "name": "main",
            "image": project.images["drift"].ref,
            "command": ["python", "-c", COOLDOWN_SCRIPT,
                        f"{{{{inputs.parameters.{LAST_START}}}}}", NOW,
                        str(lease_seconds(check))],
            "resources": EXECUTOR_RESOURCES,
            "securityContext": pods.container_security_context(),
        },
    }
    record = {
        "name": RECORD,
        "podSpecPatch": executor_patch("main"),  # a resource step's pod runs argoexec alone
        "resource": {"action": "patch", "mergeStrategy": "merge", "manifest": dump_document({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": cooldown_config_map_name(project)},
            "data": {check.k8s_name: NOW}})},
    }
    start = {
        "name": START,
        "podSpecPatch": executor_patch("main"),
        "resource": {"action": "create",
                     "manifest": dump_document(training_workflow(project, check))},
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "Workflow",
        "metadata": meta,
        "spec": {
            "entrypoint": ENTRYPOINT,
            "serviceAccountName": gate_account(project),
            "securityContext": pods.pod_security_context(),
            "templateDefaults": {"podSpecPatch": executor_patch("wait")},
            "synchronization": {"mutexes": [{"name": dns_label("drift-gate", check.k8s_name)}]},
            "activeDeadlineSeconds": GATE_DEADLINE_SECONDS,
            "podGC": {"strategy": "OnPodCompletion"},
            "ttlStrategy": {"secondsAfterCompletion": KEEP_GATE_SECONDS},
            "templates": [
                {"name": ENTRYPOINT, "steps": [
                    [{"name": COOLDOWN, "template": COOLDOWN}],
                    [{"name": RECORD, "template": RECORD, "when": MAY_RUN}],
                    [{"name": START, "template": START, "when": MAY_RUN}],
                ]},
                cooldown,
                record,
                start,
            ],
        },
    }
