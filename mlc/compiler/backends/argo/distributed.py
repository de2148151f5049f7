"""Training on several nodes: a JobSet that the workflow step creates and waits for.

Why JobSet (jobset.x-k8s.io/v1alpha2) rather than Kubeflow Trainer's TrainJob or the older
PyTorchJob: its replicated Jobs carry a full pod template, so the training pods get exactly the
security context, resources, scheduling and volumes that every other mlc pod gets (TrainJob
only lets a few pod fields be overridden, and needs a ClusterTrainingRuntime installed); Kueue
admits a JobSet as one unit (all nodes or none); it gives every pod a stable DNS name for the
rendezvous; and Kubeflow Trainer v2 itself runs on JobSet, so a cluster with Trainer has it.

Fault tolerance: any failed pod fails its Job (`backoffLimit: 0`) and JobSet restarts the whole
group, at most `retries.limit` times; the trainer resumes from its last checkpoint. torchrun
finds its peers through the PET_* variables set here (node 0's stable hostname is the master).
"""

from __future__ import annotations

import json
from typing import Any

from hera.workflows import Resource

from ...ir import Pipeline, ResolvedProject, Step
from ...names import dns_label
from .. import pods
from ..escape import container_text
from ..objects import SOURCE_ANNOTATION, labels
from . import steps, volumes
from .expressions import literal

JOBSET_API_VERSION = "jobset.x-k8s.io/v1alpha2"
JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
REPLICATED_JOB = "node"
MASTER_PORT = 29500
# JobSet names its Jobs `<jobset>-<replicated job>-<index>` and pods add more to that: a short
# prefix keeps every generated name a valid 63-character label.
PREFIX_MAX = 19


def rendezvous_env(step: Step, gpus: int) -> list[dict[str, Any]]:
    """torchrun reads PET_<FLAG>; MASTER_* serve plain torch.distributed. Order matters:
    Kubernetes expands $(JOBSET_NAME) only from variables defined before it."""
    master = f"$(JOBSET_NAME)-{REPLICATED_JOB}-0-0.$(JOBSET_NAME)"
    return [
        {"name": "JOBSET_NAME", "valueFrom": {"fieldRef": {
            "fieldPath": f"metadata.labels['{JOBSET_NAME_LABEL}']"}}},
        {"name": "PET_NODE_RANK", "valueFrom": {"fieldRef": {
            "fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}},
        {"name": "PET_NNODES", "value": str(step.nodes)},
        {"name": "PET_NPROC_PER_NODE", "value": str(max(gpus, 1))},
        {"name": "PET_MASTER_ADDR", "value": master},
        {"name": "PET_MASTER_PORT", "value": str(MASTER_PORT)},
        {"name": "MASTER_ADDR", "value": master},
        {"name": "MASTER_PORT", "value": str(MASTER_PORT)},
    ]


def jobset(project: ResolvedProject, pipeline: Pipeline, step: Step) -> dict[str, Any]:
    """The JobSet object (a dict); Argo fills in its name and the workflow's parameters."""
    hardware = project.hardware[step.hardware]
    container = {
        "name": "trainer",
        "image": step.image.ref,
        "command": [container_text(literal(c)) for c in step.command],
        "args": [container_text(literal(a)) for a in step.args],
        "env": steps.step_env(project, pipeline, step)
        + rendezvous_env(step, hardware.gpu_count),
        "ports": [{"name": "rendezvous", "containerPort": MASTER_PORT, "protocol": "TCP"}],
        "resources": pods.resources(hardware),
        "securityContext": pods.container_security_context(),
        "volumeMounts": volumes.step_mounts(step),
    }
    pod_spec = steps.job_pod_spec(project, pipeline, hardware, container)
    job = {
        "parallelism": step.nodes,
        "completions": step.nodes,
        "completionMode": "Indexed",
        "backoffLimit": 0,
        "activeDeadlineSeconds": step.timeout_seconds,
        "template": {"spec": pod_spec},
    }
    meta_labels = {**labels(project, pipeline.name, component="training"),
                   **steps.pod_labels(hardware)}
    return {
        "apiVersion": JOBSET_API_VERSION,
        "kind": "JobSet",
        "metadata": {
            "generateName": dns_label(pipeline.name, max_len=PREFIX_MAX) + "-",
            "namespace": project.platform.namespace,
            "labels": meta_labels,
            "annotations": {SOURCE_ANNOTATION: f"{project.source.split(' ')[0]}#pipelines."
                            f"{pipeline.name}.{step.name}"},
        },
        "spec": {
            "failurePolicy": {"maxRestarts": step.retries.limit},
            "network": {"enableDNSHostnames": True},
            "successPolicy": {"operator": "All"},
            "replicatedJobs": [{"name": REPLICATED_JOB, "replicas": 1,
                                "template": {"spec": job}}],
        },
    }


def distributed_step(project: ResolvedProject, pipeline: Pipeline, step: Step) -> Resource:
    """Create the JobSet, owned by the workflow (deleted with it), and wait for its end."""
    manifest = json.dumps(jobset(project, pipeline, step), indent=2, sort_keys=True)
    return Resource(
        name=step.name,
        action="create",
        set_owner_reference=True,
        manifest=manifest,
        success_condition="status.terminalState == Completed",
        failure_condition="status.terminalState == Failed",
        pod_spec_patch=steps.executor_patch("main"),
        # JobSet already restarted the group `limit` times; Argo only retries its own errors
        retry_strategy=steps.retry_strategy(step.retries, policy="OnError"),
    )


def jobset_from_template(template: dict[str, Any]) -> dict[str, Any]:
    """The JobSet inside an emitted resource template (for checks and tests)."""
    return json.loads(template["resource"]["manifest"])

