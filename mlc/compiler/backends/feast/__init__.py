"""The Feast backend: a feature repository per environment that `feast apply` takes as it is.

    feast/feature_store.yaml    project, provider, registry, online and offline store
    feast/features.py           entities, sources, feature views, on-demand views, services
    feast/repo-configmap.yaml   a ConfigMap holding both files, for pods to mount

The Argo steps that apply and materialize (`feature_apply`, `materialize`) run Feast on this
folder: from a checkout of the output tree, or from the ConfigMap mounted at
`REPO_MOUNT_PATH`. Either way, two things come from the environment of the process:

- `MLC_DATA_ROOT`: the folder that relative paths in ml.yaml start from (the project root
  for `mlc run`; a volume holding the data in a pod). File sources, a file registry and the
  SQLite online store live under it. It must be absolute, and the same in every step: `feast
  apply` stores the joined source paths in the registry, and `materialize` reads them there.
- `MLC_ONLINE_STORE_CONNECTION` / `MLC_OFFLINE_STORE_CONNECTION`: the store secrets, which
  the pipeline steps already receive (resolve/pipelines.py).

Feast writes nothing into the repository folder itself, so a read-only mount works. But mount
it file by file (`repo_volume_mounts`, with `subPath`): a whole-ConfigMap mount makes each file
a symlink into a `..<timestamp>` folder, and Feast 0.67 turns the resolved path into a module
name that Python cannot import.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from ...ir import ResolvedProject
from ...names import dns_label
from ...output import OutputFile
from ...render import render_file
from ..objects import metadata
from .definitions import render_definitions
from .store_config import (
    DATA_ROOT_ENV,
    OFFLINE_SECRET_ENV,
    ONLINE_SECRET_ENV,
    feast_project,
    store_config,
)

__all__ = ["DATA_ROOT_ENV", "OFFLINE_SECRET_ENV", "ONLINE_SECRET_ENV", "REPO_DIR", "REPO_FILES",
           "REPO_MOUNT_PATH", "emit", "feast_project", "repo_config_map_name", "repo_volume",
           "repo_volume_mounts"]

REPO_DIR = "feast"  # in the environment's output tree
REPO_MOUNT_PATH = "/etc/mlc/feast"  # where pods mount the ConfigMap
REPO_FILES = ("feature_store.yaml", "features.py")  # the ConfigMap's keys


def repo_config_map_name(project: ResolvedProject) -> str:
    return dns_label(project.name, "feast-repo")


def repo_volume(project: ResolvedProject, name: str) -> dict:
    """The pod volume holding the repository."""
    return {"name": name, "configMap": {"name": repo_config_map_name(project)}}


def repo_volume_mounts(name: str) -> list[dict]:
    """Mounts of `repo_volume` at REPO_MOUNT_PATH: one per file, as regular files."""
    return [{"name": name, "mountPath": f"{REPO_MOUNT_PATH}/{key}", "subPath": key,
             "readOnly": True} for key in REPO_FILES]


def emit(project: ResolvedProject) -> list[OutputFile]:
    config, definitions = REPO_FILES
    repo = [
        OutputFile(f"{REPO_DIR}/{config}", store_config(project), project.source),
        OutputFile(f"{REPO_DIR}/{definitions}", render_definitions(project), project.source),
    ]
    # The ConfigMap holds the files byte for byte as they are written to the tree, headers
    # included, so that a pod and a checkout run the very same repository.
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(project, repo_config_map_name(project), component="feature-store"),
        "data": {PurePosixPath(f.path).name: render_file(f).decode("utf-8") for f in repo},
    }
    return [*repo, OutputFile(f"{REPO_DIR}/repo-configmap.yaml", config_map, project.source)]
