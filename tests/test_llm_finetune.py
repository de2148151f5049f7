"""examples/llm's fine-tune, run as compiled: the training WorkflowTemplate of a `generative`
model trained on a `dataset`, its JobSet's two pods as local processes (tests/cluster_pods.py),
each the step runtime running `torchrun trainer/finetune.py` with the env the pod declares;
torchrun joins the two nodes (gloo on CPUs) and trains a tiny GPT-2, built here from a config,
on a tiny corpus; global rank 0 logs it with mlflow.transformers into a real MLflow server
(SQLite store); then the evaluate (the trainer's declared metrics), register and promote
steps. And the same under `mlc run`, on one machine, into the project's SQLite store.

The example's serving part is not compiled yet (MLC387, engine `huggingface`): the project
here is the example without `serving`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from mlc import step_contract as sc
from mlc.compiler.backends.argo.distributed import jobset_from_template

from .cluster_pods import JOBSET_SUFFIX, Cluster, Image, mlc_compile, read_tree
from .conftest import ROOT
from .test_cluster_path import MLFLOW_HOST, mlflow_server  # noqa: F401 (the fixture)
from .tiny_llm import write_base_model, write_corpus

pytestmark = pytest.mark.slow

EXAMPLE = ROOT / "examples" / "llm"
PIPELINE = "train-support-assistant"
TRAIN_IMAGE = "ghcr.io/mlc-dev/mlc-train:0.1.0"
FINETUNE_IMAGE = "registry.example.com/support/llm-finetune:1.2.0"


def example_project(tmp: Path, registry: str) -> Path:
    """examples/llm without `serving` (MLC387 until the engine compiles), its gate loosened
    for a model trained three steps, registered as `registry`."""
    folder = tmp / "project"
    shutil.copytree(EXAMPLE / "environments", folder / "environments")
    values = YAML(typ="safe").load((EXAMPLE / "ml.yaml").read_text("utf-8"))
    values.pop("serving")
    model = values["models"]["support-assistant"]
    model["evaluation"]["gates"] = [{"metric": "perplexity", "max": 1e6}]
    model["registry"]["name"] = registry
    (folder / "ml.yaml").write_text(json.dumps(values, indent=2), "utf-8")
    return folder


def test_the_example_fine_tunes_on_two_nodes_and_registers_a_transformers_model(
        tmp_path, mlflow_server):  # noqa: F811
    tree_dir = mlc_compile(example_project(tmp_path, "support-assistant-test"), "dev",
                           tmp_path / "deploy")
    tree = read_tree(tree_dir)
    (template,) = [d for d in tree if d.get("kind") == "WorkflowTemplate"
                   and d["metadata"]["name"] == PIPELINE]
    templates = {t["name"]: t for t in template["spec"]["templates"]}
    # a dataset model's pipeline: no data validation, no materialisation
    dag = templates[template["spec"]["entrypoint"]]["dag"]["tasks"]
    assert [t["name"] for t in dag] == ["train", "evaluate", "register", "promote"]
    jobset = jobset_from_template(templates["train"])
    pod = jobset["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "token"
    assert env["PET_NNODES"]["value"] == "2" and env["PET_NPROC_PER_NODE"]["value"] == "1"
    (shm,) = [v for v in pod["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory"]
    assert shm["emptyDir"]["sizeLimit"] == "1Gi"  # environments/dev.yaml's cpu-node

    base = write_base_model(tmp_path / "base-model")
    mlc_image = tmp_path / "image-mlc"
    mlc_image.mkdir()
    finetune = tmp_path / "image-finetune"  # trainer/Dockerfile's WORKDIR
    (finetune / "trainer").mkdir(parents=True)
    shutil.copy(EXAMPLE / "trainer" / "finetune.py", finetune / "trainer" / "finetune.py")
    for d in (mlc_image, finetune, finetune / "trainer"):
        d.chmod(0o555)
    name = jobset["metadata"]["generateName"] + JOBSET_SUFFIX
    cluster = Cluster(
        tree, tmp_path / "cluster",
        images={TRAIN_IMAGE: Image(mlc_image),
                # no network here: the base model is a local folder, the hub is off
                FINETUNE_IMAGE: Image(finetune, {"HF_HUB_OFFLINE": "1",
                                                 "TRANSFORMERS_OFFLINE": "1"})},
        hosts={MLFLOW_HOST: mlflow_server},
        host_names={f"{name}-node-0-0.{name}": "127.0.0.1"}, namespace="support-ml-dev")
    workflow = f"{PIPELINE}-{tmp_path.name[-12:].lower().replace('_', '')}"
    run_dir = cluster.claim(f"{workflow}-run")
    # the dev overlay's `dataset: {files: data/chats}` resolves in the run volume
    write_corpus(run_dir / "data" / "chats")
    hp = {"base_model": str(base), "max_steps": 3, "block_size": 16, "batch_size": 4}
    ran = cluster.submit(PIPELINE, workflow, {"hyperparameters": json.dumps(hp),
                                              "promote": "true"})
    assert [t.name for t in ran] == ["train", "train", "evaluate", "register", "promote"]
    node0, node1 = ran[0].log, ran[1].log
    assert "node 1: the training command is done" in node1
    assert "custom training of support-assistant done" in node0
    # the secret reached the command as HF_TOKEN (the ExternalSecret's target, by reference)
    assert "with a Hugging Face token; 2 processes" in node0

    train = json.loads((run_dir / sc.TRAIN_FILE).read_text())
    assert train["model_format"] == "mlflow" and train["data_snapshot"] is None
    assert train["dataset"] == "data/chats"
    assert set(train["custom_metrics"]) == {"eval_loss", "perplexity", "train_loss"}
    evaluation = json.loads((run_dir / sc.EVALUATION_FILE).read_text())
    assert evaluation["passed"] and evaluation["test_rows"] == 0
    assert set(evaluation["metrics"]) == {"eval_loss", "perplexity", "train_loss"}
    assert [g["metric"] for g in evaluation["gates"]] == ["perplexity"]
    record = json.loads((run_dir / sc.REGISTER_FILE).read_text())

    import mlflow
    from mlflow.tracking import MlflowClient

    url = f"http://{mlflow_server}"
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    version = client.get_model_version_by_alias(record["name"], "champion")
    assert version.version == str(record["version"])
    run = client.get_run(version.run_id)
    assert run.data.tags["mlc.dataset"] == "data/chats"
    assert run.data.params["dataset_kind"] == "files"
    assert float(version.tags["metric.perplexity"]) == pytest.approx(
        evaluation["metrics"]["perplexity"], rel=1e-4)
    # registered as logged: the transformers flavour, which loads and generates
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    uri = f"models:/{version.name}/{version.version}"
    assert "transformers" in mlflow.models.get_model_info(uri).flavors
    generator = mlflow.transformers.load_model(uri)
    out = generator("the agent", max_new_tokens=3, do_sample=False)
    assert out[0]["generated_text"].startswith("the agent")


def test_the_example_fine_tunes_under_mlc_run(tmp_path):
    """`mlc run` on one machine: the same step runtime and command, the dataset path relative
    to the project folder, MLflow in the project's SQLite store."""
    folder = example_project(tmp_path, "support-assistant")
    shutil.copytree(EXAMPLE / "trainer", folder / "trainer")
    write_corpus(folder / "data" / "chats")
    base = write_base_model(tmp_path / "base-model")
    hp = {"base_model": str(base), "max_steps": 2, "block_size": 16, "batch_size": 2}
    done = subprocess.run(
        [sys.executable, "-m", "mlc", "run", "-C", str(folder), "--env", "dev",
         "-p", f"hyperparameters={json.dumps(hp)}", "-p", "promote=true"],
        capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
             "MLFLOW_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1",
             "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"})
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "registered support-assistant version 1" in done.stdout
    import mlflow

    store = f"sqlite:///{folder / '.mlc' / 'mlflow.db'}"
    client = mlflow.tracking.MlflowClient(tracking_uri=store, registry_uri=store)
    version = client.get_model_version_by_alias("support-assistant", "champion")
    run = client.get_run(version.run_id)
    # a relative dataset resolves in the project folder on one machine
    assert run.data.params["dataset"] == "data/chats"
    assert float(version.tags["metric.perplexity"]) > 1
