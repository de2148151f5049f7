"""The bundled XGBoost, LightGBM and scikit-learn trainers, with the real libraries: the
example project with `framework:` changed and its trainer's block set, compiled from ml.yaml,
trained on the bundled data, evaluated against gates (one that passes; one that fails the
run), registered in a real MLflow store, and served by mlc's loader with the same outputs as
the library's own predict on the same rows. Also: a model file that would run code is
refused, and docs/trainers.md, the schema and the metric catalogue say the same."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from ruamel.yaml import YAML

from mlc import trainer_catalog
from mlc.compiler import ir
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import check_environment
from mlc.runtime import model_format
from mlc.runtime.serve import loader
from mlc.runtime.step import EXIT_GATES, StepFailed, build_context, run_step
from mlc.runtime.train import data, scoring

from .conftest import ROOT

PIPELINE = "train-fraud-classifier"
MODEL = "fraud-classifier"
BLOCKS = {
    "xgboost": {"nEstimators": 25, "maxDepth": 4, "learningRate": 0.3,
                "earlyStoppingRounds": 5},
    "lightgbm": {"nEstimators": 25, "numLeaves": 15, "learningRate": 0.2,
                 "earlyStoppingRounds": 5},
    "sklearn": {"estimator": "random_forest", "nEstimators": 15, "maxDepth": 8},
}


def write_project(folder: Path, framework: str, block: dict, *, task: str | None = None,
                  gates: list | None = None) -> Path:
    """The example with `framework` and its trainer's block (the torch block removed from
    ml.yaml and the prod overlay), as ml.yaml text that validate reads."""
    yaml = YAML(typ="safe")
    values = yaml.load((ROOT / "ml.yaml").read_text("utf-8"))
    model = values["models"][MODEL]
    model["framework"] = framework
    training = model["training"]
    training.pop("builtin")
    training.pop("checkpoint")  # S3, which the tests cannot reach; trees are not checkpointed
    training[trainer_catalog.TRAINERS[framework].block] = block
    if gates is not None:
        model["evaluation"]["gates"] = gates
    if task is not None:
        model["task"] = task
    (folder / "environments").mkdir(parents=True)
    for env in ("dev", "staging"):
        text = (ROOT / "environments" / f"{env}.yaml").read_text("utf-8")
        (folder / "environments" / f"{env}.yaml").write_text(text, "utf-8")
    prod = yaml.load((ROOT / "environments" / "prod.yaml").read_text("utf-8"))
    prod["models"][MODEL]["training"].pop("builtin", None)
    (folder / "environments" / "prod.yaml").write_text(json.dumps(prod, indent=2), "utf-8")
    (folder / "ml.yaml").write_text(json.dumps(values, indent=2), "utf-8")
    return folder


def compiled(folder: Path) -> ir.ResolvedProject:
    diags = Diagnostics()
    resolved = check_environment(folder, "dev", diags)
    assert resolved is not None, [d.message for d in diags.items]
    return resolved


def environ(tmp: Path, run: str, **params) -> dict[str, str]:
    values = {"MLC_DATA_ROOT": str(ROOT), "MLC_RUN_DIR": str(tmp / run),
              "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
              "MLC_TORCH_THREADS": "1"}
    values.update({f"MLC_PARAM_{k.upper()}": v for k, v in params.items()})
    return values


def run_steps(project, env, names) -> None:
    for name in names:
        run_step(build_context(project, PIPELINE, name, environ=env))


def own_predict(framework: str, folder: Path, rows: np.ndarray) -> np.ndarray:
    """The library's own predict on the saved file, without mlc's reader."""
    arch = model_format.load_spec(folder)["architecture"]
    file = folder / arch["file"]
    if framework == "xgboost":
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(str(file))
        return booster.predict(xgboost.DMatrix(rows, missing=np.nan))
    if framework == "lightgbm":
        import lightgbm

        return lightgbm.Booster(model_file=str(file)).predict(rows)
    import skops.io

    estimator = skops.io.load(str(file), trusted=skops.io.get_untrusted_types(file=str(file)))
    return estimator.predict_proba(rows)[:, 1]


@pytest.mark.slow
@pytest.mark.parametrize("framework", sorted(BLOCKS))
def test_trained_gated_registered_and_served(framework, tmp_path, monkeypatch):
    import mlflow
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLC_ARTIFACT_ROOT", (tmp_path / "artifacts").as_uri())
    project = compiled(write_project(tmp_path / "project", framework, BLOCKS[framework]))
    model = project.models[MODEL]
    assert model.framework == framework and model.training.kind == "builtin"
    env = environ(tmp_path, "run1", promote="true")
    run_steps(project, env, ["validate-data", "train", "evaluate", "register", "promote"])
    run1 = tmp_path / "run1"
    train = json.loads((run1 / "train.json").read_text())
    evaluated = json.loads((run1 / "evaluation.json").read_text())
    # ml.yaml's gates (roc_auc >= 0.8, log_loss <= 0.5) passed on the test rows
    assert evaluated["passed"] and evaluated["model_format"] == "mlc"
    assert {g["metric"] for g in evaluated["gates"]} == {"roc_auc", "log_loss"}
    assert evaluated["metrics"]["roc_auc"] > 0.85
    assert set(evaluated["metrics"]) == set(trainer_catalog.metrics(framework,
                                                                    "classification"))
    assert train["framework"] == framework

    folder = run1 / "model"
    spec = model_format.load_spec(folder)
    assert spec["architecture"]["type"] == framework
    files = sorted(p.name for p in folder.iterdir())
    assert files == sorted([model_format.SPEC_FILE, model_format.REFERENCE_FILE,
                            trainer_catalog.TRAINERS[framework].model_file])
    reference = model_format.load_reference(folder)
    assert model_format.PREDICTION_COLUMN in reference.columns
    if framework != "sklearn":  # early stopping kept the best round's trees only
        assert 1 <= train["steps"] <= BLOCKS[framework]["nEstimators"]

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    run = client.get_run(train["mlflow_run_id"])
    assert run.data.tags["mlc.gates"] == "passed"
    assert "test_roc_auc" in run.data.metrics
    version = client.get_model_version_by_alias(MODEL, "champion")
    assert str(version.version) == "1"

    # served by mlc's loader from the registry: the library's own outputs on the same rows
    served = loader.load(f"models:/{MODEL}@champion", env["MLFLOW_TRACKING_URI"],
                         cache_dir=tmp_path / "served")
    assert served.features == spec["features"] and served.output_width == 1
    test = data.load_dataset(build_context(project, PIPELINE, "evaluate", environ=env))
    rows = test.part("test")[spec["features"]].head(200).to_numpy(dtype=np.float64)
    rows[0, 0] = np.nan  # a missing value goes through as NaN
    got = served.predict(rows)
    assert got.shape == (len(rows),) and np.all((got >= 0) & (got <= 1))
    np.testing.assert_allclose(got, own_predict(framework, folder, rows), rtol=1e-6,
                               atol=1e-7)
    # the pyfunc face answers the same
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    mlflow.set_registry_uri(env["MLFLOW_TRACKING_URI"])
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    frame = scoring.typed_inputs(test.part("test").head(20), model)  # as Feast hands it
    np.testing.assert_allclose(pyfunc.predict(frame)["prediction"].to_numpy(),
                               served.predict(frame.to_numpy(dtype=np.float64)), rtol=1e-6)

    # a gate the model cannot meet fails the run with exit 11, and nothing is registered
    strict = project.model_copy(update={"models": {**project.models, MODEL: model.model_copy(
        update={"gates": [ir.Gate(metric="roc_auc", min=0.9999, max=None)]})}})
    with pytest.raises(StepFailed) as failed:
        run_steps(strict, env, ["evaluate"])
    assert failed.value.exit_code == EXIT_GATES and "FAILED" in failed.value.message
    with pytest.raises(StepFailed, match="did not pass"):
        run_steps(strict, env, ["register"])
    assert [str(v.version) for v in client.search_model_versions(f"name='{MODEL}'")] == ["1"]


class Table:
    """What `trainers.rows` reads of a Dataset: its training part, features and label."""

    def __init__(self, frame, features: list[str], label: str):
        self.frame, self.features, self.label = frame, features, label

    def part(self, split: str):
        return self.frame[self.frame["__split__"] == split]


@pytest.mark.slow
def test_regression_and_multiclass_with_the_tree_libraries(tmp_path):
    """A regression label and a three-class label: the outputs have the spec's shape and the
    library's own values (the tree models take no standardisation of inputs or target)."""
    import pandas as pd

    from mlc.runtime.train import evaluation, trainers

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 3))
    x[rng.random(x.shape) < 0.05] = np.nan
    value = 2 * np.nan_to_num(x[:, 0]) - np.nan_to_num(x[:, 1]) + rng.normal(0, 0.1, 600)
    classes = np.digitize(value, [-1.0, 1.0])  # 0, 1, 2
    features = ["a", "b", "c"]
    for task, y in (("regression", value), ("classification", classes)):
        frame = pd.DataFrame(x, columns=features).assign(y=y, __split__="train")
        r = trainers.rows(Table(frame, features, "y"), task, 0.2, 7)
        for framework in ("xgboost", "lightgbm", "sklearn"):
            module = trainers.module_for(framework)
            base = {"xgboost": {"n_estimators": 40, "max_depth": 3, "learning_rate": 0.3,
                                "subsample": 1.0, "colsample_bytree": 1.0,
                                "min_child_weight": 1.0, "reg_lambda": 1.0, "reg_alpha": 0.0,
                                "early_stopping_rounds": None, "seed": 1},
                    "lightgbm": {"n_estimators": 40, "num_leaves": 7, "max_depth": None,
                                 "learning_rate": 0.2, "subsample": 1.0,
                                 "colsample_bytree": 1.0, "min_child_samples": 5,
                                 "reg_lambda": 0.0, "reg_alpha": 0.0,
                                 "early_stopping_rounds": None, "seed": 1},
                    "sklearn": {"estimator": "hist_gradient_boosting", "max_iter": 40,
                                "seed": 1}}[framework]
            fitted = module.fit(r, base, 1)
            spec = model_format.make_native_spec(
                kind=framework, task=task, features=features, feature_refs=features,
                label="y", classes=r.classes)
            folder = tmp_path / f"{framework}-{task}"
            model_format.save_native(folder, spec, fitted.native)
            loaded, _ = model_format.load_model(folder)
            out = loaded.predict(r.x_val)
            if task == "regression":
                assert out.shape == (len(r.x_val),)
                assert evaluation.regression_metrics(r.y_val, out)["r2"] > 0.8, framework
            else:
                assert out.shape == (len(r.x_val), 3)
                np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-6)
                truth = np.asarray(r.classes, dtype=object)[r.y_val]
                assert evaluation.classification_metrics(truth, out, r.classes)[
                    "accuracy"] > 0.8, framework


def test_a_model_file_that_would_run_code_is_refused(tmp_path):
    """skops loads only the trusted types: a pipeline that calls os.system when it predicts
    is refused at load time, before anything of it runs."""
    import os

    import skops.io
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    x = np.arange(20, dtype=np.float64).reshape(10, 2)
    y = np.array([0, 1] * 5)
    hostile = make_pipeline(FunctionTransformer(os.system), LogisticRegression())
    hostile.steps[0] = ("f", FunctionTransformer())  # fit without calling it
    hostile.fit(x, y)
    hostile.steps[0] = ("f", FunctionTransformer(os.system))
    spec = model_format.make_native_spec(kind="sklearn", task="classification",
                                         features=["a", "b"], feature_refs=["a", "b"],
                                         label="y", classes=[0, 1])
    folder = tmp_path / "model"
    folder.mkdir()
    skops.io.dump(hostile, folder / "model.skops")
    (folder / "spec.json").write_text(json.dumps(spec), "utf-8")
    with pytest.raises(Exception, match="[Uu]ntrusted"):
        model_format.load_model(folder)
    with pytest.raises(Exception, match="[Uu]ntrusted"):
        loader.load_folder(folder, name="m", version="1", alias=None, trained_at=None)


def test_docs_schema_and_catalogue_list_the_same_metrics():
    """docs/trainers.md's table and the gate metric's schema description are the metric
    catalogue, trainer by trainer."""
    text = (ROOT / "docs" / "trainers.md").read_text("utf-8").split("\n## Metrics\n")[1]
    text = text.split("\n## ")[0]
    rows = re.findall(r"^\| `(\w+)` \| (\w+) \| (.+) \|$", text, re.M)
    documented = {(f, task): set(re.findall(r"`(\w+)`", names)) for f, task, names in rows}
    expected = {(f, task): set(metrics) for f, task, metrics in trainer_catalog.table()}
    assert documented == expected
    schema = json.loads((ROOT / "ml.schema.json").read_text("utf-8"))
    description = schema["$defs"]["Gate"]["properties"]["metric"]["description"]
    for _, _, metrics in trainer_catalog.table():
        for name in metrics:
            assert f"`{name}`" in description
    for framework in trainer_catalog.TRAINERS:
        assert framework in description


def validate_codes(folder: Path) -> dict[str, list[str]]:
    diags = Diagnostics()
    check_environment(folder, "dev", diags)
    out: dict[str, list[str]] = {}
    for d in diags.items:
        out.setdefault(d.code, []).append(d.message)
    return out


def test_a_gate_on_a_metric_the_trainer_never_reports_lists_the_known_ones(tmp_path):
    folder = write_project(tmp_path / "p", "xgboost", {"nEstimators": 5},
                           gates=[{"metric": "ndcg_at_5", "min": 0.5}])
    found = validate_codes(folder)
    assert list(found) == ["MLC230"]
    for name in trainer_catalog.metrics("xgboost", "classification"):
        assert name in found["MLC230"][0]


def test_each_framework_gets_its_own_block_and_no_other(tmp_path):
    """torch's block on an xgboost model is refused, and the model with its own block
    compiles to a training pipeline whose hyperparameters are the block's, every default
    filled."""
    folder = write_project(tmp_path / "p", "lightgbm", {"numLeaves": 7})
    project = compiled(folder)
    hp = project.models[MODEL].training.hyperparameters
    assert hp["num_leaves"] == 7 and hp["n_estimators"] == 200 and hp["max_depth"] is None
    assert project.models[MODEL].pipeline == PIPELINE
    other = write_project(tmp_path / "q", "xgboost", {"nEstimators": 5})
    text = (other / "ml.yaml").read_text()
    values = json.loads(text)
    values["models"][MODEL]["training"]["builtin"] = {"epochs": 1}
    (other / "ml.yaml").write_text(json.dumps(values))
    assert list(validate_codes(other)) == ["MLC328"]


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["lightgbm", "xgboost"])
def test_a_tree_train_step_logs_the_triton_fil_repository_it_is_asked_for(framework, tmp_path,
                                                                          monkeypatch):
    """`MLC_EXPORTS=triton` (an endpoint with `engine: triton`) on the tree trainers' train
    step: the FIL repository of the model it trained, logged to the run; a torch export of a
    tree model fails the step before it trains."""
    from mlflow.tracking import MlflowClient

    from mlc import step_contract as sc
    from mlc.runtime.export import triton

    from .test_exports import parse_config

    monkeypatch.setenv("MLC_ARTIFACT_ROOT", (tmp_path / "artifacts").as_uri())
    project = compiled(write_project(tmp_path / "project", framework, BLOCKS[framework]))
    batching = triton.Batching(max_batch_size=16, max_queue_delay_microseconds=2000,
                               max_queue_size=64)
    env = {**environ(tmp_path, "run"), sc.EXPORTS_ENV: "triton",
           sc.EXPORT_BATCHING_ENV: batching.text()}
    run_steps(project, env, ["validate-data", "train"])
    train = json.loads((tmp_path / "run" / sc.TRAIN_FILE).read_text())
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    assert client.get_run(train["mlflow_run_id"]).data.tags[sc.EXPORTS_TAG] == "triton"
    local = Path(client.download_artifacts(train["mlflow_run_id"], "exports",
                                           str(tmp_path / "dl")))
    model_file = trainer_catalog.TRAINERS[framework].model_file
    stored = {"model.json": "xgboost.json", "model.txt": "model.txt"}[model_file]
    assert sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file()) == [
        f"triton/{MODEL}/1/{stored}", f"triton/{MODEL}/config.pbtxt"]
    # the repository holds the very model the step trained and saved
    assert (local / f"triton/{MODEL}/1/{stored}").read_bytes() == \
        (tmp_path / "run" / sc.MODEL_DIR / model_file).read_bytes()
    config = parse_config(local / f"triton/{MODEL}/config.pbtxt")
    assert config.backend == "fil" and config.max_batch_size == 16

    wrong = {**environ(tmp_path, "run2"), sc.EXPORTS_ENV: "onnx"}
    with pytest.raises(StepFailed, match="FIL backend only"):
        run_steps(project, wrong, ["validate-data", "train"])
    assert not (tmp_path / "run2" / sc.MODEL_DIR).exists()
