"""Packaging: the environment's kustomization.yaml, listing every Kubernetes object file.

It runs after the backends, over what they emitted, so that a new backend needs no change
here: any YAML file whose documents are Kubernetes objects becomes a resource.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..ir import ResolvedProject
from ..output import OutputFile


def is_manifest(file: OutputFile) -> bool:
    if not file.path.endswith((".yaml", ".yml")):
        return False
    docs = file.content if isinstance(file.content, (list, tuple)) else [file.content]
    return bool(docs) and all(isinstance(d, dict) and "apiVersion" in d and "kind" in d
                              and d.get("kind") != "Kustomization" for d in docs)


def package(project: ResolvedProject, files: Sequence[OutputFile]) -> list[OutputFile]:
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": project.platform.namespace,
        "labels": [{"pairs": {"app.kubernetes.io/managed-by": "mlc",
                              "app.kubernetes.io/part-of": project.name},
                    "includeSelectors": False}],
        "resources": sorted(f.path for f in files if is_manifest(f)),
    }
    return [OutputFile("kustomization.yaml", kustomization, project.source)]
