"""Packaging: the environment's kustomization.yaml, listing every Kubernetes object file.

It runs after the backends, over what they emitted, so that a new backend needs no change
here: any YAML file whose documents are Kubernetes objects becomes a resource, except the
Argo CD objects under `argocd/`, which point Argo CD at this very folder and so cannot be
synced from it (and belong in Argo CD's namespace, which `namespace:` here would override).

Argo CD applies the resources in sync waves, lowest first, each wave once the one before is
healthy. The wave of an object follows from its kind alone, so it is set here, in one table,
by kustomize patches rather than by every backend: the namespace, then configuration and
identities, then what pods need to exist beside them (Services, policies, analysis
templates, rules; wave 0, the default), then the workloads, then what routes to them. Stateful
objects are never pruned or deleted by a sync.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..ir import ResolvedProject
from ..output import OutputFile
from ..render import dump_document

BOOTSTRAP_DIR = "argocd/"  # applied once by a person or an app of apps, never synced from here
WAVE = "argocd.argoproj.io/sync-wave"
SYNC_OPTIONS = "argocd.argoproj.io/sync-options"
# (API group, kind) -> sync wave; kinds not listed sync in wave 0.
SYNC_WAVES: dict[tuple[str, str], int] = {
    ("", "Namespace"): -2,
    ("", "ConfigMap"): -1,
    ("", "Secret"): -1,
    ("", "ServiceAccount"): -1,
    ("", "PersistentVolumeClaim"): -1,
    ("rbac.authorization.k8s.io", "Role"): -1,
    ("rbac.authorization.k8s.io", "RoleBinding"): -1,
    ("external-secrets.io", "ExternalSecret"): -1,
    ("apps", "Deployment"): 1,
    ("apps", "StatefulSet"): 1,
    ("autoscaling", "HorizontalPodAutoscaler"): 1,
    ("argoproj.io", "Rollout"): 1,  # after its AnalysisTemplate (wave 0)
    ("argoproj.io", "CronWorkflow"): 1,  # after the WorkflowTemplates it runs
    ("argoproj.io", "Sensor"): 1,  # after its EventSource
    ("serving.knative.dev", "Service"): 1,
    ("serving.knative.dev", "Configuration"): 1,
    ("serving.knative.dev", "Route"): 2,  # after the Configurations it splits traffic over
    ("serving.kserve.io", "InferenceService"): 1,
    ("gateway.networking.k8s.io", "HTTPRoute"): 2,  # after the Services it sends traffic to
}
# Objects that hold state: a sync never prunes them, nor does deleting the Application.
KEEP: frozenset[tuple[str, str]] = frozenset({
    ("", "Namespace"),
    ("", "PersistentVolumeClaim"),
})
KEEP_OPTIONS = "Prune=false,Delete=false"


def documents(file: OutputFile) -> list[Any]:
    return list(file.content) if isinstance(file.content, (list, tuple)) else [file.content]


def is_manifest(file: OutputFile) -> bool:
    if not file.path.endswith((".yaml", ".yml")):
        return False
    docs = documents(file)
    return bool(docs) and all(isinstance(d, dict) and "apiVersion" in d and "kind" in d
                              and d.get("kind") != "Kustomization" for d in docs)


def is_resource(file: OutputFile) -> bool:
    return is_manifest(file) and not file.path.startswith(BOOTSTRAP_DIR)


def group_kind(api_version: str, kind: str) -> tuple[str, str]:
    return (api_version.rpartition("/")[0], kind)


def patch(api_version: str, kind: str, annotations: dict[str, str]) -> dict[str, Any]:
    """A strategic-merge patch adding `annotations` to every object of one kind.

    The target names the group, not the version, so that every version of the kind matches;
    kustomize ignores the patch's own name when there is a target ("any" makes it valid).
    """
    group = group_kind(api_version, kind)[0]
    target = {"group": group, "kind": kind} if group else {"kind": kind}
    body = {"apiVersion": api_version, "kind": kind,
            "metadata": {"name": "any", "annotations": annotations}}
    return {"target": target, "patch": dump_document(body)}


def sync_patches(kinds: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """Patches for the (apiVersion, kind) pairs present that need a wave or protection."""
    first: dict[tuple[str, str], str] = {}
    for api_version, kind in sorted(set(kinds)):
        first.setdefault(group_kind(api_version, kind), api_version)
    out = []
    for group, kind in sorted(first, key=lambda gk: (SYNC_WAVES.get(gk, 0), gk)):
        notes = {}
        if SYNC_WAVES.get((group, kind), 0):
            notes[WAVE] = str(SYNC_WAVES[(group, kind)])
        if (group, kind) in KEEP:
            notes[SYNC_OPTIONS] = KEEP_OPTIONS
        if notes:
            out.append(patch(first[(group, kind)], kind, notes))
    return out


def package(project: ResolvedProject, files: Sequence[OutputFile]) -> list[OutputFile]:
    resources = [f for f in files if is_resource(f)]
    kustomization: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": project.platform.namespace,
        "labels": [{"pairs": {"app.kubernetes.io/managed-by": "mlc",
                              "app.kubernetes.io/part-of": project.name},
                    "includeSelectors": False}],
        "resources": sorted(f.path for f in resources),
    }
    patches = sync_patches((str(d["apiVersion"]), str(d["kind"]))
                           for f in resources for d in documents(f))
    if patches:
        kustomization["patches"] = patches
    return [OutputFile("kustomization.yaml", kustomization, project.source)]
