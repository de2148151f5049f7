"""The bundled trainers other than the torch MLP (mlc/runtime/train/trainer.py): XGBoost,
LightGBM and scikit-learn, one module each, behind one small interface:

    fit(rows: Rows, hp: dict, threads: int) -> Fitted

`train` is the training step for them: the dataset (data.py), the rows as arrays, the
library's fit, the model folder in the library's own format (mlc/runtime/model_format.py),
the MLflow run and model. The framework in the IR picks the module; each module imports its
library only when it trains, so the others need not be installed.
"""

from __future__ import annotations

import importlib
import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mlc import step_contract as sc
from mlc.runtime.step import StepContext, StepFailed, write_record

if TYPE_CHECKING:
    from mlc.runtime.train.data import Dataset

REFERENCE_ROWS = 5000
MODULES = {"xgboost": "xgboost", "lightgbm": "lightgbm", "sklearn": "sklearn"}


@dataclass(frozen=True)
class Rows:
    """The training rows as arrays: raw features (float64, NaN = missing, no preparation),
    labels as class indices 0..k-1 (classification) or values (regression), the fit rows
    and the validation rows (none where the trainer has no validation split)."""

    task: str
    features: list[str]
    classes: list | None
    x_fit: np.ndarray
    y_fit: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    # ranking: each row's query (0..q-1), the rows sorted by it, so that a query's rows are
    # contiguous; `objective` the library's own, `cutoffs` the evaluation's k
    q_fit: np.ndarray | None = None
    q_val: np.ndarray | None = None
    objective: str | None = None
    cutoffs: tuple[int, ...] = ()

    def sizes(self, part: str) -> np.ndarray:
        """The query sizes of the fit or validation rows, in row order."""
        queries = self.q_fit if part == "fit" else self.q_val
        return np.unique(queries, return_counts=True)[1]


@dataclass
class Fitted:
    native: Any  # what model_format.save_native writes: a Booster, or an sklearn estimator
    rounds: int  # boosting rounds kept (trees per output); 0 where it does not apply
    history: list[dict[str, float]] = field(default_factory=list)  # per round: val loss
    architecture: dict[str, Any] = field(default_factory=dict)  # into spec.json


def module_for(framework: str):
    """The trainer module of a framework (its library is imported when it fits)."""
    if framework not in MODULES:
        raise StepFailed(f"no bundled trainer for framework `{framework}`")
    return importlib.import_module(f"{__name__}.{MODULES[framework]}")


def hyperparameters(base: dict[str, Any], override_json: str) -> dict[str, Any]:
    """ml.yaml's block (every value filled by the compiler), then the run's
    `hyperparameters` parameter (a JSON object of the same names)."""
    try:
        override = json.loads(override_json or "{}")
    except json.JSONDecodeError as exc:
        raise StepFailed(f"parameter hyperparameters is not JSON: {exc}") from exc
    if not isinstance(override, dict):
        raise StepFailed("parameter hyperparameters must be a JSON object")
    unknown = sorted(set(override) - set(base))
    if unknown:
        raise StepFailed(f"unknown hyperparameter {', '.join(unknown)} (known: "
                         f"{', '.join(sorted(base))})")
    return {**base, **override}


def rows(dataset: Dataset, task: str, validation_split: float, seed: int,
         ranking=None) -> Rows:
    """The fit and validation rows; `ranking` (the IR's) splits whole queries instead."""
    train = dataset.part("train")
    if len(train) < 2:
        raise StepFailed(f"only {len(train)} training rows: nothing to learn from")
    raw = train[dataset.features].to_numpy(dtype=np.float64)
    raw = np.where(np.isfinite(raw), raw, np.nan)
    labels = train[dataset.label].to_numpy()
    if task == "ranking":
        return ranked_rows(dataset, train, raw, labels, validation_split, seed, ranking)
    order = np.random.default_rng(seed).permutation(len(train))
    n_val = int(round(len(train) * validation_split))
    val_idx, fit_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    if len(fit_idx) < 2:
        raise StepFailed(f"only {len(fit_idx)} rows left to fit after the validation split")
    if task == "classification":
        classes = sorted(np.unique(labels[fit_idx]).tolist())
        if len(classes) < 2:
            raise StepFailed(f"the training rows hold one value of `{dataset.label}` "
                             f"({classes[0] if classes else 'none'}): nothing to classify")
        index = {c: i for i, c in enumerate(classes)}
        y = np.array([index.get(v, -1) for v in labels.tolist()], dtype=np.int64)
        val_idx = val_idx[y[val_idx] >= 0]  # a class the fit rows never saw
    else:
        classes = None
        y = labels.astype(np.float64)
    return Rows(task=task, features=list(dataset.features), classes=classes,
                x_fit=raw[fit_idx], y_fit=y[fit_idx], x_val=raw[val_idx], y_val=y[val_idx])


def grades(values: np.ndarray, label: str) -> np.ndarray:
    """Relevance grades as whole numbers >= 0 (what the rank objectives take)."""
    y = np.asarray(values, dtype=np.float64)
    if len(y) and (np.any(y < 0) or np.any(y != np.round(y))):
        bad = y[(y < 0) | (y != np.round(y))][0]
        raise StepFailed(f"`{label}` holds {bad:g}: a ranking label is a relevance grade, a "
                         "whole number from 0 (irrelevant) up")
    return y


def ranked_rows(dataset, train, raw: np.ndarray, labels: np.ndarray, validation_split: float,
                seed: int, ranking) -> Rows:
    """Whole queries drawn for validation (by the seed), the rest fitted; both sorted by
    query, which keeps each query's rows together in their time order."""
    if ranking is None:  # the compiler fills it for every ranking model (MLC330)
        raise StepFailed("a ranking model without its `ranking` block in the project")
    y = grades(labels, dataset.label)
    names, codes = np.unique(train[ranking.group].to_numpy(), return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(names))
    n_val = int(round(len(names) * validation_split))
    in_val = np.zeros(len(names), dtype=bool)
    in_val[order[:n_val]] = True
    val_idx = np.flatnonzero(in_val[codes])
    fit_idx = np.flatnonzero(~in_val[codes])
    if len(names) - n_val < 1 or len(fit_idx) < 2:
        raise StepFailed(f"only {len(names) - n_val} quer(ies) left to fit after the "
                         "validation split")
    val_idx = val_idx[np.argsort(codes[val_idx], kind="mergesort")]
    fit_idx = fit_idx[np.argsort(codes[fit_idx], kind="mergesort")]
    return Rows(task="ranking", features=list(dataset.features), classes=None,
                x_fit=raw[fit_idx], y_fit=y[fit_idx], x_val=raw[val_idx], y_val=y[val_idx],
                q_fit=codes[fit_idx], q_val=codes[val_idx], objective=ranking.objective,
                cutoffs=tuple(ranking.k))


def n_outputs(r: Rows) -> int:
    return len(r.classes) if r.task == "classification" else 1


def train(ctx: StepContext, sink) -> None:
    """The train step of a model whose framework is xgboost, lightgbm or sklearn."""
    from mlc.runtime import model_format
    from mlc.runtime.train import data, evaluation, exports, metric_log, threads, tracking

    model = ctx.model
    module = module_for(model.framework)
    wanted = exports.requested_exports(ctx)  # a bad setting fails before the training
    if wanted:
        exports.check_tree_exports(model.framework, wanted[0])
    dataset = data.build_dataset(ctx, model)
    hp = hyperparameters(dict(model.training.hyperparameters), ctx.param("hyperparameters"))
    run = tracking.TrackedRun.open(ctx, model, dataset, trainer="builtin")
    count = threads.library_threads(ctx)
    prepared = rows(dataset, model.task, float(hp.get("validation_split", 0.0)),
                    int(hp["seed"]), model.ranking)
    run.log_params(hp, dataset)
    logger = metric_log.BackgroundLogger(sink, run.run_id)
    try:
        fitted = module.fit(prepared, hp, count)
        for entry in fitted.history:
            for key, value in entry.items():
                if key != "round" and math.isfinite(value):
                    logger.log(key, value, int(entry["round"]))
    finally:
        logger.flush()
    lineage = {"model": model.name, "project": ctx.project.name, "env": ctx.project.env,
               "source_hash": ctx.project.source_hash, "data_snapshot": dataset.snapshot,
               "feature_service": model.feature_service}
    spec = model_format.make_native_spec(
        kind=model.framework, task=model.task, features=dataset.features,
        feature_refs=dataset.feature_refs, label=dataset.label, classes=prepared.classes,
        architecture={**fitted.architecture, "library": module.LIBRARY,
                      "library_version": module.version()}, extra=lineage)
    predictor = model_format.NativeModel(spec, fitted.native, count)
    validation: dict[str, float] = {}
    if len(prepared.x_val):
        if model.task == "ranking":
            scores = evaluation.ranking_metrics(prepared.y_val, predictor.predict(
                prepared.x_val), prepared.q_val, prepared.cutoffs)
        else:
            truth = prepared.y_val if model.task == "regression" else \
                np.asarray(prepared.classes, dtype=object)[prepared.y_val]
            scores = evaluation.metric_function(model.task, spec)(
                truth, predictor.predict(prepared.x_val))
        validation = {f"val_{k}": float(v) for k, v in scores.items()}
        for key, value in validation.items():
            if math.isfinite(value):
                logger.log(key, value, max(fitted.rounds, 1))
        logger.flush()
    folder = ctx.run_dir / sc.MODEL_DIR
    model_format.save_native(folder, spec, fitted.native,
                             reference=reference_sample(dataset, spec, predictor,
                                                        int(hp["seed"])))
    model_uri = run.log_model(folder, dataset, spec)
    if wanted:  # Triton's FIL repository of an XGBoost or LightGBM model
        exports.log_exports(ctx, run, folder, *wanted)
    logger.close()
    summary = {"mlflow_run_id": run.run_id, "experiment_id": run.experiment_id,
               "model_uri": model_uri, "data_snapshot": dataset.snapshot,
               "steps": fitted.rounds, "resumed_from": 0, "device": "cpu",
               "precision": "fp64", "threads": count, "history": fitted.history[-1:] + (
                   [{"round": fitted.rounds, **validation}] if validation else []),
               "trainer": "builtin", "framework": model.framework}
    run.finish(summary)
    write_record(ctx.run_dir / sc.TRAIN_FILE, summary)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in validation.items())
    print(f"trained {model.name} with {module.LIBRARY} {module.version()}: "
          f"{fitted.rounds or 'one'} {'rounds' if fitted.rounds else 'fit'} on {count} "
          f"thread(s){'; ' + shown if shown else ''}; MLflow run {run.run_id}")


def reference_sample(dataset: Dataset, spec: dict[str, Any], predictor, seed: int):
    """Up to REFERENCE_ROWS training inputs and the model's predictions for them (the drift
    check's reference), as the torch trainer writes it."""
    from mlc.runtime import model_format

    train = dataset.part("train")
    if len(train) > REFERENCE_ROWS:
        train = train.sample(n=REFERENCE_ROWS, random_state=seed).sort_index()
    frame = train[dataset.features].reset_index(drop=True)
    predictions = predictor.predict(frame.astype("float64").to_numpy())
    if predictions.ndim == 1:
        frame[model_format.PREDICTION_COLUMN] = predictions
    return frame
