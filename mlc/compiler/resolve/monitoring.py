"""Drift checks, notification routes and alert settings."""

from __future__ import annotations

from ...schema.types import duration_seconds
from .. import ir
from ..diagnostics import did_you_mean
from ..names import dns_label
from .context import UNKNOWN_REFERENCE, Context
from .models import NO_TRAINING, has_training
from .platform import secret_ref


def resolve_routes(ctx: Context, secrets: dict[str, ir.SecretRef]) -> dict[str, ir.Route]:
    out = {}
    for name in sorted(ctx.project.monitoring.routes):
        r = ctx.project.monitoring.routes[name]
        path = ("monitoring", "routes", name)
        if r.slack:
            kind, settings, secret = "slack", {"channel": r.slack.channel}, (
                "webhookSecret", r.slack.webhook_secret)
        elif r.pagerduty:
            kind, settings, secret = "pagerduty", {}, (
                "routingKeySecret", r.pagerduty.routing_key_secret)
        elif r.email:
            kind = "email"
            settings = {"to": list(r.email.to), "smarthost": r.email.smarthost,
                        "from": r.email.from_}
            secret = ("passwordSecret", r.email.password_secret)
        else:
            assert r.webhook
            kind, settings, secret = "webhook", {"url": r.webhook.url}, (
                "tokenSecret", r.webhook.token_secret)
        ref = secret_ref(ctx, secrets, secret[1], (*path, kind, secret[0]))
        out[name] = ir.Route(name=name, type=kind, settings=settings, secret=ref)
    return out


UNAUTHENTICATED_WEBHOOK = "MLC270"


def resolve_alerts(ctx: Context, routes: dict[str, ir.Route],
                   secrets: dict[str, ir.SecretRef]) -> ir.Alerts:
    m = ctx.project.monitoring
    a = m.alerts
    webhook_secret = secret_ref(ctx, secrets, m.webhook_secret, ("monitoring", "webhookSecret"))
    retrain = [(f"drift check `{n}` retrains on drift", ("drift", n, "onDrift"))
               for n, d in sorted(m.drift.items()) if d.on_drift.action == "retrain"]
    retrain += [(f"quality monitor `{n}` retrains on a drop", ("quality", n, "onDrop"))
                for n, q in sorted(m.quality.items()) if q.on_drop.action == "retrain"]
    if retrain and m.webhook_secret is None and not ctx.development:
        # Without a token anyone who can reach the webhook starts (or, by using up the
        # cooldown, blocks) retraining.
        what, where = retrain[0]
        ctx.error(UNAUTHENTICATED_WEBHOOK, f"{what}, but the webhook that Alertmanager calls "
                  "to start it has no token: anyone in the cluster could trigger retraining",
                  ("monitoring", *where, "action"),
                  help="name a secret holding a random token: `monitoring: {webhookSecret: "
                  "<name in secrets>}`, or mark a throw-away environment with `platform: "
                  "{development: true}`")
    for level in ("critical", "warning"):
        for i, r in enumerate(getattr(a, level)):
            ctx.check_ref(r, routes, "route", ("monitoring", "alerts", level, i),
                          "monitoring.routes")
    return ir.Alerts(critical_routes=list(a.critical), warning_routes=list(a.warning),
                     runbook_url=a.runbook_url.rstrip("/"),
                     stale_model_after_seconds=int(duration_seconds(a.stale_model_after)),
                     webhook_secret=webhook_secret)


def resolve_drift_checks(ctx: Context, models: dict[str, ir.Model],
                         endpoints: dict[str, ir.Endpoint], sources: dict[str, ir.Source],
                         routes: dict[str, ir.Route]) -> dict[str, ir.DriftCheck]:
    out = {}
    for name in sorted(ctx.project.monitoring.drift):
        d = ctx.project.monitoring.drift[name]
        path = ("monitoring", "drift", name)
        if d.endpoint is not None:
            if not ctx.check_ref(d.endpoint, endpoints, "endpoint", (*path, "endpoint"),
                                 "serving"):
                continue
            model_name = endpoints[d.endpoint].model
        else:
            if not ctx.check_ref(d.model, models, "model", (*path, "model"), "models"):
                continue
            model_name = d.model
        model = models[model_name]
        if d.on_drift.action == "retrain" and not has_training(ctx.project.models[model_name]):
            ctx.error(NO_TRAINING, f"drift check `{name}` retrains model `{model_name}`, which "
                      "has no training", (*path, "onDrift", "action"),
                      help="add a trainer to the model, or use `action: alert`")
        if d.current.source is None and d.endpoint is None:
            ctx.error(UNKNOWN_REFERENCE, f"drift check `{name}` watches a model, so it has no "
                      "prediction log to read: name the current data's source",
                      (*path, "current"), help="add `current: {source: <name>, window: 1d}`")
        for key, window in (("reference", d.reference), ("current", d.current)):
            if not isinstance(window, str) and window.source is not None:
                ctx.check_ref(window.source, sources, "source", (*path, key, "source"),
                              "sources")
        by_field = {r.field: r for r in model.features}
        chosen = []
        for i, f in enumerate(d.features):
            if f in by_field:
                chosen.append(by_field[f])
            else:
                ctx.error(UNKNOWN_REFERENCE, f"`{f}` is not an input of model `{model_name}`",
                          (*path, "features", i), help=did_you_mean(f, by_field))
        for i, r in enumerate(d.routes):
            ctx.check_ref(r, routes, "route", (*path, "routes", i), "monitoring.routes")
        reference_is_training = isinstance(d.reference, str)
        out[name] = ir.DriftCheck(
            name=name, k8s_name=dns_label(name), model=model_name, endpoint=d.endpoint,
            reference="training" if reference_is_training else "source",
            reference_source=None if reference_is_training else (
                d.reference.source or model.label_source),
            reference_window_seconds=None if reference_is_training else int(
                duration_seconds(d.reference.window)),
            current_source=d.current.source,
            current_window_seconds=int(duration_seconds(d.current.window)),
            features=chosen or list(model.features), method=d.method, threshold=d.threshold,
            drift_share=d.drift_share, schedule=d.schedule,
            on_drift=ir.OnDrift(action=d.on_drift.action,
                                cooldown_seconds=int(duration_seconds(d.on_drift.cooldown)),
                                max_runs=d.on_drift.max_runs,
                                per_seconds=int(duration_seconds(d.on_drift.per))),
            routes=list(d.routes), pipeline=dns_label("drift", name), origin=ctx.origin(path))
    return out
