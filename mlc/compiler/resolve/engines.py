"""An endpoint served by another engine than mlc's own: its KServe predictor, and what the
engine cannot honour (docs/serving-engines.md).

Each engine is KServe's stock ClusterServingRuntime, fed by a model fetch: mlc's serve
image as the predictor's init container resolves the registry alias (a `models:/` URI,
which KServe's storage initializer does not read) and writes the files the engine reads
into the volume the runtime reads, `/mnt/models` (mlc/runtime/serve/fetch.py):

    mlserver    kserve-mlserver, format mlflow, protocol v2: the logged MLflow model
    triton      kserve-tritonserver, format triton 2, protocol v2: the Triton repository
                the train step exported (resolve/exports.py)
    torchserve  kserve-torchserve, format pytorch 1, protocol v1: the exported .mar, and
                a config.properties with the endpoint's batching
    huggingface kserve-huggingfaceserver, format huggingface 1, protocol v2, `--backend=vllm`
                (OpenAI-compatible API): the Hugging Face folder of the MLflow transformers
                model a custom trainer logged
    custom      the user's container (`serving.<e>.container`), which reads the registry
                itself (MLFLOW_TRACKING_URI and MLC_MODEL_URI are set)

tfserving stays refused (MLC387): mlc makes nothing that it reads.

Codes: MLC387 an engine not compiled; MLC388 a setting the engine cannot honour; MLC389
`engine: custom` without `container`; MLC390 `container` on another engine; MLC391 an
engine in batch or stream mode; MLC392 a rollout only mlc's runtime delivers (a
serverless A/B, a shadow, shadowFirst, blue-green; an online A/B is mlc's router); MLC393 a
check that reads the prediction log of an engine endpoint, which writes none.
"""

from __future__ import annotations

from typing import Literal

from ... import engine_metrics as em
from ...schema.serving import Endpoint
from .. import ir
from .context import Context

ENGINE_NOT_BUILT = "MLC387"
SETTING_NOT_HONOURED = "MLC388"
CONTAINER_MISSING = "MLC389"
CONTAINER_UNUSED = "MLC390"
ENGINE_MODE = "MLC391"
ENGINE_ROLLOUT = "MLC392"
NO_PREDICTION_LOG = "MLC393"

MODEL_DIR = "/mnt/models"  # where every stock runtime reads its model
HTTP_PORT = 8080  # where every stock runtime answers HTTP

# engine -> (runtime, modelFormat name, version, protocolVersion, what the fetch writes)
Protocol = Literal["v1", "v2"]
Layout = Literal["mlflow", "triton", "torchserve", "huggingface"]
STOCK: dict[str, tuple[str, str, str | None, Protocol, Layout]] = {
    "mlserver": ("kserve-mlserver", "mlflow", None, "v2", "mlflow"),
    "triton": ("kserve-tritonserver", "triton", "2", "v2", "triton"),
    "torchserve": ("kserve-torchserve", "pytorch", "1", "v1", "torchserve"),
    "huggingface": ("kserve-huggingfaceserver", "huggingface", "1", "v2", "huggingface"),
}
NOT_BUILT = {
    "tfserving": "TF Serving reads a TensorFlow SavedModel, which no mlc trainer makes and "
                 "no export writes (docs/serving-engines-exports.md)",
}
# batching fields (schema name, ml.yaml key) each engine takes from the endpoint
BATCHING = (("max_batch_size", "maxBatchSize"), ("max_latency", "maxLatency"),
            ("max_queue", "maxQueue"))
HONOURED_BATCHING = {
    "triton": ("max_batch_size", "max_latency", "max_queue"),  # config.pbtxt
    "torchserve": ("max_batch_size", "max_latency", "max_queue"),  # config.properties
    "mlserver": ("max_batch_size", "max_latency"),  # MLSERVER_MODEL_MAX_BATCH_*
    "huggingface": (),  # vLLM batches continuously, by its own scheduler
    "custom": (),
}
# strategies delivered by mlc's runtime (its router, its mirror) or by Argo Rollouts
MLC_ONLY_STRATEGIES = {
    "ab": "the A/B router is built for `mode: online` only",
    "shadow": "the copies to a shadow are sent by mlc's primary server, which an engine "
              "endpoint does not run, and mlc's A/B router in front of an engine does not "
              "mirror",
    "blueGreen": "a blue-green switch is an Argo Rollout of mlc's server",
}


def resolve_engine(ctx: Context, name: str, e: Endpoint, model: ir.Model,
                   images: dict[str, ir.Image]) -> ir.EngineServing | None:
    """The predictor of an endpoint with `engine:` other than mlc, and the refusals."""
    path = ("serving", name)
    if e.engine == "mlc":
        if e.container is not None:
            _container_unused(ctx, name, e)
        return None
    if e.engine in NOT_BUILT:
        ctx.error(ENGINE_NOT_BUILT, f"endpoint `{name}`: engine `{e.engine}` is not compiled: "
                  f"{NOT_BUILT[e.engine]}", (*path, "engine"),
                  help="serve the model with `engine: mlc`, `mlserver`, `triton`, "
                  "`torchserve` or `huggingface`, or with your own server as `engine: custom`")
        return None
    _check_settings(ctx, name, e)
    metrics = em.for_engine(e.engine)
    if e.engine == "custom":
        c = e.container
        if c is None:
            ctx.error(CONTAINER_MISSING, f"endpoint `{name}` has `engine: custom` but no "
                      "`container`: nothing says what serves it", (*path, "engine"),
                      help="add `container: {image: <name under images.custom>, port: "
                      "8080, readinessPath: /healthz}`")
            return None
        if not ctx.check_ref(c.image, ctx.project.images.custom, "image",
                             (*path, "container", "image"), "images.custom"):
            return None
        return ir.EngineServing(
            runtime=None, model_format=None, model_format_version=None, protocol=None,
            layout=None, model_name=e.model, http_port=c.port, scrape_port=c.port,
            container=ir.EngineContainer(
                image=images[f"custom/{c.image}"], command=list(c.command),
                args=list(c.args), port=c.port, readiness_path=c.readiness_path,
                liveness_path=c.liveness_path or c.readiness_path))
    if e.container is not None:
        _container_unused(ctx, name, e)
    runtime, fmt, version, protocol, layout = STOCK[e.engine]
    return ir.EngineServing(runtime=runtime, model_format=fmt, model_format_version=version,
                            protocol=protocol, layout=layout, model_name=model.name,
                            http_port=HTTP_PORT, scrape_port=metrics.scrape_port,
                            container=None)


def _container_unused(ctx: Context, name: str, e: Endpoint) -> None:
    ctx.error(CONTAINER_UNUSED, f"endpoint `{name}` sets `container`, which only `engine: "
              f"custom` runs; engine `{e.engine}` would ignore it",
              ("serving", name, "container"),
              help="remove `container:`, or set `engine: custom`")


def _check_settings(ctx: Context, name: str, e: Endpoint) -> None:
    path = ("serving", name)
    engine = e.engine
    if e.mode in ("batch", "stream"):
        ctx.error(ENGINE_MODE, f"endpoint `{name}` is `mode: {e.mode}`, whose scoring job "
                  f"runs mlc's runtime; engine `{engine}` serves online and serverless "
                  "endpoints only", (*path, "engine"),
                  help="remove `engine:` to score with mlc's runtime, or use `mode: online`")
    honoured = HONOURED_BATCHING[engine]
    for field, key in BATCHING:
        if field in e.batching.model_fields_set and field not in honoured:
            ctx.error(SETTING_NOT_HONOURED, f"endpoint `{name}`: engine `{engine}` cannot "
                      f"honour `batching.{key}`"
                      + {"custom": ": the user's server batches as it batches",
                         "huggingface": ": vLLM batches continuously, by its own scheduler"}.get(
                             engine, ": MLServer's adaptive batching has no queue bound"),
                      (*path, "batching", key),
                      help=f"remove `batching.{key}` (docs/serving-engines.md lists what each "
                      "engine takes)")
    refused = (("online_features", "onlineFeatures",
                "the feature lookup by entity key is mlc's runtime"),
               ("allow_pickle", "allowPickle",
                "the engine loads what its own runtime loads; the setting is mlc's server's"),
               ("prediction_log_sample", "predictionLogSample",
                "the prediction log is written by mlc's runtime"))
    for field, key, why in refused:
        if field in e.model_fields_set and getattr(e, field) != Endpoint.model_fields[
                field].default:
            ctx.error(SETTING_NOT_HONOURED, f"endpoint `{name}`: engine `{engine}` cannot "
                      f"honour `{key}`: {why}", (*path, key),
                      help=f"remove `{key}:`, or serve the endpoint with `engine: mlc`")
    if "kserve" in e.model_fields_set and not e.kserve:
        ctx.error(SETTING_NOT_HONOURED, f"endpoint `{name}`: engine `{engine}` is always "
                  "served as a KServe InferenceService, so `kserve: false` cannot be honoured",
                  (*path, "kserve"), help="remove `kserve: false`")
    _check_rollout(ctx, name, e)


def _check_rollout(ctx: Context, name: str, e: Endpoint) -> None:
    """What an engine endpoint's rollout asks that nothing delivers: an online A/B is mlc's
    router in front of the variants' predictors (resolve/traffic.py); a serverless one, a
    shadow and a blue-green switch are not built."""
    path, engine, r = ("serving", name), e.engine, e.rollout
    if r.strategy == "ab" and e.mode == "serverless":
        ctx.error(ENGINE_ROLLOUT, f"endpoint `{name}`: a serverless `ab` rollout cannot be "
                  f"delivered with engine `{engine}`: mlc's A/B router is built in front of "
                  "KServe Standard predictors only", (*path, "rollout", "strategy"),
                  help="use `mode: online` (mlc's A/B router splits the variants' "
                  "InferenceServices by weight and sticky key), or `strategy: canary`")
    elif r.strategy in MLC_ONLY_STRATEGIES and r.strategy != "ab":
        ctx.error(ENGINE_ROLLOUT, f"endpoint `{name}`: a `{r.strategy}` rollout cannot be "
                  f"delivered with engine `{engine}`: {MLC_ONLY_STRATEGIES[r.strategy]}",
                  (*path, "rollout", "strategy"),
                  help="use `strategy: canary` with `mode: serverless` (KServe's "
                  "`canaryTrafficPercent`, stepped and gated), `strategy: ab` with `mode: "
                  "online` (mlc's A/B router) or `strategy: rolling`")
    if r.shadow_first is not None:
        ctx.error(ENGINE_ROLLOUT, f"endpoint `{name}`: `shadowFirst` cannot be delivered "
                  f"with engine `{engine}`: the copies to the shadow and their comparison are "
                  "made by mlc's primary server, which an engine endpoint does not run", (*path, "rollout", "shadowFirst"),
                  help="remove `shadowFirst:`; the canary's steps are still gated")


def check_log_readers(ctx: Context, endpoints: dict[str, ir.Endpoint]) -> None:
    """Drift checks and quality monitors read the endpoint's prediction log, which only
    mlc's runtime writes."""
    monitoring = ctx.project.monitoring
    readers = [("drift", n, monitoring.drift[n].endpoint) for n in sorted(monitoring.drift)]
    readers += [("quality", n, monitoring.quality[n].endpoint)
                for n in sorted(monitoring.quality)]
    for kind, check, endpoint in readers:
        ep = endpoints.get(endpoint) if endpoint else None
        if ep is None or ep.engine == "mlc":
            continue
        what = "drift check" if kind == "drift" else "quality monitor"
        ctx.error(NO_PREDICTION_LOG, f"{what} `{check}` reads the prediction log of endpoint "
                  f"`{endpoint}`, but engine `{ep.engine}` writes none: the log is written by "
                  "mlc's runtime, and no receiver of KServe's payload logger is built",
                  ("monitoring", kind, check, "endpoint"),
                  help=f"serve `{endpoint}` with `engine: mlc`, or remove the {what}")
