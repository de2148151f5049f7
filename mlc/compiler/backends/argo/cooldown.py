"""The drift retraining gate: the cooldown and the cap, kept without a name anyone can squat on.

The Sensor (events.py) does not create the training run itself: it creates a small gate
Workflow, under a generated name, that
1. `claim`s the check's cooldown: a step that prints its own Workflow's uid, memoized by Argo
   under the check's name for `lease_seconds()`. While the memo is fresh Argo does not run the
   step again but hands back the uid stored in it: that of the run that claimed it;
2. `start`s the training Workflow (again a generated name, the model's WorkflowTemplate with
   `reason=drift`) only when the uid it got back is its own.
The gates of one check take a mutex, so that two alerts arriving together cannot both find the
memo empty. The memo lives in a ConfigMap that Argo's controller writes; no pod of ours holds
a token that could change it. Runs are spaced by their starts: a retrain starts at least
`cooldown` after the previous drift retrain started, and, spacing them by per/maxRuns, no
more than `maxRuns` start in any window of length `per`. A gate that finds the cooldown held
succeeds without starting anything, so the alert is dropped, as Alertmanager will post it again
every `repeatInterval` while it fires.
"""

from __future__ import annotations

import math
from typing import Any

from ...ir import DriftCheck, ResolvedProject
from ...names import dns_label
from ...render import dump_document
from .. import pods
from ..objects import metadata
from .schedules import REASON_PARAMETER, TRIGGER_LABEL
from .steps import EXECUTOR_RESOURCES, executor_patch

API_VERSION = "argoproj.io/v1alpha1"
ENTRYPOINT = "gate"
CLAIM = "claim"
START = "start"
# The claim's output is the uid of the Workflow it ran in; a memo hit returns an older one.
CLAIM_COMMAND = ["python", "-c", "import sys; print(sys.argv[1])", "{{workflow.uid}}"]
OWNS_COOLDOWN = f"'{{{{steps.{CLAIM}.outputs.result}}}}' == '{{{{workflow.uid}}}}'"
GATE_DEADLINE_SECONDS = 600  # a gate only waits for its mutex and creates one object
KEEP_GATE_SECONDS = 86400  # a finished gate is kept a day, to see why an alert did nothing


def lease_seconds(check: DriftCheck) -> int:
    """How long one drift-triggered start holds off the next."""
    o = check.on_drift
    return max(o.cooldown_seconds, math.ceil(o.per_seconds / o.max_runs))


def gate_account(project: ResolvedProject) -> str:
    return dns_label(project.name, "retrain-gate")


def memo_config_map(project: ResolvedProject) -> str:
    return dns_label(project.name, "drift-cooldown")


def training_workflow(project: ResolvedProject, check: DriftCheck) -> dict[str, Any]:
    """The run that the gate starts: the model's training template, `reason=drift`."""
    pipeline = project.pipelines[project.models[check.model].pipeline or ""]
    meta = metadata(project, dns_label(pipeline.name, "drift"), origin=check.origin,
                    component="training", extra_labels={TRIGGER_LABEL: "drift"})
    meta = {"generateName": meta.pop("name") + "-", **meta}
    spec: dict[str, Any] = {"workflowTemplateRef": {"name": pipeline.name}}
    if any(p.name == REASON_PARAMETER for p in pipeline.parameters):
        spec["arguments"] = {"parameters": [{"name": REASON_PARAMETER, "value": "drift"}]}
    return {"apiVersion": API_VERSION, "kind": "Workflow", "metadata": meta, "spec": spec}


def gate_workflow(project: ResolvedProject, check: DriftCheck) -> dict[str, Any]:
    """The Workflow the Sensor creates for each firing drift alert of `check`."""
    pipeline = project.pipelines[project.models[check.model].pipeline or ""]
    meta = metadata(project, dns_label(pipeline.name, "drift-gate"), origin=check.origin,
                    component="drift-retraining", extra_labels={TRIGGER_LABEL: "drift"})
    meta = {"generateName": meta.pop("name") + "-", **meta}
    claim = {
        "name": CLAIM,
        "memoize": {"key": check.k8s_name, "maxAge": f"{lease_seconds(check)}s",
                    "cache": {"configMap": {"name": memo_config_map(project)}}},
        "container": {
            "name": "main",
            "image": project.images["drift"].ref,
            "command": list(CLAIM_COMMAND),
            "resources": EXECUTOR_RESOURCES,
            "securityContext": pods.container_security_context(),
        },
    }
    start = {
        "name": START,
        "podSpecPatch": executor_patch("main"),  # a resource step's pod runs argoexec alone
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
                    [{"name": CLAIM, "template": CLAIM}],
                    [{"name": START, "template": START, "when": OWNS_COOLDOWN}],
                ]},
                claim,
                start,
            ],
        },
    }
