"""An A/B endpoint's verdict: which labels, which metric, which test, and its pipeline.

The verdict joins the endpoint's prediction log with a labels source on a key (exactly) or an
entity (as of the label's time) and tests each variant's metric against the baseline's
(mlc/runtime/verdict/). Everything it could get wrong without running is checked here: the
key must be a column the log holds, the entity one whose key the endpoint's requests carry,
the metric one the log's predictions can give for the model's task, the baseline a variant.
"""

from __future__ import annotations

from ...schema.serving import Endpoint
from ...schema.types import duration_seconds
from ...step_contract import builtin_metrics
from .. import ir
from ..diagnostics import did_you_mean
from ..names import dns_label
from . import ranking
from .context import Context
from .labels import resolve_join

VERDICT_WITHOUT_AB = "MLC360"
VERDICT_METRIC = "MLC361"
VERDICT_BASELINE = "MLC363"

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
    if model.dataset is not None:
        return None  # MLC595 (resolve/datasets.py): no task metric to compare arms by
    if ranking.refuse(ctx, model, f"endpoint `{name}` has an A/B verdict, which compares "
                      "the variants' predictions row by row against labels", path,
                      help="remove `verdict:` and compare the rankers offline (each one's "
                      "`ndcg_at_<k>` in its evaluation)"):
        return None
    ok = ctx.check_ref(v.labels, sources, "source", (*path, "labels"), "sources")
    metric = v.metric or DEFAULT_METRIC[model.task]
    allowed = TASK_METRICS[model.task]
    if metric not in allowed:
        ok = False
        ctx.error(VERDICT_METRIC, f"endpoint `{name}`: metric `{metric}` does not apply to "
                  f"{model.task} model `{model.name}`", (*path, "metric"),
                  help="use one of: " + ", ".join(f"`{m}`" for m in allowed))
    join = resolve_join(ctx, f"endpoint `{name}`: the verdict", v, model, sources, path)
    variants = [x.name for x in r.variants]
    baseline = v.baseline or variants[0]
    if baseline not in variants:
        ok = False
        ctx.error(VERDICT_BASELINE, f"endpoint `{name}`: baseline `{baseline}` is not one of "
                  "its variants", (*path, "baseline"),
                  help=did_you_mean(baseline, variants)
                  or "use one of: " + ", ".join(f"`{x}`" for x in variants))
    if not ok or join is None:
        return None
    return ir.Verdict(
        labels_source=v.labels, key=join.key, label_column=join.label_column, metric=metric,
        within_seconds=join.within_seconds, label_time_column=join.label_time_column,
        higher_is_better=builtin_metrics(model.task)[metric], test=TESTS[metric],
        schedule=v.schedule, window_seconds=int(duration_seconds(v.window)),
        min_samples=v.min_samples, alpha=v.alpha, baseline=baseline,
        pipeline=dns_label("verdict", name),
        output_uri=f"{platform.artifact_root}/{ctx.project.metadata.name}/{ctx.env}/verdicts/"
                   f"{name}.json")


