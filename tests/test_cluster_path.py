"""The cluster path, proven by running it: the compiled WorkflowTemplates' containers (and a
JobSet's pods) run as local processes, exactly as declared (tests/cluster_pods.py), against
a real `mlflow server`; each training pipeline must complete and register a model.

Four projects: the example (builtin trainer), the example trained by the bundled LightGBM
trainer, the example with a custom trainer (its own
image and WORKDIR, a real scikit-learn model logged as an MLflow sklearn model, a declared
metric gated), and that trainer on two nodes (the JobSet's pod template, both nodes at once).
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from mlc import step_contract as sc

from .cluster_pods import Cluster, Image, mlc_compile, read_tree
from .conftest import ROOT

pytestmark = pytest.mark.slow

ENV = "dev"
PIPELINE = "train-fraud-classifier"
MLFLOW_HOST = "mlflow.mlflow-dev.svc.cluster.local:5000"  # environments/dev.yaml
TRAIN_IMAGE = "ghcr.io/mlc-dev/mlc-train:0.1.0"
CUSTOM_IMAGE = "registry.example.com/fraud/trainer:1.0"
CUSTOM_MODEL = "fraud-custom"  # both custom-trainer tests register this model
SMALL = json.dumps({"epochs": 1, "hidden_layers": [32], "batch_size": 64, "learning_rate": 0.003})

# The user's training code, in the custom image's WORKDIR. It records what it was given,
# trains a real scikit-learn model and logs it as an MLflow sklearn model (not mlc's format).
TRAIN_PY = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path

    rank = os.environ.get("PET_NODE_RANK", "0")
    seen = {k: v for k, v in os.environ.items() if k.startswith(("MLC_", "MLFLOW_", "PET_"))}
    seen["cwd"] = os.getcwd()
    seen["argv"] = sys.argv[1:]
    Path(os.environ["MLC_RUN_DIR"], f"contract-seen-{rank}.json").write_text(json.dumps(seen))
    if rank != "0":
        raise SystemExit(0)

    import mlflow, numpy as np, pandas as pd
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame = pd.read_parquet(os.environ["MLC_TRAIN_DATA"])
    features, label = json.loads(os.environ["MLC_FEATURES"]), os.environ["MLC_LABEL"]
    train = frame[frame["__split__"] == "train"]
    cut = int(len(train) * 0.8)
    fit, held = train.iloc[:cut], train.iloc[cut:]
    max_iter = int(sys.argv[sys.argv.index("--max-iter") + 1])
    model = make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression(max_iter=max_iter))
    model.fit(fit[features], fit[label])
    loss = log_loss(held[label], model.predict_proba(held[features])[:, 1], labels=[0, 1])
    with mlflow.start_run(run_id=os.environ["MLFLOW_RUN_ID"]):
        mlflow.sklearn.log_model(model, name="model", pyfunc_predict_fn="predict_proba",
                                 input_example=fit[features].head(3),
                                 skops_trusted_types=["numpy.dtype"])
    Path(os.environ["MLC_METRICS_FILE"]).write_text(json.dumps({"eval_loss": [[1, loss]]}))
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real tracking server with proxied artifacts, as a cluster's MLflow would be."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
         "--artifacts-destination", (folder / "artifacts").as_uri()],
        stdout=open(folder / "server.log", "w"), stderr=subprocess.STDOUT,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
             "MLFLOW_DISABLE_TELEMETRY": "true", "HOME": str(folder),
             # tracking and the registry only: no job runner (seven huey consumers, each
             # importing MLflow and polling, a fifth of a core while the tests run)
             "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("mlflow server did not start:\n"
                            + (folder / "server.log").read_text()[-3000:])
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def project(tmp: Path, patch=None, registry: str = "fraud-builtin") -> Path:
    """The example project, changed by `patch(values)`, in its own folder. Its checkpoints go
    to a volume instead of S3, which this sandbox cannot reach; `registry` names the
    registered model on the shared server."""
    folder = tmp / "project"
    shutil.copytree(ROOT / "environments", folder / "environments")
    values = YAML(typ="safe").load((ROOT / "ml.yaml").read_text("utf-8"))  # YAML 1.2: 1e-3
    model = values["models"]["fraud-classifier"]
    model["training"]["checkpoint"] = {"volume": "fraud-checkpoints", "path": "fraud",
                                       "everySteps": 200}
    model["registry"]["name"] = registry
    if patch:
        patch(values)
    (folder / "ml.yaml").write_text(json.dumps(values, indent=2), "utf-8")
    return folder


def custom_trainer(nodes: int = 1):
    def patch(values):
        model = values["models"]["fraud-classifier"]
        training = model["training"]
        training.pop("builtin")
        training["custom"] = {
            "image": "trainer", "command": ["python", "train.py"],
            "args": ["--max-iter", "200"], "env": {"TRAINER_FLAVOUR": "sklearn"},
            "metrics": [{"name": "eval_loss", "direction": "minimize"}]}
        values.setdefault("images", {})["custom"] = {"trainer": CUSTOM_IMAGE}
        model["framework"] = "sklearn"
        # an MLflow sklearn model, not mlc's format: its endpoint must allow loading it
        values["serving"]["fraud-api"]["allowPickle"] = True
        model["evaluation"] = {"gates": [{"metric": "roc_auc", "min": 0.6},
                                         {"metric": "eval_loss", "max": 1.0}],
                               "compareWithProduction": {"metric": "eval_loss",
                                                         "maxRegression": 0.5}}
        if nodes > 1:
            training["nodes"] = nodes
            values.setdefault("platform", {})["runVolume"] = {"accessMode": "ReadWriteMany"}
    return patch


def run_training(tmp: Path, mlflow_server: str, patch=None, registry: str = "fraud-builtin",
                 hyperparameters: str = SMALL) -> tuple[Cluster, Path, str]:
    folder = project(tmp, patch, registry)
    tree = mlc_compile(folder, ENV, tmp / "deploy")
    workdir = tmp / "image-mlc"  # mlc's images: WORKDIR /home/mlc, empty and read-only
    workdir.mkdir()
    custom = tmp / "image-trainer"
    custom.mkdir()
    (custom / "train.py").write_text(TRAIN_PY, "utf-8")
    for d in (workdir, custom):
        d.chmod(0o555)
    cluster = Cluster(read_tree(tree), tmp / "cluster",
                      images={TRAIN_IMAGE: Image(workdir), CUSTOM_IMAGE: Image(custom)},
                      hosts={MLFLOW_HOST: mlflow_server}, namespace="fraud-dev")
    workflow = f"{PIPELINE}-{tmp.name[-12:].lower().replace('_', '')}"
    run_dir = cluster.claim(f"{workflow}-run")
    # ml.yaml's file sources are relative: in the cluster they resolve in the run volume
    shutil.copytree(ROOT / "data", run_dir / "data",
                    ignore=shutil.ignore_patterns("*.py", "*.db"))
    cluster.submit(PIPELINE, workflow, {"hyperparameters": hyperparameters, "promote": "true"})
    return cluster, run_dir, workflow


def registered(mlflow_server: str, run_dir: Path):
    from mlflow.tracking import MlflowClient

    # both URIs: another test in this process may have set a global registry URI
    url = f"http://{mlflow_server}"
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    record = json.loads((run_dir / sc.REGISTER_FILE).read_text())
    version = client.get_model_version_by_alias(record["name"], "champion")
    assert version.version == str(record["version"])
    assert json.loads((run_dir / sc.PROMOTE_FILE).read_text())["promoted"] is True
    return client, version


def test_builtin_trainer_pipeline_runs_as_compiled(tmp_path, mlflow_server):
    _, run_dir, workflow = run_training(tmp_path, mlflow_server)
    client, version = registered(mlflow_server, run_dir)
    run = client.get_run(version.run_id)
    assert run.data.tags["mlc.pipeline_run"] == workflow
    assert run.data.tags["mlflow.source.name"] == f"{PIPELINE}/train"
    assert json.loads((run_dir / sc.EVALUATION_FILE).read_text())["model_format"] == "mlc"


def lightgbm_trainer(values):
    model = values["models"]["fraud-classifier"]
    model["framework"] = "lightgbm"
    model["training"].pop("builtin")
    model["training"].pop("checkpoint")  # the LightGBM trainer writes none (MLC329)
    model["training"]["lightgbm"] = {"nEstimators": 200, "numLeaves": 15}


def test_lightgbm_trainer_pipeline_runs_as_compiled(tmp_path, mlflow_server):
    """A bundled trainer other than torch, as the WorkflowTemplate runs it: the train image's
    command, env and mounts; the run's `hyperparameters` parameter overrides ml.yaml's."""
    _, run_dir, workflow = run_training(tmp_path, mlflow_server, lightgbm_trainer,
                                        "fraud-lightgbm", json.dumps({"n_estimators": 15}))
    train = json.loads((run_dir / sc.TRAIN_FILE).read_text())
    assert train["framework"] == "lightgbm" and 1 <= train["steps"] <= 15
    spec = json.loads((run_dir / sc.MODEL_DIR / "spec.json").read_text())
    assert spec["architecture"]["type"] == "lightgbm"
    assert (run_dir / sc.MODEL_DIR / "model.txt").is_file()
    evaluation = json.loads((run_dir / sc.EVALUATION_FILE).read_text())
    assert evaluation["passed"] and evaluation["model_format"] == "mlc"
    client, version = registered(mlflow_server, run_dir)
    run = client.get_run(version.run_id)
    assert run.data.tags["mlc.pipeline_run"] == workflow
    assert run.data.params["n_estimators"] == "15" and run.data.params["num_leaves"] == "15"


def test_custom_trainer_pipeline_runs_as_compiled(tmp_path, mlflow_server):
    _, run_dir, workflow = run_training(tmp_path, mlflow_server, custom_trainer(), CUSTOM_MODEL)
    seen = json.loads((run_dir / "contract-seen-0.json").read_text())
    # the command got every variable of the contract, and ran in its image's WORKDIR
    # (a tabular model's trainer: the variables of a `dataset` model's are not its)
    missing = [n for n in sc.names("runtime") + sc.names("pod", sc.ALL) if n not in seen
               and n != "HOME" and n not in sc.names("runtime", sc.CUSTOM_DATASET)]
    assert missing == []
    assert seen["MLC_STEP"] == "train" and seen["MLC_RUN_ID"] == workflow
    assert seen["MLC_PARAM_HYPERPARAMETERS"] == SMALL
    # the image's WORKDIR, where train.py is (not the run volume)
    assert Path(seen["cwd"]).name == "image-trainer" and seen["argv"] == ["--max-iter", "200"]
    train = json.loads((run_dir / sc.TRAIN_FILE).read_text())
    assert train["model_format"] == "mlflow" and "eval_loss" in train["custom_metrics"]
    evaluation = json.loads((run_dir / sc.EVALUATION_FILE).read_text())
    assert evaluation["model_format"] == "mlflow"
    assert {g["metric"]: g["passed"] for g in evaluation["gates"]} == \
        {"roc_auc": True, "eval_loss": True}
    client, version = registered(mlflow_server, run_dir)
    import mlflow

    mlflow.set_tracking_uri(f"http://{mlflow_server}")
    mlflow.set_registry_uri(f"http://{mlflow_server}")  # another test's may be set
    info = mlflow.models.get_model_info(f"models:/{version.name}/{version.version}")
    assert "sklearn" in info.flavors  # registered as logged, not converted


def test_distributed_custom_trainer_runs_its_jobset_pods(tmp_path, mlflow_server):
    _, run_dir, _ = run_training(tmp_path, mlflow_server, custom_trainer(nodes=2), CUSTOM_MODEL)
    node0 = json.loads((run_dir / "contract-seen-0.json").read_text())
    node1 = json.loads((run_dir / "contract-seen-1.json").read_text())
    assert (node0["PET_NODE_RANK"], node1["PET_NODE_RANK"]) == ("0", "1")
    # parameters reach the JobSet base64-encoded; the command gets them decoded
    assert node0["MLC_PARAM_HYPERPARAMETERS"] == node1["MLC_PARAM_HYPERPARAMETERS"] == SMALL
    assert "MLFLOW_RUN_ID" in node0 and "MLFLOW_RUN_ID" not in node1
    # torchrun's rendezvous: both nodes name node 0's stable host ($(JOBSET_NAME) expanded)
    assert node0["PET_MASTER_ADDR"] == node1["PET_MASTER_ADDR"]
    assert "-node-0-0." in node0["PET_MASTER_ADDR"] and "$(" not in node0["PET_MASTER_ADDR"]
    comparison = json.loads((run_dir / sc.EVALUATION_FILE).read_text())["comparison"]
    assert comparison["passed"]
    client, version = registered(mlflow_server, run_dir)
    if comparison.get("version"):  # the single-node test ran first and holds the alias:
        # its eval_loss, recorded on the version at registration, was the champion's
        before = client.get_model_version(version.name, str(comparison["version"]))
        assert comparison["champion"] == pytest.approx(float(before.tags["metric.eval_loss"]))
