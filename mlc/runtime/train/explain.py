"""The `explain` step: SHAP global feature importance of the trained model.

    test rows (up to `samples`)      the rows explained: data the model did not learn from
    training rows (up to `background`)  what a feature's absence is replaced with
    -> SHAP values by shap's KernelExplainer over the model's predictions
    -> mean |SHAP| per feature: MLflow metrics `shap_<feature>`, explain.json and
       explain.html (a ranked table) as artifacts of the training run

The explainer sees the model only through its predictions (any format the evaluation scores,
scoring.py), so a custom trainer's model is explained the same way. Its cost is bounded: at
most `samples` x (2 x features + 2048) x `background` rows are predicted (every coalition
of features, when there are few). For classification
the explained output is P(positive class), or each class's probability (importance then
averages over the classes); for regression the prediction, for ranking the score.
"""

from __future__ import annotations

import html
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mlc.runtime.step import StepContext, StepFailed
from mlc.step_contract import EXPLAIN_FILE, EXPLAIN_REPORT, TRAIN_FILE

METRIC_PREFIX = "shap_"


def importance(predict, features: list[str], rows: np.ndarray, background: np.ndarray,
               seed: int) -> tuple[dict[str, float], float]:
    """Mean |SHAP value| per feature over `rows`, and the mean base value."""
    import shap

    explainer = shap.KernelExplainer(predict, background, seed=seed)
    values = explainer.shap_values(rows, silent=True)
    if isinstance(values, list):  # one array per output, in older shap
        values = np.stack(values, axis=-1)
    values = np.abs(np.asarray(values, dtype=np.float64))
    if values.ndim == 3:  # (rows, features, outputs): one value per class
        values = values.mean(axis=2)
    means = values.mean(axis=0)
    base = float(np.mean(explainer.expected_value))
    return {f: float(v) for f, v in zip(features, means, strict=True)}, base


def report_html(model: str, result: dict[str, Any]) -> str:
    """A self-contained page: features ranked by importance, a bar each."""
    ranked = result["features"]
    top = max((f["mean_abs_shap"] for f in ranked), default=0.0) or 1.0
    rows = "\n".join(
        f"<tr><td>{html.escape(f['name'])}</td><td>{f['mean_abs_shap']:.6g}</td>"
        f"<td><div style=\"background:#4c78a8;height:0.8em;width:"
        f"{100 * f['mean_abs_shap'] / top:.1f}%\"></div></td></tr>" for f in ranked)
    return (
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>SHAP importance of {html.escape(model)}</title></head><body>\n"
        f"<h1>Global feature importance of {html.escape(model)}</h1>\n"
        f"<p>Mean absolute SHAP value over {result['samples']} test rows, against "
        f"{result['background']} training rows ({html.escape(result['explainer'])}); "
        f"base value {result['base_value']:.6g}.</p>\n"
        "<table><tr><th>feature</th><th>mean |SHAP|</th><th></th></tr>\n"
        f"{rows}\n</table>\n</body></html>\n")


def run(ctx: StepContext) -> None:
    from mlc.runtime.train.data import load_dataset
    from mlc.runtime.train.evaluation import candidate, label_classes
    from mlc.runtime.train.scoring import typed_inputs
    from mlc.runtime.train.tracking import client_for

    model = ctx.model
    settings = model.explain
    if settings is None:
        raise StepFailed(f"model `{model.name}` has no `evaluation.explain`")
    trained = ctx.run_dir / TRAIN_FILE
    if not trained.is_file():
        raise StepFailed(f"no {TRAIN_FILE} in {ctx.run_dir}: run the train step first")
    train = json.loads(trained.read_text("utf-8"))
    dataset = load_dataset(ctx)
    test, fit = dataset.part("test"), dataset.part("train")
    if len(test) == 0 or len(fit) == 0:
        raise StepFailed("no test or training rows to explain the model with")
    test = test.sample(n=min(settings.samples, len(test)), random_state=settings.seed)
    fit = fit.sample(n=min(settings.background, len(fit)), random_state=settings.seed)
    classes = label_classes(dataset, model.task)
    with tempfile.TemporaryDirectory(prefix="mlc-explain-") as tmp:
        predictor = candidate(ctx, model, train, classes, Path(tmp))
        features = list(predictor.features)

        def predict(x: np.ndarray) -> np.ndarray:
            import pandas as pd

            frame = typed_inputs(pd.DataFrame(x, columns=features), model, features)
            return np.asarray(predictor.predict(frame), dtype=np.float64)

        means, base = importance(predict, features,
                                 test[features].to_numpy(dtype=np.float64),
                                 fit[features].to_numpy(dtype=np.float64), settings.seed)
    ranked = sorted(means.items(), key=lambda kv: (-kv[1], kv[0]))
    result = {"model": model.name, "explainer": "shap.KernelExplainer",
              "samples": len(test), "background": len(fit), "base_value": base,
              "features": [{"name": k, "mean_abs_shap": v} for k, v in ranked],
              "mlflow_run_id": train.get("mlflow_run_id")}
    path = ctx.run_dir / EXPLAIN_FILE
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", "utf-8")
    page = ctx.run_dir / EXPLAIN_REPORT
    page.write_text(report_html(model.name, result), "utf-8")
    if train.get("mlflow_run_id"):
        from mlflow.entities import Metric

        client = client_for(ctx.mlflow_tracking_uri)
        stamp = int(time.time() * 1000)
        client.log_batch(train["mlflow_run_id"], metrics=[
            Metric(f"{METRIC_PREFIX}{k}", v, stamp, 0) for k, v in ranked if math.isfinite(v)],
            synchronous=True)
        for file in (path, page):
            client.log_artifact(train["mlflow_run_id"], str(file), "mlc")
    print(f"explained {model.name} on {len(test)} test rows: "
          + ", ".join(f"{k} {v:.4g}" for k, v in ranked))
