"""Packaging: every environment's folder is a kustomization that `kubectl kustomize` builds,
with Argo CD's sync waves and pruning protection on the objects it renders."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mlc.compiler.backends.kustomize import KEEP_OPTIONS, SYNC_OPTIONS, WAVE, package
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.emit import emit
from mlc.compiler.output import OutputFile
from mlc.compiler.pipeline import check_environment, compile_project

from .conftest import ROOT, write_project
from .test_serving import ENDPOINTS, KNATIVE_GPU_FLAGS, project_text


class _Loader(yaml.SafeLoader):
    """kubectl writes an AlertmanagerConfig's `matchType: =` bare; YAML 1.1 calls `=` a tag."""


_Loader.add_constructor("tag:yaml.org,2002:value",
                        lambda loader, node: loader.construct_scalar(node))

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass"}


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip("kubectl is not installed")
    return path


def kustomize_build(project_root: Path, out: Path) -> dict[str, list[dict]]:
    """Compile every environment into `out` and build each with `kubectl kustomize`."""
    built = {}
    for result in compile_project(project_root, None, Diagnostics()):
        folder = out / result.env
        for path, data in result.files.items():
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_bytes(data)
        run = subprocess.run([kubectl(), "kustomize", str(folder)], capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0, f"{result.env}: {run.stderr}"
        built[result.env] = [d for d in yaml.load_all(run.stdout, Loader=_Loader) if d]
    return built


def check_built(env: str, objects: list[dict], namespace: str, part_of: str) -> None:
    assert objects, env
    for obj in objects:
        meta = obj["metadata"]
        where = f"{env}: {obj['kind']}/{meta['name']}"
        labels = meta.get("labels", {})
        for key in ("managed-by", "part-of", "name", "version"):
            assert labels.get(f"app.kubernetes.io/{key}"), where
        assert labels["app.kubernetes.io/part-of"] == part_of, where
        # the file that declared it: ml.yaml, or this environment's overlay
        source = meta.get("annotations", {}).get("mlc.dev/source", "")
        assert source.split("#")[0] in ("ml.yaml", f"environments/{env}.yaml"), where
        if obj["kind"] not in CLUSTER_SCOPED:
            assert meta["namespace"] == namespace, where


def wave(obj: dict) -> int:
    return int(obj["metadata"].get("annotations", {}).get(WAVE, "0"))


@pytest.mark.slow
def test_every_environment_of_the_example_builds(tmp_path):
    built = kustomize_build(ROOT, tmp_path)
    assert sorted(built) == ["dev", "prod", "staging"]
    for env, objects in built.items():
        check_built(env, objects, f"fraud-{env}", "fraud-detection")
        by_kind = {}
        for obj in objects:
            by_kind.setdefault(obj["kind"], []).append(obj)
        (namespace,) = by_kind["Namespace"]
        assert namespace["metadata"]["annotations"][SYNC_OPTIONS] == KEEP_OPTIONS
        assert wave(namespace) == -2
        assert all(wave(c) == -1 for c in by_kind["ConfigMap"])
        workload = by_kind["Rollout" if env != "dev" else "Deployment"][0]
        assert wave(workload) == 1
        for template in by_kind.get("AnalysisTemplate", []):
            assert wave(template) < wave(workload)  # the gates exist before the rollout runs
        assert "Application" not in by_kind  # argocd/ is not synced from here


@pytest.mark.slow
def test_every_serving_form_builds(tmp_path):
    write_project(tmp_path / "project", {"ml.yaml": project_text(ENDPOINTS, KNATIVE_GPU_FLAGS)})
    (objects,) = kustomize_build(tmp_path / "project", tmp_path / "out").values()
    check_built("default", objects, "scoring-default", "scoring")
    kinds = {(o["apiVersion"], o["kind"]) for o in objects}
    assert {("argoproj.io/v1alpha1", "Rollout"), ("serving.knative.dev/v1", "Service"),
            ("serving.knative.dev/v1", "Route"), ("serving.kserve.io/v1beta1",
                                                  "InferenceService")} <= kinds
    waves = {(o["kind"], o["metadata"]["name"]): wave(o) for o in objects}
    assert waves[("Route", "serverless-ab")] == 2
    assert waves[("Configuration", "serverless-ab-a")] == 1
    assert waves[("Service", "canary")] == 0  # a core Service: not Knative's wave


def test_resources_are_every_manifest_but_argocd():
    project = check_environment(ROOT, "prod", Diagnostics())
    assert project is not None
    files = emit(project)  # the backends, then the packager
    content = next(f.content for f in files if f.path == "kustomization.yaml")

    def first(f: OutputFile) -> dict:
        return f.content if isinstance(f.content, dict) else f.content[0]

    manifests = sorted(f.path for f in files if f.path.endswith(".yaml")
                       and isinstance(f.content, (dict, list)) and "apiVersion" in first(f)
                       and first(f)["kind"] != "Kustomization"
                       and not f.path.startswith("argocd/"))
    assert content["resources"] == manifests
    assert "feast/feature_store.yaml" not in content["resources"]  # not a Kubernetes object
    assert content["namespace"] == "fraud-prod"


def test_patches_only_for_the_kinds_present():
    def doc(api_version: str, kind: str) -> dict:
        return {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}}

    project = check_environment(ROOT, "dev", Diagnostics())
    files = [OutputFile("a.yaml", [doc("v1", "Namespace"), doc("v1", "Service")], "ml.yaml"),
             OutputFile("b.yaml", doc("serving.knative.dev/v1", "Route"), "ml.yaml")]
    (kustomization,) = package(project, files)
    patches = kustomization.content["patches"]
    assert [p["target"] for p in patches] == [
        {"kind": "Namespace"}, {"group": "serving.knative.dev", "kind": "Route"}]
    body = yaml.safe_load(patches[1]["patch"])
    assert body["metadata"]["annotations"] == {WAVE: "2"}
    assert body["apiVersion"] == "serving.knative.dev/v1"
