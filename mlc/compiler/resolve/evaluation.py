"""A model's gates and champion comparison, checked against the metrics its evaluation has.

The evaluate step computes the builtin metrics (mlc/step_contract.py, the same list the
runtime computes; mlc/trainer_catalog.py says which each trainer's model has) for every
model, and adds the metrics a custom trainer declares and reports in MLC_METRICS_FILE. A
gate on any other name could never pass, so it is refused here.
"""

from __future__ import annotations

from ...schema.models import DATASET_TASKS, Model
from ...step_contract import (
    DEFAULT_RANKING_CUTOFFS,
    FAIRNESS_METRICS,
    builtin_metrics,
    ranking_metrics,
)
from ...trainer_catalog import TRAINERS
from ...trainer_catalog import metrics as catalog_metrics
from .. import ir
from .context import Context

UNKNOWN_METRIC = "MLC230"
METRIC_SHADOWS_BUILTIN = "MLC231"
DIRECTION_UNKNOWN = "MLC232"
DIRECTION_CONTRADICTS = "MLC233"
FAIRNESS_NOT_SET = "MLC542"


def custom_metrics(ctx: Context, m: Model, name: str) -> list[ir.CustomMetric]:
    custom = m.training.custom
    if custom is None:
        return []
    builtin = {} if m.task in DATASET_TASKS else builtin_metrics(m.task)
    out: dict[str, ir.CustomMetric] = {}
    for i, metric in enumerate(custom.metrics):
        path = ("models", name, "training", "custom", "metrics", i, "name")
        if metric.name in builtin:
            ctx.error(METRIC_SHADOWS_BUILTIN, f"custom metric `{metric.name}` of model `{name}` "
                      "has the name of a metric the evaluation computes itself", path,
                      help=f"rename it, e.g. `custom_{metric.name}`, or drop it and gate on "
                      "the builtin one")
            continue
        if metric.name in out:
            ctx.error("MLC204", f"custom metric `{metric.name}` is declared twice", path,
                      help="declare each metric once")
            continue
        direction = None if metric.direction is None else metric.direction == "maximize"
        out[metric.name] = ir.CustomMetric(name=metric.name, higher_is_better=direction)
    return list(out.values())


def known_metrics(m: Model, custom: list[ir.CustomMetric]) -> dict[str, bool | None]:
    """What the model's evaluation has: its trainer's metrics (mlc/trainer_catalog.py; a
    custom trainer's model gets the evaluation's), and a custom trainer's declared ones."""
    trainer = "custom" if m.training.custom is not None or m.framework not in TRAINERS \
        else m.framework
    if m.task == "ranking":  # whatever its trainer (another is refused: MLC335)
        cutoffs = set(m.ranking.k) if m.ranking is not None else DEFAULT_RANKING_CUTOFFS
        known: dict[str, bool | None] = dict(ranking_metrics(cutoffs))
    elif m.task in DATASET_TASKS:
        # a model trained on a dataset has no test rows: its trainer's metrics are its
        # evaluation
        known = {}
    else:
        known = dict(catalog_metrics(trainer, m.task))
    known.update({c.name: c.higher_is_better for c in custom})
    return dict(sorted(known.items()))


def _unknown(ctx: Context, metric: str, model: str, what: str, known: dict, path) -> None:
    help = "use one of the known metrics, or declare it under `training.custom.metrics` " \
        "and write it to MLC_METRICS_FILE"
    if "@" in metric:
        base, _, k = metric.partition("@")
        help = f"mlc spells it `{base}_at_{k}` (MLflow's metric names take no `@`)" + (
            "" if f"{base}_at_{k}" in known else "; " + help)
    ctx.error(UNKNOWN_METRIC, f"{what} of model `{model}` uses metric `{metric}`, which its "
              f"evaluation never has (known: {', '.join(known)})", path, help=help)


def gates(ctx: Context, m: Model, name: str, custom: list[ir.CustomMetric],
          fairness: dict[str, bool] | None = None) -> list[ir.Gate]:
    """`evaluation.gates`; `fairness` holds the fairness metrics the model computes."""
    known = {**known_metrics(m, custom), **(fairness or {})}
    return gate_list(ctx, m.evaluation.gates, known, name, ("models", name, "evaluation",
                                                            "gates"), "a gate")


def gate_list(ctx: Context, gates: list, known: dict[str, bool | None], name: str, path,
              what: str) -> list[ir.Gate]:
    out = []
    for i, g in enumerate(gates):
        if g.metric in FAIRNESS_METRICS and g.metric not in known:
            ctx.error(FAIRNESS_NOT_SET, f"{what} of model `{name}` uses fairness metric "
                      f"`{g.metric}`, which needs `evaluation.fairness`", (*path, i, "metric"),
                      help="add `fairness: {sensitive: <column>}` under `evaluation` (a "
                      "slice's gates use the evaluation's metrics only)")
        elif g.metric not in known:
            _unknown(ctx, g.metric, name, what, dict(sorted(known.items())),
                     (*path, i, "metric"))
        out.append(ir.Gate(metric=g.metric, min=g.min, max=g.max))
    return out


def comparison(ctx: Context, m: Model, name: str, custom: list[ir.CustomMetric]
               ) -> ir.ChampionComparison | None:
    c = m.evaluation.compare_with_production
    if c is None:
        return None
    path = ("models", name, "evaluation", "compareWithProduction")
    known = known_metrics(m, custom)
    if c.metric not in known:
        _unknown(ctx, c.metric, name, "`compareWithProduction`", known, (*path, "metric"))
        return None
    direction = known[c.metric]
    if c.higher_is_better is None and direction is None:
        ctx.error(DIRECTION_UNKNOWN, f"`compareWithProduction` of model `{name}` compares "
                  f"`{c.metric}`, but nothing says whether higher or lower is better", path,
                  help=f"declare `direction: maximize` (or `minimize`) on custom metric "
                  f"`{c.metric}`, or set `higherIsBetter`")
        return None
    if c.higher_is_better is not None and direction is not None \
            and c.higher_is_better != direction:
        word = "higher" if direction else "lower"
        ctx.error(DIRECTION_CONTRADICTS, f"`higherIsBetter: {str(c.higher_is_better).lower()}` "
                  f"contradicts metric `{c.metric}`, for which {word} is better",
                  (*path, "higherIsBetter"),
                  help="remove `higherIsBetter`: the metric's direction is used")
        return None
    return ir.ChampionComparison(
        metric=c.metric, max_regression=c.max_regression,
        higher_is_better=direction if c.higher_is_better is None else c.higher_is_better)
