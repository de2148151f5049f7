"""A model's slice gates and fairness metrics, checked against the columns it has.

Both group the test rows by a column of the training data: a feature or an entity key (the
rows hold nothing else). A slice's gates judge the evaluation's metrics on the rows of each
of its values; `evaluation.fairness` adds fairlearn's group metrics (mlc/step_contract.py's
FAIRNESS_METRICS), which then gate like any metric. Fairlearn's metrics compare selection
and error rates of a binary classifier, so regression models cannot have them.
"""

from __future__ import annotations

from ...schema.models import Model
from ...step_contract import FAIRNESS_METRICS
from .. import ir
from .context import Context
from .evaluation import gate_list, known_metrics

UNKNOWN_GROUP_COLUMN = "MLC540"
FAIRNESS_NEEDS_CLASSIFICATION = "MLC541"
SLICE_VALUE_NOT_NUMERIC = "MLC543"


def _column(ctx: Context, column: str, columns: list[str], model: str, what: str,
            path) -> bool:
    if column in columns:
        return True
    ctx.error(UNKNOWN_GROUP_COLUMN, f"{what} of model `{model}` groups the test rows by "
              f"`{column}`, which its training data lacks (its columns: "
              f"{', '.join(columns)})", path,
              help="use one of the model's features or entity keys, or add the column to "
              "its inputs")
    return False


def fairness_metrics(ctx: Context, m: Model, name: str, columns: list[str]
                     ) -> tuple[str | None, dict[str, bool]]:
    """The sensitive column and the metrics it adds (none when it is not usable)."""
    f = m.evaluation.fairness
    if f is None:
        return None, {}
    path = ("models", name, "evaluation", "fairness")
    if m.task != "classification":
        ctx.error(FAIRNESS_NEEDS_CLASSIFICATION, f"model `{name}` is a {m.task} model, but "
                  "fairness metrics compare the selection and error rates of a classifier",
                  path, help="remove `fairness`, or gate per slice (`slices`) on `rmse`")
        return None, {}
    if not _column(ctx, f.sensitive, columns, name, "`fairness`", (*path, "sensitive")):
        return None, {}
    return f.sensitive, dict(FAIRNESS_METRICS)


def slices(ctx: Context, m: Model, name: str, keys: list[str], features: list[str],
           custom: list[ir.CustomMetric]) -> list[ir.Slice]:
    known = known_metrics(m, custom)
    columns = [*keys, *features]
    out = []
    for i, s in enumerate(m.evaluation.slices):
        path = ("models", name, "evaluation", "slices", i)
        _column(ctx, s.column, columns, name, "a slice", (*path, "column"))
        # the training data holds every feature as a number
        odd = [v for v in s.values if isinstance(v, str | bool)]
        if odd and s.column in features and s.column not in keys:
            ctx.error(SLICE_VALUE_NOT_NUMERIC, f"slice on feature `{s.column}` of model "
                      f"`{name}` has value {odd[0]!r}, but features are numbers: the slice "
                      "would never hold a row", (*path, "values"),
                      help="list numeric values of the feature")
        gates = gate_list(ctx, s.gates, known, name, (*path, "gates"), "a slice's gate")
        out.append(ir.Slice(column=s.column, values=list(s.values), gates=gates))
    return out
