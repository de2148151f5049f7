"""The volumes a pipeline's pods mount, and where.

The root filesystem is read-only, so everything a step writes goes to a volume: /tmp (an
emptyDir), the run folder that the steps of one run share (MLC_RUN_DIR), and the checkpoint
volume when ml.yaml names one. project.json and the Feast repository come from ConfigMaps,
mounted file by file (`subPath`): /etc/mlc then stays a plain folder of the image, so the
two mounts do not nest inside one read-only volume, and each file is a regular file (Feast
cannot import a module through a ConfigMap's `..data` symlinks).
"""

from __future__ import annotations

from typing import Any

from mlc.step_contract import CHECKPOINT_MOUNT, PROJECT_JSON, RUN_DIR

from ...ir import Pipeline, ResolvedProject, Route, Step
from .. import pods
from ..core import config_map_name
from ..feast import repo_volume, repo_volume_mounts

CONFIG = "config"
TMP = "tmp"
RUN = "run"
CHECKPOINTS = "checkpoints"
SHM = "dshm"
ROUTE_SECRETS = "route-secrets"
FEAST = "feast"

ROUTE_SECRETS_DIR = "/var/run/secrets/mlc/routes"
# Secrets readable by the pod's group (fsGroup) only.
SECRET_FILE_MODE = 0o440


def shares_run_volume(pipeline: Pipeline) -> bool:
    """Steps hand files to later steps only when there are several of them."""
    return len(pipeline.steps) > 1


def run_claim_template(project: ResolvedProject) -> dict[str, Any]:
    """A PersistentVolumeClaim per run; Argo names it `<workflow name>-run`."""
    p = project.platform
    spec: dict[str, Any] = {"accessModes": [p.run_volume_access_mode],
                            "resources": {"requests": {"storage": p.run_volume_size}}}
    if p.run_volume_storage_class:
        spec["storageClassName"] = p.run_volume_storage_class
    return {"metadata": {"name": RUN}, "spec": spec}


def run_claim_name(workflow_name: str) -> str:
    """The name Argo gives the run's claim (objects outside the workflow mount it by name)."""
    return f"{workflow_name}-{RUN}"


def config_volume(project: ResolvedProject) -> dict[str, Any]:
    return {"name": CONFIG, "configMap": {"name": config_map_name(project),
                                          "items": [{"key": "project.json",
                                                     "path": "project.json"}]}}


def _shm(project: ResolvedProject, pipeline: Pipeline) -> dict[str, Any]:
    """The pipeline's /dev/shm, sized by its train step's hardware profile."""
    train = next((s for s in pipeline.steps if s.kind == "train"), None)
    return pods.shared_memory_volume(SHM, project.hardware.get(train.hardware)
                                     if train is not None else None)


def pod_volumes(project: ResolvedProject, pipeline: Pipeline, *,
                run_claim: str | None) -> list[dict[str, Any]]:
    """Volumes of a pod outside the workflow (a distributed training node)."""
    out = [config_volume(project), repo_volume(project, FEAST), {"name": TMP, "emptyDir": {}},
           _shm(project, pipeline)]
    if run_claim:
        out.append({"name": RUN, "persistentVolumeClaim": {"claimName": run_claim}})
    else:
        out.append({"name": RUN, "emptyDir": {}})
    out += checkpoint_volumes(pipeline)
    return out


def workflow_volumes(project: ResolvedProject, pipeline: Pipeline) -> list[dict[str, Any]]:
    """Volumes declared once on the workflow; each step mounts those it needs."""
    out = [config_volume(project), repo_volume(project, FEAST), {"name": TMP, "emptyDir": {}},
           _shm(project, pipeline)]
    if not shares_run_volume(pipeline):
        out.append({"name": RUN, "emptyDir": {}})
    out += checkpoint_volumes(pipeline)
    routes = [project.routes[r] for r in pipeline.routes]
    if any(r.secret for r in routes):
        out.append(route_secrets_volume(routes))
    return out


def checkpoint_volumes(pipeline: Pipeline) -> list[dict[str, Any]]:
    claims = sorted({s.checkpoint_volume for s in pipeline.steps if s.checkpoint_volume})
    if len(claims) > 1:
        raise ValueError(f"pipeline {pipeline.name} uses several checkpoint volumes")
    return [{"name": CHECKPOINTS, "persistentVolumeClaim": {"claimName": c}} for c in claims]


def route_secrets_volume(routes: list[Route]) -> dict[str, Any]:
    """One file per route, named after it: no two routes can collide, whatever their names."""
    sources = [{"secret": {"name": r.secret.k8s_name,
                           "items": [{"key": r.secret.key, "path": r.name}]}}
               for r in routes if r.secret]
    return {"name": ROUTE_SECRETS,
            "projected": {"defaultMode": SECRET_FILE_MODE, "sources": sources}}


def project_json_mount() -> dict[str, Any]:
    return {"name": CONFIG, "mountPath": PROJECT_JSON, "subPath": "project.json",
            "readOnly": True}


def step_mounts(step: Step) -> list[dict[str, Any]]:
    out = [project_json_mount(), *repo_volume_mounts(FEAST),
           {"name": TMP, "mountPath": "/tmp"},
           {"name": RUN, "mountPath": RUN_DIR}]
    if step.kind == "train":
        # torch's data loaders and NCCL exchange tensors through shared memory
        out.append(pods.shared_memory_mount(SHM))
    if step.checkpoint_volume:
        out.append({"name": CHECKPOINTS, "mountPath": CHECKPOINT_MOUNT})
    return out


def checkpoint_dir(step: Step) -> str | None:
    """Where a step finds its checkpoint folder, when the checkpoints live on a volume."""
    if step.checkpoint_volume and step.checkpoint_path:
        return f"{CHECKPOINT_MOUNT}/{step.checkpoint_path.strip('/')}"
    return None
