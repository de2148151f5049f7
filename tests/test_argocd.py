"""Argo CD: one Application per environment, pointing at that environment's folder."""

from __future__ import annotations

import pytest

from mlc.compiler.backends import argocd
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.emit import emit
from mlc.compiler.pipeline import check_environment

from . import schema_check
from .conftest import ROOT
from .test_serving import build

APPLICATION_CRD = "argo-cd/application-crd.yaml"


def resolved(env: str):
    project = check_environment(ROOT, env, Diagnostics())
    assert project is not None
    return project


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_one_application_per_environment(env):
    project = resolved(env)
    (file,) = argocd.emit(project)
    assert file.path == f"argocd/application-fraud-detection-{env}.yaml"
    app = file.content
    assert app["metadata"]["namespace"] == "argocd"
    spec = app["spec"]
    assert spec["source"] == {"repoURL": project.platform.argocd_repo_url,
                              "targetRevision": "main", "path": f"deploy/{env}"}
    assert spec["destination"] == {"server": "https://kubernetes.default.svc",
                                   "namespace": f"fraud-{env}"}
    assert spec["project"] == "default"
    assert spec["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
    assert "PruneLast=true" in spec["syncPolicy"]["syncOptions"]
    # no cascading delete of the environment when the Application goes
    assert "finalizers" not in app["metadata"]
    labels = app["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "mlc"
    assert labels["mlc.dev/environment"] == env
    assert app["metadata"]["annotations"]["mlc.dev/source"] == "ml.yaml"


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_application_matches_the_upstream_crd(env):
    (file,) = argocd.emit(resolved(env))
    assert schema_check.check_crd(file.content, APPLICATION_CRD) == []


def test_application_is_not_synced_from_its_own_folder():
    """It points Argo CD at the folder; inside the kustomization it would manage itself
    and be moved into the environment's namespace."""
    project = resolved("prod")
    files = emit(project)  # the backends, then the packager
    assert any(f.path.startswith("argocd/") for f in files)
    resources = next(f.content for f in files if f.path == "kustomization.yaml")["resources"]
    assert resources and not [r for r in resources if r.startswith("argocd/")]


def test_repository_settings_come_from_the_platform(tmp_path):
    built = build(tmp_path, {"api": {"model": "scorer"}}, platform={"argocd": {
        "repoUrl": "https://git.example.com/ml/deploy.git", "targetRevision": "release",
        "path": "/clusters/eu/", "project": "ml", "namespace": "gitops"}})
    (file,) = argocd.emit(built.project)
    spec = file.content["spec"]
    assert spec["source"] == {"repoURL": "https://git.example.com/ml/deploy.git",
                              "targetRevision": "release", "path": "clusters/eu/default"}
    assert spec["project"] == "ml"
    assert file.content["metadata"]["namespace"] == "gitops"
