"""`models`: what is trained, from which features, on what hardware, and how it is judged."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, model_validator
from pydantic_core import PydanticCustomError

from .secrets import EnvVars
from .types import Cron, DnsLabel, Duration, FieldName, Fraction, ImageRef, Name, Spec


class BuiltinTrainer(Spec):
    """The bundled tabular trainer (a torch MLP), configured by hyperparameters."""

    hidden_layers: list[PositiveInt] = Field(default_factory=lambda: [64, 32])
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 256
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    dropout: Fraction = 0.0
    seed: int = 42
    validation_split: Fraction = 0.2
    mixed_precision: Literal["auto", "off", "bf16", "fp16"] = "auto"
    env: EnvVars = Field(default_factory=dict, description="Environment variables of the "
                         "training container: a string, or `{secret: <name>}`.")


class CustomTrainer(Spec):
    """A user image and command that follow the same contract as the builtin trainer."""

    image: Name | ImageRef = Field(description="A name under `images.custom`, or a reference.")
    command: list[str] = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    env: EnvVars = Field(default_factory=dict, description="Environment variables of the "
                         "training container: a string, or `{secret: <name>}`.")


class Backoff(Spec):
    duration: Duration = "30s"
    factor: PositiveInt = 2
    max_duration: Duration = "10m"


class Retries(Spec):
    limit: int = Field(3, ge=0, le=20)
    backoff: Backoff = Field(default_factory=Backoff)


class Checkpoint(Spec):
    path: str = Field(min_length=1, description="Volume path or object-store URI for checkpoints.")
    every_steps: PositiveInt = 500
    volume: DnsLabel | None = Field(None, description="A PersistentVolumeClaim that holds the "
                                    "checkpoints; `path` is then a folder inside it. Without "
                                    "it, `path` is an object-store URI (s3://, gs://, ...).")


class Training(Spec):
    builtin: BuiltinTrainer | None = None
    custom: CustomTrainer | None = None
    hardware: Name = "default"
    nodes: PositiveInt = Field(1, description="More than one runs distributed (PyTorchJob).")
    schedule: Cron | None = Field(None, description="Scheduled retraining.")
    timezone: str = "UTC"
    data_window: Duration | None = Field(None, description="Train on this much recent data.")
    checkpoint: Checkpoint | None = None
    retries: Retries = Field(default_factory=Retries)
    timeout: Duration = "6h"
    expected_duration: Duration = Field(
        "1h", description="How long a run usually takes; the plan's cost of scheduled "
        "training (docs/cost.md). At most `timeout`.")

    @model_validator(mode="after")
    def _one(self):
        if self.builtin is not None and self.custom is not None:
            raise PydanticCustomError("mlc_one_of",
                                      "set either `builtin` or `custom` training, not both", {})
        return self


class Gate(Spec):
    metric: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bound(self):
        if self.min is None and self.max is None:
            raise PydanticCustomError("mlc_one_of", "a gate needs `min`, `max` or both", {})
        return self


class ChampionComparison(Spec):
    metric: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    max_regression: float = Field(0.0, ge=0, description="How much worse than the production "
                                  "model the candidate may be.")
    higher_is_better: bool = True


class Evaluation(Spec):
    test_split: Fraction = 0.2
    gates: list[Gate] = Field(default_factory=list)
    compare_with_production: ChampionComparison | None = None


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
