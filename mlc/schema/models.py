"""`models`: what is trained, from which features, on what hardware, and how it is judged."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, model_validator
from pydantic_core import PydanticCustomError

from .secrets import EnvVars
from .types import (
    Cron,
    DnsLabel,
    FieldName,
    Fraction,
    ImageRef,
    Name,
    Seconds,
    Spec,
)


class BuiltinTrainer(Spec):
    """The bundled tabular trainer (a torch MLP), configured by hyperparameters."""

    hidden_layers: list[PositiveInt] = Field(default_factory=lambda: [64, 32])
    epochs: PositiveInt = Field(10, le=100_000)
    batch_size: PositiveInt = Field(256, le=1 << 20)
    learning_rate: float = Field(1e-3, gt=0, le=10)
    weight_decay: float = Field(0.0, ge=0, le=10)
    dropout: Fraction = 0.0
    seed: int = Field(42, ge=0, le=2**63 - 1)  # numpy refuses negative seeds
    validation_split: Fraction = 0.2
    mixed_precision: Literal["auto", "off", "bf16", "fp16"] = "auto"
    env: EnvVars = Field(default_factory=dict, description="Environment variables of the "
                         "training container: a string, or `{secret: <name>}`.")


METRIC_NAME = r"^[a-z][a-z0-9_]*$"


class CustomMetric(Spec):
    """A metric the custom command reports in MLC_METRICS_FILE; gates may then use it."""

    name: str = Field(pattern=METRIC_NAME)
    direction: Literal["maximize", "minimize"] | None = Field(
        None, description="Whether higher or lower is better; `compareWithProduction` on "
        "this metric needs it.")


class CustomTrainer(Spec):
    """A user image and command that follow the same contract as the builtin trainer. The
    image must contain mlc: the step runtime runs the command."""

    image: Name | ImageRef = Field(description="A name under `images.custom`, or a reference.")
    command: list[str] = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    env: EnvVars = Field(default_factory=dict, description="Environment variables of the "
                         "training container: a string, or `{secret: <name>}`.")
    metrics: list[CustomMetric] = Field(
        default_factory=list, description="Metrics the command writes to MLC_METRICS_FILE "
        "that gates and `compareWithProduction` may use (the builtin evaluation's metrics "
        "are always available).")


class Backoff(Spec):
    duration: Seconds = "30s"
    factor: PositiveInt = Field(2, le=10)
    max_duration: Seconds = "10m"


class Retries(Spec):
    limit: int = Field(3, ge=0, le=20)
    backoff: Backoff = Field(default_factory=Backoff)


class Checkpoint(Spec):
    path: str = Field(min_length=1, description="Volume path or object-store URI for checkpoints.")
    every_steps: PositiveInt = Field(500, le=10**9)
    volume: DnsLabel | None = Field(None, description="A PersistentVolumeClaim that holds the "
                                    "checkpoints; `path` is then a folder inside it. Without "
                                    "it, `path` is an object-store URI (s3://, gs://, ...).")


SearchValue = int | float | str | bool | list[PositiveInt]


class SearchRange(Spec):
    """The values one hyperparameter takes in a search: `uniform` and `loguniform` (floats
    between `low` and `high`), `int` (whole numbers from `low` to `high`, by `step`) or
    `choice` (one of `values`)."""

    type: Literal["uniform", "loguniform", "int", "choice"] = Field(
        description="How values are drawn.")
    low: int | float | None = Field(None, description="Smallest value (uniform, loguniform, "
                                    "int); above 0 for loguniform.")
    high: int | float | None = Field(None, description="Largest value (uniform, loguniform, "
                                     "int); above `low`.")
    step: PositiveInt | None = Field(None, description="`int` only: the distance between "
                                     "values (default 1).")
    values: list[SearchValue] | None = Field(None, description="`choice` only: the values "
                                             "to choose from.")


class Search(Spec):
    """Hyperparameter search: trials train with values drawn from `space`; the best trial's
    values train the model that is evaluated, gated and registered."""

    method: Literal["random", "tpe", "grid"] = Field(
        "tpe", description="How trials pick values: Optuna's TPE, random, or every "
        "combination (`grid`: `int` and `choice` ranges only).")
    space: dict[str, SearchRange] = Field(
        min_length=1, description="Per hyperparameter of the trainer (as `builtin` names "
        "it, e.g. `learningRate`), the range it is searched over.")
    metric: str = Field(pattern=METRIC_NAME, description="What a trial is judged by: a metric "
                        "the trainer reports on its validation rows.")
    direction: Literal["maximize", "minimize"] | None = Field(
        None, description="Defaults to the metric's own direction.")
    trials: PositiveInt | None = Field(None, le=10_000, description="How many trials; "
                                       "default 20 (`grid`: every combination).")
    parallelism: PositiveInt = Field(1, le=1000, description="Trials that run at once in a "
                                     "cluster (Argo's `parallelism`).")
    pruning: bool = Field(False, description="Stop a trial early when its validation metric "
                          "after an epoch is below the median of the trials before it.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seeds the sampler: the same "
                      "search draws the same values.")


class Training(Spec):
    builtin: BuiltinTrainer | None = None
    custom: CustomTrainer | None = None
    hardware: Name = "default"
    nodes: PositiveInt = Field(1, le=1024,
                               description="More than one runs distributed (PyTorchJob).")
    schedule: Cron | None = Field(None, description="Scheduled retraining.")
    timezone: str = "UTC"
    data_window: Seconds | None = Field(None, description="Train on this much recent data.")
    max_dropped_rows: Fraction | None = Field(
        None, description="Fail training when more than this share of the labelled rows in the "
        "window is lost by the feature join or comes back without any feature value (e.g. "
        "0.1); unset: report the share, never fail on it.")
    checkpoint: Checkpoint | None = None
    search: Search | None = Field(None, description="Hyperparameter search before the "
                                  "training run (docs/lifecycle.md).")
    retries: Retries = Field(default_factory=Retries)
    timeout: Seconds = "6h"
    expected_duration: Seconds = Field(
        "1h", description="How long a run usually takes; the plan's cost of scheduled "
        "training (docs/cost.md). At most `timeout`.")

    @model_validator(mode="after")
    def _one(self):
        if self.builtin is not None and self.custom is not None:
            raise PydanticCustomError("mlc_one_of",
                                      "set either `builtin` or `custom` training, not both", {})
        return self


class Gate(Spec):
    metric: str = Field(pattern=METRIC_NAME)
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bound(self):
        if self.min is None and self.max is None:
            raise PydanticCustomError("mlc_one_of", "a gate needs `min`, `max` or both", {})
        return self


class ChampionComparison(Spec):
    metric: str = Field(pattern=METRIC_NAME)
    max_regression: float = Field(0.0, ge=0, description="How much worse than the production "
                                  "model the candidate may be.")
    higher_is_better: bool | None = Field(None, description="Defaults to the metric's own "
                                          "direction.")


class Explain(Spec):
    """SHAP global feature importance of the trained model, after its evaluation."""

    samples: PositiveInt = Field(100, le=10_000, description="Test rows explained (the "
                                 "cost grows with rows x features).")
    background: PositiveInt = Field(50, le=1000, description="Training rows that stand for "
                                    "a feature's absence.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Picks the rows and the "
                      "permutations: the same model gives the same report.")


SliceValue = int | float | str | bool


class Slice(Spec):
    """Gates that hold on each group of test rows with one value of `column`."""

    column: FieldName = Field(description="A feature or entity key of the model.")
    values: list[SliceValue] = Field(min_length=1, description="One slice per value.")
    gates: list[Gate] = Field(min_length=1, description="Gates every slice must pass.")


class Fairness(Spec):
    """Fairness metrics over the groups of a sensitive column, computed with fairlearn on the
    test rows: `demographic_parity_difference`, `demographic_parity_ratio`,
    `equalized_odds_difference`, `equalized_odds_ratio`; `gates` may use them."""

    sensitive: FieldName = Field(description="A feature or entity key of the model whose "
                                 "values are the groups compared.")


class Evaluation(Spec):
    test_split: Fraction = 0.2
    gates: list[Gate] = Field(default_factory=list)
    compare_with_production: ChampionComparison | None = None
    explain: Explain | None = Field(None, description="Explain the model with SHAP after "
                                    "its evaluation (docs/lifecycle.md).")
    slices: list[Slice] = Field(default_factory=list, description="Gates per slice of the "
                                "test rows (docs/lifecycle.md).")
    fairness: Fairness | None = Field(None, description="Fairness metrics over a sensitive "
                                      "column, gateable like any metric (classification).")


class Registry(Spec):
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$",
                             description="Registered model name; defaults to the model's name.")
    candidate_alias: Name = "challenger"
    production_alias: Name = "champion"
    auto_promote: bool = Field(False, description="Move the production alias when gates pass.")


class FeatureInputs(Spec):
    feature_service: Name | None = None
    features: list[str] | None = None

    @model_validator(mode="after")
    def _one(self):
        if (self.feature_service is None) == (self.features is None):
            raise PydanticCustomError("mlc_one_of",
                                      "set exactly one of `featureService` and `features`", {})
        return self


class Label(Spec):
    source: Name = Field(description="Source holding the labels and the entity keys.")
    column: FieldName


class Model(Spec):
    task: Literal["classification", "regression"]
    framework: Literal["torch", "sklearn", "xgboost", "custom"] = "torch"
    description: str | None = None
    inputs: FeatureInputs
    label: Label
    training: Training = Field(default_factory=Training)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    registry: Registry = Field(default_factory=Registry)
