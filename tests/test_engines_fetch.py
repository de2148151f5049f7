"""The engines' model fetch on the cluster path: the example project with a Triton, a
TorchServe and an MLServer endpoint is compiled by the CLI, its training pipeline runs as
local processes against a real `mlflow server` (SQLite store, tests/test_cluster_path.py)
with the bundled trainer and registers and promotes the model; then each
InferenceService's init container runs as the process it declares (command, args, env,
mounts: tests/cluster_pods.py), and the files it writes into the predictor's
`/mnt/models` are read by what the engine would read them with: onnxruntime for the
Triton repository (against mlc's own loader), the .mar's manifest and TorchServe's
config.properties, and MLflow's pyfunc loader for MLServer's MLflow model. Where the
MLServer environment exists (`.venv-mlserver`), a real MLServer serves the fetched model.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mlc import step_contract as sc

from .cluster_pods import Image
from .test_cluster_path import (  # noqa: F401  (mlflow_server: a fixture of that module)
    mlflow_server,
    run_training,
)
from .test_engines import engines_patch

pytestmark = pytest.mark.slow
ort = pytest.importorskip("onnxruntime",
                          reason="onnxruntime is not installed (the `export` extra)")

MODEL = "fraud-classifier"
SERVE_IMAGE = "ghcr.io/mlc-dev/mlc-serve:0.1.0"  # environments/dev.yaml
MLSERVER_VENV = Path(os.environ.get("MLC_MLSERVER_VENV",
                                    Path(__file__).resolve().parents[1] / ".venv-mlserver"))


def only_engines(values) -> None:
    engines_patch(values)
    del values["serving"]["fraud-custom"]  # it fetches nothing: its server reads MLflow


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mlflow_server):  # noqa: F811
    tmp = tmp_path_factory.mktemp("engines-fetch")
    cluster, run_dir, _ = run_training(tmp, mlflow_server, only_engines,
                                       registry="fraud-engines")
    workdir = tmp / "image-serve"
    workdir.mkdir()
    workdir.chmod(0o555)
    cluster.images[SERVE_IMAGE] = Image(workdir)
    return cluster, run_dir


def fetched(trained, name: str) -> tuple[Path, str]:
    """Run endpoint `name`'s init container as declared; (its /mnt/models, its log)."""
    cluster, _ = trained
    isvc = next(d for d in cluster.tree if d.get("kind") == "InferenceService"
                and d["metadata"]["name"] == name)
    predictor = isvc["spec"]["predictor"]
    (container,) = predictor["initContainers"]
    volumes = {v["name"]: v for v in predictor["volumes"]}
    pod = f"{name}-predictor-0"
    argv, env, cwd = cluster.pod_process(container, volumes, pod, {})
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["layout"] == container["args"][container["args"].index("--layout") + 1]
    return cluster.work / "pods" / pod / "fs" / "mnt" / "models", done.stdout


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_triton_repository(trained):
    from google.protobuf import text_format

    from mlc.runtime.serve.loader import load_folder

    from .test_exports import ModelConfig

    dest, _ = fetched(trained, "fraud-triton")
    assert files(dest) == [f"{MODEL}/1/model.onnx", f"{MODEL}/config.pbtxt"]
    config = text_format.Parse((dest / MODEL / "config.pbtxt").read_text(), ModelConfig())
    assert config.name == MODEL
    _, run_dir = trained
    model = load_folder(run_dir / sc.MODEL_DIR, name=MODEL, version="1", alias=None,
                        trained_at=None)
    rows = np.random.default_rng(1).normal(size=(32, len(model.features))) * 3
    session = ort.InferenceSession(str(dest / MODEL / "1" / "model.onnx"))
    got = session.run(None, {"features": rows.astype(np.float32)})[0][:, 0]
    want = model.predict(rows.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_torchserve_store_and_config(trained):
    dest, _ = fetched(trained, "fraud-ts")
    assert files(dest) == ["config/config.properties", f"model-store/{MODEL}.mar"]
    with zipfile.ZipFile(dest / "model-store" / f"{MODEL}.mar") as mar:
        manifest = json.loads(mar.read("MAR-INF/MANIFEST.json"))
    assert manifest["model"]["modelName"] == MODEL
    props = dict(line.split("=", 1) for line in
                 (dest / "config" / "config.properties").read_text().splitlines())
    assert props["metrics_mode"] == "prometheus"  # what the engine's rules read
    assert props["model_store"] == "/mnt/models/model-store"
    snapshot = json.loads(props["model_snapshot"])["models"][MODEL]["1.0"]
    assert (snapshot["marName"], snapshot["batchSize"], snapshot["maxBatchDelay"]) == (
        f"{MODEL}.mar", 8, 20)  # the endpoint's batching
    assert props["job_queue_size"] == "256"


def test_mlserver_mlflow_model(trained):
    import mlflow.pyfunc
    from mlflow.models import Model

    dest, _ = fetched(trained, "fraud-ms")
    assert (dest / "MLmodel").is_file()
    example = Model.load(str(dest)).load_input_example(str(dest))
    out = mlflow.pyfunc.load_model(str(dest)).predict(example)
    assert len(out) == len(example)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_real_mlserver_serves_the_fetched_model(trained, tmp_path):
    mlserver = MLSERVER_VENV / "bin" / "mlserver"
    if not mlserver.exists():
        pytest.skip(f"no MLServer environment at {MLSERVER_VENV} (`make mlserver-venv` "
                    "makes it, `make test` too; MLC_MLSERVER_VENV names another)")
    import httpx
    from mlflow.models import Model

    dest, _ = fetched(trained, "fraud-ms")
    http, grpc, metrics = _free_port(), _free_port(), _free_port()
    settings = tmp_path / "models" / MODEL
    settings.mkdir(parents=True)
    # what kserve-mlserver sets: the model's folder and name, the MLflow implementation
    (settings / "model-settings.json").write_text(json.dumps({
        "name": MODEL, "implementation": "mlserver_mlflow.MLflowRuntime",
        "parameters": {"uri": str(dest)}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLSERVER_", "PYTHON"))}
    env |= {"MLSERVER_HTTP_PORT": str(http), "MLSERVER_GRPC_PORT": str(grpc),
            "MLSERVER_METRICS_PORT": str(metrics), "MLSERVER_MODEL_MAX_BATCH_SIZE": "16",
            "MLSERVER_MODEL_MAX_BATCH_TIME": "0.005", "MLSERVER_HOST": "127.0.0.1",
            # the model in the server's process: MLServer 1.7.1's worker processes call
            # asyncio.get_event_loop() at start, which the uvloop this environment resolves
            # refuses (tests/test_engine_metrics.py runs it the same way)
            "MLSERVER_PARALLEL_WORKERS": "0"}
    server = subprocess.Popen([str(mlserver), "start", str(tmp_path / "models")], env=env,
                              stdout=open(tmp_path / "mlserver.log", "w"),
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{http}"
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/v2/models/{MODEL}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail("MLServer did not load the model:\n"
                            + (tmp_path / "mlserver.log").read_text()[-4000:])
            time.sleep(1)
        example = Model.load(str(dest)).load_input_example(str(dest))
        inputs = [{"name": c, "datatype": "FP64" if example[c].dtype.kind == "f" else "INT64",
                   "shape": [len(example)], "data": example[c].tolist()}
                  for c in example.columns]
        answer = httpx.post(f"{url}/v2/models/{MODEL}/infer", json={
            "inputs": inputs, "parameters": {"content_type": "pd"}}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"][0]["shape"][0] == len(example)
        scraped = httpx.get(f"http://127.0.0.1:{metrics}/metrics", timeout=5).text
        assert "rest_server_requests" in scraped  # the series the engine's rules read
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
