"""Argo CD: an Application that syncs this environment's folder from git.

Each compile writes only OUT/<env>/, and an environment's settings (its namespace, its
Argo CD project, the revision it tracks) are known only when that environment is compiled,
so each environment carries its own Application, in `argocd/application-<app>.yaml`, rather
than one ApplicationSet that would have to guess the others (`mlc appset` makes one over
many projects from them, below). The packager leaves `argocd/`
out of the kustomization: an Application synced from the folder it points at would manage
itself. Apply it once (`kubectl apply -f deploy/<env>/argocd/`), or let an app of apps
point at `deploy/*/argocd`.

Sync policy: automated, with pruning and self-healing, so that git is the truth and a merge
is a deploy; retried with backoff, since CRD-backed objects can race their controllers.
Deleting the Application leaves the objects in place (no resources finalizer): tearing an
environment down is a decision, not a side effect. Sync waves and the objects protected from
pruning are set on the objects themselves, by the packager (kustomize.py).

Where a delivery workflow moves a Knative or KServe canary's traffic (serving/gate_driver.py),
the Application ignores those fields and keeps them on sync (`RespectIgnoreDifferences`), or
self-healing would undo each step of the rollout.
"""

from __future__ import annotations

from typing import Any

from ..ir import ResolvedProject
from ..names import dns_label
from ..output import OutputFile
from .kustomize import BOOTSTRAP_DIR
from .objects import metadata
from .serving import ab_guard
from .serving.gate_driver import ignored_fields

API_VERSION = "argoproj.io/v1alpha1"
SYNC_OPTIONS = [
    # prune only after everything else applied and became healthy
    "PruneLast=true",
    # apply what changed, not the whole tree, on every sync
    "ApplyOutOfSyncOnly=true",
]
# Not ServerSideApply: a Service's selector is an atomic map, so applying ours server-side
# would drop the pod-template-hash key that Argo Rollouts adds to it during a rollout.
RETRY = {"limit": 5, "backoff": {"duration": "10s", "factor": 2, "maxDuration": "5m"}}


def application_name(project: ResolvedProject) -> str:
    return dns_label(project.name, project.env)


def source_path(project: ResolvedProject) -> str:
    root = project.platform.argocd_path
    return f"{root}/{project.env}" if root else project.env


def application(project: ResolvedProject) -> dict[str, Any]:
    p = project.platform
    meta = metadata(project, application_name(project), namespaced=False,
                    component="gitops")
    # the delivery workflows' traffic fields and the A/B guards' overrides
    ignored = ignored_fields(project) + ab_guard.ignored_fields(project)
    return {
        "apiVersion": API_VERSION,
        "kind": "Application",
        "metadata": {"name": meta["name"], "namespace": p.argocd_namespace,
                     "labels": meta["labels"], "annotations": meta["annotations"]},
        "spec": {
            "project": p.argocd_project,
            "source": {"repoURL": p.argocd_repo_url, "targetRevision": p.argocd_target_revision,
                       "path": source_path(project)},
            "destination": {"server": p.argocd_server, "namespace": p.namespace},
            "syncPolicy": {
                "automated": {"prune": True, "selfHeal": True},
                "syncOptions": SYNC_OPTIONS + (["RespectIgnoreDifferences=true"]
                                               if ignored else []),
                "retry": RETRY,
            },
            **({"ignoreDifferences": ignored} if ignored else {}),
            "revisionHistoryLimit": 10,
        },
    }


def emit(project: ResolvedProject) -> list[OutputFile]:
    path = f"{BOOTSTRAP_DIR}application-{application_name(project)}.yaml"
    return [OutputFile(path, application(project), project.source)]


# ---------------------------------------------------------------------------------------
# ApplicationSet over many projects (`mlc appset DIR`)
#
# Each environment's folder already holds its exact Application (above), with the sync
# settings and ignored fields that environment needs. So the ApplicationSet does not try to
# template those Applications (their ignoreDifferences differ per endpoint); it generates
# one small bootstrap Application per environment that syncs `deploy/<env>/argocd/` -- the
# app-of-apps that Argo CD users write by hand -- from a list generator whose elements mlc
# derives from each resolved project, so every path, repository and namespace is exact.

APPSET_TEMPLATE_KEYS = ("name", "project", "repoURL", "revision", "path", "server",
                        "namespace")


def bootstrap_element(project: ResolvedProject, argocd_project: str) -> dict[str, str]:
    """The list generator element of one environment: where its Application lives."""
    p = project.platform
    return {"name": dns_label(project.name, project.env, "apps"), "project": argocd_project,
            "repoURL": p.argocd_repo_url, "revision": p.argocd_target_revision,
            "path": f"{source_path(project)}/{BOOTSTRAP_DIR.rstrip('/')}",
            "server": p.argocd_server, "namespace": p.argocd_namespace}


def application_set(name: str, namespace: str, elements: list[dict[str, str]]
                    ) -> dict[str, Any]:
    """The ApplicationSet whose Applications sync each environment's `argocd/` folder."""
    param = {key: "{{ ." + key + " }}" for key in APPSET_TEMPLATE_KEYS}
    return {
        "apiVersion": API_VERSION,
        "kind": "ApplicationSet",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"app.kubernetes.io/managed-by": "mlc",
                                "app.kubernetes.io/component": "gitops"}},
        "spec": {
            # missingkey=error: a template key no element has fails the generation loudly
            "goTemplate": True,
            "goTemplateOptions": ["missingkey=error"],
            "generators": [{"list": {"elements": sorted(elements, key=lambda e: e["name"])}}],
            "template": {
                "metadata": {"name": param["name"],
                             "labels": {"app.kubernetes.io/managed-by": "mlc",
                                        "app.kubernetes.io/component": "gitops-bootstrap"}},
                "spec": {
                    "project": param["project"],
                    "source": {"repoURL": param["repoURL"],
                               "targetRevision": param["revision"], "path": param["path"]},
                    "destination": {"server": param["server"],
                                    "namespace": param["namespace"]},
                    "syncPolicy": {"automated": {"prune": True, "selfHeal": True},
                                   "retry": RETRY},
                },
            },
            # deleting the ApplicationSet leaves the environments running, as deleting an
            # Application does (no resources finalizer above)
            "syncPolicy": {"preserveResourcesOnDeletion": True},
        },
    }
