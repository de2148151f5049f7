"""Evaluation: the candidate on the held-out (newest) rows, ml.yaml's gates, the champion.

The gates are `evaluation.gates` (each metric within min/max) and, with
`compareWithProduction`, the candidate against the version that holds the production alias,
scored on the same test rows: it may be worse by at most `maxRegression`. With no such
version yet, the comparison passes (there is nothing to regress from). Fails the pipeline
with exit 11 and a table of what passed and what did not; either way the metrics are logged
to the training run and written to evaluation.json for the register step.

Metrics are computed here with numpy (scikit-learn's ndcg_score for NDCG): classification
roc_auc, pr_auc, log_loss, accuracy, precision, recall, f1, brier (binary; multi-class:
roc_auc one-vs-rest macro, log_loss, accuracy, f1 macro); regression rmse, mae, mse, r2;
ranking ndcg_at_<k> (scikit-learn's ndcg_score, query by query) and map_at_<k>, averaged over
the test queries (`ranking_metrics`).
mlc/step_contract.py lists them (with their direction) for the compiler, which refuses a
gate on any other name. The model is scored whatever its format (scoring.py); a custom
trainer's declared metrics (train.json, from MLC_METRICS_FILE) join the computed ones, and
a champion comparison on one of those reads the production version's recorded value.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mlc.compiler import ir
from mlc.runtime import step_summary
from mlc.runtime.step import EXIT_GATES, StepContext, StepFailed
from mlc.step_contract import EVALUATION_FILE, MODEL_DIR, TRAIN_FILE

_EPS = 1e-15


# ---------------------------------------------------------------------------------------
# Metrics


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    bounds = np.flatnonzero(np.diff(xs)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(x)]])
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat((starts + ends - 1) / 2 + 1, ends - starts)
    return ranks


def roc_auc(positive: np.ndarray, score: np.ndarray) -> float:
    positive = positive.astype(bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = _ranks(score.astype(np.float64))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(positive: np.ndarray, score: np.ndarray) -> float:
    positive = positive.astype(bool)
    if not positive.any():
        return float("nan")
    order = np.argsort(-score, kind="mergesort")
    s, p = score[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # end of each tie group
    tp = np.cumsum(p)[last]
    precision = tp / (last + 1)
    recall = tp / p.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def classification_metrics(truth: np.ndarray, predictions: np.ndarray,
                           classes: list) -> dict[str, float]:
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index.get(v, -1) for v in truth.tolist()])
    known = y >= 0
    y, predictions = y[known], predictions[known]
    if len(y) == 0:
        return {}
    if predictions.ndim == 1:  # binary: P(classes[1])
        p = np.clip(predictions.astype(np.float64), _EPS, 1 - _EPS)
        pos = y == 1
        hard = p >= 0.5
        tp, fp, fn = int((hard & pos).sum()), int((hard & ~pos).sum()), int((~hard & pos).sum())
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        return {
            "roc_auc": roc_auc(pos, p), "pr_auc": average_precision(pos, p),
            "log_loss": float(-np.mean(np.where(pos, np.log(p), np.log(1 - p)))),
            "accuracy": float(np.mean(hard == pos)), "precision": precision,
            "recall": recall, "brier": float(np.mean((p - pos) ** 2)),
            "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        }
    p = np.clip(predictions.astype(np.float64), _EPS, 1.0)
    hard = p.argmax(axis=1)
    aucs = [roc_auc(y == k, p[:, k]) for k in range(p.shape[1])]
    f1s = []
    for k in range(p.shape[1]):
        tp = int(((hard == k) & (y == k)).sum())
        denominator = int((hard == k).sum()) + int((y == k).sum())
        f1s.append(2 * tp / denominator if denominator else 0.0)
    return {
        "roc_auc": float(np.nanmean(aucs)) if not all(map(math.isnan, aucs)) else float("nan"),
        "log_loss": float(-np.mean(np.log(p[np.arange(len(y)), y]))),
        "accuracy": float(np.mean(hard == y)), "f1": float(np.mean(f1s)),
    }


def regression_metrics(truth: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    t, p = truth.astype(np.float64), predictions.astype(np.float64)
    if len(t) == 0:
        return {}
    err = p - t
    mse = float(np.mean(err ** 2))
    var = float(np.var(t))
    return {"rmse": math.sqrt(mse), "mse": mse, "mae": float(np.mean(np.abs(err))),
            "r2": 1 - mse / var if var > 0 else float("nan")}


def average_precision_at(relevant: np.ndarray, score: np.ndarray, k: int) -> float:
    """AP@k of one query: the precision at each relevant row within the top k, summed,
    over min(k, relevant rows). Rows ordered by score, highest first; tied scores keep
    the rows' order."""
    order = np.argsort(-score, kind="mergesort")[:k]
    hits = relevant[order].astype(np.float64)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(np.sum(precision * hits) / min(k, int(relevant.sum())))


def ranking_metrics(grades: np.ndarray, scores: np.ndarray, queries: np.ndarray,
                    cutoffs) -> dict[str, float]:
    """NDCG@k and MAP@k, each the mean over the queries. NDCG is scikit-learn's ndcg_score
    on the query's rows (gains = the grades, tied scores averaged); for MAP a row is
    relevant when its grade is above 0. A query of one row, or with no relevant row, is left
    out: no order of its rows is better than another. With no query left, NaN (a gate on
    it fails)."""
    from sklearn.metrics import ndcg_score

    from mlc.step_contract import ranking_metric

    g = np.asarray(grades, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    _, codes = np.unique(np.asarray(queries), return_inverse=True)
    order = np.argsort(codes, kind="mergesort")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    ndcg: dict[int, list[float]] = {k: [] for k in cutoffs}
    ap: dict[int, list[float]] = {k: [] for k in cutoffs}
    for rows in np.split(order, bounds) if len(order) else []:
        truth, predicted = g[rows], s[rows]
        if len(rows) < 2 or not np.any(truth > 0):
            continue
        for k in cutoffs:
            ndcg[k].append(float(ndcg_score(truth[None, :], predicted[None, :], k=k)))
            ap[k].append(average_precision_at(truth > 0, predicted, k))
    out = {}
    for k in sorted(cutoffs):
        out[ranking_metric("map", k)] = float(np.mean(ap[k])) if ap[k] else float("nan")
        out[ranking_metric("ndcg", k)] = float(np.mean(ndcg[k])) if ndcg[k] else float("nan")
    return out


def metric_function(task: str, spec: dict[str, Any]
                    ) -> Callable[[np.ndarray, np.ndarray], dict[str, float]]:
    if task == "regression":
        return regression_metrics
    return lambda truth, predictions: classification_metrics(truth, predictions,
                                                             spec["classes"])


def score(predictor, frame, label: str, task: str, ranking: ir.Ranking | None = None
          ) -> dict[str, float]:
    """The metrics of `task` on `frame`'s rows; a ranker's over the queries of
    `ranking.group`."""
    predictions = predictor.predict(frame)
    truth = frame[label].to_numpy()
    if task == "ranking":
        assert ranking is not None
        return ranking_metrics(truth, predictions, frame[ranking.group].to_numpy(), ranking.k)
    return metric_function(task, {"classes": predictor.classes})(truth, predictions)


def label_classes(dataset, task: str) -> list | None:
    """The label values in order, for a model that does not record its classes."""
    if task != "classification":
        return None
    values = dataset.frame[dataset.label].dropna().unique().tolist()
    return sorted(values, key=lambda v: (not isinstance(v, int | float), v))


# ---------------------------------------------------------------------------------------
# Gates


def check_gates(gates: list[ir.Gate], metrics: dict[str, float]) -> list[dict[str, Any]]:
    results = []
    for gate in gates:
        value = metrics.get(gate.metric)
        ok = value is not None and math.isfinite(value) \
            and (gate.min is None or value >= gate.min) \
            and (gate.max is None or value <= gate.max)
        results.append({"metric": gate.metric, "min": gate.min, "max": gate.max,
                        "value": value, "passed": bool(ok)})
    return results


def compare(comparison: ir.ChampionComparison, candidate: dict[str, float],
            champion: dict[str, float]) -> dict[str, Any]:
    mine, theirs = candidate.get(comparison.metric), champion.get(comparison.metric)
    if mine is None or theirs is None or not math.isfinite(mine) or not math.isfinite(theirs):
        return {"metric": comparison.metric, "candidate": mine, "champion": theirs,
                "passed": False, "note": "the metric is missing for one of the models"}
    if comparison.higher_is_better:
        ok = mine >= theirs - comparison.max_regression
    else:
        ok = mine <= theirs + comparison.max_regression
    return {"metric": comparison.metric, "candidate": mine, "champion": theirs,
            "max_regression": comparison.max_regression,
            "higher_is_better": comparison.higher_is_better, "passed": bool(ok)}


def champion_metrics(ctx: StepContext, model: ir.Model, frame,
                     classes: list | None) -> dict[str, Any] | None:
    """Metrics of the version holding the production alias on `frame`; None if none. A
    custom trainer's metric cannot be recomputed: the version's recorded value is used."""
    from mlc.runtime.train import scoring
    from mlc.runtime.train.registry import alias_version, download_model
    from mlc.runtime.train.tracking import client_for

    client = client_for(ctx.mlflow_tracking_uri)
    version = alias_version(client, model.registered_name, model.production_alias)
    if version is None:
        return None
    metric = model.compare_with_production.metric if model.compare_with_production else None
    if metric in {m.name for m in model.training.metrics}:
        recorded = (version.tags or {}).get(f"metric.{metric}")
        if recorded is None:
            return {"version": int(version.version), "metrics": {},
                    "note": f"the production version has no recorded `{metric}`"}
        return {"version": int(version.version), "metrics": {metric: float(recorded)}}
    with tempfile.TemporaryDirectory(prefix="mlc-champion-") as tmp:
        path = download_model(f"models:/{model.registered_name}@{model.production_alias}",
                              tmp)
        predictor = scoring.load(path, model, classes)
        missing = [f for f in predictor.features if f not in frame.columns]
        if missing:
            return {"version": int(version.version), "metrics": {},
                    "note": f"the champion reads {', '.join(missing)}, which the test data "
                    "lacks"}
        return {"version": int(version.version),
                "metrics": score(predictor, frame, model.label_column, model.task,
                                 model.ranking)}


def summary_facts(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The gates, the slices' gates and the champion comparison, for `mlc run`'s display."""
    facts = [step_summary.gate(g) for g in result["gates"]]
    facts += [step_summary.gate(g, f"{r['column']} = {r['value']!r}")
              for r in result.get("slices", []) for g in r["gates"]]
    comparison = result.get("comparison")
    if comparison:
        facts.append({"kind": "comparison", "metric": comparison["metric"],
                      "candidate": comparison.get("candidate"),
                      "champion": comparison.get("champion"),
                      "max_regression": comparison.get("max_regression"),
                      "passed": bool(comparison["passed"]), "note": comparison.get("note")})
    return facts


def gate_text(g: dict[str, Any]) -> str:
    bound = " and ".join(b for b in (f">= {g['min']}" if g["min"] is not None else "",
                                     f"<= {g['max']}" if g["max"] is not None else "") if b)
    value = "missing" if g["value"] is None else f"{g['value']:.4f}"
    return f"{g['metric']} {value} (must be {bound}): " + ("ok" if g["passed"] else "FAILED")


def slice_results(slices: list[ir.Slice], test, label: str, task: str, predictor,
                  ranking: ir.Ranking | None = None) -> list[dict[str, Any]]:
    """Each slice value's metrics on its test rows, and the slice's gates on them. A value
    with no test rows has no metrics, so its gates fail: a gate never passes on nothing."""
    out = []
    for s in slices:
        for value in s.values:
            rows = test[test[s.column] == value]
            metrics = score(predictor, rows, label, task, ranking) if len(rows) else {}
            gates = check_gates(s.gates, metrics)
            out.append({"column": s.column, "value": value, "rows": len(rows),
                        "metrics": metrics, "gates": gates,
                        "passed": all(g["passed"] for g in gates)})
    return out


def render(result: dict[str, Any]) -> str:
    lines = [f"evaluation on {result['test_rows']} test rows: "
             + ("passed" if result["passed"] else "FAILED")]
    lines += [f"  {gate_text(g)}" for g in result["gates"]]
    lines += [f"  slice {r['column']} = {r['value']!r} ({r['rows']} rows): {gate_text(g)}"
              for r in result.get("slices", []) for g in r["gates"]]
    c = result.get("comparison")
    if c:
        if c.get("champion") is None and c.get("note"):
            lines.append(f"  vs production: {c['note']}: "
                         + ("ok" if c["passed"] else "FAILED"))
        else:
            word = "lower" if c.get("higher_is_better", True) else "higher"
            lines.append(f"  vs production (version {c.get('version')}): {c['metric']} "
                         f"{_fmt(c['candidate'])}, production {_fmt(c['champion'])}, may be at "
                         f"most {c.get('max_regression')} {word}: "
                         + ("ok" if c["passed"] else "FAILED"))
    return "\n".join(lines)


def candidate(ctx: StepContext, model: ir.Model, train: dict[str, Any], classes: list | None,
              tmp: Path):
    """The trained model: the run folder's mlc model, else the MLflow model it logged."""
    from mlc.runtime import model_format
    from mlc.runtime.train import scoring
    from mlc.runtime.train.registry import download_model

    folder = ctx.run_dir / MODEL_DIR
    if (folder / model_format.SPEC_FILE).is_file():
        return scoring.load(folder, model, classes)
    if not train.get("model_uri"):
        raise StepFailed(f"{TRAIN_FILE} names no model: the train step logged none")
    return scoring.load(download_model(train["model_uri"], tmp), model, classes)


def _fmt(value) -> str:
    return "missing" if value is None else f"{value:.4f}"


def run(ctx: StepContext) -> None:
    from mlc.runtime.train import fairness
    from mlc.runtime.train.data import load_dataset
    from mlc.runtime.train.tracking import client_for

    model = ctx.model
    trained = ctx.run_dir / TRAIN_FILE
    if not trained.is_file():
        raise StepFailed(f"no {TRAIN_FILE} in {ctx.run_dir}: run the train step first")
    train = json.loads(trained.read_text("utf-8"))
    if model.dataset is not None:
        # trained on a dataset: no test rows to score; the trainer's declared metrics are
        # the evaluation (the compiler allows gates on nothing else)
        test, classes, computed, sliced = None, None, {}, []
        test_rows, flavour = 0, train.get("model_format", "mlflow")
    else:
        dataset = load_dataset(ctx)
        test = dataset.part("test")
        classes = label_classes(dataset, model.task)
        with tempfile.TemporaryDirectory(prefix="mlc-candidate-") as tmp:
            predictor = candidate(ctx, model, train, classes, Path(tmp))
            computed = score(predictor, test, dataset.label, model.task, model.ranking) \
                if len(test) else {}
            if model.fairness_column and len(test):
                computed.update(fairness.fairness_metrics(
                    test[dataset.label].to_numpy(), predictor.predict(test),
                    list(predictor.classes or []), test[model.fairness_column].to_numpy()))
            sliced = slice_results(model.slices, test, dataset.label, model.task,
                                   predictor, model.ranking)
        test_rows, flavour = len(test), predictor.flavour
    # the custom trainer's declared metrics, as its command reported them
    metrics = {**computed, **train.get("custom_metrics", {})}
    result: dict[str, Any] = {"test_rows": test_rows, "metrics": metrics,
                              "model_format": flavour,
                              "gates": check_gates(model.gates, metrics)}
    if sliced:
        result["slices"] = sliced
    if model.compare_with_production is not None:
        champion = champion_metrics(ctx, model, test, classes)
        if champion is None:
            result["comparison"] = {"metric": model.compare_with_production.metric,
                                    "champion": None, "passed": True,
                                    "note": f"no version holds `{model.production_alias}` yet"}
        elif not champion["metrics"]:
            result["comparison"] = {"metric": model.compare_with_production.metric,
                                    "champion": None, "passed": False,
                                    "version": champion["version"], "note": champion["note"]}
        else:
            result["comparison"] = {**compare(model.compare_with_production, metrics,
                                              champion["metrics"]),
                                    "version": champion["version"]}
    result["passed"] = all(g["passed"] for g in result["gates"]) \
        and result.get("comparison", {}).get("passed", True) \
        and all(r["passed"] for r in sliced)
    result["model_uri"] = train.get("model_uri")
    result["mlflow_run_id"] = train.get("mlflow_run_id")

    client = client_for(ctx.mlflow_tracking_uri)
    from mlflow.entities import Metric, RunTag

    stamp = int(time.time() * 1000)
    logged = [Metric(f"test_{k}", float(v), stamp, 0) for k, v in sorted(computed.items())
              if math.isfinite(v)]
    logged += [Metric(fairness.metric_name(r, k), float(v), stamp, 0)
               for r in sliced for k, v in sorted(r["metrics"].items()) if math.isfinite(v)]
    comparison = result.get("comparison") or {}
    if comparison.get("champion") is not None:
        logged.append(Metric(f"production_{comparison['metric']}",
                             float(comparison["champion"]), stamp, 0))
    client.log_batch(train["mlflow_run_id"], metrics=logged,
                     tags=[RunTag("mlc.gates", "passed" if result["passed"] else "failed")],
                     synchronous=True)
    path = ctx.run_dir / EVALUATION_FILE
    path.write_text(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n", "utf-8")
    client.log_artifact(train["mlflow_run_id"], str(path), "mlc")
    step_summary.write(ctx, summary_facts(result))
    text = render(result)
    if not result["passed"]:
        raise StepFailed(f"{text}\nthe model was not registered", EXIT_GATES)
    print(text)
