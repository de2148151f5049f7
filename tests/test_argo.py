"""The Argo backend against the real APIs: upstream CRD schemas (unknown fields are errors),
hera's model classes, Argo Events' JSON schema, Kubernetes' own schemas, and the YAML that
`render` writes. Run over the bundled example (every environment) and the small projects of
tests/argo_projects.py (GPU, MIG, distributed, drift retraining).
"""

from __future__ import annotations

import json

import pytest
import yaml
from hera.workflows import models as hera_models

from mlc import metrics as contract
from mlc.compiler.backends import pods
from mlc.compiler.backends.argo.distributed import jobset_from_template
from mlc.compiler.backends.argo.metrics import declared_name
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.output import OutputFile
from mlc.compiler.pipeline import compile_project
from mlc.compiler.render import render

from . import argo_projects as ap
from .conftest import ROOT
from .schema_check import check_crd, check_definition, tighten

WORKFLOWS = "argo-workflows/argoproj.io_{}.yaml"
EVENTS = "argo-events/schema.json"
CRD = {"WorkflowTemplate": "workflowtemplates", "CronWorkflow": "cronworkflows",
       "Workflow": "workflows"}
HERA = {"WorkflowTemplate": hera_models.WorkflowTemplate,
        "CronWorkflow": hera_models.CronWorkflow, "Workflow": hera_models.Workflow}
CORE = ("ServiceAccount", "Role", "RoleBinding")
CASES = {"base": [], "gpu": [ap.GPU], "mig": [ap.MIG], "distributed": [ap.DISTRIBUTED],
         "ab-verdict": [ap.AB_VERDICT]}


@pytest.fixture(scope="module")
def example() -> dict[str, dict[str, list[dict]]]:
    return {env: ap.emit(ap.resolve_dir(ROOT, env)) for env in ("dev", "staging", "prod")}


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, dict[str, list[dict]]]:
    out = {}
    for name, patches in CASES.items():
        folder = tmp_path_factory.mktemp(name)
        out[name] = ap.emit(ap.resolve(folder, ap.project(*patches)))
    return out


def every_tree(example, cases):
    yield from (("example/" + env, files) for env, files in example.items())
    yield from cases.items()


def workflows_inside(obj: dict) -> list[dict]:
    """Argo Workflows objects: the object itself, or the Workflow a Sensor creates."""
    if obj["kind"] in CRD:
        return [obj]
    if obj["kind"] == "Sensor":
        gates = [t["template"]["k8s"]["source"]["resource"] for t in obj["spec"]["triggers"]]
        # and the training Workflow each gate creates
        inner = [yaml.safe_load(t["resource"]["manifest"]) for g in gates
                 for t in g["spec"]["templates"] if "resource" in t]
        return gates + [m for m in inner if m["kind"] == "Workflow"]
    return []


def test_example_files(example):
    assert sorted(example["prod"]) == [
        "argo/configmap-fraud-detection-drift-cooldown.yaml",
        "argo/cronworkflow-drift-fraud-inputs.yaml",
        "argo/cronworkflow-materialize.yaml",
        "argo/cronworkflow-train-fraud-classifier.yaml",
        "argo/eventsource-fraud-detection-alerts.yaml",
        "argo/rbac.yaml",
        "argo/sensor-retrain-fraud-inputs.yaml",
        "argo/workflowtemplate-drift-fraud-inputs.yaml",
        "argo/workflowtemplate-materialize.yaml",
        "argo/workflowtemplate-train-fraud-classifier.yaml",
    ]
    # dev: no scheduled retraining and drift only alerts, so no cron for training, no Sensor
    assert "argo/cronworkflow-train-fraud-classifier.yaml" not in example["dev"]
    assert not [p for p in example["dev"] if "sensor" in p or "eventsource" in p]


@pytest.mark.slow
def test_every_object_is_accepted_by_the_upstream_schemas(example, cases):
    checked = set()
    for tree, files in every_tree(example, cases):
        for path, docs in files.items():
            for obj in docs:
                where = f"{tree}/{path} {obj['kind']}"
                if obj["kind"] in ("Sensor", "EventSource"):
                    definition = f"io.argoproj.events.v1alpha1.{obj['kind']}"
                    assert check_definition(obj, EVENTS, definition) == [], where
                    checked.add(obj["kind"])
                for wf in workflows_inside(obj):
                    assert check_crd(wf, WORKFLOWS.format(CRD[wf["kind"]])) == [], where
                    checked.add(wf["kind"])
    assert checked == {"WorkflowTemplate", "CronWorkflow", "Workflow", "Sensor", "EventSource"}


def test_tightened_schemas_refuse_unknown_fields(example):
    """The strict check can fail: a misspelt field is an error, as with --validate=strict."""
    template = example["prod"]["argo/workflowtemplate-train-fraud-classifier.yaml"][0]
    bad = yaml.safe_load(yaml.safe_dump(template))
    bad["spec"]["templates"][1]["container"]["securityContex"] = {}
    problems = check_crd(bad, WORKFLOWS.format("workflowtemplates"))
    assert any("securityContex" in p for p in problems), problems
    assert tighten({"properties": {"a": {}}}) == {"properties": {"a": {}},
                                                  "additionalProperties": False}
    assert "additionalProperties" not in tighten(
        {"properties": {}, "x-kubernetes-preserve-unknown-fields": True})


def test_workflow_objects_round_trip_through_hera(example, cases):
    for tree, files in every_tree(example, cases):
        for path, docs in files.items():
            for obj in docs:
                for wf in workflows_inside(obj):
                    model = HERA[wf["kind"]].parse_obj(wf)
                    assert model.dict(by_alias=True, exclude_none=True) == wf, f"{tree}/{path}"


def test_rendered_yaml_reads_back_as_the_same_objects(example, cases):
    for tree, files in every_tree(example, cases):
        for path, docs in files.items():
            text = render_one(path, docs)
            assert list(yaml.safe_load_all(text)) == docs, f"{tree}/{path}"


def render_one(path: str, docs: list[dict]) -> str:
    content = docs if path.endswith("rbac.yaml") else docs[0]
    return render([OutputFile(path, content, "ml.yaml")])[path].decode()


def test_core_objects_are_valid_kubernetes(example, cases):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    version = kubernetes_validate.latest_version()
    for tree, files in every_tree(example, cases):
        for obj in ap.objects(files, "ServiceAccount") + ap.objects(files, "Role") + \
                ap.objects(files, "RoleBinding"):
            kubernetes_validate.validate(obj, version, strict=True)
        assert ap.objects(files, "Role"), tree


def test_distributed_training_emits_a_valid_jobset(cases):
    jobset_api = pytest.importorskip("kubeflow_trainer_api.models")
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    wt = cases["distributed"]["argo/workflowtemplate-train-churn.yaml"][0]
    train = ap.template(wt, "train")
    jobset = jobset_from_template(train)
    # JobSet's own API types (from Kubeflow Trainer's SDK) read it back unchanged: no field
    # unknown to JobSet was dropped on the way
    assert jobset_api.JobsetV1alpha2JobSet.from_dict(jobset).to_dict() == jobset
    pod = jobset["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
                                  "spec": pod}, kubernetes_validate.latest_version(), strict=True)
    assert train["resource"]["action"] == "create"
    assert train["resource"]["setOwnerReference"] is True
    assert train["resource"]["successCondition"] == "status.terminalState == Completed"
    assert train["resource"]["failureCondition"] == "status.terminalState == Failed"


def test_every_pod_is_locked_down(example, cases):
    """Non-root, read-only root filesystem, no capabilities, RuntimeDefault seccomp, limits."""
    secure = pods.container_security_context()
    for tree, files in every_tree(example, cases):
        for wt in ap.objects(files, "WorkflowTemplate"):
            spec = wt["spec"]
            assert spec["securityContext"] == pods.pod_security_context(), tree
            assert "podSpecPatch" in spec["templateDefaults"]
            for t in spec["templates"]:
                containers = []
                if "container" in t:
                    containers.append(t["container"])
                if "resource" in t:
                    jobset = jobset_from_template(t)
                    pod = jobset["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]
                    assert pod["spec"]["securityContext"] == pods.pod_security_context()
                    containers += pod["spec"]["containers"]
                    assert '"name": "main"' in t["podSpecPatch"]  # argoexec, locked down too
                for c in containers:
                    assert c["securityContext"] == secure, f"{tree} {t['name']}"
                    assert c["resources"]["limits"]["memory"], f"{tree} {t['name']}"
                    assert c["resources"]["limits"]["cpu"], f"{tree} {t['name']}"
        for obj in ap.objects(files, "Sensor") + ap.objects(files, "EventSource"):
            template = obj["spec"]["template"]
            assert template["securityContext"] == pods.pod_security_context()
            assert template["container"]["securityContext"] == secure
            assert template["container"]["resources"]["limits"]


def test_argo_executor_containers_get_the_same_rules(example):
    wt = example["prod"]["argo/workflowtemplate-train-fraud-classifier.yaml"][0]
    patch = json.loads(wt["spec"]["templateDefaults"]["podSpecPatch"])
    assert [c["name"] for c in patch["initContainers"]] == ["init"]
    assert [c["name"] for c in patch["containers"]] == ["wait"]
    for c in patch["initContainers"] + patch["containers"]:
        assert c["securityContext"] == pods.container_security_context()
        assert c["resources"]["limits"]


def test_secrets_come_by_reference_only(example):
    prod = example["prod"]
    assert not ap.objects(prod, "Secret")
    wt = prod["argo/workflowtemplate-train-fraud-classifier.yaml"][0]
    train = ap.template(wt, "train")["container"]
    assert ap.env(train)["MLC_ONLINE_STORE_CONNECTION"] == {
        "name": "MLC_ONLINE_STORE_CONNECTION",
        "valueFrom": {"secretKeyRef": {"name": "fraud-detection-redis-url",
                                       "key": "connection-string"}}}
    # the notification step reads route secrets as files from a projected Secret volume
    volumes = {v["name"]: v for v in wt["spec"]["volumes"]}
    assert volumes["route-secrets"]["projected"]["sources"] == [
        {"secret": {"name": "alerting", "items": [{"key": "slack-webhook-url",
                                                   "path": "risk-slack"}]}}]


def test_pipeline_metrics_follow_the_contract(example):
    wt = example["prod"]["argo/workflowtemplate-train-fraud-classifier.yaml"][0]
    declared = {m["name"]: m for m in wt["spec"]["metrics"]["prometheus"]}
    for metric in (contract.PIPELINE_RUNS, contract.PIPELINE_DURATION,
                   contract.PIPELINE_LAST_SUCCESS):
        m = declared[declared_name(metric)]
        assert m["help"] == metric.help
        assert tuple(label["key"] for label in m["labels"]) == metric.labels
    assert declared[declared_name(contract.PIPELINE_RUNS)]["counter"] == {"value": "1"}
    assert declared[declared_name(contract.PIPELINE_LAST_SUCCESS)]["when"] == \
        "{{workflow.status}} == Succeeded"
    # Argo prefixes what it exports with argo_workflows_: a prefixed contract name is declared
    # without it
    prefixed = contract.Metric("argo_workflows_mlc_x", "gauge", (), "h", "pipeline")
    assert declared_name(prefixed) == "mlc_x"


def test_output_is_deterministic(example):
    again = ap.emit(ap.resolve_dir(ROOT, "prod"))
    assert again == example["prod"]


def test_runtime_exit_codes_match():
    step = pytest.importorskip("mlc.runtime.step")
    from mlc.compiler.backends.argo.steps import FINAL_EXIT_CODES

    assert FINAL_EXIT_CODES == (step.EXIT_BAD_DATA, step.EXIT_GATES, step.EXIT_DRIFT)


def test_argo_files_are_listed_by_the_kustomization():
    [prod] = compile_project(ROOT, ["prod"], Diagnostics())
    kustomization = yaml.safe_load(prod.files["kustomization.yaml"])
    argo_files = sorted(p for p in prod.files if p.startswith("argo/"))
    assert argo_files and set(argo_files) <= set(kustomization["resources"])


def test_example_resolves_in_every_environment():
    for env in ("dev", "staging", "prod"):
        assert ap.resolve_dir(ROOT, env).pipelines
