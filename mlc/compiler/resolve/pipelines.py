"""The pipeline graph: the steps that train, check, score and materialise, in order.

Argo runs these steps as a DAG on a cluster; `mlc run` runs the same steps, in the same
order, on one machine. Every step runs `python -m mlc.runtime step` with the arguments below
(mlc/step_contract.py); the runtime finds the step in project.json and runs it. A custom
trainer's step does too, in the user's image (which must contain mlc): the step runtime runs
the user's command with the contract's variables, as it does under `mlc run`.
"""

from __future__ import annotations

from ...step_contract import PROJECT_JSON
from .. import ir
from ..names import dns_label
from .context import Context
from .lineage import API_KEY_ENV as LINEAGE_API_KEY_ENV
from .models import has_training

STEP_COMMAND = ["python", "-m", "mlc.runtime", "step"]
# Steps other than training are short; these bound them when ml.yaml says nothing.
_DEFAULT_RETRIES = ir.Retries(limit=2, backoff_seconds=10, backoff_factor=2,
                              backoff_max_seconds=120)
_DEFAULT_TIMEOUT = 1800


def _step(pipeline: str, name: str, kind: str, runtime: str, image: ir.Image, *,
          depends: list[str], hardware: str = "default", parameters: list[str] | None = None,
          secrets: dict[str, ir.SecretRef] | None = None, **extra) -> ir.Step:
    return ir.Step(
        name=name, kind=kind, runtime=runtime, image=image,
        command=extra.pop("command", list(STEP_COMMAND)),
        args=extra.pop("args", ["--project", PROJECT_JSON, "--pipeline", pipeline, "--step",
                                name]),
        parameters=parameters or [], hardware=hardware, nodes=extra.pop("nodes", 1),
        depends=depends, retries=extra.pop("retries", _DEFAULT_RETRIES),
        timeout_seconds=extra.pop("timeout_seconds", _DEFAULT_TIMEOUT),
        secrets=dict(sorted((secrets or {}).items())), **extra)


def _platform_secrets(platform: ir.Platform, *, feast: bool) -> dict[str, ir.SecretRef]:
    out = {}
    if platform.mlflow_credentials:
        out["MLFLOW_TRACKING_TOKEN"] = platform.mlflow_credentials
    if feast and platform.online_store_secret:
        out["MLC_ONLINE_STORE_CONNECTION"] = platform.online_store_secret
    if feast and platform.offline_store_secret:
        out["MLC_OFFLINE_STORE_CONNECTION"] = platform.offline_store_secret
    if platform.lineage and platform.lineage.api_key:  # every step sends lineage events
        out[LINEAGE_API_KEY_ENV] = platform.lineage.api_key
    return out


def training_pipeline(model: ir.Model, images: dict[str, ir.Image],
                      platform: ir.Platform) -> ir.Pipeline:
    """validate data -> materialise features -> train -> evaluate -> gate -> register -> promote."""
    t = model.training
    name = model.pipeline
    train = images["train"]
    mlflow = _platform_secrets(platform, feast=False)
    feast = _platform_secrets(platform, feast=True)
    window = str(t.data_window_seconds or 0)
    params = [
        ir.Parameter(name="data_window_seconds", default=window,
                     description="Train on this many seconds of recent data (0: all)."),
        ir.Parameter(name="hyperparameters", default="{}",
                     description="JSON object of hyperparameter overrides."),
        ir.Parameter(name="reason", default="manual",
                     description="Why this run started: manual, schedule, drift, quality."),
        ir.Parameter(name="promote", default="true" if model.auto_promote else "false",
                     description="Move the production alias when the gates pass."),
    ]
    # a model trained on a dataset: its trainer reads the data itself; no features to check,
    # materialise or join (resolve/datasets.py)
    rows = model.dataset is None
    steps = [
        *([_step(name, "validate-data", "validate_data", "train", train, depends=[],
                 parameters=["data_window_seconds"], secrets=feast),
           _step(name, "materialize", "materialize", "train", train, depends=["validate-data"],
                 secrets=feast)] if rows else []),
        *_search_steps(name, t, feast | mlflow),
        _step(name, "train", "train", "custom" if t.kind == "custom" else "train",
              t.image, depends=["search" if t.search else "materialize"] if rows else [],
              hardware=t.hardware, nodes=t.nodes,
              parameters=["data_window_seconds", "hyperparameters", "reason"],
              retries=t.retries, timeout_seconds=t.timeout_seconds,
              checkpoint_path=t.checkpoint_path, checkpoint_volume=t.checkpoint_volume,
              secrets={**(feast if rows else {}), **mlflow, **t.secrets},
              # the step runtime runs a custom trainer's command (project.json has it) with
              # the contract's variables; the user's own env reaches it through the pod
              env=dict(t.env)),
        _step(name, "evaluate", "evaluate", "train", train, depends=["train"],
              secrets=feast | mlflow if rows else mlflow),
        # the explanation is logged to the run before the run's model is registered
        *([_step(name, "explain", "explain", "train", train, depends=["evaluate"],
                 hardware=t.hardware, secrets=feast | mlflow)] if model.explain else []),
        _step(name, "register", "register", "train", train,
              depends=["explain" if model.explain else "evaluate"], secrets=mlflow),
        _step(name, "promote", "promote", "train", train, depends=["register"],
              parameters=["promote"], secrets=mlflow),
    ]
    return ir.Pipeline(name=name, kind="training", model=model.name, endpoint=None,
                       drift_check=None, schedule=t.schedule, timezone=t.timezone,
                       parameters=params, steps=steps, concurrency_key=name)


def _search_steps(pipeline: str, t: ir.Training,
                  secrets: dict[str, ir.SecretRef]) -> list[ir.Step]:
    """With `training.search`: one step fixes the data and opens the parent MLflow run, then
    the trials (the Argo backend fans `search` out, one task per trial), then `train`."""
    if t.search is None:
        return []
    trial = dict(hardware=t.hardware, retries=t.retries, timeout_seconds=t.timeout_seconds,
                 parameters=["data_window_seconds", "hyperparameters", "reason"],
                 secrets={**secrets, **t.secrets}, env=dict(t.env))
    return [
        _step(pipeline, "search-start", "search_start", "train", t.image,
              depends=["materialize"], **trial),
        _step(pipeline, "search", "search", "train", t.image, depends=["search-start"],
              **trial),
    ]


def drift_pipeline(check: ir.DriftCheck, images: dict[str, ir.Image],
                   platform: ir.Platform, timezone: str) -> ir.Pipeline:
    name = check.pipeline
    params = [ir.Parameter(name="window_seconds", default=str(check.current_window_seconds),
                           description="How much recent data to compare.")]
    steps = [_step(name, "drift-check", "drift_check", "drift", images["drift"], depends=[],
                   parameters=["window_seconds"],
                   secrets=_platform_secrets(platform, feast=True),
                   env={"MLC_PUSHGATEWAY_URL": platform.pushgateway_url})]
    return ir.Pipeline(name=name, kind="drift", model=check.model, endpoint=check.endpoint,
                       drift_check=check.name, schedule=check.schedule, timezone=timezone,
                       parameters=params, steps=steps, concurrency_key=name)


def scoring_pipeline(endpoint: ir.Endpoint, platform: ir.Platform,
                     vectors: ir.VectorWrite | None = None,
                     images: dict[str, ir.Image] | None = None) -> ir.Pipeline:
    """`score`, then (with `batch.vectorStore`) the vectors step that upserts the model's
    output vectors the score step left in the run folder."""
    assert endpoint.batch and endpoint.pipeline
    name = endpoint.pipeline
    batch = endpoint.batch
    params = [ir.Parameter(name="date", default="",
                           description="Score as of this date (YYYY-MM-DD, or an ISO time): "
                           "fills `{date}` and `{hour}` of the output; default: now.")]
    steps = [_step(name, "score", "batch_score", "serve", endpoint.image, depends=[],
                   hardware=endpoint.hardware, parameters=["date"],
                   timeout_seconds=batch.timeout_seconds,
                   secrets={**_platform_secrets(platform, feast=True), **endpoint.secrets},
                   env={**endpoint.env, "MLC_PUSHGATEWAY_URL": platform.pushgateway_url})]
    if vectors is not None and images is not None:
        steps.append(_vectors_step(name, vectors, images, platform, depends="score"))
    return ir.Pipeline(name=name, kind="batch_scoring", model=endpoint.model,
                       endpoint=endpoint.name, drift_check=None,
                       schedule=batch.schedule, timezone=batch.timezone, parameters=params,
                       steps=steps, concurrency_key=name)


def verdict_pipelines(endpoints: dict[str, ir.Endpoint], images: dict[str, ir.Image],
                      platform: ir.Platform, timezone: str) -> list[ir.Pipeline]:
    """One scheduled pipeline per A/B endpoint with a verdict: the `verdict` step, in the
    drift image (pandas, pyarrow, scipy; no torch: it reads logs and labels, never a model)."""
    out = []
    for endpoint in endpoints.values():
        v = endpoint.rollout.verdict
        if v is None:
            continue
        params = [ir.Parameter(name="window_seconds", default=str(v.window_seconds),
                               description="Analyse the predictions of this many seconds.")]
        steps = [_step(v.pipeline, "verdict", "ab_verdict", "drift", images["drift"],
                       depends=[], parameters=["window_seconds"],
                       # a labels source in a warehouse is read through the offline store
                       secrets=_platform_secrets(platform, feast=True),
                       env={"MLC_PUSHGATEWAY_URL": platform.pushgateway_url})]
        out.append(ir.Pipeline(name=v.pipeline, kind="ab_verdict", model=endpoint.model,
                               endpoint=endpoint.name, drift_check=None, schedule=v.schedule,
                               timezone=timezone, parameters=params, steps=steps,
                               concurrency_key=v.pipeline))
    return out


def quality_pipeline(q: ir.QualityMonitor, images: dict[str, ir.Image], platform: ir.Platform,
                     timezone: str) -> ir.Pipeline:
    """A quality monitor's scheduled pipeline: the `quality` step, in the drift image (the
    verdict's join and metrics, and MLflow for the training evaluation; no torch)."""
    params = [ir.Parameter(name="window_seconds", default=str(q.window_seconds),
                           description="Score the predictions of this many seconds.")]
    steps = [_step(q.pipeline, "quality", "model_quality", "drift", images["drift"],
                   depends=[], parameters=["window_seconds"],
                   secrets=_platform_secrets(platform, feast=True),
                   env={"MLC_PUSHGATEWAY_URL": platform.pushgateway_url})]
    return ir.Pipeline(name=q.pipeline, kind="model_quality", model=q.model,
                       endpoint=q.endpoint, drift_check=None, schedule=q.schedule,
                       timezone=timezone, parameters=params, steps=steps,
                       concurrency_key=q.pipeline)


def materialization_pipelines(views: dict[str, ir.FeatureView], images: dict[str, ir.Image],
                              platform: ir.Platform, timezone: str,
                              vector_writes: dict[str, ir.VectorWrite] | None = None
                              ) -> list[ir.Pipeline]:
    """One pipeline per distinct schedule of the online views: feast apply, then materialise,
    then write the embeddings of the views with a vector store (one step per view, so that
    each step holds the token of its own store only)."""
    vector_writes = vector_writes or {}
    by_schedule: dict[str, list[str]] = {}
    for view in views.values():
        if view.online or view.name in vector_writes:
            by_schedule.setdefault(view.materialization_schedule, []).append(view.name)
    out = []
    for schedule in sorted(by_schedule):
        names = sorted(by_schedule[schedule])
        name = dns_label("materialize", *names) if len(by_schedule) > 1 else "materialize"
        secrets = _platform_secrets(platform, feast=True)
        steps = [
            _step(name, "feature-apply", "feature_apply", "train", images["train"], depends=[],
                  secrets=secrets),
            _step(name, "materialize", "materialize", "train", images["train"],
                  depends=["feature-apply"], secrets=secrets),
            *(_vectors_step(name, vector_writes[v], images, platform)
              for v in names if v in vector_writes),
        ]
        out.append(ir.Pipeline(name=name, kind="materialization", model=None, endpoint=None,
                               drift_check=None, schedule=schedule, timezone=timezone,
                               parameters=[], steps=steps, concurrency_key="materialize"))
    return out


def _vectors_step(pipeline: str, write: ir.VectorWrite, images: dict[str, ir.Image],
                  platform: ir.Platform, depends: str = "materialize") -> ir.Step:
    secrets = _platform_secrets(platform, feast=True)
    if write.store.token:
        secrets[write.store.token_env] = write.store.token
    return _step(pipeline, write.step, "write_vectors", "train", images["train"],
                 depends=[depends], secrets=secrets)


def _notify_routes(ctx: Context, p: ir.Pipeline, checks: dict[str, ir.DriftCheck],
                   quality: dict[str, ir.QualityMonitor]) -> list[str]:
    """Who hears about a run's end: a drift check's own routes (else the warning routes); for
    training, the warning routes plus those of the drift checks that retrain the model."""
    warning = list(ctx.project.monitoring.alerts.warning)
    if p.kind == "drift":
        routes = checks[p.drift_check].routes if p.drift_check in checks else []
        routes = routes or warning
    elif p.kind == "model_quality":
        routes = quality[p.name].routes or warning
    elif p.kind == "training":
        routes = warning + [r for c in checks.values()
                            if c.model == p.model and c.on_drift.action == "retrain"
                            for r in c.routes]
    else:
        routes = warning
    known = ctx.project.monitoring.routes
    return [r for r in dict.fromkeys(routes) if r in known]


def resolve_pipelines(ctx: Context, models: dict[str, ir.Model],
                      checks: dict[str, ir.DriftCheck], endpoints: dict[str, ir.Endpoint],
                      views: dict[str, ir.FeatureView], images: dict[str, ir.Image],
                      platform: ir.Platform,
                      quality: dict[str, ir.QualityMonitor] | None = None,
                      vector_writes: dict[str, ir.VectorWrite] | None = None
                      ) -> dict[str, ir.Pipeline]:
    timezone = "UTC"
    quality = quality or {}
    pipelines: list[ir.Pipeline] = []
    for name, model in models.items():
        if has_training(ctx.project.models[name]):
            pipelines.append(training_pipeline(model, images, platform))
    pipelines += [drift_pipeline(c, images, platform, timezone) for c in checks.values()]
    pipelines += [scoring_pipeline(e, platform, (vector_writes or {}).get(f"serving.{e.name}"),
                                   images)
                  for e in endpoints.values() if e.mode == "batch" and e.batch]
    pipelines += materialization_pipelines(views, images, platform, timezone, vector_writes)
    pipelines += verdict_pipelines(endpoints, images, platform, timezone)
    pipelines += [quality_pipeline(q, images, platform, timezone) for q in quality.values()]
    by_pipeline = {q.pipeline: q for q in quality.values()}
    out: dict[str, ir.Pipeline] = {}
    for p in pipelines:
        p = p.model_copy(update={"routes": _notify_routes(ctx, p, checks, by_pipeline)})
        if p.name in out:
            ctx.error("MLC203", f"two pipelines would both be named `{p.name}`", (),
                      help="rename one of the models, endpoints or drift checks")
        out[p.name] = p
    return dict(sorted(out.items()))
