"""A hyperparameter search as a Katib Experiment (`platform.katib`), which the pipeline's
`search` step creates and waits for.

Katib's suggestion service draws each trial's values (`random` and `tpe` through hyperopt,
`grid` through Optuna; `seed` is their `random_state`), and `pruning` is Katib's median
stopping rule with the thresholds of the Argo form's pruner. A trial is a batch Job whose pod
is the search step's own (image, command, the step contract's env, secrets by reference,
hardware, Kueue queue, volumes, security context), with two more variables: the Katib trial's
name and the drawn values, one variable per hyperparameter (step_contract). The trial prints
`<time> mlc-katib-metric <metric>=<value>` after every epoch, which Katib's StdOut collector
reads with the filter written here; the objective takes the last value, as the Argo form does.
Each trial also records itself as an MLflow child run of the training run, so that the `train`
step after the Experiment trains, gates and registers the best trial's values exactly as it
does after Argo trials.

The workflow waits with Argo's resource conditions, which read plain field paths only:
failed once more trials failed than `maxFailedTrialCount` (Katib's own rule), done once Katib
set `completionTime`; a search without a completed trial then fails the `train` step.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hera.workflows import Resource

from mlc import step_contract as sc

from ...ir import Pipeline, ResolvedProject, Search, SearchRange, Step
from ...names import dns_label
from .. import pods
from ..escape import container_text
from ..objects import SOURCE_ANNOTATION, cost_labels, labels
from . import steps, volumes
from .expressions import literal

API_VERSION = "kubeflow.org/v1beta1"
ALGORITHMS = {"random": "random", "tpe": "tpe", "grid": "grid"}
EARLY_STOPPING = "medianstop"
# the Argo form's pruner: compares from the second epoch, once two trials finished
MEDIAN_MIN_TRIALS = 2
MEDIAN_START_STEP = 2
CONTAINER = "trial"
TRIAL_NAME = "trialName"  # the trial parameter that carries the Katib trial's own name
# Katib refuses Experiment names over 40 characters; generateName adds 5
PREFIX_MAX = 34
# on the trial pods, so that their NetworkPolicy finds them
TRIAL_LABEL = "mlc.dev/katib-trial"
# where a trial's metrics collector sends what it read
DB_MANAGER = "katib-db-manager"
DB_MANAGER_PORT = 6789
# Katib runs the primary container's command and args joined by spaces in `sh -c`
_SHELL_SAFE = re.compile(r"[A-Za-z0-9_./=:,+-]+")
# Katib writes a value into the template's JSON text as it is
_TEXT_UNSAFE = re.compile(r'["\\\x00-\x1f\x7f]')
_PLACEHOLDER = re.compile(r"\$\{trialParameters\.([^}]*)\}")


def placeholder(name: str) -> str:
    return "${trialParameters." + name + "}"


def _number(value: float | int) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def parameter(r: SearchRange) -> dict[str, Any]:
    if r.type == "choice":
        texts = [sc.search_value_text(v) for v in r.values or []]
        # the builtin trainer's choices are numbers, lists of them and plain words
        if len(set(texts)) != len(texts) or any(_TEXT_UNSAFE.search(t) for t in texts):
            raise ValueError(f"search range {r.name}: Katib cannot list choices {texts}")
        return {"name": r.name, "parameterType": "categorical", "feasibleSpace": {"list": texts}}
    if r.type == "int":
        return {"name": r.name, "parameterType": "int", "feasibleSpace": {
            "min": str(int(r.low)), "max": str(int(r.high)), "step": str(r.step or 1)}}
    assert r.low is not None and r.high is not None
    return {"name": r.name, "parameterType": "double", "feasibleSpace": {
        "min": _number(r.low), "max": _number(r.high),
        "distribution": "logUniform" if r.type == "loguniform" else "uniform"}}


def trial_env(project: ResolvedProject, pipeline: Pipeline, step: Step,
              search: Search) -> list[dict[str, Any]]:
    """The step's env without the Argo form's trial number, with Katib's trial and values."""
    env = [e for e in steps.step_env(project, pipeline, step) if e["name"] != sc.SEARCH_TRIAL_ENV]
    env.append({"name": sc.KATIB_TRIAL_ENV, "value": placeholder(TRIAL_NAME)})
    env += [{"name": sc.search_value_env(r.name), "value": placeholder(r.name)}
            for r in search.space]
    return sorted(env, key=lambda e: e["name"])


def trial_job(project: ResolvedProject, pipeline: Pipeline, step: Step,
              search: Search) -> dict[str, Any]:
    hardware = project.hardware[step.hardware]
    command = [container_text(literal(c)) for c in step.command]
    args = [container_text(literal(a)) for a in step.args]
    unsafe = [a for a in command + args if not _SHELL_SAFE.fullmatch(a)]
    if unsafe:  # mlc's own step command: a compiler bug, not a user's error
        raise ValueError(f"step {step.name}: Katib would split {unsafe} in its shell")
    container = {
        "name": CONTAINER, "image": step.image.ref, "command": command, "args": args,
        "env": trial_env(project, pipeline, step, search),
        "resources": pods.resources(hardware),
        "securityContext": pods.container_security_context(),
        "volumeMounts": volumes.step_mounts(step),
    }
    pod_spec = steps.job_pod_spec(project, pipeline, hardware, container)
    pod_labels = {**cost_labels(project), TRIAL_LABEL: pipeline.model or pipeline.name}
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        # Kueue admits the Job into the training step's queue, as it admits the Argo trials
        "metadata": {"labels": steps.pod_labels(hardware)} if hardware.queue else {},
        "spec": {
            "backoffLimit": step.retries.limit,  # a retried trial resumes its MLflow record
            "activeDeadlineSeconds": step.timeout_seconds,
            "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
        },
    }


def experiment(project: ResolvedProject, pipeline: Pipeline, step: Step) -> dict[str, Any]:
    search = project.models[pipeline.model].training.search
    assert search is not None and search.engine == "katib"
    metric = search.metric
    spec: dict[str, Any] = {
        "objective": {"type": "maximize" if search.higher_is_better else "minimize",
                      "objectiveMetricName": metric,
                      "metricStrategies": [{"name": metric, "value": "latest"}]},
        "algorithm": {"algorithmName": ALGORITHMS[search.method],
                      "algorithmSettings": [{"name": "random_state",
                                             "value": str(search.seed)}]},
        "parallelTrialCount": search.parallelism,
        "maxTrialCount": search.trials,
        # the Argo form trains on the best completed trial however many failed; Katib fails
        # the Experiment only when all of them did
        "maxFailedTrialCount": search.trials - 1,
        "resumePolicy": "Never",
        "metricsCollectorSpec": {"collector": {"kind": "StdOut"}, "source": {
            "filter": {"metricsFormat": [sc.KATIB_METRICS_FORMAT]}}},
        "parameters": [parameter(r) for r in search.space],
        "trialTemplate": {
            "primaryContainerName": CONTAINER,
            "trialParameters": [
                {"name": TRIAL_NAME, "reference": "${trialSpec.Name}",
                 "description": "the Katib trial's name"},
                *({"name": r.name, "reference": r.name,
                   "description": f"the trainer's {r.name}"} for r in search.space)],
            "trialSpec": trial_job(project, pipeline, step, search),
        },
    }
    ours = {TRIAL_NAME, *(r.name for r in search.space)}
    found = set(_PLACEHOLDER.findall(json.dumps(spec["trialTemplate"]["trialSpec"])))
    if found != ours:  # resolve refuses user text that holds one (MLC586)
        raise ValueError(f"the trial template's placeholders {sorted(found)} are not "
                         f"{sorted(ours)}")
    if search.pruning:
        spec["earlyStopping"] = {"algorithmName": EARLY_STOPPING, "algorithmSettings": [
            {"name": "min_trials_required", "value": str(MEDIAN_MIN_TRIALS)},
            {"name": "start_step", "value": str(MEDIAN_START_STEP)}]}
    return {
        "apiVersion": API_VERSION,
        "kind": "Experiment",
        "metadata": {
            "generateName": dns_label(pipeline.name, max_len=PREFIX_MAX) + "-",
            "namespace": project.platform.namespace,
            "labels": labels(project, pipeline.name, component="training"),
            "annotations": {SOURCE_ANNOTATION: f"{project.source.split(' ')[0]}#pipelines."
                            f"{pipeline.name}.{step.name}"},
        },
        "spec": spec,
    }


def katib_step(project: ResolvedProject, pipeline: Pipeline, step: Step) -> Resource:
    """Create the Experiment, owned by the workflow (deleted with it), and wait for its end."""
    search = project.models[pipeline.model].training.search
    assert search is not None
    manifest = json.dumps(experiment(project, pipeline, step), indent=2, sort_keys=True)
    return Resource(
        name=step.name,
        action="create",
        set_owner_reference=True,
        manifest=manifest,
        success_condition="status.completionTime",
        failure_condition=f"status.trialsFailed > {search.trials - 1}",
        pod_spec_patch=steps.executor_patch("main"),
        # Katib retries nothing it has not been told to: Argo retries only its own errors
        retry_strategy=steps.retry_strategy(step.retries, policy="OnError"),
    )


def experiment_from_template(template: dict[str, Any]) -> dict[str, Any]:
    """The Experiment inside an emitted resource template (for checks and tests)."""
    return json.loads(template["resource"]["manifest"])


def katib_namespaces(project: ResolvedProject) -> list[str]:
    """Where Katib runs, for the searches that run as its Experiments (none: no Katib)."""
    return sorted({m.training.search.katib_namespace or "" for m in project.models.values()
                   if m.training.search is not None and m.training.search.engine == "katib"})
