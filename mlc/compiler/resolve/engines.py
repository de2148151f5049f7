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
check that reads the prediction log of an engine whose answers the payload logger's
receiver cannot read (huggingface; custom without `container.protocol`); MLC394 a label
join on an entity key that the engine's requests cannot carry; MLC395
`predictionLogSample` where no receiver is built; MLC380 a label regex of a custom
server's `container.metrics` that mlc cannot read.

Where a drift check or a quality monitor reads an engine endpoint's prediction log, the
endpoint gets the receiver of KServe's payload logger (`payload_log`), which writes it
(mlc/runtime/payload_log/, docs/serving-engines.md, "Prediction logging").
"""

from __future__ import annotations

from typing import Literal

from ... import engine_metrics as em
from ...schema.serving import Endpoint
from .. import ir
from ..names import dns_label
from . import regex_examples
from .context import Context

ENGINE_NOT_BUILT = "MLC387"
SETTING_NOT_HONOURED = "MLC388"
CONTAINER_MISSING = "MLC389"
CONTAINER_UNUSED = "MLC390"
ENGINE_MODE = "MLC391"
ENGINE_ROLLOUT = "MLC392"
NO_PREDICTION_LOG = "MLC393"
LOG_ENTITY_KEY = "MLC394"
LOG_SAMPLE_UNUSED = "MLC395"
BAD_SERIES_MATCH = "MLC380"

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
        server_metrics = _server_metrics(ctx, name, c)
        return ir.EngineServing(
            runtime=None, model_format=None, model_format_version=None, protocol=None,
            layout=None, model_name=e.model, http_port=c.port,
            scrape_port=server_metrics.port if server_metrics else c.port,
            container=ir.EngineContainer(
                image=images[f"custom/{c.image}"], command=list(c.command),
                args=list(c.args), port=c.port, readiness_path=c.readiness_path,
                liveness_path=c.liveness_path or c.readiness_path, metrics=server_metrics))
    if e.container is not None:
        _container_unused(ctx, name, e)
    runtime, fmt, version, protocol, layout = STOCK[e.engine]
    return ir.EngineServing(runtime=runtime, model_format=fmt, model_format_version=version,
                            protocol=protocol, layout=layout, model_name=model.name,
                            http_port=HTTP_PORT, scrape_port=metrics.scrape_port,
                            container=None)


def _server_metrics(ctx: Context, name: str, c) -> ir.ServerMetrics | None:
    """`container.metrics` in the IR, with a value each label regex matches (the series
    that the alert rules' unit tests export); a regex that does not compile, or of which no
    value can be written, is refused (MLC380)."""
    m = c.metrics
    if m is None:
        return None
    path = ("serving", name, "container", "metrics")

    def examples(key: str, part) -> dict[str, str]:
        out = {}
        for label, regex in sorted(part.match.items()):
            value = regex_examples.example(regex)
            if value is None:
                ctx.error(BAD_SERIES_MATCH, f"endpoint `{name}`: `container.metrics.{key}` "
                          f"matches label `{label}` with `{regex}`, which is no regular "
                          "expression mlc can read (nor write a matching value of, for the "
                          "alert rules' unit tests)", (*path, key, "match", label),
                          help="write an RE2 regular expression of literals, classes, `.`, "
                          "`|` and repeats, anchored as Prometheus anchors `=~` (e.g. "
                          "`/predict` or `/v[12]/predict`)")
            else:
                out[label] = value
        return out

    def series(key: str, part) -> ir.ServerSeries | None:
        if part is None:
            return None
        return ir.ServerSeries(series=list(part.series), match=dict(sorted(part.match.items())),
                               examples=examples(key, part),
                               status_label=getattr(part, "status_label", None),
                               status_format=getattr(part, "status_format", "code"))

    h = m.latency
    return ir.ServerMetrics(
        port=m.port if m.port is not None else c.port, path=m.path,
        requests=series("requests", m.requests),
        latency=None if h is None else ir.ServerHistogram(
            series=h.series, unit=h.unit, buckets=list(h.buckets),
            match=dict(sorted(h.match.items())), examples=examples("latency", h)),
        inflight=series("inflight", m.inflight), queue=series("queue", m.queue))


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
                "the engine loads what its own runtime loads; the setting is mlc's server's"))
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
                  "made by mlc's primary server, which an engine endpoint does not run",
                  (*path, "rollout", "shadowFirst"),
                  help="remove `shadowFirst:`; the canary's steps are still gated")


# engines whose answers the receiver reads, and whether their requests carry inputs beside
# the model's (an entity key): V2 tensors by name do (MLServer); Triton's one [n, features]
# tensor and TorchServe's handler take the model's inputs only
LOGGED_PROTOCOL = {"mlserver": True, "triton": False, "torchserve": False}
NO_LOG_WHY = {
    "huggingface": "a generative model answers text, which holds no feature rows to compare "
                   "or score",
    "custom": "nothing says which protocol the user's server speaks, so its requests and "
              "answers cannot be read",
}


def _logged_protocol(ctx: Context, name: str, ep: ir.Endpoint) -> str | None:
    """The protocol the receiver decodes for endpoint `name`, or None where none is read."""
    if ep.engine in LOGGED_PROTOCOL:
        assert ep.engine_serving is not None
        return ep.engine_serving.protocol
    e = ctx.project.serving.get(name)
    if ep.engine == "custom" and e is not None and e.container is not None:
        return e.container.protocol  # the user's server's requests: the user's to shape
    return None


def check_log_readers(ctx: Context, endpoints: dict[str, ir.Endpoint]
                      ) -> dict[str, ir.Endpoint]:
    """Drift checks and quality monitors read the endpoint's prediction log: an engine's is
    written by the receiver of KServe's payload logger, which is added to the endpoints
    returned here; what the receiver cannot log is refused."""
    monitoring = ctx.project.monitoring
    readers = [("drift", n, monitoring.drift[n].endpoint, None)
               for n in sorted(monitoring.drift)]
    readers += [("quality", n, monitoring.quality[n].endpoint, monitoring.quality[n].entity)
                for n in sorted(monitoring.quality)]
    read: set[str] = set()
    for kind, check, endpoint, entity in readers:
        ep = endpoints.get(endpoint) if endpoint else None
        if ep is None or ep.engine == "mlc" or ep.engine_serving is None:
            continue
        what = "drift check" if kind == "drift" else "quality monitor"
        path = ("monitoring", kind, check)
        if _logged_protocol(ctx, endpoint, ep) is None:
            ctx.error(NO_PREDICTION_LOG, f"{what} `{check}` reads the prediction log of "
                      f"endpoint `{endpoint}`, which engine `{ep.engine}` cannot have: "
                      f"{NO_LOG_WHY.get(ep.engine, 'its protocol is not read')}",
                      (*path, "endpoint"),
                      help=f"serve `{endpoint}` with `engine: mlc`, `mlserver`, `triton` or "
                      "`torchserve`" + (", set `container.protocol: v1|v2`" if ep.engine
                                         == "custom" else "") + f", or remove the {what}")
            continue
        if entity is not None and not LOGGED_PROTOCOL.get(ep.engine, True):
            x = ctx.project.entities.get(entity)
            model = ctx.project.models.get(ep.model)
            inputs = {f.field for f in ep.input_features}
            if x is not None and model is not None and x.join_key not in inputs:
                ctx.error(LOG_ENTITY_KEY, f"quality monitor `{check}` joins labels on entity "
                          f"`{entity}`, whose key `{x.join_key}` is no input of the model: "
                          f"engine `{ep.engine}`'s requests carry the model's inputs only, so "
                          "the prediction log of endpoint "
                          f"`{endpoint}` cannot hold it", (*path, "entity"),
                          help="join on `key: request_id` (the id KServe's logger records), "
                          "or serve the endpoint with `engine: mlserver` or `mlc`, whose "
                          "requests carry entity keys beside the inputs")
                continue
        read.add(endpoint)
    for name in sorted(endpoints):
        ep = endpoints[name]
        e = ctx.project.serving.get(name)
        if ep.engine_serving is None or e is None or name in read:
            continue
        if "prediction_log_sample" in e.model_fields_set:
            ctx.error(LOG_SAMPLE_UNUSED, f"endpoint `{name}` sets `predictionLogSample`, but "
                      "no drift check or quality monitor reads its prediction log, so no "
                      f"receiver of engine `{ep.engine}`'s payloads is deployed to sample it",
                      ("serving", name, "predictionLogSample"),
                      help=f"remove `predictionLogSample:`, or add a drift check or a "
                      f"quality monitor of `{name}` (docs/serving-engines.md, \"Prediction "
                      "logging\")")
        if e.container is not None and e.container.protocol is not None:
            ctx.error(LOG_SAMPLE_UNUSED, f"endpoint `{name}` sets `container.protocol`, which "
                      "only the payload logger's receiver reads, but no drift check or "
                      "quality monitor reads its prediction log, so none is deployed",
                      ("serving", name, "container", "protocol"),
                      help=f"remove `protocol:`, or add a drift check or a quality monitor of "
                      f"`{name}` (docs/serving-engines.md, \"Prediction logging\")")
    return {name: _with_receiver(ep, _logged_protocol(ctx, name, ep)) if name in read else ep
            for name, ep in endpoints.items()}


def _with_receiver(ep: ir.Endpoint, protocol) -> ir.Endpoint:
    assert ep.engine_serving is not None and protocol is not None
    receiver = ir.PayloadLogReceiver(name=dns_label(ep.k8s_name, "payload-log"), port=ep.port,
                                     protocol=protocol)
    return ep.model_copy(update={
        "engine_serving": ep.engine_serving.model_copy(update={"payload_log": receiver})})
