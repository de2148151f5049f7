"""An A/B endpoint's verdict: which labels, which metric, which test, and its pipeline.

The verdict joins the endpoint's prediction log with a labels source on a key (exactly) or an
entity (as of the label's time) and tests each variant's metric against the baseline's
(mlc/runtime/verdict/). Everything it could get wrong without running is checked here: the
key must be a column the log holds, the entity one whose key the endpoint's requests carry,
the metric one the log's predictions can give for the model's task, the baseline a variant.
"""

from __future__ import annotations

from ...schema.serving import Endpoint, Verdict
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
JOIN_ENTITY = "MLC382"  # an entity the endpoint's model is not keyed by
JOIN_TIME = "MLC383"  # an as-of join on labels without a declared time column
JOIN_SETTINGS = "MLC384"  # `key` with `entity`, or `within` without it
DEFAULT_WITHIN = "1d"

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
    key, within = _join(ctx, name, v, model, path)
    if key is None:
        return None
    if v.entity is None and v.key not in logged:
        ok = False
        ctx.error(VERDICT_COLUMN, f"endpoint `{name}`: the verdict joins on `{v.key}`, which "
                  "the prediction log does not hold", (*path, "key"),
                  help=did_you_mean(v.key, logged) or "use `request_id` or one of the "
                  f"model's inputs: {', '.join(logged)}")
    label_column = v.label_column or model.label_column
    source = sources.get(v.labels)
    declared = {c.name for c in source.columns} if source else set()
    checked = [("entity" if v.entity else "key", key),
               ("label_column", label_column)]
    if v.entity:
        if source and declared and source.timestamp_field not in declared:
            ok = False
            ctx.error(JOIN_TIME, f"endpoint `{name}`: the verdict joins labels to predictions "
                      f"as of the label's time, but source `{v.labels}` declares no column "
                      f"`{source.timestamp_field}` (its `timestampField`)", (*path, "labels"),
                      help=f"declare `{source.timestamp_field}` in `sources.{v.labels}.columns`"
                      ", or set the source's `timestampField` to the column with the label's "
                      "time")
    for field, column in checked:
        if declared and column not in declared and (field != "key" or v.key in logged):
            ok = False
            # point at the setting, or at `labels` when the column is the default
            where = ({"label_column": "labelColumn"}.get(field, field)
                     if field in v.model_fields_set else "labels")
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
        labels_source=v.labels, key=key, label_column=label_column, metric=metric,
        within_seconds=within,
        label_time_column=sources[v.labels].timestamp_field if v.entity else None,
        higher_is_better=builtin_metrics(model.task)[metric], test=TESTS[metric],
        schedule=v.schedule, window_seconds=int(duration_seconds(v.window)),
        min_samples=v.min_samples, alpha=v.alpha, baseline=baseline,
        pipeline=dns_label("verdict", name),
        output_uri=f"{platform.artifact_root}/{ctx.project.metadata.name}/{ctx.env}/verdicts/"
                   f"{name}.json")



def _join(ctx: Context, name: str, v: Verdict, model: ir.Model, path: tuple
          ) -> tuple[str | None, int | None]:
    """The log's join column and the as-of window (None: an exact join); no column when the
    join settings are wrong (reported)."""
    if v.entity is None:
        if v.within is not None:
            ctx.error(JOIN_SETTINGS, f"endpoint `{name}`: `within` bounds an as-of join on an "
                      "entity, and the verdict joins on `key`", (*path, "within"),
                      help="add `entity: <name>` (labels keyed by an entity and a time), or "
                      "remove `within`")
            return None, None
        return v.key, None
    if "key" in v.model_fields_set:
        ctx.error(JOIN_SETTINGS, f"endpoint `{name}`: the verdict sets both `key` and `entity`",
                  (*path, "entity"), help="keep `key` for labels keyed by the request (or an "
                  "input), `entity` for labels keyed by an entity and a time")
        return None, None
    entities = ctx.project.entities
    served = sorted(n for n, x in entities.items() if x.join_key in model.entity_keys)
    entity = entities.get(v.entity)
    if entity is None or v.entity not in served:
        what = "is no entity" if entity is None else \
            f"is not an entity of model `{model.name}`'s features"
        ctx.error(JOIN_ENTITY, f"endpoint `{name}`: the verdict joins on entity `{v.entity}`, "
                  f"which {what}: the endpoint's requests do not carry its key",
                  (*path, "entity"),
                  help=did_you_mean(v.entity, served) or "use one of the endpoint's entities: "
                  + (", ".join(f"`{n}`" for n in served) or "none (its features have none)"))
        return None, None
    return entity.join_key, int(duration_seconds(v.within or DEFAULT_WITHIN))
