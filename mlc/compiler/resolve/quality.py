"""Model-quality monitors: an online endpoint's metrics from late labels, on a schedule.

The monitor reads the endpoint's prediction log and a labels source through the verdict's
join (labels.py checks it), scores the joined rows with the metrics the trainer's evaluation
reports, and compares them with the served version's `test_<metric>`
(mlc/runtime/quality/). A monitor on a batch endpoint (no prediction log), a metric the
model's task does not have or an endpoint that logs nothing is refused here.
"""

from __future__ import annotations

from ...schema.types import duration_seconds
from ...step_contract import builtin_metrics
from .. import ir
from ..names import dns_label
from . import ranking
from .context import Context
from .labels import resolve_join
from .models import NO_TRAINING, has_training
from .verdict import DEFAULT_METRIC, TASK_METRICS

QUALITY_ENDPOINT = "MLC544"  # a batch endpoint, or one whose prediction log samples nothing
QUALITY_METRIC = "MLC545"  # a metric the model's task does not have


def resolve_quality_monitors(ctx: Context, endpoints: dict[str, ir.Endpoint],
                             models: dict[str, ir.Model], sources: dict[str, ir.Source],
                             routes: dict[str, ir.Route]) -> dict[str, ir.QualityMonitor]:
    out = {}
    for name in sorted(ctx.project.monitoring.quality):
        q = ctx.project.monitoring.quality[name]
        path = ("monitoring", "quality", name)
        if not ctx.check_ref(q.endpoint, endpoints, "endpoint", (*path, "endpoint"), "serving"):
            continue
        endpoint = endpoints[q.endpoint]
        model = models[endpoint.model]
        if model.dataset is not None:
            continue  # MLC595 (resolve/datasets.py): no task metric to join labels by
        ok = ctx.check_ref(q.labels, sources, "source", (*path, "labels"), "sources")
        if endpoint.mode == "batch" or endpoint.prediction_log_sample <= 0:
            ok = False
            why = ("is a batch endpoint, which writes no prediction log" if endpoint.mode ==
                   "batch" else "logs no predictions (its sample rate is 0)")
            ctx.error(QUALITY_ENDPOINT, f"quality monitor `{name}`: endpoint `{q.endpoint}` "
                      f"{why}: there is nothing to join the labels with", (*path, "endpoint"),
                      help="watch an online endpoint that samples predictions into its log "
                      f"(`serving.{q.endpoint}.predictionLogSample` above 0)")
        if ranking.refuse(ctx, model, f"quality monitor `{name}` scores endpoint "
                          f"`{q.endpoint}`'s logged predictions row by row against labels",
                          (*path, "endpoint"), help="remove the monitor; a ranker is judged "
                          "on whole queries by its training's evaluation"):
            continue
        allowed = TASK_METRICS[model.task]
        metrics = list(dict.fromkeys(q.metrics)) or [DEFAULT_METRIC[model.task]]
        for i, metric in enumerate(q.metrics):
            if metric not in allowed:
                ok = False
                ctx.error(QUALITY_METRIC, f"quality monitor `{name}`: metric `{metric}` does "
                          f"not apply to {model.task} model `{model.name}`",
                          (*path, "metrics", i),
                          help="use one of: " + ", ".join(f"`{m}`" for m in allowed))
        if q.on_drop.action == "retrain" and not has_training(ctx.project.models[model.name]):
            ok = False
            ctx.error(NO_TRAINING, f"quality monitor `{name}` retrains model `{model.name}`, "
                      "which has no training", (*path, "onDrop", "action"),
                      help="add a trainer to the model, or use `action: alert`")
        for i, r in enumerate(q.routes):
            ok = ctx.check_ref(r, routes, "route", (*path, "routes", i),
                               "monitoring.routes") and ok
        join = resolve_join(ctx, f"quality monitor `{name}`", q, model, sources, path)
        if not ok or join is None:
            continue
        better = builtin_metrics(model.task)
        out[name] = ir.QualityMonitor(
            name=name, k8s_name=dns_label(name), endpoint=q.endpoint, model=model.name,
            labels_source=q.labels, key=join.key, label_column=join.label_column,
            within_seconds=join.within_seconds, label_time_column=join.label_time_column,
            metrics=metrics, higher_is_better={m: better[m] for m in metrics},
            window_seconds=int(duration_seconds(q.window)), schedule=q.schedule,
            min_samples=q.min_samples, max_drop=q.max_drop,
            on_drop=ir.OnDrift(action=q.on_drop.action,
                               cooldown_seconds=int(duration_seconds(q.on_drop.cooldown)),
                               max_runs=q.on_drop.max_runs,
                               per_seconds=int(duration_seconds(q.on_drop.per))),
            routes=list(q.routes),
            pipeline=dns_label("quality", name), origin=ctx.origin(path))
    return out
