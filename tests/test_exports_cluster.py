"""The exports on the cluster path: the compiled training WorkflowTemplate's train container
runs as a local process, exactly as declared (tests/cluster_pods.py), against a real
`mlflow server`, and the run it logs holds the exports its MLC_EXPORTS names, which
onnxruntime and protobuf's parser then read.

The first test emits the tree from the example's IR with the endpoint's engine set to triton
and the resolve pass's own `add_exports` applied, by the same emit and render passes `mlc
compile` runs; `test_compiled_triton_project` compiles the project through the CLI instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlc import step_contract as sc
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import check_environment, load_environment

from .cluster_pods import Cluster, Image, read_tree
from .conftest import ROOT
from .test_cluster_path import (  # noqa: F401  (mlflow_server: a fixture of that module)
    ENV,
    MLFLOW_HOST,
    PIPELINE,
    SMALL,
    TRAIN_IMAGE,
    mlflow_server,
    project,
)

pytestmark = pytest.mark.slow
ort = pytest.importorskip("onnxruntime",
                          reason="onnxruntime is not installed (the `export` extra)")

MODEL = "fraud-classifier"


def triton_engine(values) -> None:
    """A Triton endpoint of the model beside the example's own: the example's endpoint has a
    drift check (MLC393) and objectives Triton cannot measure (MLC374)."""
    values["serving"]["fraud-triton"] = {
        "model": MODEL, "engine": "triton", "mode": "serverless", "hardware": "small",
        "rollout": {"strategy": "canary", "gates": {"maxPredictionDrift": None}}}
    values["platform"].setdefault("knative", {})["features"] = [
        "kubernetes.podspec-init-containers"]


def emitted_tree(folder: Path, out: Path) -> Path:
    """The environment's tree from its IR, with the endpoint on Triton (see the module doc)."""
    from mlc.compiler.emit import emit
    from mlc.compiler.render import render
    from mlc.compiler.resolve.context import Context
    from mlc.compiler.resolve.exports import add_exports, model_exports
    from mlc.compiler.validate import validate_document

    from .test_exports_compile import endpoints_with

    diags = Diagnostics()
    resolved = check_environment(folder, ENV, diags)
    assert resolved is not None, diags.items
    loaded = load_environment(folder, ENV, diags)
    ctx = Context(project=validate_document(loaded.document, diags), doc=loaded.document,
                  env=ENV, diags=diags, development=False)
    endpoints = endpoints_with(resolved, **{"fraud-api": "triton"})
    exports = model_exports(ctx, resolved.models, endpoints)
    assert not diags.has_errors(), diags.items
    resolved = resolved.model_copy(update={
        "endpoints": endpoints, "pipelines": add_exports(resolved.pipelines, exports)})
    tree = out / ENV
    for path, data in render(emit(resolved)).items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_bytes(data)
    return tree


def run_train(tmp: Path, mlflow_server: str, tree: Path) -> Path:  # noqa: F811
    workdir = tmp / "image-mlc"
    workdir.mkdir()
    workdir.chmod(0o555)
    cluster = Cluster(read_tree(tree), tmp / "cluster", images={TRAIN_IMAGE: Image(workdir)},
                      hosts={MLFLOW_HOST: mlflow_server}, namespace="fraud-dev")
    train = next(d for d in cluster.tree if d.get("kind") == "WorkflowTemplate"
                 and d["metadata"]["name"] == PIPELINE)
    declared = {e["name"]: e.get("value") for t in train["spec"]["templates"]
                if t["name"] == "train" for e in t["container"]["env"]}
    assert declared[sc.EXPORTS_ENV] == "onnx,triton"
    assert declared[sc.EXPORT_BATCHING_ENV].startswith("max_batch_size=")
    workflow = f"{PIPELINE}-{tmp.name[-12:].lower().replace('_', '')}"
    run_dir = cluster.claim(f"{workflow}-run")
    shutil.copytree(ROOT / "data", run_dir / "data",
                    ignore=shutil.ignore_patterns("*.py", "*.db"))
    cluster.submit(PIPELINE, workflow, {"hyperparameters": SMALL, "promote": "false"},
                   until="train")
    return run_dir


def check_logged_exports(mlflow_server: str, run_dir: Path, tmp: Path) -> None:  # noqa: F811
    from google.protobuf import text_format
    from mlflow.tracking import MlflowClient

    from mlc.runtime.serve.loader import load_folder

    from .test_exports import ModelConfig, check_batching, names_and_dims

    url = f"http://{mlflow_server}"
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    run_id = json.loads((run_dir / sc.TRAIN_FILE).read_text())["mlflow_run_id"]
    assert client.get_run(run_id).data.tags[sc.EXPORTS_TAG] == "onnx,triton"
    local = Path(client.download_artifacts(run_id, sc.EXPORTS_ARTIFACT_DIR, str(tmp / "dl")))
    assert sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file()) == [
        "onnx/model.onnx", f"triton/{MODEL}/1/model.onnx", f"triton/{MODEL}/config.pbtxt"]
    config = text_format.Parse((local / f"triton/{MODEL}/config.pbtxt").read_text(),
                               ModelConfig())
    assert names_and_dims(config, "input")[0][0] == "features"
    check_batching(config)  # the example's batching is mlc's default: 32, 5ms, 256
    folder = run_dir / sc.MODEL_DIR
    model = load_folder(folder, name=MODEL, version="1", alias=None, trained_at=None)
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(64, len(model.features))) * 3
    rows[::5, 0] = np.nan
    session = ort.InferenceSession(str(local / f"triton/{MODEL}/1/model.onnx"))
    got = session.run(None, {"features": rows.astype(np.float32)})[0][:, 0]
    want = model.predict(rows.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_the_train_step_as_emitted_logs_the_triton_exports(tmp_path, mlflow_server):  # noqa: F811
    folder = project(tmp_path, registry="fraud-exports")  # engine mlc: set in the IR
    tree = emitted_tree(folder, tmp_path / "deploy")
    run_dir = run_train(tmp_path, mlflow_server, tree)
    check_logged_exports(mlflow_server, run_dir, tmp_path)


def test_compiled_triton_project(tmp_path, mlflow_server):  # noqa: F811
    folder = project(tmp_path, triton_engine, registry="fraud-exports-compiled")
    done = subprocess.run([sys.executable, "-m", "mlc", "compile", "-C", str(folder), "--out",
                           str(tmp_path / "deploy"), "--env", ENV], capture_output=True,
                          text=True, timeout=300, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    run_dir = run_train(tmp_path, mlflow_server, tmp_path / "deploy" / ENV)
    check_logged_exports(mlflow_server, run_dir, tmp_path)
