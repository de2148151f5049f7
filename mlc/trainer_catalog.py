"""The bundled trainers and the metrics each reports: one table, read by the compiler (which
refuses a gate, a comparison or a search on a metric the trainer never has), the runtime
(which dispatches on the framework) and docs/trainers.md (checked against it by a test).

Pure data, no imports beyond the step contract: `mlc validate` reads it.

    framework -> (the `training` block that configures it, the trainer's model type)

Every bundled trainer's candidate is scored by the same evaluate step on the test rows, so a
(framework, task) reports the evaluation's metrics for that task (mlc/step_contract.py): for a
binary label all of CLASSIFICATION_METRICS, for more classes MULTICLASS_METRICS; a ranking
model NDCG and MAP at each of its cutoffs (`ranking.k`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .step_contract import (
    CLASSIFICATION_METRICS,
    DEFAULT_RANKING_CUTOFFS,
    MULTICLASS_METRICS,
    REGRESSION_METRICS,
    ranking_metrics,
)


@dataclass(frozen=True)
class Trainer:
    framework: str  # the model's `framework`
    block: str  # its block under `training` (camelCase as ml.yaml writes it)
    architecture: str  # spec.json's `architecture.type` of the model it saves
    library: str  # the Python distribution that trains and loads it
    model_file: str  # the file of the model folder an engine loads
    tasks: tuple[str, ...]
    default_on: bool  # trained without its block (torch: the bundled example's default)


TRAINERS: dict[str, Trainer] = {
    "torch": Trainer("torch", "builtin", "mlp", "torch", "weights.pt",
                     ("classification", "regression"), True),
    "xgboost": Trainer("xgboost", "xgboost", "xgboost", "xgboost", "model.json",
                       ("classification", "regression", "ranking"), False),
    "lightgbm": Trainer("lightgbm", "lightgbm", "lightgbm", "lightgbm", "model.txt",
                        ("classification", "regression", "ranking"), False),
    "sklearn": Trainer("sklearn", "sklearn", "sklearn", "scikit-learn", "model.skops",
                       ("classification", "regression"), False),
}
# the `training` blocks of bundled trainers, by the framework each trains
BLOCKS: dict[str, str] = {t.block: t.framework for t in TRAINERS.values()}
ARCHITECTURES: dict[str, Trainer] = {t.architecture: t for t in TRAINERS.values()}

# `ranking.objective` -> each library's own objective; a framework missing from an entry
# has no such objective
RANKING_OBJECTIVES: dict[str, dict[str, str]] = {
    "ndcg": {"xgboost": "rank:ndcg", "lightgbm": "lambdarank"},
    "pairwise": {"xgboost": "rank:pairwise"},
    "map": {"xgboost": "rank:map"},
    "xendcg": {"lightgbm": "rank_xendcg"},
}

# scikit-learn: which estimator fits which task, and which settings each takes
SKLEARN_TASKS: dict[str, tuple[str, ...]] = {
    "random_forest": ("classification", "regression"),
    "extra_trees": ("classification", "regression"),
    "gradient_boosting": ("classification", "regression"),
    "hist_gradient_boosting": ("classification", "regression"),
    "logistic_regression": ("classification",),
    "ridge": ("regression",),
}
_TREES = ("random_forest", "extra_trees", "gradient_boosting", "hist_gradient_boosting")
SKLEARN_SETTINGS: dict[str, tuple[str, ...]] = {  # ml.yaml's name -> the estimators taking it
    "nEstimators": ("random_forest", "extra_trees", "gradient_boosting"),
    "maxDepth": _TREES,
    "minSamplesLeaf": _TREES,
    "learningRate": ("gradient_boosting", "hist_gradient_boosting"),
    "maxIter": ("logistic_regression", "hist_gradient_boosting"),
    "c": ("logistic_regression",),
    "alpha": ("ridge",),
}


def metrics(framework: str, task: str, cutoffs=DEFAULT_RANKING_CUTOFFS) -> dict[str, bool]:
    """Metric name -> True when higher is better, for a bundled trainer's model (what the
    evaluate step computes for it on the test rows); `cutoffs`: a ranking model's `k`."""
    if framework not in TRAINERS and framework != "custom":
        raise KeyError(framework)
    if task == "ranking":
        if framework not in TRAINERS or task not in TRAINERS[framework].tasks:
            raise KeyError(task)
        return ranking_metrics(cutoffs)
    if task == "regression":
        return dict(REGRESSION_METRICS)
    if task == "classification":
        return dict(CLASSIFICATION_METRICS)
    raise KeyError(task)


def table() -> list[tuple[str, str, dict[str, bool]]]:
    """(framework, task, metrics) for every bundled trainer and task it takes, in order."""
    return [(f, task, metrics(f, task)) for f, t in sorted(TRAINERS.items()) for task in t.tasks]


def multiclass_metrics() -> tuple[str, ...]:
    """The classification metrics that a label with more than two values still gets."""
    return MULTICLASS_METRICS
