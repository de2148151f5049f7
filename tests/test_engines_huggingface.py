"""`engine: huggingface` (KServe's Hugging Face runtime, vLLM backend) on the cluster path.

A custom trainer's model is what vLLM serves: here a tiny GPT-2 with a tokenizer trained on
the spot (no download), logged with `mlflow.transformers.log_model` to a real `mlflow
server` (SQLite store) and registered under the example's model with its production alias.
The example project, with the model trained by a custom command and a Hugging Face endpoint,
is compiled by the CLI; the InferenceService is validated against KServe's CRD, and its init
container runs as the process it declares (tests/cluster_pods.py). What it writes to
`/mnt/models` must be a Hugging Face folder that transformers loads and generates from,
which is what the runtime reads with `--model_dir`.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from . import schema_check
from .cluster_pods import Cluster, Image, mlc_compile, read_tree
from .test_cluster_path import (  # noqa: F401  (mlflow_server: a fixture of that module)
    CUSTOM_IMAGE,
    ENV,
    MLFLOW_HOST,
    custom_trainer,
    mlflow_server,
    project,
)

pytestmark = pytest.mark.slow
transformers = pytest.importorskip("transformers", reason="transformers is not installed")
tokenizers = pytest.importorskip("tokenizers", reason="tokenizers is not installed")

REGISTRY = "fraud-llm"
SERVE_IMAGE = "ghcr.io/mlc-dev/mlc-serve:0.1.0"  # environments/dev.yaml
TRAIN_IMAGE = "ghcr.io/mlc-dev/mlc-train:0.1.0"


def tiny_language_model():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(["fraud is rare", "payments are fine", "the card was declined"]
                            * 20, trainers.BpeTrainer(vocab_size=64,
                                                      special_tokens=["<unk>", "<eos>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>")
    model = GPT2LMHeadModel(GPT2Config(vocab_size=fast.vocab_size, n_positions=32, n_embd=16,
                                       n_layer=1, n_head=2, bos_token_id=1, eos_token_id=1))
    return model, fast


def register(mlflow_server: str) -> None:  # noqa: F811
    import mlflow
    from mlflow.tracking import MlflowClient

    url = f"http://{mlflow_server}"
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    model, tok = tiny_language_model()
    with mlflow.start_run():
        mlflow.transformers.log_model(
            transformers_model={"model": model, "tokenizer": tok}, name="model",
            task="text-generation", registered_model_name=REGISTRY,
            pip_requirements=["transformers", "torch"])
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    (version,) = client.search_model_versions(f"name='{REGISTRY}'")
    client.set_registered_model_alias(REGISTRY, "champion", version.version)


def llm_endpoint(values) -> None:
    custom_trainer()(values)
    values["serving"]["fraud-llm"] = {"model": "fraud-classifier", "engine": "huggingface",
                                      "hardware": "small"}


def test_the_fetch_lays_out_a_hugging_face_folder(tmp_path, mlflow_server):  # noqa: F811
    schema_check.require_schemas()
    register(mlflow_server)
    tree = mlc_compile(project(tmp_path, llm_endpoint, registry=REGISTRY), ENV,
                       tmp_path / "deploy")
    docs = read_tree(tree)
    (isvc,) = [d for d in docs if d.get("kind") == "InferenceService"
               and d["metadata"]["name"] == "fraud-llm"]
    assert schema_check.check_crd(isvc, "kserve/serving.kserve.io_inferenceservices.yaml") == []
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    assert (model["runtime"], model["modelFormat"], model["protocolVersion"]) == (
        "kserve-huggingfaceserver", {"name": "huggingface", "version": "1"}, "v2")
    assert "--backend=vllm" in model["args"] and "--model_dir=/mnt/models" in model["args"]
    (fetch,) = predictor["initContainers"]
    workdir = tmp_path / "image-serve"
    workdir.mkdir()
    workdir.chmod(0o555)
    cluster = Cluster(docs, tmp_path / "cluster",
                      images={SERVE_IMAGE: Image(workdir), TRAIN_IMAGE: Image(workdir),
                              CUSTOM_IMAGE: Image(workdir)},
                      hosts={MLFLOW_HOST: mlflow_server}, namespace="fraud-dev")
    volumes = {v["name"]: v for v in predictor["volumes"]}
    argv, env, cwd = cluster.pod_process(fetch, volumes, "fraud-llm-predictor-0", {})
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["name"] == REGISTRY
    dest = cluster.work / "pods" / "fraud-llm-predictor-0" / "fs" / "mnt" / "models"
    names = {p.name for p in Path(dest).iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names, names
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(dest)
    lm = AutoModelForCausalLM.from_pretrained(dest)
    ids = tok("fraud is", return_tensors="pt").input_ids
    out = lm.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=1)
    assert out.shape[1] > ids.shape[1]  # it generates
