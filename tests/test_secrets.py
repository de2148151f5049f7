"""Secrets that arrive: ExternalSecrets for `external:` secrets, secret env vars by reference,
and a plan risk for any Secret the tree reads that nothing makes or declares."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlc.compiler.backends.argo.distributed import jobset_from_template
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import check_environment, compile_project
from mlc.compiler.plan.objects import split_file
from mlc.compiler.plan.risks import SECRET_NOT_PRODUCED, secret_risks

from . import argo_projects as ap
from .conftest import ROOT
from .schema_check import check_crd
from .test_golden import GOLDEN

EXTERNAL_SECRETS = "external-secrets/external-secrets.io_externalsecrets.yaml"
PROJECTS = [ROOT, *sorted(p for p in (GOLDEN / "projects").iterdir() if (p / "ml.yaml").exists())]
HF = {"platform": {"secretStore": {"name": "vault"}},
      "secrets": {"hf-token": {"external": {"path": "ml/huggingface", "key": "token"}}}}


def compiled(root: Path) -> list[tuple[str, dict[str, bytes], dict[str, Any]]]:
    diags = Diagnostics()
    return [(c.env, c.files, c.project.model_dump(mode="json"))
            for c in compile_project(root, None, diags)]


def objects(files: dict[str, bytes]) -> list[dict[str, Any]]:
    return [i.value for path in sorted(files) if path.endswith(".yaml")
            for i in split_file(path, files[path]) if isinstance(i.value, dict)
            and "kind" in i.value]


def codes(tmp_path: Path, *patches: dict) -> dict[str, list[str]]:
    _, diags = ap.check(tmp_path, ap.project(*patches))
    out: dict[str, list[str]] = {}
    for d in diags.items:
        out.setdefault(d.code, []).append(f"{d.severity.value}: {d.dotted_path}")
    return out


# ---------------------------------------------------------------------------------------
# ExternalSecrets


@pytest.mark.parametrize("root", PROJECTS, ids=lambda p: p.name)
def test_every_external_secret_becomes_a_valid_external_secret(root: Path):
    for env, files, ir in compiled(root):
        made = {o["spec"]["target"]["name"]: o for o in objects(files)
                if o["kind"] == "ExternalSecret"}
        external = {r["k8s_name"]: r for r in ir["secrets"].values() if r["external_store"]}
        assert sorted(made) == sorted(external), env
        for name, obj in made.items():
            assert check_crd(obj, EXTERNAL_SECRETS, "v1") == [], (env, name)
            ref = external[name]
            assert obj["spec"]["secretStoreRef"] == {"name": ref["external_store"],
                                                     "kind": ref["external_store_kind"]}
            # the Secret key is exactly the one every pod reads
            assert [d["secretKey"] for d in obj["spec"]["data"]] == [ref["key"]]
            assert obj["spec"]["data"][0]["remoteRef"]["key"] == ref["external_path"]


def test_the_example_prod_tree_makes_every_secret_it_reads():
    for env, files, ir in compiled(ROOT):
        assert secret_risks(files, ir) == [], env
        if env == "prod":
            paths = {p for p in files if p.startswith("secrets/")}
            assert paths == {"secrets/fraud-detection-drift-webhook-token.yaml",
                             "secrets/fraud-detection-pagerduty-key.yaml",
                             "secrets/fraud-detection-redis-url.yaml"}
            (k,) = objects({"kustomization.yaml": files["kustomization.yaml"]})
            assert paths <= set(k["resources"])
            # synced in wave -1, before the workloads that read them
            patch = next(p for p in k["patches"] if p["target"]["kind"] == "ExternalSecret")
            assert 'argocd.argoproj.io/sync-wave: "-1"' in patch["patch"]


@pytest.mark.parametrize("root", PROJECTS, ids=lambda p: p.name)
def test_a_secret_nothing_makes_is_a_plan_risk(root: Path):
    for env, files, ir in compiled(root):
        assert secret_risks(files, ir) == [], env
        without = {p: b for p, b in files.items() if not p.startswith("secrets/")}
        lost = sorted(r["k8s_name"] for r in ir["secrets"].values() if r["external_store"])
        risks = secret_risks(without, ir)
        assert {r.code for r in risks} <= {SECRET_NOT_PRODUCED}
        reported = sorted({m for r in risks for m in lost if f"Secret `{m}`" in r.message})
        # every external secret that something reads is reported once it has no source
        read = sorted({m for m in lost if any(
            m.encode() in b for p, b in without.items()
            if p not in ("core/config.yaml", "kustomization.yaml"))})
        assert reported == read, env


def test_no_store_is_a_located_error(tmp_path: Path):
    found = codes(tmp_path, {"secrets": {"hf": {"external": {"path": "ml/hf"}}}})
    assert found == {"MLC220": ["error: secrets.hf.external"]}
    assert codes(tmp_path, {"secrets": {"hf": {"external": {"path": "ml/hf",
                                                            "store": "vault"}}}}) == {}


def test_a_pre_existing_secret_may_not_be_an_external_secrets_target(tmp_path: Path):
    found = codes(tmp_path, HF, {"secrets": {"other": {"kubernetes": {
        "name": "demo-hf-token", "key": "token"}}}})
    assert found == {"MLC222": ["error: secrets.other.kubernetes.name"]}


# ---------------------------------------------------------------------------------------
# Secret environment variables


def _trainer_env(tmp_path: Path, patch: dict) -> dict[str, dict]:
    wt = ap.objects(ap.emit(ap.resolve(tmp_path, ap.project(HF, patch))), "WorkflowTemplate")
    train = next(w for w in wt if w["metadata"]["name"] == "train-churn")
    return ap.env(ap.template(train, "train")["container"])


def test_builtin_trainer_env_by_reference(tmp_path: Path):
    env = _trainer_env(tmp_path, {"models": {"churn": {"training": {"builtin": {
        "env": {"HF_TOKEN": {"secret": "hf-token"}, "WANDB_MODE": "offline"}}}}}})
    assert env["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": "demo-hf-token", "key": "token"}}}
    assert env["WANDB_MODE"] == {"name": "WANDB_MODE", "value": "offline"}  # a literal


def test_custom_trainer_env_by_reference_reaches_the_jobset(tmp_path: Path):
    resolved = ap.resolve(tmp_path, ap.project(ap.DISTRIBUTED, HF, {"models": {"churn": {
        "framework": "custom", "training": {"custom": {
            "image": "ghcr.io/acme/trainer:1", "command": ["python", "-m", "trainer"],
            "env": {"HF_TOKEN": {"secret": "hf-token"}}}}}}}))
    wt = next(w for w in ap.objects(ap.emit(resolved), "WorkflowTemplate")
              if w["metadata"]["name"] == "train-churn")
    job = jobset_from_template(ap.template(wt, "train"))
    pod = job["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    env = ap.env(pod["containers"][0])
    assert env["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "demo-hf-token",
                                                             "key": "token"}}
    # the JobSet's pods run as the workflow's account, like every other step
    assert pod["serviceAccountName"] == resolved.platform.service_account == wt["spec"][
        "serviceAccountName"]


def test_endpoint_env_by_reference(tmp_path: Path):
    from mlc.compiler.backends import serving

    resolved = ap.resolve(tmp_path, ap.project(HF, {"serving": {"churn-api": {"env": {
        "HF_TOKEN": {"secret": "hf-token"}, "LOG_FORMAT": "json"}}}}))
    deployment = next(f.content for f in serving.emit(resolved)
                      if isinstance(f.content, dict) and f.content["kind"] == "Deployment")
    env = ap.env(deployment["spec"]["template"]["spec"]["containers"][0])
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "demo-hf-token",
                                                            "key": "token"}
    assert env["LOG_FORMAT"]["value"] == "json"
    assert env["MLFLOW_TRACKING_URI"]["value"]  # the contract stays


def _kubelet_env(container: dict, secrets: dict[tuple[str, str], str]) -> dict[str, str]:
    """What the kubelet gives a container: values as written, secretKeyRefs looked up (a
    missing one is what CreateContainerConfigError reports)."""
    out = {}
    for e in container["env"]:
        if "value" in e:
            out[e["name"]] = e["value"]
        elif "secretKeyRef" in e.get("valueFrom", {}):
            ref = e["valueFrom"]["secretKeyRef"]
            out[e["name"]] = secrets[(ref["name"], ref["key"])]
    return out


def test_the_secret_arrives_in_the_serving_process(tmp_path: Path):
    """The chain store -> ExternalSecret -> Secret -> env var -> process, as declared."""
    root = GOLDEN / "projects" / "gpu-distributed"
    (_, files, _), = compiled(root)
    store = {("ml/huggingface", "token"): "hf_not_a_real_token"}
    secrets = {}
    for obj in objects(files):
        if obj["kind"] == "ExternalSecret":  # what the operator writes
            for d in obj["spec"]["data"]:
                remote = d["remoteRef"]
                secrets[(obj["spec"]["target"]["name"], d["secretKey"])] = store[
                    (remote["key"], remote["property"])]
    deployment = next(o for o in objects(files) if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {"PATH": os.environ["PATH"], **_kubelet_env(container, secrets)}
    probe = "import os, sys; sys.stdout.write(os.environ['HF_TOKEN'])"
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hf_not_a_real_token"


def test_unknown_secret_and_reserved_names_are_refused(tmp_path: Path):
    found = codes(tmp_path, {"serving": {"churn-api": {"env": {"HF_TOKEN": {"secret": "hf"}}}}})
    assert found == {"MLC201": ["error: serving.churn-api.env.HF_TOKEN.secret"]}
    found = codes(tmp_path, {"models": {"churn": {"training": {"builtin": {"env": {
        "MLC_RUN_DIR": "/tmp", "PET_NNODES": "2", "HOME": "/x", "OK": "1"}}}}}})
    # the schema's rule for environment variable names (EnvVarName) refuses mlc's own
    assert {k: sorted(v) for k, v in found.items()} == {"MLC104": [
        "error: models.churn.training.builtin.env.HOME",
        "error: models.churn.training.builtin.env.MLC_RUN_DIR",
        "error: models.churn.training.builtin.env.PET_NNODES"]}


def test_a_literal_token_in_env_is_refused_with_the_reference_form(tmp_path: Path):
    _, diags = ap.check(tmp_path, ap.project({"serving": {"churn-api": {"env": {
        "HF_TOKEN": "hf_abcdef"}}}}))
    found = [d for d in diags.items if d.code == "MLC110"]
    assert len(found) == 1 and found[0].dotted_path == "serving.churn-api.env.HF_TOKEN"
    assert "env: {HF_TOKEN: {secret: hf-token}}" in (found[0].help or "")
    # the reference form itself is no secret
    assert codes(tmp_path, HF, {"serving": {"churn-api": {"env": {
        "HF_TOKEN": {"secret": "hf-token"}}}}}) == {}


# ---------------------------------------------------------------------------------------
# Every pod the project starts runs as a named account


def _pod_specs(obj: dict) -> list[tuple[str, dict]]:
    kind = obj["kind"]
    spec = obj.get("spec", {})
    if kind in ("Deployment", "Rollout"):
        return [(kind, spec["template"]["spec"])]
    if kind == "Service" and obj["apiVersion"].startswith("serving.knative.dev"):
        return [(kind, spec["template"]["spec"])]
    if kind == "Configuration":
        return [(kind, spec["template"]["spec"])]
    if kind == "InferenceService":
        return [(kind, spec["predictor"])]
    if kind in ("WorkflowTemplate", "CronWorkflow"):
        wf = spec.get("workflowSpec", spec)
        out = [(kind, wf)] if "templates" in wf else []
        for t in wf.get("templates", []):
            if "resource" in t:
                job = jobset_from_template(t)
                out.append(("JobSet", job["spec"]["replicatedJobs"][0]["template"]["spec"][
                    "template"]["spec"]))
        return out
    return []


def test_every_pod_has_a_service_account():
    seen = set()
    for root in PROJECTS:
        for env, files, _ in compiled(root):
            for obj in objects(files):
                for kind, spec in _pod_specs(obj):
                    seen.add(kind)
                    assert spec.get("serviceAccountName"), (root.name, env, kind,
                                                            obj["metadata"]["name"])
    assert {"Deployment", "Rollout", "WorkflowTemplate", "JobSet"} <= seen, seen


# ---------------------------------------------------------------------------------------
# Every layer checked


def test_the_example_is_valid_in_every_environment():
    for env in ("dev", "staging", "prod"):
        diags = Diagnostics()
        assert check_environment(ROOT, env, diags) is not None, [str(d) for d in diags.items]
        assert not diags.has_errors()



def test_a_literal_env_value_reaches_argo_as_text(tmp_path: Path):
    """Argo would expand `{{...}}` in a value; the user's text must arrive unchanged."""
    from .test_argo_cases import HOSTILE, tags

    env = _trainer_env(tmp_path, {"models": {"churn": {"training": {"builtin": {
        "env": {"NOTE": HOSTILE}}}}}})
    value = env["NOTE"]["value"]
    assert set(tags(value)) == {"='{{'"}  # the only tags: Argo's own escape of `{{`
    assert value.replace("{{='{{'}}", "{{") == HOSTILE


@pytest.mark.parametrize("root", PROJECTS, ids=lambda p: p.name)
def test_secret_facts_from_the_objects_equal_those_of_the_parsed_files(root: Path):
    """The plan takes what each file makes and reads from the objects it was rendered from
    (risks.secret_facts) instead of parsing the tree: the same facts, file by file, and the
    same risks, also where a Secret is missing."""
    from mlc.compiler.plan import risks

    checked = 0
    for c in compile_project(root, None, Diagnostics(), facts=risks.secret_facts):
        ir = c.project.model_dump(mode="json")
        parsed = {p: risks._file_secrets([i.value for i in split_file(p, b)])
                  for p, b in c.files.items() if p in c.facts}
        assert c.facts == parsed, c.env
        named = {p for p, b in c.files.items()
                 if p.endswith(".yaml") and risks._may_name_secrets(b)}
        assert set(c.facts) == named, c.env
        checked += sum(bool(read) for _, read in c.facts.values())
        without = {p: b for p, b in c.files.items() if not p.startswith("secrets/")}
        for files in (c.files, without):
            assert secret_risks(files, ir, c.facts) == secret_risks(files, ir), c.env
    if root == ROOT:  # the example reads Secrets in every environment
        assert checked, "no file reads a Secret: the comparison checks nothing"
