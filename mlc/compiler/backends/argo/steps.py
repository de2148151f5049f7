"""One pipeline step as an Argo container template.

A step's container gets everything through its environment (mlc/step_contract.py, listed in
docs/training-contract.md):
the step's own identity, the run folder, the pipeline parameters by name (never spliced into
arguments or shell text; base64-encoded, see `step_env`), and secrets by reference.
Security context, resources and scheduling come from backends/pods.py, exactly as every
other pod of the project.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from hera.workflows import Container, Parameter
from hera.workflows import models as m

from mlc import step_contract as sc

from ...ir import Hardware, Pipeline, ResolvedProject, Retries, Step
from ...resolve.exports import export_env
from ...resolve.platform import QUEUE_LABEL
from .. import pods
from ..escape import container_text
from ..feast import DATA_ROOT_ENV, REPO_MOUNT_PATH
from . import volumes
from .expressions import WORKFLOW_NAME, literal, parameter_base64
from .parsed import parsed

# Exit codes of the runtime (mlc/runtime/step.py: EXIT_BAD_DATA, EXIT_GATES, EXIT_DRIFT) that
# a retry cannot change: the data, the metrics or the drift would be the same the next time.
FINAL_EXIT_CODES = (10, 11, 20)
# The output parameter of an A/B verdict step: its decision, from the file the step writes.
# A run killed before writing it reads as `failed` (Argo would otherwise error the node on
# the missing file and hide the step's own exit code).
VERDICT_DECISION_OUTPUT = "decision"
# Argo's own containers in each pod (argoexec): small, and limited like every container.
EXECUTOR_RESOURCES = {"requests": {"cpu": "10m", "memory": "64Mi"},
                      "limits": {"cpu": "500m", "memory": "256Mi"}}


@functools.lru_cache(maxsize=8)
def executor_patch(*containers: str) -> str:
    """A podSpecPatch that holds Argo's containers to the same security rules as ours: `init`
    is in every pod; `wait` runs beside a container step, while a resource step's `main` is
    argoexec itself. Naming a container a pod lacks would add a broken one, hence the list."""
    def executor(name: str) -> dict[str, Any]:
        return {"name": name, "resources": EXECUTOR_RESOURCES,
                "securityContext": pods.container_security_context()}
    patch = {"initContainers": [executor("init")],
             "containers": [executor(c) for c in containers]}
    return json.dumps(patch, sort_keys=True, indent=2) + "\n"


def param_env_name(name: str) -> str:
    return f"{sc.PARAM_PREFIX}{name.upper()}"


def contract_env(project: ResolvedProject, pipeline: Pipeline, step: Step) -> dict[str, str]:
    """The plain environment of the step contract; values are Argo-safe."""
    env = {
        "HOME": sc.HOME,
        sc.PROJECT_JSON_ENV: sc.PROJECT_JSON,
        sc.PIPELINE_ENV: pipeline.name,
        sc.STEP_ENV: step.name,
        sc.RUN_DIR_ENV: sc.RUN_DIR,
        sc.RUN_ID_ENV: WORKFLOW_NAME,
        sc.FEAST_REPO_ENV: REPO_MOUNT_PATH,
        # relative paths of ml.yaml (file sources, a file registry) resolve under this folder;
        # in a cluster only the run's own volume is there
        DATA_ROOT_ENV: sc.RUN_DIR,
        sc.TRACKING_URI_ENV: literal(project.platform.mlflow_tracking_uri),
    }
    if pipeline.model:
        env[sc.MODEL_ENV] = pipeline.model
    env.update(export_env(step))
    if step.checkpoint_path:
        folder = volumes.checkpoint_dir(step)
        if folder:
            env[sc.CHECKPOINT_DIR_ENV] = literal(folder)
        else:
            env[sc.CHECKPOINT_URI_ENV] = literal(step.checkpoint_path)
    return env


def step_env(project: ResolvedProject, pipeline: Pipeline, step: Step) -> list[dict[str, Any]]:
    """Every env var of a step, sorted by name: the contract wins over a custom trainer's own
    variables, and secrets (by reference) win over both.

    Parameters travel base64-encoded as MLC_PARAM_<NAME>_B64 and the step runtime decodes
    them. A submitter sets their values (`argo submit -p`, the drift Sensor), so the text is
    unknown here and cannot be escaped at compile time: raw, the kubelet would expand a
    `$(VAR)` in it and fold `$$`, a later Argo pass could read a `{{...}}` in it as a tag, and
    in a JobSet's manifest text a quote or newline could end the string. Base64's alphabet
    has none of `$`, `{`, quotes or newlines, so the process decodes what was submitted.
    """
    plain = {literal(k): literal(v) for k, v in step.env.items()}
    plain.update(contract_env(project, pipeline, step))
    plain = {k: container_text(v) for k, v in plain.items()}  # parameters are added after
    for name in step.parameters:
        plain[param_env_name(name) + sc.PARAM_B64_SUFFIX] = parameter_base64(name)
    secret = pods.secret_env(step.secrets)
    taken = {e["name"] for e in secret}
    out = [{"name": k, "value": v} for k, v in plain.items() if k not in taken] + secret
    return sorted(out, key=lambda e: e["name"])


def retry_strategy(retries: Retries, *, policy: str = "Always",
                   final: tuple[int, ...] = FINAL_EXIT_CODES) -> m.RetryStrategy | None:
    """Retries with exponential backoff; `backoff_max_seconds` caps one wait (Argo's `cap`),
    since Argo's `maxDuration` would count the hours of a long training run."""
    if retries.limit == 0:
        return None
    codes = ", ".join(f"'{c}'" for c in final)
    return parsed(m.RetryStrategy, {
        "limit": str(retries.limit),
        "retryPolicy": policy,
        "expression": f"lastRetry.status == 'Error' || !(lastRetry.exitCode in [{codes}])",
        "backoff": {"duration": f"{retries.backoff_seconds}s",
                    "factor": retries.backoff_factor,
                    "cap": f"{retries.backoff_max_seconds}s"}})


def pod_labels(hardware: Hardware) -> dict[str, str]:
    # Kueue admits (plain) pods into the LocalQueue named by this label.
    return {QUEUE_LABEL: hardware.queue} if hardware.queue else {}


def scheduling(hardware: Hardware) -> dict[str, Any]:
    """nodeSelector, tolerations and priority class, as hera template arguments."""
    s = pods.scheduling(hardware)
    out: dict[str, Any] = {}
    if "nodeSelector" in s:
        out["node_selector"] = literal_map(s["nodeSelector"])
    if "tolerations" in s:
        out["tolerations"] = [parsed(m.Toleration, literal_map(t))
                              for t in s["tolerations"]]
    if "priorityClassName" in s:
        out["priority_class_name"] = s["priorityClassName"]
    return out


def literal_map(t: dict[str, str]) -> dict[str, str]:
    """A toleration or a node selector, its user-written keys and values made Argo-safe."""
    return {literal(k): literal(v) for k, v in t.items()}


def job_pod_spec(project: ResolvedProject, pipeline: Pipeline, hardware: Hardware,
                 container: dict[str, Any]) -> dict[str, Any]:
    """The pod of a step that runs as a Kubernetes Job outside Argo's own pods (a JobSet's
    workers, a Katib trial): the workflow's account, as every other step (cloud credentials,
    IRSA or Workload Identity, are bound to it; the namespace's `default` account has none),
    no API token (the step never talks to the Kubernetes API), the step's volumes and its
    hardware's scheduling."""
    claim = (volumes.run_claim_name(WORKFLOW_NAME) if volumes.shares_run_volume(pipeline)
             else None)
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": project.platform.service_account,
        "automountServiceAccountToken": False,
        "securityContext": pods.pod_security_context(),
        "containers": [container],
        "volumes": volumes.pod_volumes(project, pipeline, run_claim=claim),
    }
    scheduling = pods.scheduling(hardware)
    if "nodeSelector" in scheduling:
        spec["nodeSelector"] = literal_map(scheduling["nodeSelector"])
    if "tolerations" in scheduling:
        spec["tolerations"] = [literal_map(t) for t in scheduling["tolerations"]]
    if "priorityClassName" in scheduling:
        spec["priorityClassName"] = scheduling["priorityClassName"]
    return spec


def container_step(project: ResolvedProject, pipeline: Pipeline, step: Step) -> Container:
    hardware = project.hardware[step.hardware]
    return Container(
        name=step.name,
        image=step.image.ref,
        command=[container_text(literal(c)) for c in step.command],
        args=[container_text(literal(a)) for a in step.args],
        env=[parsed(m.EnvVar, e) for e in step_env(project, pipeline, step)],
        resources=parsed(m.ResourceRequirements, pods.resources(hardware)),
        security_context=parsed(m.SecurityContext, pods.container_security_context()),
        volume_mounts=[parsed(m.VolumeMount, v) for v in volumes.step_mounts(step)],
        labels=pod_labels(hardware) or None,
        active_deadline_seconds=m.IntOrString(__root__=step.timeout_seconds),
        retry_strategy=retry_strategy(step.retries),
        outputs=verdict_outputs() if step.kind == "ab_verdict" else None,
        **scheduling(hardware),
    )


def verdict_outputs() -> list[Parameter]:
    return [Parameter(name=VERDICT_DECISION_OUTPUT, value_from=m.ValueFrom(
        path=f"{sc.RUN_DIR}/{sc.VERDICT_DECISION_FILE}", default="failed"))]
