"""`serving`: endpoints that serve a model online, serverless or in batch."""


from typing import Annotated, Literal

from pydantic import Field, PositiveInt, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from .labels import LabelledMetric, LabelsJoin
from .secrets import EnvVars
from .streams import StreamScoring
from .triggers import Trigger
from .types import (
    Cron,
    DnsLabel,
    Duration,
    Fraction,
    LabelKey,
    LabelValue,
    Name,
    Percent,
    Seconds,
    Spec,
)
from .vectors import ScoreVectorStore


class Autoscaling(Spec):
    min_replicas: int = Field(1, ge=0, le=1000)
    """Fewest replicas; 0 lets a serverless endpoint scale to zero."""
    max_replicas: PositiveInt = Field(3, le=1000)
    """Most replicas."""
    metric: Literal["cpu", "rps", "concurrency"] = "cpu"
    """What scaling follows: CPU use, requests per second or concurrency."""
    target: PositiveInt = Field(70, le=1_000_000, description="CPU percent, requests per second "
                                "per replica, or concurrent requests per replica.")

    @model_validator(mode="after")
    def _order(self):
        if self.min_replicas > self.max_replicas:
            raise PydanticCustomError("mlc_range", "`minReplicas` ({lo}) is above `maxReplicas` "
                                      "({hi})", {"lo": self.min_replicas, "hi": self.max_replicas})
        return self


class CanaryStep(Spec):
    weight: int = Field(ge=1, le=100)
    """Percent of traffic to the new version at this step."""
    pause: Seconds | None = None
    """How long to hold this step while gates are measured; unset: wait for a manual promotion."""


class RolloutGates(Spec):
    max_latency_p99: Duration = Field("500ms", title="Max p99 latency")
    """Roll back when the new version's p99 latency is above this."""
    max_error_rate: Fraction = 0.01
    """Roll back when more than this share of requests fail."""
    max_prediction_drift: Fraction | None = Field(0.2, description="Largest PSI between the "
                                                  "canary's and the stable predictions.")
    interval: Seconds = "1m"
    """How often the gates are measured."""
    failure_limit: int = Field(1, ge=0, le=100)
    """Failed measurements tolerated before rolling back."""
    max_first_token_latency: Duration | None = Field(
        None, title="Max p99 time to first token",
        description="LLM endpoints (`engine: huggingface`): roll back when the new version's "
                    "p99 time to first token is above this.")
    min_tokens_per_second: float | None = Field(
        None, gt=0, le=1_000_000,
        description="LLM endpoints (`engine: huggingface`): roll back when the new version's "
                    "slowest 1% of output tokens come at fewer tokens per second than this.")


class ShadowGates(Spec):
    """The shadow phase's gates: the primary's comparison of the new version's answers with
    its own (docs/delivery.md, "Rollout phases")."""

    min_agreement: Fraction = Field(0.95, description="Smallest share of compared "
                                    "predictions on which the new version agrees with the "
                                    "stable one.")
    max_prediction_drift: Fraction | None = Field(0.2, description="Largest PSI between the "
                                                  "new version's and the stable version's "
                                                  "predictions for the same requests.")
    max_error_rate: Fraction = Field(0.01, description="Largest share of copies the new "
                                     "version answered with an error, or not at all.")
    max_latency_p99: Duration = Field("1s", description="Largest p99 of the new version's "
                                      "answers to copies, as the primary measured it.")
    interval: Seconds = "1m"
    """How often the gates are measured during the phase."""
    failure_limit: int = Field(1, ge=0, le=100)
    """Failed measurements tolerated before the phase fails."""


class ShadowFirst(Spec):
    """Canary phase 1: the new version runs as a shadow for `duration`, gated, before the
    first canary step gives it live traffic."""

    duration: Seconds = Field("1h", description="How long the shadow gates are measured.")
    percent: int = Field(100, ge=1, le=100, description="Share of requests the stable "
                         "version copies to the new one.")
    tolerance: float = Field(0.01, ge=0, description="Regression: the largest absolute "
                             "difference between the two versions' predictions that counts "
                             "as agreement.")
    gates: ShadowGates = Field(default_factory=ShadowGates)
    """What the new version must hold as a shadow before the canary steps start."""


class Variant(Spec):
    name: Name
    """Name of the variant, as metrics and the prediction log label it."""
    alias: Name | None = None
    """Registry alias the variant serves."""
    version: PositiveInt | None = None
    """Or a pinned registry version."""
    weight: int = Field(ge=0, le=100)
    """Percent of traffic; the weights of all variants add up to 100."""


class Shadow(Spec):
    alias: Name | None = None
    """Registry alias the shadow serves (e.g. the candidate's)."""
    version: PositiveInt | None = None
    """Or a pinned registry version."""
    percent: int = Field(100, ge=1, le=100, description="Share of requests mirrored.")
    tolerance: float = Field(0.01, ge=0, description="Regression: the largest absolute "
                             "difference (in the label's unit) between the shadow's and the "
                             "primary's prediction that counts as agreement.")
    max_queue: PositiveInt = Field(1000, le=100_000, description="Copies the mirror sender holds "
                                   "for the shadow; beyond, copies are dropped and counted.")
    timeout: Duration = Field("1s", description="How long the mirror sender waits for the "
                              "shadow's answer to a copy.")


# An HTTP header name (RFC 9110 token), as a client sends it.
HeaderName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$"),
                      Field(examples=["x-user-id"])]


class Assignment(Spec):
    """What keeps one user on one A/B variant: a header or an entity field of the request."""

    header: HeaderName | None = Field(None, description="A request header, e.g. `x-user-id`.")
    field: Name | None = Field(None, description="A field of the request body: one of the "
                               "model's entity keys or input features, e.g. `customer_id`.")

    @model_validator(mode="after")
    def _one(self):
        if (self.header is None) == (self.field is None):
            raise PydanticCustomError("mlc_one_of", "set `header` or `field`, one of them", {})
        return self


class Router(Spec):
    """The A/B router's own Deployment (where no gateway splits the traffic)."""

    replicas: PositiveInt = 2
    """Replicas of the router."""
    hardware: Name = Field("default", description="Hardware profile of the router's pods.")
    timeout: Duration = Field("30s", description="How long the router waits for a variant.")


VerdictMetric = LabelledMetric


class Verdict(LabelsJoin):
    """A/B: the scheduled analysis that joins the prediction log with the labels and picks a
    winner (docs/shadow-and-ab.md)."""

    metric: VerdictMetric | None = Field(None, description="accuracy, roc_auc or log_loss "
                                         "(classification), rmse or mae (regression); "
                                         "defaults to accuracy or rmse.")
    schedule: Cron = Field("0 * * * *", description="When the verdict runs.")
    window: Seconds = Field("7d", description="Predictions made this long before a run are "
                            "analysed.")
    min_samples: PositiveInt = Field(1000, le=100_000_000, description="Labelled predictions "
                                     "each variant needs before a decision.")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="Significance level of the test "
                         "against the baseline (Bonferroni-split over the other variants).")
    baseline: Name | None = Field(None, description="The variant the others are compared "
                                  "with; defaults to the first variant.")


def _canary_steps() -> list[CanaryStep]:  # named, not a lambda: model_cache.py stores it
    return [CanaryStep(weight=10, pause="5m"), CanaryStep(weight=50, pause="10m")]


class Rollout(Spec):
    strategy: Literal["rolling", "canary", "blueGreen", "shadow", "ab"] = "rolling"
    """How a new version replaces the old: `rolling`, `canary`, `blueGreen`, `shadow` (mirrored
    traffic) or `ab` (split by variant)."""
    steps: list[CanaryStep] = Field(default_factory=_canary_steps,
        description="Canary only: the new version's share of traffic, step by step.")
    gates: RolloutGates = Field(default_factory=RolloutGates, description="Measured during a "
                                "canary or blue-green rollout; a failed gate rolls back. On "
                                "an A/B rollout: per-variant guardrails; a variant that "
                                "fails them loses its traffic (docs/delivery.md says what "
                                "enforces them in each mode).")
    shadow: Shadow | None = None
    """The `shadow` strategy: which version receives mirrored requests."""
    variants: list[Variant] = Field(default_factory=list)
    """The `ab` strategy: the versions traffic is split between."""
    assignment: Assignment | None = Field(None, description="A/B: the sticky key that assigns "
                                          "a request to a variant; none: each request at "
                                          "random, by the weights.")
    router: Router = Field(default_factory=Router)
    """The `ab` strategy without a gateway: the router in front of the variants."""
    verdict: Verdict | None = Field(None, description="A/B: a scheduled verdict on the "
                                    "variants (metric per variant, significance test, "
                                    "winner).")
    auto_promote: bool = Field(False, description="blueGreen: switch without a manual step.")
    shadow_first: ShadowFirst | None = Field(None, description="Canary only: run the new "
                                             "version as a gated shadow before the first "
                                             "step; a failed shadow gate ends the rollout "
                                             "before any client reaches it.")

    @model_validator(mode="after")
    def _shape(self):
        if self.strategy == "shadow" and self.shadow is None:
            raise PydanticCustomError("mlc_one_of",
                                      "the shadow strategy needs a `shadow:` section", {})
        if self.strategy == "ab":
            if len(self.variants) < 2:
                raise PydanticCustomError("mlc_one_of", "A/B needs at least two `variants`", {})
            if sum(v.weight for v in self.variants) != 100:
                raise PydanticCustomError("mlc_range", "A/B variant weights must add up to 100",
                                          {})
        weights = [s.weight for s in self.steps]
        if self.strategy == "canary" and weights != sorted(weights):
            raise PydanticCustomError("mlc_range", "canary step weights must not decrease", {})
        return self


class Slo(Spec):
    availability: Percent = Field(99.9, description="Percent of requests that succeed.")
    latency: Duration = Field("250ms", description="Threshold for a fast request.")
    latency_target: Percent = Field(99.0, description="Percent of requests under `latency`.")
    window: Seconds = "30d"
    """Period the SLO is measured over, for its error budget."""
    first_token_latency: Duration | None = Field(
        None, description="LLM endpoints (`engine: huggingface`): threshold for a fast first "
                          "token of a response.")
    first_token_latency_target: Percent = Field(
        99.0, description="Percent of requests whose first token comes within "
                          "`firstTokenLatency`.")
    tokens_per_second: float | None = Field(
        None, gt=0, le=1_000_000,
        description="LLM endpoints (`engine: huggingface`): the slowest acceptable rate of "
                    "output tokens within a response.")
    tokens_per_second_target: Percent = Field(
        99.0, description="Percent of output tokens generated at `tokensPerSecond` or faster.")


class Batching(Spec):
    max_batch_size: PositiveInt = Field(32, le=65_536)
    """Most requests merged into one model call."""
    max_latency: Duration = "5ms"
    """Longest a request waits for its batch to fill."""
    max_queue: PositiveInt = Field(256, le=1_000_000)
    """Most rows queued for the model; a request that would overflow the queue is refused (503
    with Retry-After)."""


class OnlineExplain(Spec):
    """`POST /explain` on the serving runtime: SHAP values of a request's rows, bounded in
    cost (docs/lifecycle.md, "Explanations of single requests")."""

    max_rows: PositiveInt = Field(1, le=16, description="Rows one explanation request may "
                                  "hold; more is a 400.")
    samples: PositiveInt = Field(256, le=4096, description="Model evaluations per explained "
                                 "row (KernelExplainer's `nsamples`); with few features every "
                                 "coalition is evaluated, which is exact.")
    background: PositiveInt = Field(20, le=200, description="Rows of the model's reference "
                                    "sample that stand for a feature's absence; one row costs "
                                    "about samples x background model rows.")


class AllowFrom(Spec):
    namespace: DnsLabel | None = None
    """Clients in this namespace; unset: the endpoint's own."""
    pod_labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    """Only client pods with these labels; none: every pod there."""


class BatchScoring(Spec):
    schedule: Cron
    """When the batch scoring runs."""
    input: Name = Field(description="Source to score.")
    output: str = Field(min_length=1, description="Where the predictions go: a folder (ending "
                        "in `/`, e.g. `s3://bucket/scores/dt={date}/`), published whole with a "
                        "`_SUCCESS` marker, or one file. `{date}` (YYYY-MM-DD) and `{hour}` "
                        "(HH) are the run's date and hour in `timezone`.")
    format: Literal["parquet", "csv"] | None = Field(None, description="Defaults to the file's "
                                                     "extension, else parquet.")
    timezone: str | None = Field(None, description="IANA time zone of the schedule and of "
                                 "`{date}`; defaults to UTC.")
    timeout: Duration = Field("30m", description="A run still going after this is stopped.")
    triggers: dict[Name, Trigger] = Field(
        default_factory=dict, description="Score on an event as well: a new object in a "
        "bucket, a message on a topic, another pipeline's success (docs/triggers.md).")
    vector_store: ScoreVectorStore | None = Field(
        None, description="Write the model's output vectors (an embedding per row) to a "
        "Milvus collection after each run (docs/vector-stores.md).")


# A path of an HTTP server, as a probe requests it.
HttpPath = Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9._~/%-]{0,255}$"),
                     Field(examples=["/healthz"])]


# Prometheus' own syntax for series and label names (a label name starting `__` is
# Prometheus' internal one, which no exporter sets)
PromSeriesName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]{0,199}$"),
                           Field(examples=["http_requests_total"])]
PromLabelName = Annotated[str, StringConstraints(
    pattern=r"^([a-zA-Z][a-zA-Z0-9_]{0,99}|_[a-zA-Z0-9][a-zA-Z0-9_]{0,98})$"),
    Field(examples=["handler", "status"])]
SeriesMatch = Annotated[dict[PromLabelName, Annotated[str, StringConstraints(max_length=256)]],
                        Field(max_length=16)]


class ServerCounter(Spec):
    """Counters of the user's server, summed: their stored names (with `_total` where the
    client library adds it), narrowed by label regexes (RE2, anchored, as Prometheus
    matches `=~`)."""

    series: list[PromSeriesName] = Field(min_length=1, max_length=8,
                                         description="Stored series names, summed.")
    match: SeriesMatch = Field(default_factory=dict, description="Label -> regex the "
                               "series must match, e.g. `{handler: /predict}`.")
    status_label: PromLabelName | None = Field(None, description="The label holding each "
                                               "answer's HTTP status: `5..` of it are the "
                                               "server's errors, `4..` the client's; none: "
                                               "errors are not measured.")
    status_format: Literal["code", "class"] = Field("code", description="What the status "
                                                    "label holds: the code (`503`) or its "
                                                    "class (`5xx`).")

    @model_validator(mode="after")
    def _format_needs_label(self):
        if "status_format" in self.model_fields_set and self.status_label is None:
            raise PydanticCustomError("mlc_one_of", "`statusFormat` says what the status "
                                      "label holds, but no `statusLabel` names it: set "
                                      "`statusLabel`, or remove `statusFormat`", {})
        return self


class ServerGauge(Spec):
    """Gauges of the user's server (requests in flight, or queued), summed."""

    series: list[PromSeriesName] = Field(min_length=1, max_length=8,
                                         description="Stored series names, summed.")
    match: SeriesMatch = Field(default_factory=dict, description="Label -> regex the "
                               "series must match.")


class ServerHistogram(Spec):
    """A classic histogram of the user's server (`<series>_bucket`, `_sum`, `_count`)."""

    series: PromSeriesName = Field(description="The histogram's name, without `_bucket`.")
    unit: Literal["seconds", "milliseconds", "microseconds"] = Field(
        description="The unit of its observations and bucket bounds.")
    buckets: list[Annotated[float, Field(gt=0, le=1e9)]] = Field(
        min_length=1, max_length=64, description="Its bucket bounds (`le`), increasing, in "
        "`unit`, as the server declares them.")
    match: SeriesMatch = Field(default_factory=dict, description="Label -> regex the "
                               "series must match.")

    @model_validator(mode="after")
    def _increasing(self):
        if any(b <= a for a, b in zip(self.buckets, self.buckets[1:], strict=False)):
            raise PydanticCustomError("mlc_range", "`buckets` must increase: {buckets}",
                                      {"buckets": self.buckets})
        return self


class ServerMetrics(Spec):
    """`engine: custom`: which of the user's server's series give mlc's quantities, so that
    its objectives, alerts, dashboards, gates and autoscaling are measured
    (docs/serving-engines.md, "Metrics of a custom server")."""

    port: int | None = Field(None, ge=1024, le=65535, description="Where the server serves "
                             "its metrics; defaults to the container's `port`.")
    path: HttpPath = Field("/metrics", description="The metrics page's path.")
    requests: ServerCounter | None = Field(None, description="Every inference request "
                                           "answered, by status where `statusLabel` says.")
    latency: ServerHistogram | None = Field(None, description="Request latency.")
    inflight: ServerGauge | None = Field(None, description="Requests being handled now.")
    queue: ServerGauge | None = Field(None, description="Requests waiting.")


class EngineContainer(Spec):
    """`engine: custom`: the user's own server, as the predictor of a KServe
    InferenceService (docs/serving-engines.md)."""

    image: Name = Field(description="The server's image, under `images.custom`.")
    command: list[Annotated[str, StringConstraints(min_length=1, max_length=4096)]] = Field(
        default_factory=list, max_length=64, description="The entry point; none: the "
        "image's own.")
    args: list[Annotated[str, StringConstraints(max_length=4096)]] = Field(
        default_factory=list, max_length=256, description="Its arguments; none: the "
        "image's own.")
    port: int = Field(8080, ge=1024, le=65535, description="The HTTP port the server "
                      "answers on (and serves `/metrics` on).")
    readiness_path: HttpPath = Field(description="Answers 200 once the server can answer "
                                     "requests.")
    liveness_path: HttpPath | None = Field(None, description="Answers 200 while the server "
                                           "lives; defaults to `readinessPath`.")
    protocol: Literal["v1", "v2"] | None = Field(None, description="The inference protocol "
                                                  "the server speaks (KServe's V1 "
                                                  "`instances`/`predictions`, or V2 "
                                                  "tensors), which the payload logger's "
                                                  "receiver decodes where a drift check or "
                                                  "a quality monitor reads the endpoint's "
                                                  "prediction log; none: it cannot be read "
                                                  "(MLC393).")
    metrics: ServerMetrics | None = Field(None, description="Which of the server's series "
                                          "give mlc's quantities; none: nothing of it is "
                                          "measured.")


# What answers an endpoint's requests (docs/serving-engines.md).
Engine = Literal["mlc", "mlserver", "triton", "torchserve", "tfserving", "huggingface", "custom"]


class Endpoint(Spec):
    model: Name
    """Model (under `models`) to serve."""
    alias: Name | None = Field(None, description="Registry alias to serve; defaults to the "
                               "model's production alias.")
    version: PositiveInt | None = Field(None, description="Pin a registry version instead.")
    mode: Literal["online", "serverless", "batch", "stream"] = "online"
    """`online`: a Deployment or Rollout; `serverless`: a Knative Service; `batch`: a scheduled
    scoring job; `stream`: a consumer that scores a Kafka topic into another."""
    hardware: Name = "default"
    """Hardware profile (under `hardware`) of the serving pods."""
    replicas: PositiveInt | None = Field(None, le=1000,
                                         description="Fixed replicas (no autoscaling).")
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    """How the replica count follows load, unless `replicas` is set."""
    rollout: Rollout = Field(default_factory=Rollout)
    """How a new model version is delivered."""
    slo: Slo = Field(default_factory=Slo)
    """Availability and latency objectives; alerts burn their error budget."""
    batching: Batching = Field(default_factory=Batching)
    """Server-side batching of concurrent requests."""
    prediction_log_sample: Fraction = Field(0.1, description="Share of predictions logged for "
                                            "drift checks.")
    online_features: bool = Field(False, description="Look up features by entity key.")
    allow_from: list[AllowFrom] = Field(default_factory=list, description="Clients allowed by "
                                        "the NetworkPolicy (Prometheus is always allowed).")
    kserve: bool = Field(False, description="Also emit a KServe InferenceService.")
    explain: OnlineExplain | None = Field(None, description="Answer `POST /explain` with the "
                                          "SHAP values of single requests; off unless set.")
    engine: Engine = Field("mlc", description="What answers the requests: `mlc`, mlc's own "
                           "serving runtime (docs/serving-engines.md lists the others).")
    container: EngineContainer | None = Field(None, description="`engine: custom` only: "
                                              "the image, command, port and health paths "
                                              "of the user's server.")
    batch: BatchScoring | None = None
    """Batch mode: what is scored, when and where the predictions go."""
    stream: StreamScoring | None = None
    """Stream mode: the topic scored, where the scored events go, what becomes of a poison
    message."""
    env: EnvVars = Field(default_factory=dict, description="Environment variables of the "
                         "serving container: a string, or `{secret: <name>}`.")
    allow_pickle: bool = Field(False, description="Serve a model that is not in mlc's own "
                               "format (an MLflow flavour or pyfunc that a custom trainer "
                               "logged): it is loaded with `mlflow.pyfunc`, which unpickles "
                               "and runs the model's own code in the server. Off: such a "
                               "model is refused, and the training step that logs one for "
                               "this endpoint fails (docs/training-contract.md).")

    @model_validator(mode="after")
    def _shape(self):
        if self.alias is not None and self.version is not None:
            raise PydanticCustomError("mlc_one_of", "set `alias` or `version`, not both", {})
        if self.mode == "batch" and self.batch is None:
            raise PydanticCustomError("mlc_one_of",
                                      "a batch endpoint needs `batch: {schedule, input, output}`",
                                      {})
        if self.mode == "stream" and self.stream is None:
            raise PydanticCustomError("mlc_one_of", "a stream endpoint needs `stream: {input, "
                                      "outputTopic, onPoison}`", {})
        return self
