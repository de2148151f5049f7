"""The training runtime: model format, metrics, point-in-time data, the trainer, tracking,
evaluation gates, registration by alias, and custom training, with real torch and MLflow."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mlc.compiler import ir
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import check_environment
from mlc.runtime import model_format
from mlc.runtime.step import EXIT_GATES, StepFailed, build_context, run_step
from mlc.runtime.train import data, evaluation, scoring, trainer

from .conftest import ROOT

PIPELINE = "train-fraud-classifier"
SMALL = json.dumps({"hidden_layers": [32], "epochs": 2, "batch_size": 64, "learning_rate": 0.003})


# small models train fastest on one thread (conftest.one_torch_thread)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def project() -> ir.ResolvedProject:
    resolved = check_environment(ROOT, "dev", Diagnostics())
    assert resolved is not None
    return resolved


def with_model(project: ir.ResolvedProject, **changes) -> ir.ResolvedProject:
    model = project.models["fraud-classifier"]
    training = changes.pop("training", None)
    if training:
        changes["training"] = model.training.model_copy(update=training)
    models = {**project.models, model.name: model.model_copy(update=changes)}
    return project.model_copy(update={"models": models})


def environ(tmp: Path, run: str = "run", **params) -> dict[str, str]:
    values = {"MLC_DATA_ROOT": str(ROOT), "MLC_RUN_DIR": str(tmp / run),
              "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
              "MLC_CHECKPOINT_DIR": str(tmp / "checkpoints"), "MLC_PARAM_HYPERPARAMETERS": SMALL}
    values.update({f"MLC_PARAM_{k.upper()}": v for k, v in params.items()})
    return values


def run_steps(project, env, names) -> None:
    for name in names:
        run_step(build_context(project, PIPELINE, name, environ=env))


def test_step_context_from_the_ir_the_environment_and_overrides(project):
    ctx = build_context(project, PIPELINE, "train", environ={
        "MLC_PARAM_REASON": "drift", "MLC_RUN_DIR": "/r", "MLC_DATA_ROOT": "/d"},
        overrides={"promote": "true"})
    assert ctx.params == {"data_window_seconds": "7776000", "hyperparameters": "{}",
                          "reason": "drift", "promote": "true"}
    assert (ctx.run_dir, ctx.data_root, ctx.feast_repo) == (Path("/r"), Path("/d"), None)
    assert ctx.mlflow_tracking_uri == project.platform.mlflow_tracking_uri
    # ml.yaml's checkpoint path is an object store URI; a mounted folder wins over it
    assert (ctx.checkpoint_dir, ctx.checkpoint_uri) == \
        (None, "s3://fraud-ml-checkpoints/fraud-classifier")
    mounted = build_context(project, PIPELINE, "train", environ={"MLC_CHECKPOINT_DIR": "/c"})
    assert (mounted.checkpoint_dir, mounted.checkpoint_uri) == (Path("/c"), None)
    for pipeline, step, overrides, message in [
            ("nope", "train", {}, "no pipeline `nope`"),
            (PIPELINE, "nope", {}, "has no step `nope`"),
            (PIPELINE, "train", {"nope": "1"}, "has no parameter `nope`")]:
        with pytest.raises(StepFailed, match=message):
            build_context(project, pipeline, step, environ={}, overrides=overrides)


# ---------------------------------------------------------------------------------------
# model format


def _spec(task="classification", classes=(0, 1), hidden=(4,)):
    return model_format.make_spec(
        task=task, features=["a", "b"], feature_refs=["v:a", "v:b"], hidden_layers=list(hidden),
        dropout=0.0, fill=[1.0, 2.0], mean=[0.5, 1.0], std=[2.0, 4.0], label="y",
        classes=list(classes) if task == "classification" else None,
        target_mean=10.0 if task == "regression" else None,
        target_std=3.0 if task == "regression" else None)


@pytest.mark.parametrize("task,classes", [("classification", (0, 1)),
                                          ("classification", ("a", "b", "c")),
                                          ("regression", ())])
def test_model_folder_round_trip_needs_no_pickle(tmp_path, task, classes):
    torch.manual_seed(0)
    spec = _spec(task, classes)
    module = model_format.build_module(spec)
    rows = np.array([[1.0, np.nan], [np.inf, 3.0], [0.0, 0.0]])
    model_format.save_model(tmp_path, spec, module.state_dict())
    loaded, spec2 = model_format.load_model(tmp_path)
    assert spec2 == json.loads(json.dumps(spec))
    out = model_format.predict(loaded, spec2, rows)
    np.testing.assert_array_equal(out, model_format.predict(module.eval(), spec, rows))
    # missing and infinite inputs are filled with the training mean before scaling
    np.testing.assert_array_equal(out[0], model_format.predict(loaded, spec2, [[1.0, 2.0]])[0])
    if task == "regression":
        assert out.shape == (3,)
    elif len(classes) == 2:
        assert out.shape == (3,) and ((out > 0) & (out < 1)).all()
    else:
        assert out.shape == (3, 3)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-6)
    state = torch.load(tmp_path / model_format.WEIGHTS_FILE, weights_only=True)
    assert set(state) == set(module.state_dict())
    with pytest.raises(ValueError, match="expected rows of 2 features"):
        model_format.predict(loaded, spec2, np.zeros((1, 3)))
    with pytest.raises(KeyError, match="missing input columns: b"):
        model_format.predict_frame(loaded, spec2, pd.DataFrame({"a": [1.0]}))


def test_save_refuses_weights_that_do_not_fit_the_spec(tmp_path):
    other = model_format.build_module(_spec(hidden=(5,)))
    with pytest.raises(RuntimeError):
        model_format.save_model(tmp_path / "m", _spec(hidden=(4,)), other.state_dict())
    assert not (tmp_path / "m").exists()


# ---------------------------------------------------------------------------------------
# metrics


def test_roc_auc_equals_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(1)
    y = rng.random(300) < 0.3
    s = np.round(rng.random(300), 1)  # many ties
    pos, neg = s[y], s[~y]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert evaluation.roc_auc(y, s) == pytest.approx(pairs, abs=1e-12)


def test_classification_and_regression_metrics():
    m = evaluation.classification_metrics(np.array([0, 0, 1, 1]),
                                          np.array([0.1, 0.4, 0.35, 0.8]), [0, 1])
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["pr_auc"] == pytest.approx(0.8333333, rel=1e-6)  # scikit-learn's value
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.6, 0.35, 0.8])))
    assert (m["accuracy"], m["precision"], m["recall"]) == (0.75, 1.0, 0.5)
    r = evaluation.regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
    assert r["rmse"] == pytest.approx(np.sqrt(4 / 3)) and r["mae"] == pytest.approx(2 / 3)
    assert r["r2"] == pytest.approx(1 - (4 / 3) / np.var([1, 2, 3]))


def test_gates_and_the_comparison_with_production():
    gates = [ir.Gate(metric="roc_auc", min=0.8, max=None),
             ir.Gate(metric="log_loss", min=None, max=0.5),
             ir.Gate(metric="unknown", min=0.0, max=None)]
    results = evaluation.check_gates(gates, {"roc_auc": 0.81, "log_loss": 0.6})
    assert [r["passed"] for r in results] == [True, False, False]
    rule = ir.ChampionComparison(metric="roc_auc", max_regression=0.01, higher_is_better=True)
    assert evaluation.compare(rule, {"roc_auc": 0.795}, {"roc_auc": 0.80})["passed"]
    assert not evaluation.compare(rule, {"roc_auc": 0.785}, {"roc_auc": 0.80})["passed"]
    lower = rule.model_copy(update={"metric": "rmse", "higher_is_better": False})
    assert evaluation.compare(lower, {"rmse": 1.005}, {"rmse": 1.0})["passed"]
    assert not evaluation.compare(lower, {"rmse": 1.02}, {"rmse": 1.0})["passed"]


# ---------------------------------------------------------------------------------------
# data


def test_file_join_is_point_in_time_correct(project, tmp_path):
    day = pd.Timestamp("2025-01-01", tz="UTC")
    folder = tmp_path / "data"
    folder.mkdir()
    pd.DataFrame({
        "customer_id": [1, 1, 2], "event_timestamp": [day, day + pd.Timedelta(days=2), day],
        "txn_count_7d": [10, 30, 99], "amount_avg_7d": [1.0, 3.0, 9.0],
        "account_age_days": [100, 102, 7]}).to_parquet(folder / "customer_daily.parquet")
    pd.DataFrame({
        "merchant_id": [5], "event_timestamp": [day], "chargeback_rate_30d": [0.5],
        "txn_count_30d": [9]}).to_parquet(folder / "merchant_daily.parquet")
    events = [day, day + pd.Timedelta(hours=36), day + pd.Timedelta(days=2),
              day + pd.Timedelta(days=5), day - pd.Timedelta(hours=1)]
    pd.DataFrame({
        "transaction_id": ["a", "b", "c", "d", "e"], "customer_id": [1, 1, 1, 1, 2],
        "merchant_id": [5] * 5, "event_timestamp": events, "amount": [1.0] * 5,
        "is_fraud": [0, 1, 0, 1, 0]}).to_parquet(folder / "transactions.parquet")
    env = {"MLC_DATA_ROOT": str(tmp_path), "MLC_RUN_DIR": str(tmp_path / "run"),
           "MLC_PARAM_DATA_WINDOW_SECONDS": "0"}
    ctx = build_context(project, PIPELINE, "train", environ=env)
    dataset = data.build_dataset(ctx, ctx.model, test_split=0.0)
    frame = dataset.frame.set_index(dataset.frame["event_timestamp"])
    counts = frame["txn_count_7d"].tolist()
    # e (before any row): missing; a (exact time): 10; b (36h later): still 10;
    # c (the new row's time): 30; d (3 days after the newest row, ttl 2d): missing
    assert np.isnan(counts[0]) and counts[1:4] == [10.0, 10.0, 30.0] and np.isnan(counts[4])
    assert frame["merchant_risk"].iloc[1] == pytest.approx(0.5 * 100 / 10)
    assert np.isnan(frame["merchant_risk"].iloc[4])  # merchant row older than the ttl
    assert dataset.features == [r.field for r in ctx.model.features]
    assert dataset.info["retrieval"] == "files" and len(dataset.snapshot) == 64


@pytest.mark.slow
def test_feast_retrieval_and_the_file_join_give_the_same_snapshot(project, tmp_path,
                                                                  monkeypatch):
    from mlc.compiler.pipeline import compile_project
    from mlc.runtime.features import apply_repo

    shutil.copytree(ROOT / "data", tmp_path / "data",
                    ignore=shutil.ignore_patterns("*.py", "*.db", "__pycache__"))
    compiled = compile_project(ROOT, ["dev"], Diagnostics())[0]
    repo = tmp_path / "feast"
    for path, content in compiled.files.items():
        if path.startswith("feast/"):
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / path).write_bytes(content)
    monkeypatch.setenv("MLC_DATA_ROOT", str(tmp_path))
    apply_repo(repo)
    env = {"MLC_DATA_ROOT": str(tmp_path)}
    via_feast = data.build_dataset(build_context(project, PIPELINE, "train", environ={
        **env, "MLC_RUN_DIR": str(tmp_path / "a"), "MLC_FEAST_REPO": str(repo)}),
        project.models["fraud-classifier"])
    via_files = data.build_dataset(build_context(project, PIPELINE, "train", environ={
        **env, "MLC_RUN_DIR": str(tmp_path / "b")}), project.models["fraud-classifier"])
    assert via_feast.info["retrieval"] == "feast" and via_files.info["retrieval"] == "files"
    pd.testing.assert_frame_equal(via_feast.frame, via_files.frame)
    assert via_feast.snapshot == via_files.snapshot


# ---------------------------------------------------------------------------------------
# the trainer


def test_training_is_reproducible_and_seeded(project, tmp_path):
    ctx = build_context(project, PIPELINE, "train", environ=environ(tmp_path))
    dataset = data.build_dataset(ctx, ctx.model)
    hp = trainer.hyperparameters(ctx.model.training.hyperparameters, SMALL)
    spec, arrays = trainer.prepare(dataset, "classification", hp)
    cpu = torch.device("cpu")
    a = trainer.fit(spec, arrays, {**hp, "dropout": 0.1}, device=cpu).state_dict
    b = trainer.fit(spec, arrays, {**hp, "dropout": 0.1}, device=cpu).state_dict
    c = trainer.fit(spec, arrays, {**hp, "dropout": 0.1, "seed": 7}, device=cpu).state_dict
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    with pytest.raises(StepFailed, match="unknown hyperparameter hidden_units"):
        trainer.hyperparameters({}, '{"hidden_units": 3}')


@pytest.mark.parametrize("task", ["regression", "multiclass"])
def test_regression_and_multiclass_learn(task):
    rng = np.random.default_rng(0)
    n = 1500
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    frame.loc[::50, "b"] = np.nan  # filled with the training mean
    signal = 2 * frame["a"] - frame["b"].fillna(0)
    if task == "regression":
        frame["y"] = 10 + 3 * signal + rng.normal(0, 0.3, n)
    else:
        frame["y"] = np.select([signal < -1, signal > 1], ["low", "high"], "mid")
    frame["__split__"] = np.where(np.arange(n) < 1200, "train", "test")
    dataset = data.Dataset(frame, ["a", "b"], ["v:a", "v:b"], "y", "t", {"snapshot": "x"})
    kind = "regression" if task == "regression" else "classification"
    hp = trainer.hyperparameters({}, json.dumps({"epochs": 15, "batch_size": 64,
                                                 "learning_rate": 0.01}))
    spec, arrays = trainer.prepare(dataset, kind, hp)
    result = trainer.fit(spec, arrays, hp, device=torch.device("cpu"),
                         validate=evaluation.metric_function(kind, spec))
    module = model_format.build_module(spec)
    module.load_state_dict(result.state_dict)
    metrics = evaluation.score(scoring.mlc_predictor(module.eval(), spec), dataset.part("test"),
                               "y", kind)
    if task == "regression":
        assert metrics["r2"] > 0.9 and spec["target_std"] > 1
        assert "val_rmse" in result.history[-1]
    else:
        assert spec["classes"] == ["high", "low", "mid"]
        assert spec["architecture"]["output_dim"] == 3
        assert metrics["accuracy"] > 0.85 and metrics["roc_auc"] > 0.9


def test_mixed_precision_choice(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert trainer.precision("auto", cpu) == (None, False)
    assert trainer.precision("bf16", cpu) == (torch.bfloat16, False)
    assert trainer.precision("fp16", cpu) == (None, False)
    assert trainer.precision("off", cuda) == (None, False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert trainer.precision("auto", cuda) == (torch.bfloat16, False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert trainer.precision("auto", cuda) == (torch.float16, True)  # loss scaling
    assert trainer.precision("fp16", cuda) == (torch.float16, True)


# ---------------------------------------------------------------------------------------
# the pipeline's steps, end to end


@pytest.mark.slow
def test_train_evaluate_register_promote(project, tmp_path, monkeypatch):
    import mlflow
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLC_ARTIFACT_ROOT", (tmp_path / "artifacts").as_uri())
    env = environ(tmp_path, "run1", promote="true")
    run_steps(project, env, ["validate-data", "train", "evaluate", "register", "promote"])
    run1 = tmp_path / "run1"
    train = json.loads((run1 / "train.json").read_text())
    evaluated = json.loads((run1 / "evaluation.json").read_text())
    assert evaluated["passed"] and evaluated["metrics"]["roc_auc"] > 0.8
    assert evaluated["comparison"]["note"] == "no version holds `champion` yet"
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    run = client.get_run(train["mlflow_run_id"])
    tags = run.data.tags
    assert tags["mlc.source_hash"] == project.source_hash
    assert tags["mlc.feature_service"] == "fraud_inputs"
    assert tags["mlc.data_snapshot"] == train["data_snapshot"]
    assert tags["mlc.gates"] == "passed"
    assert run.data.params["epochs"] == "2" and run.data.params["data_retrieval"] == "files"
    assert "test_roc_auc" in run.data.metrics
    joined = json.loads((run1 / "data" / "data.json").read_text())
    assert run.data.metrics["data_label_rows"] == joined["label_rows"] > 0
    assert run.data.metrics["data_dropped_rows"] == joined["dropped_rows"]
    assert run.data.metrics["data_dropped_share"] == joined["dropped_share"]
    losses = client.get_metric_history(run.info.run_id, "train_loss")
    assert sorted(m.step for m in losses) == list(range(1, train["steps"] + 1))
    assert not (tmp_path / "checkpoints").exists() or not any(
        (tmp_path / "checkpoints").rglob("*.pt"))  # cleared once the model is saved

    version = client.get_model_version_by_alias("fraud-classifier", "champion")
    assert str(version.version) == "1"
    assert str(client.get_model_version_by_alias("fraud-classifier", "challenger").version) == "1"
    assert version.tags["mlc.data_snapshot"] == train["data_snapshot"]
    assert version.current_stage in (None, "None")  # aliases only, never stages
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    info = mlflow.models.get_model_info("models:/fraud-classifier@champion")
    features = project.models["fraud-classifier"].features
    # the signature has ml.yaml's types: an int64 feature is long, not double
    assert [(c.name, c.type.name) for c in info.signature.inputs.inputs] == \
        [(r.field, {"int64": "long", "float64": "double"}[r.type]) for r in features]
    assert "long" in {c.type.name for c in info.signature.inputs.inputs}
    assert [c.name for c in info.signature.outputs.inputs] == ["prediction"]
    assert info.saved_input_example_info is not None
    assert tags["mlflow.source.type"] == "JOB" and tags["mlflow.user"]
    assert tags["mlflow.source.name"] == f"{PIPELINE}/train"
    pyfunc = mlflow.pyfunc.load_model("models:/fraud-classifier@champion")
    test = data.load_dataset(build_context(project, PIPELINE, "evaluate", environ=env))
    # rows typed as Feast hands them over (int64 stays int64)
    rows = scoring.typed_inputs(test.part("test").head(20), project.models["fraud-classifier"])
    assert "int64" in set(map(str, rows.dtypes))
    module, spec = model_format.load_model(run1 / "model")
    predicted = pyfunc.predict(rows)
    assert list(predicted.columns) == ["prediction"]
    np.testing.assert_allclose(predicted["prediction"].to_numpy(),
                               model_format.predict_frame(module, spec, rows))
    assert model_format.load_reference(run1 / "model") is not None

    # a second run is compared with the champion; without promote=true it stays challenger
    env2 = environ(tmp_path, "run2", promote="false")
    run_steps(project, env2, ["train", "evaluate", "register", "promote"])
    second = json.loads((tmp_path / "run2" / "evaluation.json").read_text())
    assert second["comparison"]["version"] == 1
    assert second["comparison"]["champion"] == pytest.approx(evaluated["metrics"]["roc_auc"])
    assert str(client.get_model_version_by_alias("fraud-classifier", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("fraud-classifier",
                                                 "challenger").version) == "2"

    # a gate the model cannot meet stops the pipeline with exit 11, and nothing is registered
    strict = with_model(project, gates=[ir.Gate(metric="roc_auc", min=0.9999, max=None)])
    env3 = environ(tmp_path, "run3")
    run_steps(strict, env3, ["train"])
    with pytest.raises(StepFailed) as failed:
        run_steps(strict, env3, ["evaluate"])
    assert failed.value.exit_code == EXIT_GATES
    assert "roc_auc" in failed.value.message and "FAILED" in failed.value.message
    with pytest.raises(StepFailed, match="did not pass"):
        run_steps(strict, env3, ["register"])


CUSTOM = textwrap.dedent("""
    import json, os
    import numpy as np, pandas as pd, torch
    from mlc.runtime import model_format

    frame = pd.read_parquet(os.environ["MLC_TRAIN_DATA"])
    frame = frame[frame["__split__"] == "train"]
    features = json.loads(os.environ["MLC_FEATURES"])
    x = frame[features].to_numpy(dtype=float)
    fill = np.nanmean(x, axis=0)
    x = np.where(np.isnan(x), fill, x)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-9
    spec = model_format.make_spec(
        task=os.environ["MLC_TASK"], features=features, feature_refs=features,
        hidden_layers=[], dropout=0.0, fill=fill.tolist(), mean=mean.tolist(),
        std=std.tolist(), label=os.environ["MLC_LABEL"], classes=[0, 1])
    torch.manual_seed(0)
    net = model_format.build_module(spec)
    xt = torch.tensor((x - mean) / std, dtype=torch.float32)
    yt = torch.tensor(frame[os.environ["MLC_LABEL"]].to_numpy(), dtype=torch.float32)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    losses = []
    for step in range(60):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(xt)[:, 0], yt)
        opt.zero_grad(); loss.backward(); opt.step()
        losses.append([step, loss.item()])
    model_format.save_model(os.environ["MLC_MODEL_DIR"], spec, net.state_dict())
    with open(os.environ["MLC_METRICS_FILE"], "w") as fh:
        json.dump({"train_loss": losses, "custom_flag": 1}, fh)
    assert os.environ["MLFLOW_RUN_ID"] and os.environ["MLC_PARAM_REASON"] == "manual"
""")


@pytest.mark.slow
def test_custom_training_gets_the_contract_and_is_tracked_the_same_way(project, tmp_path,
                                                                        monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLC_ARTIFACT_ROOT", (tmp_path / "artifacts").as_uri())
    script = tmp_path / "train_custom.py"
    script.write_text(CUSTOM)
    custom = with_model(project, training={"kind": "custom", "command": [sys.executable],
                                           "args": [str(script)], "env": {"EXTRA": "1"}})
    env = environ(tmp_path, "custom")
    run_steps(custom, env, ["train", "evaluate"])
    train = json.loads((tmp_path / "custom" / "train.json").read_text())
    assert train["trainer"] == "custom" and train["metrics_logged"] == 61
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    run = client.get_run(train["mlflow_run_id"])
    assert run.data.tags["mlc.trainer"] == "custom"
    assert run.data.tags["mlc.data_snapshot"] == train["data_snapshot"]
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 60
    assert run.data.metrics["custom_flag"] == 1.0 and "test_roc_auc" in run.data.metrics

    failing = with_model(project, training={"kind": "custom", "command": [sys.executable],
                                            "args": ["-c", "raise SystemExit(3)"]})
    with pytest.raises(StepFailed, match="exited with 3"):
        run_steps(failing, environ(tmp_path, "failing"), ["train"])


SKLEARN_TRAINER = textwrap.dedent("""
    import json, os
    import mlflow, pandas as pd
    from sklearn.linear_model import LogisticRegression

    frame = pd.read_parquet(os.environ["MLC_TRAIN_DATA"]).fillna(0)
    features = json.loads(os.environ["MLC_FEATURES"])
    model = LogisticRegression(max_iter=50).fit(frame[features], frame[os.environ["MLC_LABEL"]])
    with mlflow.start_run(run_id=os.environ["MLFLOW_RUN_ID"]):
        mlflow.sklearn.log_model(model, name="model", pyfunc_predict_fn="predict_proba",
                                 input_example=frame[features].head(3),
                                 skops_trusted_types=["numpy.dtype"])
""")


def with_endpoint(project: ir.ResolvedProject, **changes) -> ir.ResolvedProject:
    endpoint = project.endpoints["fraud-api"]
    endpoints = {**project.endpoints, "fraud-api": endpoint.model_copy(update=changes)}
    return project.model_copy(update={"endpoints": endpoints})


@pytest.mark.slow
def test_an_mlflow_model_for_an_endpoint_that_would_refuse_it_fails_its_training(
        project, tmp_path, monkeypatch):
    """A custom trainer that logs an MLflow model (not mlc's format) for an endpoint without
    `allowPickle` fails at training, before a version its servers would refuse is registered."""
    monkeypatch.setenv("MLC_ARTIFACT_ROOT", (tmp_path / "artifacts").as_uri())
    script = tmp_path / "train_sklearn.py"
    script.write_text(SKLEARN_TRAINER)
    training = {"kind": "custom", "command": [sys.executable], "args": [str(script)]}
    refusing = with_model(project, training=training)
    assert project.endpoints["fraud-api"].model == "fraud-classifier"
    with pytest.raises(StepFailed, match=r"endpoint fraud-api would refuse to load it.*"
                                         r"`allowPickle: true`"):
        run_steps(refusing, environ(tmp_path, "refused"), ["train"])
    allowed = with_endpoint(refusing, allow_pickle=True)
    run_steps(allowed, environ(tmp_path, "allowed"), ["train"])
    train = json.loads((tmp_path / "allowed" / "train.json").read_text())
    assert train["model_format"] == "mlflow"


# ---------------------------------------------------------------------------------------
# models of any MLflow flavour, custom metrics


def test_pyfunc_outputs_become_what_the_metrics_take():
    from mlc.runtime.train.scoring import as_predictions

    binary = [0, 1]
    proba = np.array([[0.8, 0.2], [0.3, 0.7]])
    np.testing.assert_allclose(as_predictions(proba, "classification", binary), [0.2, 0.7])
    frame = pd.DataFrame({"1": [0.2, 0.7], "0": [0.8, 0.3]})  # columns named by class
    np.testing.assert_allclose(as_predictions(frame, "classification", binary), [0.2, 0.7])
    labels = np.array(["no", "yes", "yes"])
    np.testing.assert_array_equal(as_predictions(labels, "classification", ["no", "yes"]),
                                  [0.0, 1.0, 1.0])
    multi = as_predictions(np.array(["b", "c"]), "classification", ["a", "b", "c"])
    np.testing.assert_array_equal(multi, [[0, 1, 0], [0, 0, 1]])
    out = pd.DataFrame({"prediction": [1.5, 2.5]})
    np.testing.assert_allclose(as_predictions(out, "regression", None), [1.5, 2.5])


def test_typed_inputs_keep_ml_yaml_integer_types(project):
    from mlc.runtime.train.scoring import typed_inputs

    model = project.models["fraud-classifier"]
    fields = [r.field for r in model.features]
    frame = pd.DataFrame({f: [1.0, 2.0] for f in fields})
    typed = typed_inputs(frame, model)
    for ref in model.features:
        assert str(typed[ref.field].dtype) == ("int64" if ref.type == "int64" else "float64")
    frame.loc[0, fields[0]] = np.nan  # a missing value cannot be an int64
    assert str(typed_inputs(frame, model)[fields[0]].dtype) == "float64"


def test_declared_custom_metrics_are_read_at_their_last_step(tmp_path):
    from mlc.runtime.train import custom

    path = tmp_path / "m.json"
    path.write_text(json.dumps({"eval_loss": [[2, 0.3], [1, 0.5]], "other": 1,
                                "bad": float("nan")}))
    reported = custom.read_metrics(path)
    assert reported == {"eval_loss": [(2, 0.3), (1, 0.5)], "other": [(0, 1.0)]}
    model = ir.Model.model_construct(training=ir.Training.model_construct(
        metrics=[ir.CustomMetric(name="eval_loss", higher_is_better=False),
                 ir.CustomMetric(name="never", higher_is_better=None)]))
    assert custom.final_values(model, reported) == {"eval_loss": 0.3}
    path.write_text("[1]")
    with pytest.raises(StepFailed, match="JSON object"):
        custom.read_metrics(path)
