"""`serving`: endpoints that serve a model online, serverless or in batch."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, PositiveInt, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from .secrets import EnvVars
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


class Autoscaling(Spec):
    min_replicas: int = Field(1, ge=0, le=1000)
    max_replicas: PositiveInt = Field(3, le=1000)
    metric: Literal["cpu", "rps", "concurrency"] = "cpu"
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
    pause: Seconds | None = None


class RolloutGates(Spec):
    max_latency_p99: Duration = "500ms"
    max_error_rate: Fraction = 0.01
    max_prediction_drift: Fraction | None = Field(0.2, description="Largest PSI between the "
                                                  "canary's and the stable predictions.")
    interval: Seconds = "1m"
    failure_limit: int = Field(1, ge=0, le=100)


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
    failure_limit: int = Field(1, ge=0, le=100)


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


class Variant(Spec):
    name: Name
    alias: Name | None = None
    version: PositiveInt | None = None
    weight: int = Field(ge=0, le=100)


class Shadow(Spec):
    alias: Name | None = None
    version: PositiveInt | None = None
    percent: int = Field(100, ge=1, le=100, description="Share of requests mirrored.")
    tolerance: float = Field(0.01, ge=0, description="Regression: the largest absolute "
                             "difference (in the label's unit) between the shadow's and the "
                             "primary's prediction that counts as agreement.")
    max_queue: PositiveInt = Field(1000, le=100_000, description="Copies the primary holds for "
                                   "the shadow; beyond, copies are dropped and counted.")
    timeout: Duration = Field("1s", description="How long the primary waits for the shadow's "
                              "answer to a copy.")


# An HTTP header name (RFC 9110 token), as a client sends it.
HeaderName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")]


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
    hardware: Name = Field("default", description="Hardware profile of the router's pods.")
    timeout: Duration = Field("30s", description="How long the router waits for a variant.")


class Rollout(Spec):
    strategy: Literal["rolling", "canary", "blueGreen", "shadow", "ab"] = "rolling"
    steps: list[CanaryStep] = Field(default_factory=lambda: [
        CanaryStep(weight=10, pause="5m"), CanaryStep(weight=50, pause="10m")],
        description="Canary only: the new version's share of traffic, step by step.")
    gates: RolloutGates = Field(default_factory=RolloutGates, description="Measured during a "
                                "canary or blue-green rollout; a failed gate rolls back "
                                "(docs/delivery.md says what enforces them in each mode).")
    shadow: Shadow | None = None
    variants: list[Variant] = Field(default_factory=list)
    assignment: Assignment | None = Field(None, description="A/B: the sticky key that assigns "
                                          "a request to a variant; none: each request at "
                                          "random, by the weights.")
    router: Router = Field(default_factory=Router)
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


class Batching(Spec):
    max_batch_size: PositiveInt = Field(32, le=65_536)
    max_latency: Duration = "5ms"
    max_queue: PositiveInt = Field(256, le=1_000_000)


class AllowFrom(Spec):
    namespace: DnsLabel | None = None
    pod_labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)


class BatchScoring(Spec):
    schedule: Cron
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


class Endpoint(Spec):
    model: Name
    alias: Name | None = Field(None, description="Registry alias to serve; defaults to the "
                               "model's production alias.")
    version: PositiveInt | None = Field(None, description="Pin a registry version instead.")
    mode: Literal["online", "serverless", "batch"] = "online"
    hardware: Name = "default"
    replicas: PositiveInt | None = Field(None, le=1000,
                                         description="Fixed replicas (no autoscaling).")
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    rollout: Rollout = Field(default_factory=Rollout)
    slo: Slo = Field(default_factory=Slo)
    batching: Batching = Field(default_factory=Batching)
    prediction_log_sample: Fraction = Field(0.1, description="Share of predictions logged for "
                                            "drift checks.")
    online_features: bool = Field(False, description="Look up features by entity key.")
    allow_from: list[AllowFrom] = Field(default_factory=list, description="Clients allowed by "
                                        "the NetworkPolicy (Prometheus is always allowed).")
    kserve: bool = Field(False, description="Also emit a KServe InferenceService.")
    batch: BatchScoring | None = None
    env: EnvVars = Field(default_factory=dict, description="Environment variables of the "
                         "serving container: a string, or `{secret: <name>}`.")

    @model_validator(mode="after")
    def _shape(self):
        if self.alias is not None and self.version is not None:
            raise PydanticCustomError("mlc_one_of", "set `alias` or `version`, not both", {})
        if self.mode == "batch" and self.batch is None:
            raise PydanticCustomError("mlc_one_of",
                                      "a batch endpoint needs `batch: {schedule, input, output}`",
                                      {})
        return self
