"""`task: ranking` with the real libraries: one generated project with an XGBoost and a
LightGBM ranker over queries of 5-20 candidates whose relevance the features decide, trained
by one `mlc run` (validate-data, train, evaluate, register, promote), NDCG/MAP logged to a
real MLflow store, gated (the project's gate passes; a stricter one fails the evaluation),
registered, and served by the serving runtime's loader, whose scores order the held-out
queries' candidates by relevance. Also: the metrics against a hand-computed example, the
split that never cuts a query, and what validate says about ranking gates."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlc import trainer_catalog
from mlc.compiler import ir
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import check_environment

MODELS = {"ranker-xgb": "xgboost", "ranker-lgb": "lightgbm"}
FEATURES = ["f1", "f2", "f3"]

PROJECT = """\
apiVersion: mlc.dev/v1
kind: Project
metadata:
  name: search
platform:
  imagePolicy: tag
hardware:
  cpu-small:
    cpu: "1"
    memory: 2Gi
sources:
  judgements:
    type: file
    path: data/judgements.parquet
    columns:
      - {name: row_id, type: int64}
      - {name: query_id, type: int64}
      - {name: event_timestamp, type: unix_timestamp}
      - {name: f1, type: float64}
      - {name: f2, type: float64}
      - {name: f3, type: float64}
      - {name: relevance, type: int64}
entities:
  candidate: {joinKey: row_id}
features:
  candidate_stats:
    entities: [candidate]
    source: judgements
    fields:
      - {name: f1, type: float64}
      - {name: f2, type: float64}
      - {name: f3, type: float64}
models:
  ranker-xgb:
    task: ranking
    framework: xgboost
    ranking: {group: query_id, k: [3, 10]}
    inputs: {features: [candidate_stats]}
    label: {source: judgements, column: relevance}
    training:
      hardware: cpu-small
      xgboost: {nEstimators: 40, maxDepth: 4, learningRate: 0.3, earlyStoppingRounds: 10}
    evaluation:
      gates: [{metric: ndcg_at_10, min: 0.6}, {metric: map_at_3, min: 0.3}]
  ranker-lgb:
    task: ranking
    framework: lightgbm
    ranking: {group: query_id, k: [3, 10]}
    inputs: {features: [candidate_stats]}
    label: {source: judgements, column: relevance}
    training:
      hardware: cpu-small
      lightgbm: {nEstimators: 40, numLeaves: 15, learningRate: 0.2, minChildSamples: 5,
                 earlyStoppingRounds: 10}
    evaluation:
      gates: [{metric: ndcg_at_10, min: 0.6}]
serving:
  ranker-api:
    model: ranker-xgb
    hardware: cpu-small
"""


def judgements(seed: int = 0, queries: int = 160) -> pd.DataFrame:
    """Queries of 5-20 candidates; relevance 0-3 from f1 and f2 (f3 is noise), each query at
    its own minute, its rows a second apart."""
    rng = np.random.default_rng(seed)
    frames, row = [], 0
    start = pd.Timestamp("2026-01-01", tz="UTC")
    for q in range(queries):
        n = int(rng.integers(5, 21))
        x = rng.normal(size=(n, 3))
        value = 1.5 * x[:, 0] - x[:, 1] + rng.normal(0, 1.0, n)
        relevance = np.clip(np.round(value + 1), 0, 3).astype(np.int64)
        frames.append(pd.DataFrame({
            "row_id": np.arange(row, row + n, dtype=np.int64),
            "query_id": np.full(n, q, dtype=np.int64),
            "event_timestamp": start + pd.to_timedelta(q * 60 + np.arange(n), unit="s"),
            "f1": x[:, 0], "f2": x[:, 1], "f3": x[:, 2], "relevance": relevance}))
        row += n
    return pd.concat(frames, ignore_index=True)


def write_project(folder: Path, text: str = PROJECT) -> Path:
    (folder / "data").mkdir(parents=True)
    (folder / "ml.yaml").write_text(text, "utf-8")
    judgements().to_parquet(folder / "data" / "judgements.parquet", index=False)
    return folder


def validate_codes(folder: Path) -> dict[str, list]:
    diags = Diagnostics()
    check_environment(folder, "default", diags)
    out: dict[str, list] = {}
    for d in diags.items:
        out.setdefault(d.code, []).append(d)
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The project after one `mlc run -p promote=true` (both rankers)."""
    from mlc.cli import main

    root = write_project(tmp_path_factory.mktemp("ranking") / "project")
    code = main(["run", "-C", str(root), "--env", "default", "-p", "promote=true",
                 *[a for m in sorted(MODELS) for a in ("--model", m)]])
    assert code == 0
    return root


def run_dir(root: Path, model: str) -> Path:
    (found,) = (root / ".mlc" / "runs" / f"train-{model}").iterdir()
    return found


def pairwise_order(scores: np.ndarray, grades: np.ndarray, queries: np.ndarray) -> float:
    """Of the pairs of rows of one query with different grades, the share that the scores
    put in the grades' order."""
    right = total = 0
    for q in np.unique(queries):
        s, g = scores[queries == q], grades[queries == q]
        better = g[:, None] > g[None, :]
        total += int(better.sum())
        right += int((better & (s[:, None] > s[None, :])).sum())
    return right / total


def test_the_metrics_on_a_hand_computed_example():
    """Two queries, cutoffs 2 and 3. Query 1 ranks grades 3, 0, 2: DCG@2 = 3, ideal
    3 + 2/log2(3); AP@2 = (1/1) / 2, AP@3 = (1/1 + 2/3) / 2. Query 2 ranks 0, 1, 0: NDCG@2 =
    (1/log2(3)) / 1, AP@2 = AP@3 = (1/2) / 1. Query 3 (one row) and query 4 (nothing
    relevant) are left out."""
    from mlc.runtime.train.evaluation import ranking_metrics

    grades = np.array([3, 2, 0, 0, 1, 0, 2, 0, 0])
    scores = np.array([.9, .1, .5, .2, .3, .8, .4, .7, .6])
    queries = np.array(["a", "a", "a", "b", "b", "b", "c", "d", "d"])
    got = ranking_metrics(grades, scores, queries, [2, 3])
    ndcg2 = (3 / (3 + 2 / math.log2(3)) + 1 / math.log2(3)) / 2
    ndcg3 = ((3 + 2 / math.log2(4)) / (3 + 2 / math.log2(3)) + 1 / math.log2(3)) / 2
    assert got == pytest.approx({"ndcg_at_2": ndcg2, "ndcg_at_3": ndcg3,
                                 "map_at_2": (0.5 + 0.5) / 2,
                                 "map_at_3": ((1 + 2 / 3) / 2 + 0.5) / 2})
    # a perfect order scores 1; no query left: missing (a gate on it fails)
    assert ranking_metrics(grades, grades.astype(float), queries, [2])["ndcg_at_2"] == 1.0
    assert math.isnan(ranking_metrics(np.array([0, 0]), np.array([1., 2.]),
                                      np.array([1, 1]), [5])["map_at_5"])


def test_the_test_split_takes_the_newest_whole_queries():
    from mlc.runtime.train.data import test_rows

    frame = judgements(queries=30)
    is_test = test_rows(frame, "event_timestamp", int(round(len(frame) * 0.2)), "query_id")
    test_queries = set(frame.query_id[is_test])
    assert not test_queries & set(frame.query_id[~is_test])
    assert test_queries == set(range(min(test_queries), 30))  # the newest ones
    assert 0.2 * len(frame) <= is_test.sum() < 0.2 * len(frame) + 21


def test_gates_on_ranking_metrics_are_checked_against_the_cutoffs(tmp_path):
    """A gate spelled `ndcg@10` gets mlc's spelling as its fix; a classifier's metric or a
    cutoff the model does not declare is unknown, and the message lists the known ones."""
    text = PROJECT.replace("gates: [{metric: ndcg_at_10, min: 0.6}]\n",
                           "gates: [{metric: ndcg@10, min: 0.6}, {metric: roc_auc, min: 0.5},"
                           " {metric: ndcg_at_5, min: 0.5}]\n")
    found = validate_codes(write_project(tmp_path / "p", text))
    assert list(found) == ["MLC230"]
    first, second, third = found["MLC230"]
    assert first.help.startswith("mlc spells it `ndcg_at_10`")
    assert "roc_auc" in second.message and "ndcg_at_5" in third.message
    for name in ("map_at_3", "map_at_10", "ndcg_at_3", "ndcg_at_10"):
        assert name in second.message
    assert set(trainer_catalog.metrics("xgboost", "ranking", [3, 10])) == {
        "map_at_3", "map_at_10", "ndcg_at_3", "ndcg_at_10"}


def test_the_ranking_block_reaches_the_ir(tmp_path):
    diags = Diagnostics()
    project = check_environment(write_project(tmp_path / "p"), "default", diags)
    assert project is not None, [d.message for d in diags.items]
    assert project.models["ranker-xgb"].ranking == ir.Ranking(group="query_id", k=[3, 10],
                                                              objective="rank:ndcg")
    assert project.models["ranker-lgb"].ranking.objective == "lambdarank"
    # not in the JSON of a model that does not rank
    assert "ranking" not in json.loads(project.models["ranker-xgb"].model_copy(
        update={"ranking": None}).model_dump_json())


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(MODELS))
def test_a_ranker_trained_gated_registered_and_served(trained, model, tmp_path):
    from mlflow.tracking import MlflowClient

    from mlc.runtime.serve import loader
    from mlc.runtime.step import EXIT_GATES, StepFailed, build_context, run_step
    from mlc.runtime.train.evaluation import ranking_metrics

    framework = MODELS[model]
    folder = run_dir(trained, model)
    evaluated = json.loads((folder / "evaluation.json").read_text())
    train = json.loads((folder / "train.json").read_text())
    assert evaluated["passed"] and train["framework"] == framework
    metrics = evaluated["metrics"]
    assert set(metrics) == set(trainer_catalog.metrics(framework, "ranking", [3, 10]))
    assert metrics["ndcg_at_10"] > 0.8 and metrics["map_at_3"] > 0.5
    spec = json.loads((folder / "model" / "spec.json").read_text())
    assert spec["task"] == "ranking" and spec["architecture"]["objective"] == {
        "xgboost": "rank:ndcg", "lightgbm": "lambdarank"}[framework]

    # no query on both sides of the train/test split
    dataset = pd.read_parquet(folder / "data" / "dataset.parquet")
    sides = dataset.groupby("query_id")["__split__"].nunique()
    assert (sides == 1).all() and set(dataset["__split__"]) == {"train", "test"}

    tracking = f"sqlite:///{trained / '.mlc' / 'mlflow.db'}"
    client = MlflowClient(tracking)
    run = client.get_run(train["mlflow_run_id"])
    assert run.data.tags["mlc.gates"] == "passed"
    assert run.data.metrics["test_ndcg_at_10"] == pytest.approx(metrics["ndcg_at_10"])
    assert "val_ndcg_at_10" in run.data.metrics
    per_round = client.get_metric_history(run.info.run_id, "val_loss_ndcg_at_10")
    assert len(per_round) >= 2
    version = client.get_model_version_by_alias(model, "champion")
    assert str(version.version) == "1"

    # the serving runtime's loader: one score per row, ordering held-out queries' rows
    served = loader.load(f"models:/{model}@champion", tracking, cache_dir=tmp_path / "cache")
    assert served.task == "ranking" and served.output_width == 1
    test = dataset[dataset["__split__"] == "test"]
    scores = served.predict(test[FEATURES].to_numpy(dtype=np.float64))
    assert scores.shape == (len(test),)
    grades, queries = test["relevance"].to_numpy(), test["query_id"].to_numpy()
    assert pairwise_order(scores, grades, queries) > 0.8
    # the evaluation's NDCG is these scores' (and far from what chance orders get)
    assert ranking_metrics(grades, scores, queries, [10])["ndcg_at_10"] == pytest.approx(
        metrics["ndcg_at_10"])
    # the MLflow pyfunc face (the scoring path of a model loaded by MLflow) answers the same
    import mlflow

    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(tracking)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{model}@champion")
    np.testing.assert_allclose(pyfunc.predict(test[FEATURES].head(20))["prediction"].to_numpy(),
                               scores[:20], rtol=1e-6)
    chance = ranking_metrics(grades, np.random.default_rng(0).random(len(test)), queries,
                             [10])["ndcg_at_10"]
    assert metrics["ndcg_at_10"] > chance + 0.1

    # a gate the model cannot meet fails the evaluation, and nothing more is registered
    from mlc.compiler.pipeline import check_environment as check

    project = check(trained, "default", Diagnostics())
    strict = project.model_copy(update={"models": {**project.models, model: project.models[
        model].model_copy(update={"gates": [ir.Gate(metric="ndcg_at_3", min=0.9999,
                                                      max=None)]})}})
    env = {"MLC_DATA_ROOT": str(trained), "MLC_RUN_DIR": str(folder),
           "MLFLOW_TRACKING_URI": tracking, "MLC_TORCH_THREADS": "1"}
    with pytest.raises(StepFailed) as failed:
        run_step(build_context(strict, f"train-{model}", "evaluate", environ=env))
    assert failed.value.exit_code == EXIT_GATES and "ndcg_at_3" in failed.value.message
    with pytest.raises(StepFailed, match="did not pass"):
        run_step(build_context(strict, f"train-{model}", "register", environ=env))
    assert [str(v.version) for v in client.search_model_versions(f"name='{model}'")] == ["1"]


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(MODELS))
def test_a_ranker_exports_to_triton_as_one_score_per_row(trained, model, tmp_path):
    """Triton's FIL backend gets the ranker's file unchanged, answering one value (the
    score), not classes."""
    from mlc.runtime import export
    from mlc.runtime.export import triton

    folder = run_dir(trained, model) / "model"
    files = export.make_exports(folder, ["triton"], tmp_path / "repo", model_name="ranker",
                                task="ranking", triton_batching=triton.Batching(
                                    max_batch_size=8, max_queue_delay_microseconds=100,
                                    max_queue_size=16))
    config = next(p for p in files if p.name == "config.pbtxt").read_text("utf-8")
    assert 'backend: "fil"' in config
    assert re.search(r'key: "output_class"\s*value \{\s*string_value: "false"', config)
    assert "predict_proba" not in config


@pytest.mark.slow
def test_the_rankers_endpoint_answers_a_score_per_candidate(trained, tmp_path):
    """The serving runtime (`python -m mlc.runtime serve`) of `ranker-api`: a query's
    candidates in, one score per candidate out, the loader's scores; sorting by them puts
    the more relevant candidates first."""
    import os
    import socket
    import subprocess
    import sys
    import time

    import httpx

    from mlc.runtime.serve import loader

    project = check_environment(trained, "default", Diagnostics())
    (tmp_path / "project.json").write_text(project.model_dump_json(), "utf-8")
    tracking = f"sqlite:///{trained / '.mlc' / 'mlflow.db'}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlc.runtime", "serve", "--project", str(tmp_path / "project.json"),
         "--endpoint", "ranker-api", "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking, "MLC_TORCH_THREADS": "1",
             "MLC_PREDICTION_LOG_URI": str(tmp_path / "log")},
        stdout=log, stderr=subprocess.STDOUT)
    dataset = pd.read_parquet(run_dir(trained, "ranker-xgb") / "data" / "dataset.parquet")
    test = dataset[dataset["__split__"] == "test"]
    query = test[test["query_id"] == test["query_id"].max()]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            deadline = time.time() + 90
            while True:
                assert proc.poll() is None, (tmp_path / "server.log").read_text()
                try:
                    if http.get("/v2/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.time() < deadline, (tmp_path / "server.log").read_text()
                time.sleep(0.2)
            answer = http.post("/predict", json={"instances": [
                {f: float(row[f]) for f in FEATURES} for _, row in query.iterrows()]}).json()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
    scores = np.asarray(answer["predictions"], dtype=np.float64)
    assert scores.shape == (len(query),)
    served = loader.load("models:/ranker-xgb@champion", tracking, cache_dir=tmp_path / "c")
    np.testing.assert_allclose(scores, served.predict(query[FEATURES].to_numpy()), rtol=1e-6)
    grades = query["relevance"].to_numpy()
    assert pairwise_order(scores, grades, np.zeros(len(query))) > 0.6
