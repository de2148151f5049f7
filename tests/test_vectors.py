"""Vector stores: a feature view's embeddings written to Milvus by the materialisation
pipeline (docs/vector-stores.md).

- The compiled WorkflowTemplate passes the Argo CRD schema; its vectors task runs after
  `materialize` and reads the store's token by secretKeyRef only.
- The vectors task runs as the process its container declares (tests/cluster_pods.py)
  against a milvus-lite file: the collection has the declared schema and index, a search for
  a stored vector answers its own key first, a rerun upserts without duplicates, a newer row
  replaces an older one, and a vector of the wrong length fails the step with its key.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import compile_project

from . import schema_check
from .cluster_pods import Cluster, Image, mlc_compile, read_tree
from .conftest import write_project

ML_YAML = """\
apiVersion: mlc.dev/v1
kind: Project
metadata:
  name: shop
platform:
  imagePolicy: tag
  development: true
secrets:
  milvus-token: {kubernetes: {name: milvus-auth, key: token}}
sources:
  items:
    type: file
    path: data/items.parquet
    timestampField: event_timestamp
entities:
  item: {joinKey: item_id}
vectorStores:
  catalog:
    uri: vectors/catalog.db
    tokenSecret: milvus-token
features:
  item_embeddings:
    entities: [item]
    source: items
    online: false
    fields:
      - {name: category, type: string}
      - {name: price, type: float64}
    vectorStore:
      store: catalog
      collection: items
      vectorField: embedding
      dimension: 4
      metric: COSINE
      index: {type: HNSW, params: {M: 8, efConstruction: 64}}
      scalarFields: [category, price]
      batchSize: 3
"""

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _vector(i: int) -> list[float]:
    # distinct directions, so that under COSINE each vector is nearest to itself
    return [1.0 + i, (i % 3) - 1.0, 0.5 * (i % 2), -0.25 * i]


def write_items(folder, rows) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table({
        "item_id": pa.array([r[0] for r in rows], pa.int64()),
        "event_timestamp": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
        "category": pa.array([r[2] for r in rows], pa.string()),
        "price": pa.array([r[3] for r in rows], pa.float64()),
        "embedding": pa.array([r[4] for r in rows], pa.list_(pa.float32())),
    })
    pq.write_table(table, folder / "items.parquet")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = write_project(tmp_path_factory.mktemp("project"), {"ml.yaml": ML_YAML})
    return read_tree(mlc_compile(root, "default", tmp_path_factory.mktemp("deploy")))


def _template(tree) -> dict:
    (wt,) = [d for d in tree if d.get("kind") == "WorkflowTemplate"]
    return wt


def test_workflow_template_passes_its_crd_and_orders_the_vectors_task(tree):
    schema_check.require_schemas()
    wt = _template(tree)
    assert schema_check.check_crd(wt, "argo-workflows/argoproj.io_workflowtemplates.yaml") == []
    tasks = {t["name"]: t for t in next(t for t in wt["spec"]["templates"]
                                        if "dag" in t)["dag"]["tasks"]}
    assert tasks["vectors-item-embeddings"]["dependencies"] == ["materialize"]
    (container,) = [t["container"] for t in wt["spec"]["templates"]
                    if t["name"] == "vectors-item-embeddings"]
    token = [e for e in container["env"] if e["name"] == "MLC_VECTOR_STORE_TOKEN"]
    assert token == [{"name": "MLC_VECTOR_STORE_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": "milvus-auth", "key": "token"}}}]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_objects_pass_kubernetes_validate(tree):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    version = kubernetes_validate.latest_version()
    plain = [o for o in tree if o.get("apiVersion") and not any(
        group in o["apiVersion"] for group in ("argoproj.io", "kustomize.config.k8s.io"))]
    assert {"NetworkPolicy", "ConfigMap"} <= {o["kind"] for o in plain}
    for obj in plain:
        kubernetes_validate.validate(obj, version, strict=True)


def _run_vectors_task(cluster: Cluster, wt: dict, workflow: str):
    templates = {t["name"]: t for t in wt["spec"]["templates"]}
    volumes = {v["name"]: v for v in wt["spec"].get("volumes", [])}
    for claim in wt["spec"].get("volumeClaimTemplates", []):
        name = claim["metadata"]["name"]
        volumes[name] = {"name": name,
                         "persistentVolumeClaim": {"claimName": f"{workflow}-{name}"}}
    context = {"workflow.name": workflow, "workflow.namespace": cluster.namespace}
    return cluster.run_pod(templates["vectors-item-embeddings"]["container"], volumes,
                           f"{workflow}-vectors", context, name="vectors-item-embeddings")


@pytest.mark.slow
def test_vectors_task_writes_searchable_embeddings_idempotently(tree, tmp_path):
    from pymilvus import MilvusClient

    wt = _template(tree)
    image = next(t["container"]["image"] for t in wt["spec"]["templates"] if "container" in t)
    workdir = tmp_path / "image"
    workdir.mkdir()
    cluster = Cluster(tree, tmp_path / "cluster", images={image: Image(workdir)},
                      namespace=wt["metadata"]["namespace"],
                      secrets={("milvus-auth", "token"): ""})
    run_dir = cluster.claim("wf-1-run")
    # item 0 appears twice: the later row (category `new`) is the one stored
    rows = [(i, T0 + dt.timedelta(minutes=i), f"c{i % 2}", 1.5 * i, _vector(i))
            for i in range(7)]
    rows.insert(0, (0, T0 + dt.timedelta(hours=1), "new", 9.0, _vector(0)))
    rows.append((0, T0 - dt.timedelta(hours=1), "old", 0.0, [0.0, 0.0, 1.0, 0.0]))
    write_items(run_dir / "data", rows)

    first = _run_vectors_task(cluster, wt, "wf-1")
    assert first.returncode == 0, first.log
    second = _run_vectors_task(cluster, wt, "wf-1")
    assert second.returncode == 0, second.log
    summary = json.loads((run_dir / "summary" / "vectors-item-embeddings.json").read_text())
    assert summary["facts"] == [{"kind": "vectors", "view": "item_embeddings",
                                 "collection": "items", "upserted": 7, "stored": 7,
                                 "created": False}]

    client = MilvusClient(str(run_dir / "vectors" / "catalog.db"))
    try:
        fields = {f["name"]: f for f in client.describe_collection("items")["fields"]}
        assert fields["item_id"]["is_primary"] and fields["item_id"]["type"].name == "INT64"
        assert fields["embedding"]["type"].name == "FLOAT_VECTOR"
        assert int(fields["embedding"]["params"]["dim"]) == 4
        assert fields["category"]["type"].name == "VARCHAR"
        assert fields["price"]["type"].name == "DOUBLE"
        index = client.describe_index("items", "embedding")
        assert (index["index_type"], index["metric_type"]) == ("HNSW", "COSINE")
        # milvus-lite does not report an index's build parameters back; their values are
        # checked at compile time (the vector-index cases of tests/bad_inputs.py)
        client.load_collection("items")
        count = client.query("items", filter="", output_fields=["count(*)"])
        assert count[0]["count(*)"] == 7  # two runs, a duplicated key: no duplicates
        for i in (0, 3, 6):
            (hits,) = client.search("items", data=[_vector(i)], limit=3,
                                    output_fields=["category"])
            assert hits[0]["item_id"] == i
        (latest,) = client.get("items", ids=[0], output_fields=["category", "price"])
        assert (latest["category"], latest["price"]) == ("new", 9.0)
    finally:
        client.close()

    write_items(run_dir / "data", [(9, T0, "c1", 1.0, [1.0, 2.0, 3.0])])
    wrong = _run_vectors_task(cluster, wt, "wf-1")
    assert wrong.returncode == 10, wrong.log
    assert "`embedding` of item_id = 9 in `items` has 3 values, but `dimension` is 4" \
        in wrong.log


def test_the_materialisation_pipeline_holds_one_vectors_step_per_view(tmp_path):
    root = write_project(tmp_path, {"ml.yaml": ML_YAML})
    diags = Diagnostics()
    (env,) = compile_project(root, None, diags)
    write = env.project.vector_writes["item_embeddings"]
    assert (write.collection, write.primary_key, write.primary_key_type, write.dimension,
            write.index_type, write.index_params) == ("items", "item_id", "int64", 4, "HNSW",
                                                      {"M": 8, "efConstruction": 64})
    assert [f.name for f in write.scalar_fields] == ["category", "price"]
    (pipeline,) = env.project.pipelines.values()
    assert [(s.name, s.kind, s.depends) for s in pipeline.steps] == [
        ("feature-apply", "feature_apply", []), ("materialize", "materialize", ["feature-apply"]),
        ("vectors-item-embeddings", "write_vectors", ["materialize"])]


def test_steps_may_reach_a_remote_milvus_and_nothing_more(tmp_path):
    text = ML_YAML.replace("uri: vectors/catalog.db", "uri: https://milvus.vectors.svc:19530")
    text = text.replace("  development: true\n", "  development: true\n  network: {}\n")
    (env,) = compile_project(write_project(tmp_path, {"ml.yaml": text}), None, Diagnostics())
    assert env.project.vector_writes["item_embeddings"].store.host == "milvus.vectors.svc"
    import yaml

    (steps,) = [doc for path, data in env.files.items() if path.startswith("network/")
                for doc in yaml.safe_load_all(data)
                if doc and doc["metadata"]["name"] == "workflow-steps"]
    milvus = [r for r in steps["spec"]["egress"] if r["ports"] == [{"port": 19530,
                                                                     "protocol": "TCP"}]]
    assert milvus == [{"to": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "vectors"}}}], "ports": [{"port": 19530,
                                                                  "protocol": "TCP"}]}]


@pytest.mark.slow
def test_mlc_run_writes_the_embeddings_after_materialising(tmp_path):
    """`mlc run` runs the same materialisation pipeline on this machine: feast apply,
    materialise, then the vectors step into the milvus-lite file beside ml.yaml."""
    import os
    import subprocess
    import sys

    from pymilvus import MilvusClient

    from .cluster_pods import ROOT

    root = write_project(tmp_path / "project", {"ml.yaml": ML_YAML})
    write_items(root / "data", [(i, T0, f"c{i % 2}", 1.0 * i, _vector(i)) for i in range(5)])
    done = subprocess.run([sys.executable, "-m", "mlc", "run", "-C", str(root), "--env",
                           "default"], capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT),
                               "MLC_VECTOR_STORE_TOKEN": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 vectors of item_embeddings upserted into items (5 stored, created it)" \
        in done.stdout
    client = MilvusClient(str(root / "vectors" / "catalog.db"))
    try:
        client.load_collection("items")
        (hits,) = client.search("items", data=[_vector(2)], limit=1)
        assert hits[0]["item_id"] == 2
    finally:
        client.close()


def test_a_collection_made_otherwise_is_reported_not_dropped(tmp_path):
    """An existing collection with another dimension fails the step, and keeps its rows."""
    from pymilvus import DataType, MilvusClient

    from mlc.runtime.step import StepFailed, build_context, run_step

    root = write_project(tmp_path, {"ml.yaml": ML_YAML})
    write_items(root / "data", [(1, T0, "c1", 1.0, _vector(1))])
    (root / "vectors").mkdir()
    client = MilvusClient(str(root / "vectors" / "catalog.db"))
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("item_id", DataType.INT64, is_primary=True)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=8)
    client.create_collection("items", schema=schema)
    client.insert("items", [{"item_id": 5, "embedding": [0.5] * 8}])
    client.close()

    (env,) = compile_project(root, None, Diagnostics())
    ctx = build_context(env.project, "materialize", "vectors-item-embeddings", environ={
        "MLC_DATA_ROOT": str(root), "MLC_RUN_DIR": str(tmp_path / "run")})
    with pytest.raises(StepFailed, match=r"collection items exists with another schema: "
                       r"field `embedding`: it has dimension 8, not 4; drop or rename"):
        run_step(ctx)
    client = MilvusClient(str(root / "vectors" / "catalog.db"))
    try:
        assert [r["item_id"] for r in client.query("items", filter="item_id >= 0")] == [5]
    finally:
        client.close()


def test_validate_of_a_vector_project_imports_no_milvus(tmp_path):
    import subprocess
    import sys

    from .test_import_boundary import HEAVY

    root = write_project(tmp_path, {"ml.yaml": ML_YAML})
    code = ("import sys, json\nfrom mlc.cli import main\n"
            "rc = main(['validate', '-C', sys.argv[1]])\nprint(json.dumps(sorted(sys.modules)))\n")
    done = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    modules = json.loads(done.stdout.strip().splitlines()[-1])
    assert "mlc.compiler.resolve.vectors" in modules
    assert [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)] == []
