"""An A/B endpoint's verdict: which labels, which metric, which test, and its pipeline.

The verdict joins the endpoint's prediction log with a labels source on a key and tests each
variant's metric against the baseline's (mlc/runtime/verdict/). Everything it could get wrong
without running is checked here: the key must be a column the log holds, the metric one the
log's predictions can give for the model's task, the baseline a variant.
"""

from __future__ import annotations

from ...schema.serving import Endpoint
from ...schema.types import duration_seconds
from ...step_contract import builtin_metrics
from .. import ir
from ..diagnostics import did_you_mean
from ..names import dns_label
from .context import Context

VERDICT_WITHOUT_AB = "MLC360"
VERDICT_METRIC = "MLC361"
VERDICT_COLUMN = "MLC362"
VERDICT_BASELINE = "MLC363"

REQUEST_ID = "request_id"  # prediction_log.REQUEST_ID_COLUMN (the compiler never imports it)
# What the log's one prediction column (P(positive class), or the value) can be scored by.
TASK_METRICS = {"classification": ("accuracy", "roc_auc", "log_loss"),
                "regression": ("rmse", "mae")}
DEFAULT_METRIC = {"classification": "accuracy", "regression": "rmse"}
TESTS = {"accuracy": "two-proportion-z", "roc_auc": "delong", "log_loss": "welch-t",
         "rmse": "welch-t", "mae": "welch-t"}


def resolve_verdict(ctx: Context, name: str, e: Endpoint, model: ir.Model,
                    sources: dict[str, ir.Source], platform: ir.Platform) -> ir.Verdict | None:
    r = e.rollout
    v = r.verdict
    path = ("serving", name, "rollout", "verdict")
    if v is None or e.mode == "batch" or r.strategy == "rolling":
        # rolling ignores every other strategy's settings on purpose: it is how an
        # environment (or `mlc promote --from-verdict`) ends the A/B of the base file
        return None
    if r.strategy != "ab":
        ctx.error(VERDICT_WITHOUT_AB, f"endpoint `{name}`: a verdict compares A/B variants, "
                  f"but the endpoint uses the {r.strategy} strategy", path,
                  help="use `strategy: ab` with `variants:`, or remove `verdict:`")
        return None
    ok = ctx.check_ref(v.labels, sources, "source", (*path, "labels"), "sources")
    metric = v.metric or DEFAULT_METRIC[model.task]
    allowed = TASK_METRICS[model.task]
    if metric not in allowed:
        ok = False
        ctx.error(VERDICT_METRIC, f"endpoint `{name}`: metric `{metric}` does not apply to "
                  f"{model.task} model `{model.name}`", (*path, "metric"),
                  help="use one of: " + ", ".join(f"`{m}`" for m in allowed))
    logged = sorted({REQUEST_ID, *(f.field for f in model.features)})
    if v.key not in logged:
        ok = False
        ctx.error(VERDICT_COLUMN, f"endpoint `{name}`: the verdict joins on `{v.key}`, which "
                  "the prediction log does not hold", (*path, "key"),
                  help=did_you_mean(v.key, logged) or "use `request_id` or one of the "
                  f"model's inputs: {', '.join(logged)}")
    label_column = v.label_column or model.label_column
    source = sources.get(v.labels)
    declared = {c.name for c in source.columns} if source else set()
    for field, key, column in (("key", "key", v.key),
                               ("label_column", "labelColumn", label_column)):
        if declared and column not in declared and (field != "key" or v.key in logged):
            ok = False
            # point at the setting, or at `labels` when the column is the default
            where = key if field in v.model_fields_set else "labels"
            ctx.error(VERDICT_COLUMN, f"endpoint `{name}`: the verdict reads column `{column}` "
                      f"of source `{v.labels}`, which declares no such column",
                      (*path, where),
                      help=did_you_mean(column, declared) or f"declare `{column}` in "
                      f"`sources.{v.labels}.columns`")
    variants = [x.name for x in r.variants]
    baseline = v.baseline or variants[0]
    if baseline not in variants:
        ok = False
        ctx.error(VERDICT_BASELINE, f"endpoint `{name}`: baseline `{baseline}` is not one of "
                  "its variants", (*path, "baseline"),
                  help=did_you_mean(baseline, variants)
                  or "use one of: " + ", ".join(f"`{x}`" for x in variants))
    if not ok:
        return None
    return ir.Verdict(
        labels_source=v.labels, key=v.key, label_column=label_column, metric=metric,
        higher_is_better=builtin_metrics(model.task)[metric], test=TESTS[metric],
        schedule=v.schedule, window_seconds=int(duration_seconds(v.window)),
        min_samples=v.min_samples, alpha=v.alpha, baseline=baseline,
        pipeline=dns_label("verdict", name),
        output_uri=f"{platform.artifact_root}/{ctx.project.metadata.name}/{ctx.env}/verdicts/"
                   f"{name}.json")

