"""Endpoints: the model and version they serve, scaling, rollout, SLOs."""

from __future__ import annotations

from ...schema.types import duration_seconds
from ...trainer_catalog import TRAINERS
from .. import ir
from ..names import dns_label
from .ab_guard import resolve_ab_guard
from .context import WRONG_KIND, Context
from .delivery import check_rollout, shadow_phase
from .engine_metrics import check_engine_metrics, llm_slo
from .engines import resolve_engine
from .env_vars import resolve_env
from .knative import check_knative_flags
from .scoring import resolve_batch
from .stream_scoring import check_stream_endpoint, resolve_stream
from .traffic import traffic
from .verdict import resolve_verdict

SCALE_TO_ZERO_GPU = "MLC303"
OFFLINE_FEATURES = "MLC309"
SERVERLESS_ALLOW_FROM = "MLC271"
# the batch window is not under the latency objective: the server's deadline (arrival plus
# slo.latency, mlc/runtime/serve/batching.py) would pass while a request waits for its batch
BATCH_WINDOW_PAST_SLO = "MLC386"
UNUSED_ALLOW_PICKLE = "MLC327"
EXPLAIN_WITHOUT_SERVER = "MLC548"  # answered by mlc's server only (docs/serving-engines.md)


def model_uri(model: ir.Model, alias: str | None, version: int | None) -> str:
    """The MLflow URI of a registered model, by version if one is pinned, else by alias."""
    if version is not None:
        return f"models:/{model.registered_name}/{version}"
    return f"models:/{model.registered_name}@{alias}"


def _variant(model: ir.Model, v) -> ir.Variant:
    alias = v.alias or (None if v.version else model.production_alias)
    return ir.Variant(name=v.name, alias=alias, version=v.version, weight=v.weight,
                      model_uri=model_uri(model, alias, v.version))


def _explain(ctx: Context, e, path: tuple) -> ir.OnlineExplain | None:
    """`explain:`, answered by mlc's serving runtime only."""
    x = e.explain
    if x is None:
        return None
    if e.mode in ("batch", "stream") or e.engine != "mlc":
        what = f"`mode: {e.mode}`" if e.mode in ("batch", "stream") else f"`engine: {e.engine}`"
        ctx.error(EXPLAIN_WITHOUT_SERVER, f"endpoint `{path[-1]}` sets `explain`, but with "
                  f"{what} no mlc server answers `POST /explain`", (*path, "explain"),
                  help="remove `explain:`; for a model's global feature importance use "
                  "`evaluation.explain` on the model")
        return None
    return ir.OnlineExplain(max_rows=x.max_rows, samples=x.samples, background=x.background)


def resolve_endpoints(ctx: Context, models: dict[str, ir.Model],
                      hardware: dict[str, ir.Hardware], images: dict[str, ir.Image],
                      views: dict[str, ir.FeatureView], sources: dict[str, ir.Source],
                      platform: ir.Platform, secrets: dict[str, ir.SecretRef]
                      ) -> dict[str, ir.Endpoint]:
    out = {}
    for name in sorted(ctx.project.serving):
        e = ctx.project.serving[name]
        path = ("serving", name)
        ctx.check_ref(e.hardware, hardware, "hardware profile", (*path, "hardware"), "hardware")
        if not ctx.check_ref(e.model, models, "model", (*path, "model"), "models"):
            continue
        model = models[e.model]
        if e.allow_pickle and model.pipeline is not None and model.framework in TRAINERS \
                and model.training.kind == "builtin":
            ctx.warning(UNUSED_ALLOW_PICKLE, f"`allowPickle` has no effect on endpoint "
                        f"`{name}`: model `{e.model}` is trained by mlc's bundled "
                        f"{model.framework} trainer, which saves mlc's own format (loaded "
                        "without unpickling)",
                        (*path, "allowPickle"), help="remove `allowPickle: true`; it is for "
                        "models that a custom trainer logs as an MLflow flavour")
        engine = resolve_engine(ctx, name, e, model, images)
        if e.engine != "mlc":
            # every other engine is a KServe predictor (backends/serving/engines.py): the
            # rollout checks below see the form it is emitted in
            e = e.model_copy(update={"kserve": True})
        check_engine_metrics(ctx, name, e)  # what the engine's series can measure
        alias = None if e.version is not None else (e.alias or model.production_alias)
        uri = model_uri(model, alias, e.version)
        profile = hardware.get(e.hardware)
        a = e.autoscaling
        if (e.mode == "serverless" and a.min_replicas == 0 and profile and profile.gpu_count
                and platform.gpu_node_provisioning == "autoscaled"):
            ctx.warning(SCALE_TO_ZERO_GPU, f"GPU endpoint `{name}` scales to zero on GPU nodes "
                        "that are provisioned on demand: the first request after idle waits "
                        "for a node and a model load (minutes)",
                        (*path, "autoscaling", "minReplicas"),
                        help="set `minReplicas: 1` in environments that need a fast first answer")
        if e.online_features:
            offline = sorted({r.view for r in model.features if not views[r.view].online})
            if offline:
                ctx.error(OFFLINE_FEATURES, f"endpoint `{name}` looks features up online, but "
                          f"feature view(s) {', '.join(offline)} are not online",
                          (*path, "onlineFeatures"), help="set `online: true` on those views")
        batch = resolve_batch(ctx, name, e.batch, sources, "UTC") if e.batch else None
        if e.mode != "batch" and e.batch is not None:
            ctx.warning(WRONG_KIND, f"`batch` is ignored: endpoint `{name}` is {e.mode}",
                        (*path, "batch"), help="set `mode: batch` or remove `batch:`")
        if e.mode != "stream" and e.stream is not None:
            ctx.warning(WRONG_KIND, f"`stream` is ignored: endpoint `{name}` is {e.mode}",
                        (*path, "stream"), help="set `mode: stream` or remove `stream:`")
        stream = None
        if e.mode == "stream":
            check_stream_endpoint(ctx, name, e)
            stream = resolve_stream(ctx, name, e, secrets)
        env, secret_env = resolve_env(ctx, e.env, secrets, (*path, "env"))
        if e.mode != "stream":  # check_stream_endpoint refused every rollout setting
            check_rollout(ctx, name, e, platform.image_policy, model)
        check_knative_flags(ctx, name, e, profile)
        r = e.rollout
        ctx.check_ref(r.router.hardware, hardware, "hardware profile",
                      (*path, "rollout", "router", "hardware"), "hardware")
        shadow_alias = (r.shadow.alias or (model.candidate_alias if r.shadow.version is None
                                           else None)) if r.shadow else None
        rollout = ir.Rollout(
            strategy=r.strategy,
            steps=[ir.CanaryStep(weight=s.weight, pause_seconds=(
                int(duration_seconds(s.pause)) if s.pause else None)) for s in r.steps],
            gates=ir.RolloutGates(
                max_latency_p99_seconds=duration_seconds(r.gates.max_latency_p99),
                max_error_rate=r.gates.max_error_rate,
                max_prediction_drift=r.gates.max_prediction_drift,
                interval_seconds=int(duration_seconds(r.gates.interval)),
                failure_limit=r.gates.failure_limit,
                max_ttft_seconds=(duration_seconds(r.gates.max_first_token_latency)
                                  if r.gates.max_first_token_latency else None),
                min_tokens_per_second=r.gates.min_tokens_per_second),
            shadow_alias=shadow_alias,
            shadow_version=r.shadow.version if r.shadow else None,
            shadow_percent=r.shadow.percent if r.shadow else 100,
            variants=[_variant(model, v) for v in r.variants],
            auto_promote=r.auto_promote,
            # the shadow's answers go beside the endpoint's log, never into it: drift checks
            # read the endpoint's log and must see only answers that clients received
            shadow_model_uri=(model_uri(model, shadow_alias, r.shadow.version)
                              if r.shadow else None),
            shadow_log_uri=(f"{platform.artifact_root}/{ctx.project.metadata.name}/{ctx.env}/"
                            f"predictions/{name}-shadow" if r.shadow else None),
            shadow_tolerance=r.shadow.tolerance if r.shadow else 0.0,
            shadow_max_queue=r.shadow.max_queue if r.shadow else 0,
            shadow_timeout_seconds=duration_seconds(r.shadow.timeout) if r.shadow else 0.0,
            assignment_header=(r.assignment.header.lower()
                               if r.assignment and r.assignment.header else None),
            assignment_field=r.assignment.field if r.assignment else None,
            traffic=traffic(ctx, name, e, model, platform),
            router_replicas=r.router.replicas,
            router_hardware=r.router.hardware,
            router_timeout_seconds=duration_seconds(r.router.timeout),
            verdict=resolve_verdict(ctx, name, e, model, sources, platform),
            ab_guard=resolve_ab_guard(ctx, name, e, platform))
        phase = shadow_phase(e, uri, f"{platform.artifact_root}/{ctx.project.metadata.name}/"
                             f"{ctx.env}/predictions/{name}-shadow")
        if phase is not None:
            rollout = rollout.model_copy(update=phase)
        if e.allow_from and e.mode == "serverless":
            # Knative's activator and gateway connect to the pods, never the callers: a
            # NetworkPolicy there cannot tell one caller from another (docs/network.md).
            ctx.error(SERVERLESS_ALLOW_FROM, f"endpoint `{name}` is serverless, so its pods "
                      "are called by Knative's activator and gateway, not by the clients in "
                      "`allowFrom`, which a NetworkPolicy cannot enforce",
                      (*path, "allowFrom"), help="restrict callers in the ingress gateway "
                      "(e.g. an AuthorizationPolicy) and remove `allowFrom`, or use `mode: "
                      "online`")
        window, objective = (duration_seconds(e.batching.max_latency),
                             duration_seconds(e.slo.latency))
        if e.mode != "batch" and window >= objective:
            ctx.error(BATCH_WINDOW_PAST_SLO, f"endpoint `{name}` waits up to "
                      f"{e.batching.max_latency} for a batch to fill (`batching.maxLatency`), "
                      f"which is not under its latency objective (`slo.latency`: "
                      f"{e.slo.latency}): the server answers 503 to a request it cannot "
                      "answer within the objective, so under load requests would pass it "
                      "waiting for their batch", (*path, "batching", "maxLatency"),
                      help="keep `batching.maxLatency` a small share of `slo.latency` (the "
                      "defaults: 5ms and 250ms), or raise `slo.latency`")
        out[name] = ir.Endpoint(
            name=name, k8s_name=dns_label(name), model=e.model,
            registered_name=model.registered_name, alias=alias, version=e.version, model_uri=uri,
            mode=e.mode, image=images["serve"], hardware=e.hardware, replicas=e.replicas,
            autoscaling=ir.Autoscaling(min_replicas=a.min_replicas, max_replicas=a.max_replicas,
                                       metric=a.metric, target=a.target),
            rollout=rollout,
            slo=ir.Slo(availability=e.slo.availability,
                       latency_seconds=duration_seconds(e.slo.latency),
                       latency_target=e.slo.latency_target,
                       window_seconds=int(duration_seconds(e.slo.window)),
                       **llm_slo(e.slo)),
            batching=ir.Batching(max_batch_size=e.batching.max_batch_size,
                                 max_latency_seconds=duration_seconds(e.batching.max_latency),
                                 max_queue=e.batching.max_queue),
            prediction_log_sample=e.prediction_log_sample,
            prediction_log_uri=f"{platform.artifact_root}/{ctx.project.metadata.name}/"
                               f"{ctx.env}/predictions/{name}",
            online_features=e.online_features, feature_service=model.feature_service,
            input_features=model.features,
            allow_from=[ir.AllowFrom(namespace=f.namespace,
                                     pod_labels=dict(sorted(f.pod_labels.items())))
                        for f in e.allow_from],
            kserve=e.kserve, batch=batch if e.mode == "batch" else None,
            pipeline=dns_label("score", name) if e.mode == "batch" else None,
            origin=ctx.origin(path), env=env, secrets=secret_env, stream=stream,
            allow_pickle=e.allow_pickle, engine=e.engine, engine_serving=engine,
            explain=_explain(ctx, e, path))
    return out
