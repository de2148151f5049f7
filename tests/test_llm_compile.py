"""What a fine-tune compiles to: examples/llm compiles (its endpoint to KServe's Hugging Face
runtime on vLLM), its JobSet carries the GPU profile's extended resources and
/dev/shm and is valid against JobSet's CRD schema, and a dataset model's pipeline and IR."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from mlc.compiler.backends.argo.distributed import jobset_from_template
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.emit import emit
from mlc.compiler.pipeline import check_environment

from . import argo_projects as ap
from .conftest import ROOT
from .schema_check import check_crd, require_schemas

EXAMPLE = ROOT / "examples" / "llm"
JOBSET_CRD = "jobset/jobset.x-k8s.io_jobsets.yaml"


def test_the_example_compiles_its_endpoint_to_a_vllm_inference_service():
    """No error in any environment (its tree is a golden one, tests/test_golden.py); the
    endpoint is KServe's Hugging Face runtime on vLLM, with the GPU profile's resources, and
    valid against KServe's CRD."""
    require_schemas()
    for env in ("dev", "prod"):
        diags = Diagnostics()
        resolved = check_environment(EXAMPLE, env, diags)
        assert [d.code for d in diags.items if d.severity == "error"] == [], env
        (isvc,) = [f.content for f in emit(resolved)
                   if isinstance(f.content, dict) and f.content.get("kind") == "InferenceService"]
        assert check_crd(isvc, "kserve/serving.kserve.io_inferenceservices.yaml") == []
        predictor = isvc["spec"]["predictor"]
        assert predictor["model"]["runtime"] == "kserve-huggingfaceserver"
        assert predictor["model"]["modelFormat"]["name"] == "huggingface"
        assert "--backend=vllm" in predictor["model"]["args"]
        assert predictor["model"]["resources"]["limits"]["nvidia.com/gpu"] == \
            str(resolved.hardware["gpu-serve"].gpu_count)
        assert predictor["canaryTrafficPercent"] == 0  # the gate driver steps it up
        (fetch,) = predictor["initContainers"]
        assert "fetch-model" in fetch["args"] or "fetch-model" in " ".join(fetch["command"])


def without_serving(tmp: Path) -> Path:
    folder = tmp / "llm"
    shutil.copytree(EXAMPLE / "environments", folder / "environments")
    values = YAML(typ="safe").load((EXAMPLE / "ml.yaml").read_text("utf-8"))
    values.pop("serving")
    (folder / "ml.yaml").write_text(json.dumps(values, indent=2), "utf-8")
    return folder


def test_the_fine_tunes_jobset_has_efa_and_shared_memory_and_is_valid(tmp_path):
    require_schemas()
    resolved = ap.resolve_dir(without_serving(tmp_path), "prod")
    model = resolved.models["support-assistant"]
    assert model.dataset.kind == "files" and model.dataset.format == "jsonl"
    assert model.features == [] and model.label_column == ""
    hw = resolved.hardware["gpu-node"]
    assert hw.extended_resources == {"vpc.amazonaws.com/efa": "4"}
    assert hw.requests["vpc.amazonaws.com/efa"] == hw.limits["vpc.amazonaws.com/efa"] == "4"
    files = ap.emit(resolved)
    (wt,) = [o for o in ap.objects(files, "WorkflowTemplate")
             if o["metadata"]["name"] == "train-support-assistant"]
    jobset = jobset_from_template(ap.template(wt, "train"))
    assert check_crd(jobset, JOBSET_CRD) == []
    assert check_crd(wt, "argo-workflows/argoproj.io_workflowtemplates.yaml") == []
    job = jobset["spec"]["replicatedJobs"][0]["template"]["spec"]
    assert job["parallelism"] == 2
    pod = job["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["vpc.amazonaws.com/efa"] == "4"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "8"
    env = ap.env(container)
    assert env["PET_NPROC_PER_NODE"]["value"] == "8"
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "token"
    # the dataset's location is the step runtime's to hand over (from project.json)
    assert not any(n.startswith("MLC_DATASET") for n in env)
    (shm,) = [v for v in pod["volumes"] if v["name"] == "dshm"]
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Gi"}
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    # no feature steps: the trainer reads its dataset itself
    dag = ap.template(wt, wt["spec"]["entrypoint"])["dag"]["tasks"]
    assert [t["name"] for t in dag] == ["train", "evaluate", "register", "promote"]
    # the IR leaves what no dataset model has out of project.json
    dumped = json.loads(resolved.model_dump_json())
    assert dumped["models"]["support-assistant"]["dataset"]["uri"].startswith("s3://")
    assert "extended_resources" not in dumped["hardware"]["gpu-serve"]


def test_a_single_node_dataset_models_step_and_an_endpoint_get_the_profile(tmp_path):
    doc = ap.project({
        "hardware": {"gpu": {"cpu": "4", "memory": "32Gi", "sharedMemory": "8Gi",
                             "extendedResources": {"rdma/hca": 1},
                             "gpu": {"type": "NVIDIA-L4", "count": 1}},
                     "efa-serve": {"cpu": "2", "memory": "8Gi",
                                   "extendedResources": {"vpc.amazonaws.com/efa": 1}}},
        "images": {"custom": {"tuner": "registry.example.com/tuner:1"}},
        "models": {"writer": {"task": "generative", "framework": "custom",
                              "dataset": {"huggingface": "s3://corpora/writer"},
                              "training": {"hardware": "gpu", "custom": {
                                  "image": "tuner", "command": ["python", "tune.py"],
                                  "metrics": [{"name": "eval_loss",
                                               "direction": "minimize"}]}},
                              "evaluation": {"gates": [{"metric": "eval_loss", "max": 3}]}}},
        "serving": {"churn-api": {"hardware": "efa-serve"}}})
    resolved = ap.resolve(tmp_path / "p", doc)
    files = ap.emit(resolved)
    (wt,) = [o for o in ap.objects(files, "WorkflowTemplate")
             if o["metadata"]["name"] == "train-writer"]
    require_schemas()
    assert check_crd(wt, "argo-workflows/argoproj.io_workflowtemplates.yaml") == []
    volumes = {v["name"]: v for v in wt["spec"]["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}
    train = ap.template(wt, "train")["container"]
    assert train["resources"]["limits"]["rdma/hca"] == "1"
    assert "MLC_OFFLINE_STORE_CONNECTION" not in ap.env(train)
    # the tabular model's pipeline keeps its unsized /dev/shm of the default profile
    (churn,) = [o for o in ap.objects(files, "WorkflowTemplate")
                if o["metadata"]["name"] == "train-churn"]
    assert {v["name"]: v for v in churn["spec"]["volumes"]}["dshm"]["emptyDir"] == \
        {"medium": "Memory"}
    # serving pods get a profile's extended resources through the shared resources helper
    containers = [c for f in emit(resolved) for o in (f.content if isinstance(
        f.content, (list, tuple)) else [f.content]) if isinstance(o, dict)
        and o.get("kind") == "Deployment" and o["metadata"]["name"].startswith("churn-api")
        for c in o["spec"]["template"]["spec"]["containers"]]
    assert containers and all(c["resources"]["limits"]["vpc.amazonaws.com/efa"] == "1"
                              for c in containers if c["name"] != "router")
    assert resolved.models["writer"].gates[0].metric == "eval_loss"


WRITER = {"task": "generative", "framework": "custom", "dataset": {"files": "s3://c/chats"},
          "training": {"custom": {"image": "registry.example.com/tuner:1",
                                  "command": ["python", "tune.py"],
                                  "metrics": [{"name": "eval_loss",
                                               "direction": "minimize"}]}}}
HF = {"model": "writer", "engine": "huggingface", "hardware": "cpu-small"}
AB = {"strategy": "ab", "variants": [{"name": "a", "alias": "champion", "weight": 50},
                                     {"name": "b", "alias": "challenger", "weight": 50}]}


@pytest.mark.parametrize(("patch", "path"), [
    ({"serving": {"w": HF}, "monitoring": {"quality": {"q": {
        "endpoint": "w", "labels": "events", "labelColumn": "label"}}}},
     ("monitoring", "quality", "q")),
    ({"serving": {"w": {**HF, "engine": "custom", "rollout": {
        **AB, "verdict": {"labels": "events", "labelColumn": "label"}}}}},
     ("serving", "w", "rollout", "verdict")),
    ({"serving": {"w": HF}, "monitoring": {"drift": {"d": {"endpoint": "w"}}}},
     ("monitoring", "drift", "d")),
    ({"serving": {"w": {**HF, "onlineFeatures": True}}}, ("serving", "w", "onlineFeatures")),
], ids=["quality-monitor", "ab-verdict", "drift-check", "online-features"])
def test_what_scores_a_dataset_models_rows_is_refused(tmp_path, patch, path):
    resolved, diags = ap.check(tmp_path, ap.project({"models": {"writer": WRITER}}, patch))
    assert resolved is None
    assert ("MLC595", path) in [(d.code, d.path) for d in diags.items]
