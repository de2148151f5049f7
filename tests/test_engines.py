"""The serving engines as compiled (mlc/compiler/resolve/engines.py,
backends/serving/engines.py): the example project with an endpoint per engine, compiled by
the CLI, and each InferenceService validated strictly against KServe's CRD
(../shared/schemas/kserve); the stock runtime, model format and protocol each engine gets;
the init container that fetches the model, the NetworkPolicy and PodMonitor ports, and the
delivery workflow of an engine's Knative canary. The fetch itself runs as a process in
tests/test_engines_fetch.py (Triton, TorchServe, MLServer) and
tests/test_engines_huggingface.py (vLLM, over a custom trainer's transformers model).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from ruamel.yaml import YAML

from . import schema_check
from .cluster_pods import mlc_compile, read_tree
from .conftest import ROOT

ISVC_CRD = "kserve/serving.kserve.io_inferenceservices.yaml"
CUSTOM_IMAGE = "registry.example.com/fraud/server:1.0"


def engines_patch(values) -> None:
    """An endpoint per compiled engine beside the example's own (mlc) endpoint."""
    serving = values["serving"]
    serving["fraud-triton"] = {
        "model": "fraud-classifier", "engine": "triton", "mode": "serverless",
        "hardware": "small",
        "rollout": {"strategy": "canary", "gates": {"maxPredictionDrift": None}}}
    serving["fraud-ts"] = {"model": "fraud-classifier", "engine": "torchserve",
                           "hardware": "small", "batching": {"maxBatchSize": 8,
                                                             "maxLatency": "20ms"}}
    serving["fraud-ms"] = {"model": "fraud-classifier", "engine": "mlserver",
                           "hardware": "small", "batching": {"maxBatchSize": 16}}
    serving["fraud-custom"] = {
        "model": "fraud-classifier", "engine": "custom", "hardware": "small",
        "env": {"LOG_LEVEL": "info", "API_KEY": {"secret": "slack-webhook"}},
        "container": {"image": "server", "command": ["python", "serve.py"], "port": 9000,
                      "readinessPath": "/ready", "livenessPath": "/live"}}
    values.setdefault("images", {}).setdefault("custom", {})["server"] = CUSTOM_IMAGE
    # the Triton endpoint's model fetch is an init container of a Knative pod
    values["platform"].setdefault("knative", {})["features"] = [
        "kubernetes.podspec-init-containers"]


def write_project(folder: Path, patch=engines_patch) -> Path:
    shutil.copytree(ROOT / "environments", folder / "environments")
    values = YAML(typ="safe").load((ROOT / "ml.yaml").read_text("utf-8"))
    patch(values)
    (folder / "ml.yaml").write_text(json.dumps(values, indent=2), "utf-8")
    return folder


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("engines")
    folder = write_project(tmp / "project")
    out = mlc_compile(folder, "dev", tmp / "deploy")
    return out, read_tree(out)


def named(docs, kind: str, name: str) -> dict:
    (doc,) = [d for d in docs if d.get("kind") == kind and d["metadata"]["name"] == name]
    return doc


def test_every_inference_service_is_valid_for_kserve(tree):
    schema_check.require_schemas()
    _, docs = tree
    services = [d for d in docs if d.get("kind") == "InferenceService"]
    assert {d["metadata"]["name"] for d in services} >= {
        "fraud-triton", "fraud-ts", "fraud-ms", "fraud-custom"}
    for doc in services:
        assert schema_check.check_crd(doc, ISVC_CRD) == [], doc["metadata"]["name"]


@pytest.mark.parametrize(("name", "runtime", "fmt", "protocol", "layout"), [
    ("fraud-triton", "kserve-tritonserver", {"name": "triton", "version": "2"}, "v2",
     "triton"),
    ("fraud-ts", "kserve-torchserve", {"name": "pytorch", "version": "1"}, "v1",
     "torchserve"),
    ("fraud-ms", "kserve-mlserver", {"name": "mlflow"}, "v2", "mlflow"),
])
def test_stock_runtime_and_model_fetch(tree, name, runtime, fmt, protocol, layout):
    _, docs = tree
    predictor = named(docs, "InferenceService", name)["spec"]["predictor"]
    model = predictor["model"]
    assert (model["runtime"], model["modelFormat"], model["protocolVersion"]) == (
        runtime, fmt, protocol)
    assert "storageUri" not in model  # models:/ is not a URI KServe's initializer reads
    (fetch,) = predictor["initContainers"]
    args = fetch["args"]
    assert fetch["command"] == ["python", "-m", "mlc.runtime"]
    assert args[:2] == ["fetch-model", "--model-uri"]
    assert args[2] == "models:/fraud-classifier@champion"
    assert args[args.index("--layout") + 1] == layout
    assert args[args.index("--dest") + 1] == "/mnt/models"
    # the fetch writes where the runtime reads, read-only for the engine
    assert {"name": "models", "mountPath": "/mnt/models"} in fetch["volumeMounts"]
    assert {"name": "models", "mountPath": "/mnt/models", "readOnly": True} in \
        model["volumeMounts"]
    for c in (fetch, model):  # every mlc pod's lock-down
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] and sc["runAsNonRoot"]
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert c["resources"]["limits"]


def test_engine_settings_from_the_endpoint(tree):
    _, docs = tree
    ts = named(docs, "InferenceService", "fraud-ts")["spec"]["predictor"]
    args = ts["initContainers"][0]["args"]
    assert args[args.index("--max-batch-size") + 1] == "8"
    assert args[args.index("--max-batch-delay-ms") + 1] == "20"
    env = {e["name"]: e.get("value") for e in ts["model"]["env"]}
    assert env["LOG_LOCATION"].startswith("/tmp")  # TorchServe's logs: not the root fs
    ms = named(docs, "InferenceService", "fraud-ms")["spec"]["predictor"]["model"]
    env = {e["name"]: e.get("value") for e in ms["env"]}
    assert env["MLSERVER_MODEL_MAX_BATCH_SIZE"] == "16"
    assert float(env["MLSERVER_MODEL_MAX_BATCH_TIME"]) == 0.005


def test_custom_container(tree):
    _, docs = tree
    predictor = named(docs, "InferenceService", "fraud-custom")["spec"]["predictor"]
    assert "model" not in predictor and "initContainers" not in predictor
    (c,) = predictor["containers"]
    assert c["image"] == CUSTOM_IMAGE and c["command"] == ["python", "serve.py"]
    assert c["ports"][0]["containerPort"] == 9000
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 9000}
    assert c["livenessProbe"]["httpGet"] == {"path": "/live", "port": 9000}
    env = {e["name"]: e for e in c["env"]}
    assert env["LOG_LEVEL"]["value"] == "info"
    assert env["MLC_MODEL_URI"]["value"] == "models:/fraud-classifier@champion"
    assert "secretKeyRef" in env["API_KEY"]["valueFrom"]  # by reference, never a value


def test_scrape_ports_reach_the_engines(tree):
    _, docs = tree
    for name, port in (("fraud-ts", 8082), ("fraud-ms", 8082), ("fraud-custom", 9000)):
        monitor = named(docs, "PodMonitor", name)
        assert monitor["spec"]["podMetricsEndpoints"][0]["portNumber"] == port
        policy = named(docs, "NetworkPolicy", f"{name}-ingress")
        ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
        assert port in ports, name
    monitor = named(docs, "PodMonitor", "fraud-triton")
    assert monitor["spec"]["podMetricsEndpoints"][0]["portNumber"] == 8002
    policy = named(docs, "NetworkPolicy", "fraud-triton-ingress")
    assert 8002 in {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}


def test_engine_canary_is_stepped_by_the_delivery_workflow(tree):
    out, docs = tree
    isvc = named(docs, "InferenceService", "fraud-triton")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 0
    workflow = yaml.safe_load((out / "delivery" / "workflow-fraud-triton.yaml").read_text())
    assert "canaryTrafficPercent" in json.dumps(workflow)
    gates = json.loads(named(docs, "ConfigMap", "fraud-triton-serve")["data"]["gates.json"])
    assert "nv_inference" in json.dumps(gates)  # the engine's own series (engine_queries)


def test_fetch_reads_registry_uris_only():
    from mlc.runtime.serve import fetch

    assert fetch.parse_uri("models:/fraud@champion") == ("fraud", "champion", None)
    assert fetch.parse_uri("models:/fraud/7") == ("fraud", None, "7")
    for bad in ("s3://bucket/model", "models:/fraud", "models:/fraud/latest"):
        with pytest.raises(fetch.FetchFailed):
            fetch.parse_uri(bad)


def test_torchserve_config_registers_the_archive_with_the_batching():
    from mlc.runtime.serve import fetch

    text = fetch.torchserve_config("m", "m.mar", max_batch_size=4, max_batch_delay_ms=7,
                                   max_queue=9)
    props = dict(line.split("=", 1) for line in text.splitlines())
    assert props["metrics_mode"] == "prometheus" and props["job_queue_size"] == "9"
    assert props["metrics_address"].endswith(":8082")  # mlc/engine_metrics.py's port
    model = json.loads(props["model_snapshot"])["models"]["m"]["1.0"]
    assert (model["batchSize"], model["maxBatchDelay"], model["marName"]) == (4, 7, "m.mar")


def test_mlc_run_serve_refuses_an_endpoint_of_another_engine(tmp_path, capsys):
    """`mlc run serve` would start mlc's own server in the engine's place: refused, with the
    model's URI; `mlc run`'s closing hint names no such endpoint."""
    from mlc.cli import main

    from .bad_inputs import engine_edit
    from .conftest import write_project

    text = engine_edit("    hardware: cpu-small\nmonitoring",
                       "    hardware: cpu-small\n    engine: mlserver\nmonitoring")
    root = write_project(tmp_path / "project", {
        "ml.yaml": text, "environments/dev.yaml": "platform: {development: true}\n"})
    assert main(["run", "serve", "churn-api", "-C", str(root)]) == 2
    err = capsys.readouterr().err
    assert "served by engine `mlserver`" in err and "models:/" in err


def _shm_patch(values) -> None:
    """The engines' project with /dev/shm on the profile that every endpoint runs on."""
    engines_patch(values)
    values["hardware"]["small"]["sharedMemory"] = "256Mi"


def test_endpoint_pods_mount_the_profiles_shared_memory(tmp_path):
    """A profile's `sharedMemory` reaches the serving pods (mlc's Deployment, an engine's
    predictor in Knative and Standard mode, a custom container) as a memory-backed
    emptyDir at /dev/shm of that size; the objects stay valid for their CRDs."""
    schema_check.require_schemas()
    out = mlc_compile(write_project(tmp_path / "project", _shm_patch), "dev", tmp_path / "out")
    docs = read_tree(out)
    shm = {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}}
    mount = {"name": "dshm", "mountPath": "/dev/shm"}
    pods = {"fraud-api": named(docs, "Deployment", "fraud-api")["spec"]["template"]["spec"]}
    for name in ("fraud-triton", "fraud-ts", "fraud-ms", "fraud-custom"):
        isvc = named(docs, "InferenceService", name)
        assert schema_check.check_crd(isvc, ISVC_CRD) == [], name
        pods[name] = isvc["spec"]["predictor"]
    for name, pod in pods.items():
        assert shm in pod["volumes"], name
        containers = pod.get("containers") or [pod["model"]]
        assert [c["name"] for c in containers if mount in c["volumeMounts"]], name
        # the model fetch writes files, not tensors: it does not mount it
        for init in pod.get("initContainers", []):
            assert mount not in init["volumeMounts"], name
