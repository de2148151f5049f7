"""Vector stores: a batch endpoint's model outputs written to Milvus by its scoring pipeline
(docs/vector-stores.md, "A model's output").

- The compiled WorkflowTemplate passes the Argo CRD schema: `vectors` runs after `score`, in
  the training image, and reads the store's token by secretKeyRef only.
- Both tasks run as the processes their containers declare (tests/cluster_pods.py) against a
  real MLflow file store holding a real embedding model (a fitted scikit-learn PCA, served
  by a pyfunc whose `predict` is its `transform`) and a milvus-lite file: the collection
  holds one vector per scored row with the declared schema and index, a search with a
  stored vector answers its own key first, a rerun adds no duplicates, and a model version
  answering another dimension stops the score step before anything is written.
- `mlc validate` refuses, located, what the compiler can know (tests/bad_inputs.py holds the
  snapshot cases); it imports no pymilvus.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from mlc.compiler.diagnostics import CompileFailed, Diagnostics
from mlc.compiler.pipeline import compile_project

from . import schema_check, servers
from .cluster_pods import Cluster, Image, mlc_compile, read_tree
from .conftest import write_project

MODEL = "doc-encoder"
FEATURES = [f"f{i}" for i in range(6)]
ROWS = 12

ML_YAML = """\
apiVersion: mlc.dev/v1
kind: Project
metadata:
  name: docs
platform:
  imagePolicy: tag
  development: true
  mlflow: {{trackingUri: "{tracking}"}}
secrets:
  milvus-token: {{kubernetes: {{name: milvus-auth, key: token}}}}
sources:
  documents:
    type: file
    path: data/documents.parquet
    timestampField: event_timestamp
    columns:
      - {{name: doc_id, type: int64}}
      - {{name: topic, type: string}}
{columns}
entities:
  document: {{joinKey: doc_id}}
features:
  text_stats:
    entities: [document]
    source: documents
    online: false
    fields:
{fields}
vectorStores:
  search:
    uri: vectors/search.db
    tokenSecret: milvus-token
models:
  doc-encoder:
    task: regression
    framework: sklearn
    inputs: {{features: [text_stats]}}
    label: {{source: documents, column: f0}}
serving:
  doc-embeddings:
    model: doc-encoder
    mode: batch
    allowPickle: true
    batch:
      schedule: "0 3 * * *"
      input: documents
      output: scores/dt={{date}}/
      vectorStore:
        store: search
        collection: documents
        vectorField: embedding
        dimension: 3
        metric: COSINE
        index: {{type: HNSW, params: {{M: 8, efConstruction: 64}}}}
        scalarFields: [topic]
        batchSize: 5
"""


def ml_yaml(tracking: str = "file:///tmp/mlruns") -> str:
    return ML_YAML.format(
        tracking=tracking,
        columns="\n".join(f"      - {{name: {f}, type: float64}}" for f in FEATURES),
        fields="\n".join(f"      - {{name: {f}, type: float64}}" for f in FEATURES))


def _frame():
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)
    values = rng.normal(size=(ROWS, len(FEATURES)))
    frame = pd.DataFrame(values, columns=FEATURES)
    frame.insert(0, "doc_id", np.arange(100, 100 + ROWS, dtype=np.int64))
    frame.insert(1, "topic", [f"t{i % 3}" for i in range(ROWS)])
    frame["event_timestamp"] = pd.Timestamp("2026-01-01", tz="UTC")
    return frame


ENCODER = """\
import joblib
import mlflow


class Encoder(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        self.pca = joblib.load(context.artifacts["pca"])

    def predict(self, context, model_input, params=None):
        return self.pca.transform(model_input)


mlflow.models.set_model(Encoder())
"""


def _register(tracking: str, frame, components: int, folder) -> str:
    """A fitted PCA as a new version of the model: a pyfunc (from code) answering its
    `transform`, one embedding per row."""
    import joblib
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.decomposition import PCA

    inputs = frame[FEATURES]
    pca = PCA(n_components=components, random_state=0).fit(inputs)
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(pca, folder / "pca.joblib")
    (folder / "encoder.py").write_text(ENCODER, "utf-8")
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(tracking)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(folder / "encoder.py"),
            artifacts={"pca": str(folder / "pca.joblib")}, pip_requirements=["scikit-learn"],
            signature=infer_signature(inputs, pca.transform(inputs)))
    version = str(mlflow.register_model(info.model_uri, MODEL).version)
    mlflow.MlflowClient(tracking).set_registered_model_alias(MODEL, "champion", version)
    return version


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    # a folder the file store creates: it makes the default experiment in a new root only
    tracking = (tmp_path_factory.mktemp("mlflow") / "mlruns").as_uri()
    root = write_project(tmp_path_factory.mktemp("project"), {"ml.yaml": ml_yaml(tracking)})
    return tracking, read_tree(mlc_compile(root, "default", tmp_path_factory.mktemp("deploy")))


def _template(tree) -> dict:
    (wt,) = [d for d in tree if d.get("kind") == "WorkflowTemplate"]
    return wt


def test_the_scoring_template_passes_its_crd_and_runs_vectors_after_score(tree):
    schema_check.require_schemas()
    wt = _template(tree[1])
    assert schema_check.check_crd(wt, "argo-workflows/argoproj.io_workflowtemplates.yaml") == []
    tasks = {t["name"]: t for t in next(t for t in wt["spec"]["templates"]
                                        if "dag" in t)["dag"]["tasks"]}
    assert tasks["vectors"]["dependencies"] == ["score"]
    containers = {t["name"]: t["container"] for t in wt["spec"]["templates"] if "container" in t}
    assert "mlc-train" in containers["vectors"]["image"]  # the image with mlc[vectors]
    token = [e for e in containers["vectors"]["env"] if e["name"] == "MLC_VECTOR_STORE_TOKEN"]
    assert token == [{"name": "MLC_VECTOR_STORE_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": "milvus-auth", "key": "token"}}}]
    assert not [e for e in containers["score"]["env"] if e["name"] == "MLC_VECTOR_STORE_TOKEN"]
    assert containers["vectors"]["securityContext"]["readOnlyRootFilesystem"] is True


@pytest.mark.slow
def test_the_scored_embeddings_land_in_milvus_once_per_row(tree, tmp_path, monkeypatch):
    """About 75 s on two shared cores: MLflow logs two models, five step processes start."""
    from pymilvus import MilvusClient

    tracking, docs = tree
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    frame = _frame()
    _register(tracking, frame, 3, tmp_path / "v1")
    wt = _template(docs)
    images = {t["container"]["image"] for t in wt["spec"]["templates"] if "container" in t}
    workdir = tmp_path / "image"
    workdir.mkdir()
    # the serving image's operator opted in to pyfunc models (loader.py: they unpickle code);
    # the file store stands in for the MLflow server
    env = {"MLFLOW_ALLOW_FILE_STORE": "true"}  # the model's pyfunc: ml.yaml's allowPickle
    (score,) = [t["container"] for t in wt["spec"]["templates"] if t["name"] == "score"]
    pushgateway = next(e["value"] for e in score["env"] if e["name"] == "MLC_PUSHGATEWAY_URL")
    with servers.pushgateway(tmp_path / "pushgateway") as local:
        cluster = Cluster(docs, tmp_path / "cluster",
                          images={i: Image(workdir, env) for i in images},
                          namespace=wt["metadata"]["namespace"],
                          hosts={pushgateway.split("//", 1)[1]: local.split("//", 1)[1]},
                          secrets={("milvus-auth", "token"): ""})
        run_dir = cluster.claim("wf-1-run")
        (run_dir / "data").mkdir()
        frame.to_parquet(run_dir / "data" / "documents.parquet", index=False)
        name = wt["metadata"]["name"]
        for _ in range(2):  # a rerun (Argo's retry, a second submission) adds no duplicates
            ran = cluster.submit(name, "wf-1", {"date": "2026-01-02"})
            assert [t.name for t in ran] == ["score", "vectors"]
        summary = json.loads((run_dir / "summary" / "vectors.json").read_text())
        assert summary["facts"] == [{"kind": "vectors", "endpoint": "doc-embeddings",
                                     "collection": "documents", "upserted": ROWS,
                                     "stored": ROWS, "created": False}]
        import pandas as pd

        published = pd.read_parquet(run_dir / "scores" / "dt=2026-01-02")
        assert len(published) == ROWS and "embedding" in published.columns
        assert {len(v) for v in published["embedding"]} == {3}

        client = MilvusClient(str(run_dir / "vectors" / "search.db"))
        try:
            fields = {f["name"]: f for f in client.describe_collection("documents")["fields"]}
            assert fields["doc_id"]["is_primary"] and fields["doc_id"]["type"].name == "INT64"
            assert fields["embedding"]["type"].name == "FLOAT_VECTOR"
            assert int(fields["embedding"]["params"]["dim"]) == 3
            assert fields["topic"]["type"].name == "VARCHAR"
            assert set(fields) == {"doc_id", "embedding", "topic"}
            index = client.describe_index("documents", "embedding")
            assert (index["index_type"], index["metric_type"]) == ("HNSW", "COSINE")
            client.load_collection("documents")
            count = client.query("documents", filter="", output_fields=["count(*)"])
            assert count[0]["count(*)"] == ROWS
            stored = {r["doc_id"]: r for r in client.query(
                "documents", filter="doc_id >= 0", output_fields=["embedding", "topic"])}
            assert sorted(stored) == list(range(100, 100 + ROWS))
            assert stored[104]["topic"] == "t1"
            for key in (100, 105, 111):
                (hits,) = client.search("documents", data=[list(stored[key]["embedding"])],
                                        limit=3)
                assert hits[0]["doc_id"] == key
        finally:
            client.close()

        # a version answering 4 values stops `score` before it publishes or hands over
        _register(tracking, frame, 4, tmp_path / "v2")
        templates = {t["name"]: t for t in wt["spec"]["templates"]}
        volumes = {v["name"]: v for v in wt["spec"].get("volumes", [])}
        volumes["run"] = {"name": "run", "persistentVolumeClaim": {"claimName": "wf-1-run"}}
        wrong = cluster.run_pod(templates["score"]["container"], volumes, "wf-1-score-2",
                                {"workflow.name": "wf-1", "workflow.namespace": "x",
                                 "workflow.parameters.date": "2026-01-03"}, name="score")
    assert wrong.returncode == 10, wrong.log
    assert (f"model {MODEL} version 2 answers vectors of 4 values, but `vectorStore.dimension` "
            "of endpoint `doc-embeddings` is 3") in wrong.log
    assert not (run_dir / "scores" / "dt=2026-01-03").exists()


def test_the_scoring_pipeline_holds_the_vectors_step(tmp_path):
    (env,) = compile_project(write_project(tmp_path, {"ml.yaml": ml_yaml()}), None,
                             Diagnostics())
    write = env.project.vector_writes["serving.doc-embeddings"]
    assert (write.endpoint, write.view, write.collection, write.primary_key,
            write.primary_key_type, write.dimension, write.rows_file) == (
        "doc-embeddings", None, "documents", "doc_id", "int64", 3, "vectors/scored.parquet")
    assert [(f.name, f.type) for f in write.scalar_fields] == [("topic", "string")]
    pipeline = env.project.pipelines["score-doc-embeddings"]
    assert [(s.name, s.kind, s.runtime, s.depends) for s in pipeline.steps] == [
        ("score", "batch_score", "serve", []), ("vectors", "write_vectors", "train", ["score"])]


def test_steps_may_reach_the_remote_milvus(tmp_path):
    text = ml_yaml().replace("uri: vectors/search.db", "uri: https://milvus.vectors.svc:19530")
    text = text.replace("  development: true\n", "  development: true\n  network: {}\n")
    (env,) = compile_project(write_project(tmp_path, {"ml.yaml": text}), None, Diagnostics())
    import yaml

    (steps,) = [doc for path, data in env.files.items() if path.startswith("network/")
                for doc in yaml.safe_load_all(data)
                if doc and doc["metadata"]["name"] == "workflow-steps"]
    assert [r for r in steps["spec"]["egress"] if r["ports"] == [
        {"port": 19530, "protocol": "TCP"}]] == [{"to": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "vectors"}}}], "ports": [{"port": 19530,
                                                                      "protocol": "TCP"}]}]


@pytest.mark.parametrize(("change", "code", "where"), [
    (("task: regression", "task: classification"), "MLC567",
     "serving.doc-embeddings.batch.vectorStore"),
    (("framework: sklearn\n", "framework: torch\n"), "MLC567",
     "serving.doc-embeddings.batch.vectorStore"),
    (("output: scores/dt={date}/", "output: scores/{date}.csv"), "MLC554",
     "serving.doc-embeddings.batch.output"),
    (("scalarFields: [topic]", "scalarFields: [topics]"), "MLC207",
     "serving.doc-embeddings.batch.vectorStore.scalarFields.0"),
    (("vectorField: embedding", "vectorField: topic"), "MLC558",
     "serving.doc-embeddings.batch.vectorStore.vectorField"),
    (("store: search", "store: serch"), "MLC201",
     "serving.doc-embeddings.batch.vectorStore.store"),
    (("vectorField: embedding", "key: f1\n        vectorField: embedding"), "MLC557",
     "serving.doc-embeddings.batch.vectorStore.key"),
])
def test_validate_refuses_what_cannot_be_written(tmp_path, change, code, where):
    root = write_project(tmp_path, {"ml.yaml": ml_yaml().replace(*change)})
    diags = Diagnostics()
    with pytest.raises(CompileFailed):
        compile_project(root, None, diags)
    found = [(d.code, ".".join(str(p) for p in d.path)) for d in diags.errors]
    assert (code, where) in found, found


def test_validate_of_a_scoring_vector_project_imports_no_milvus(tmp_path):
    from .test_import_boundary import HEAVY

    root = write_project(tmp_path, {"ml.yaml": ml_yaml()})
    code = ("import sys, json\nfrom mlc.cli import main\n"
            "rc = main(['validate', '-C', sys.argv[1]])\nprint(json.dumps(sorted(sys.modules)))\n")
    done = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    modules = json.loads(done.stdout.strip().splitlines()[-1])
    assert "mlc.compiler.resolve.vectors" in modules
    assert [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)] == []


@pytest.mark.slow
def test_mlc_run_score_writes_the_embeddings_after_scoring(tmp_path):
    """`mlc run score` runs the same two steps on this machine, against the local registry
    (.mlc/mlflow.db) and the milvus-lite file beside ml.yaml. About 65 s on two shared cores."""
    from pymilvus import MilvusClient

    from .cluster_pods import ROOT

    root = write_project(tmp_path / "project", {"ml.yaml": ml_yaml()})
    frame = _frame()
    (root / "data").mkdir()
    frame.to_parquet(root / "data" / "documents.parquet", index=False)
    (root / ".mlc").mkdir()
    _register(f"sqlite:///{root / '.mlc' / 'mlflow.db'}", frame, 3, tmp_path / "v1")
    done = subprocess.run([sys.executable, "-m", "mlc", "run", "score", "doc-embeddings",
                           "-C", str(root), "--env", "default", "-p", "date=2026-01-02"],
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT),
                               "MLC_VECTOR_STORE_TOKEN": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    assert (f"{ROWS} vectors of doc-embeddings upserted into documents ({ROWS} stored, "
            "created it)") in done.stdout
    client = MilvusClient(str(root / "vectors" / "search.db"))
    try:
        client.load_collection("documents")
        (stored,) = client.get("documents", ids=[107], output_fields=["embedding"])
        (hits,) = client.search("documents", data=[list(stored["embedding"])], limit=1)
        assert hits[0]["doc_id"] == 107
    finally:
        client.close()


@pytest.mark.parametrize(("answer", "message"), [
    ([0.5, 0.25], "answers one number per row, but `vectorStore` of endpoint "
                  "`doc-embeddings` needs a vector of 3 values"),
    ([[0.5, 0.25]] * 2, "answers vectors of 2 values, but `vectorStore.dimension`"),
    ([[0.5, float("nan"), 1.0]], "answered a vector holding a value that is not a finite"),
])
def test_the_score_step_refuses_answers_that_are_not_vectors_of_the_dimension(
        tmp_path, answer, message):
    import numpy as np

    from mlc.runtime.serve.batch import check_vectors
    from mlc.runtime.serve.loader import LoadedModel
    from mlc.runtime.step import StepFailed

    (env,) = compile_project(write_project(tmp_path, {"ml.yaml": ml_yaml()}), None,
                             Diagnostics())
    write = env.project.vector_writes["serving.doc-embeddings"]
    model = LoadedModel(name=MODEL, version="1", alias="champion", trained_at=None,
                        features=FEATURES, task="regression", output_width=1,
                        predict=lambda rows: rows)
    check_vectors(model, write, np.zeros((4, 3)))  # the declared dimension passes
    with pytest.raises(StepFailed, match=re.escape(message)) as failed:
        check_vectors(model, write, np.asarray(answer))
    assert failed.value.exit_code == 10
