"""`models`: what is trained, from which features, on what hardware, and how it is judged."""


from typing import Literal

from pydantic import Field, PositiveInt, model_validator
from pydantic_core import PydanticCustomError

from .secrets import EnvVars
from .triggers import Trigger
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


def _default_hidden_layers() -> list[int]:
    return [64, 32]


class BuiltinTrainer(Spec):
    """The bundled tabular trainer (a torch MLP), configured by hyperparameters."""

    hidden_layers: list[PositiveInt] = Field(default_factory=_default_hidden_layers)
    """Width of each hidden layer of the network."""
    epochs: PositiveInt = Field(10, le=100_000)
    """Passes over the training data."""
    batch_size: PositiveInt = Field(256, le=1 << 20)
    """Rows per optimizer step."""
    learning_rate: float = Field(1e-3, gt=0, le=10)
    """Optimizer step size; write it as a decimal (`0.001`), which every YAML reader takes as a
    number."""
    weight_decay: float = Field(0.0, ge=0, le=10)
    """L2 penalty on the weights."""
    dropout: Fraction = 0.0
    """Share of units dropped in training, 0 to 1."""
    seed: int = Field(42, ge=0, le=2**63 - 1)  # numpy refuses negative seeds
    """Random seed, for reproducible runs."""
    validation_split: Fraction = 0.2
    """Share of the training rows held out for early stopping."""
    mixed_precision: Literal["auto", "off", "bf16", "fp16"] = "auto"
    """`auto`: bf16 on a GPU that has it, else fp16, float32 on a CPU; `off`: float32; `bf16`
    also runs on a CPU; `fp16` needs a GPU."""
    env: EnvVars = Field(default_factory=dict, description="Environment variables of the "
                         "training container: a string, or `{secret: <name>}`.")


class XGBoostTrainer(Spec):
    """The bundled XGBoost trainer (`framework: xgboost`): gradient-boosted trees, trained
    with the `xgboost` library on the training rows, early-stopped on the validation rows.
    Missing feature values stay missing (XGBoost learns where they go)."""

    n_estimators: PositiveInt = Field(200, le=100_000)
    """Boosting rounds (trees per output), at most; early stopping may end sooner."""
    max_depth: PositiveInt = Field(6, le=64)
    """Deepest a tree grows."""
    learning_rate: float = Field(0.3, gt=0, le=1)
    """Shrinkage of each tree's contribution (XGBoost's `eta`); write it as a decimal."""
    subsample: float = Field(1.0, gt=0, le=1)
    """Share of the training rows each tree sees."""
    colsample_bytree: float = Field(1.0, gt=0, le=1)
    """Share of the features each tree sees."""
    min_child_weight: float = Field(1.0, ge=0, le=1e6)
    """Smallest hessian sum a leaf may hold."""
    reg_lambda: float = Field(1.0, ge=0, le=1e6)
    """L2 penalty on the leaf weights."""
    reg_alpha: float = Field(0.0, ge=0, le=1e6)
    """L1 penalty on the leaf weights."""
    early_stopping_rounds: PositiveInt | None = Field(
        20, le=10_000, description="Stop when the validation loss has not improved for this "
        "many rounds, and keep the best round; `null`: train every round. Needs validation "
        "rows (`validationSplit` above 0; without them, and not set here, every round "
        "trains).")
    validation_split: Fraction = 0.2
    """Share of the training rows held out for early stopping (below 1)."""
    seed: int = Field(42, ge=0, le=2**31 - 1)
    """Random seed, for reproducible runs."""
    env: EnvVars = Field(default_factory=dict, description="Environment variables of the "
                         "training container: a string, or `{secret: <name>}`.")


class LightGBMTrainer(Spec):
    """The bundled LightGBM trainer (`framework: lightgbm`): leaf-wise gradient-boosted
    trees, trained with the `lightgbm` library, early-stopped on the validation rows.
    Missing feature values stay missing (LightGBM learns where they go)."""

    n_estimators: PositiveInt = Field(200, le=100_000)
    """Boosting rounds, at most; early stopping may end sooner."""
    num_leaves: int = Field(31, ge=2, le=131_072)
    """Most leaves a tree has."""
    max_depth: PositiveInt | None = Field(None, le=64, description="Deepest a tree grows; "
                                          "unset: no limit but `numLeaves`.")
    learning_rate: float = Field(0.1, gt=0, le=1)
    """Shrinkage of each tree's contribution; write it as a decimal."""
    subsample: float = Field(1.0, gt=0, le=1)
    """Share of the training rows each tree sees (LightGBM's `bagging_fraction`)."""
    colsample_bytree: float = Field(1.0, gt=0, le=1)
    """Share of the features each tree sees (LightGBM's `feature_fraction`)."""
    min_child_samples: PositiveInt = Field(20, le=1_000_000)
    """Fewest training rows a leaf may hold."""
    reg_lambda: float = Field(0.0, ge=0, le=1e6)
    """L2 penalty on the leaf weights."""
    reg_alpha: float = Field(0.0, ge=0, le=1e6)
    """L1 penalty on the leaf weights."""
    early_stopping_rounds: PositiveInt | None = Field(
        20, le=10_000, description="Stop when the validation loss has not improved for this "
        "many rounds, and keep the best round; `null`: train every round. Needs validation "
        "rows (`validationSplit` above 0; without them, and not set here, every round "
        "trains).")
    validation_split: Fraction = 0.2
    """Share of the training rows held out for early stopping (below 1)."""
    seed: int = Field(42, ge=0, le=2**31 - 1)
    """Random seed, for reproducible runs."""
    env: EnvVars = Field(default_factory=dict, description="Environment variables of the "
                         "training container: a string, or `{secret: <name>}`.")


class SklearnTrainer(Spec):
    """The bundled scikit-learn trainer (`framework: sklearn`): one of scikit-learn's
    estimators, fitted on every training row. Each setting applies to some estimators only
    (docs/trainers.md); one the estimator does not take is refused (MLC331)."""

    estimator: Literal["random_forest", "extra_trees", "gradient_boosting",
                       "hist_gradient_boosting", "logistic_regression", "ridge"] = Field(
        description="The estimator: a forest, boosted trees, or a linear model "
        "(`logistic_regression` classifies, `ridge` regresses).")
    n_estimators: PositiveInt | None = Field(None, le=100_000, description="Trees "
                                             "(forests, `gradient_boosting`).")
    max_depth: PositiveInt | None = Field(None, le=1000, description="Deepest a tree grows "
                                          "(tree estimators); unset: the estimator's default.")
    min_samples_leaf: PositiveInt | None = Field(None, le=1_000_000, description="Fewest "
                                                 "training rows a leaf holds (tree estimators).")
    learning_rate: float | None = Field(None, gt=0, le=1, description="Shrinkage "
                                        "(`gradient_boosting`, `hist_gradient_boosting`).")
    max_iter: PositiveInt | None = Field(None, le=100_000, description="Iterations "
                                         "(`logistic_regression`, `hist_gradient_boosting`).")
    c: float | None = Field(None, gt=0, le=1e6, description="Inverse regularisation "
                            "strength (`logistic_regression`'s `C`).")
    alpha: float | None = Field(None, ge=0, le=1e6, description="Regularisation strength "
                                "(`ridge`).")
    seed: int = Field(42, ge=0, le=2**31 - 1)
    """Random seed, for reproducible runs."""
    env: EnvVars = Field(default_factory=dict, description="Environment variables of the "
                         "training container: a string, or `{secret: <name>}`.")


# `name@k` passes the pattern so that the unknown-metric check can say how mlc spells it
# (`ndcg_at_10`: MLflow's metric names take no `@`)
METRIC_NAME = r"^[a-z][a-z0-9_]*(@[0-9]+)?$"
# what the gates may name, as docs/trainers.md lists it per trainer (a test holds the three
# together with mlc/trainer_catalog.py)
GATE_METRICS = ("A metric the model's evaluation has: classification `accuracy`, `brier`, "
                "`f1`, `log_loss`, `pr_auc`, `precision`, `recall`, `roc_auc` (more than two "
                "classes: `accuracy`, `f1`, `log_loss`, `roc_auc`); regression `mae`, `mse`, "
                "`r2`, `rmse`; the same for every bundled trainer (torch, xgboost, lightgbm, "
                "sklearn); ranking (xgboost, lightgbm) `ndcg_at_<k>`, `map_at_<k>` for each "
                "`k` of `ranking.k` (by default `map_at_5`, `map_at_10`, `ndcg_at_5`, "
                "`ndcg_at_10`), plus a custom trainer's declared `metrics` and, with "
                "`evaluation.fairness`, the fairness metrics (docs/trainers.md).")


class CustomMetric(Spec):
    """A metric the custom command reports in MLC_METRICS_FILE; gates may then use it."""

    name: str = Field(pattern=METRIC_NAME, examples=["precision_at_100"])
    """Metric name, as the command writes it (lowercase, `_`)."""
    direction: Literal["maximize", "minimize"] | None = Field(
        None, description="Whether higher or lower is better; `compareWithProduction` on "
        "this metric needs it.")


class CustomTrainer(Spec):
    """A user image and command that follow the same contract as the builtin trainer. The
    image must contain mlc: the step runtime runs the command."""

    image: Name | ImageRef = Field(description="A name under `images.custom`, or a reference.")
    command: list[str] = Field(min_length=1)
    """The command the training step runs in the image."""
    args: list[str] = Field(default_factory=list)
    """Arguments after the command."""
    env: EnvVars = Field(default_factory=dict, description="Environment variables of the "
                         "training container: a string, or `{secret: <name>}`.")
    metrics: list[CustomMetric] = Field(
        default_factory=list, description="Metrics the command writes to MLC_METRICS_FILE "
        "that gates and `compareWithProduction` may use (the builtin evaluation's metrics "
        "are always available, except for a `dataset` model: then these are its "
        "evaluation).")
    hugging_face_token_secret: Name | None = Field(
        None, description="A secret (under `secrets`) holding a Hugging Face token, "
        "delivered to the command as HF_TOKEN (gated base models and datasets).")


class Backoff(Spec):
    duration: Seconds = "30s"
    """Wait before the first retry."""
    factor: PositiveInt = Field(2, le=10)
    """Each further wait is this many times the previous one."""
    max_duration: Seconds = "10m"
    """Longest wait between two retries."""


class Retries(Spec):
    limit: int = Field(3, ge=0, le=20)
    """Retries of a failed step; 0: none."""
    backoff: Backoff = Field(default_factory=Backoff)
    """How long to wait between retries."""


class Checkpoint(Spec):
    path: str = Field(min_length=1, description="Volume path or object-store URI for checkpoints.")
    every_steps: PositiveInt = Field(500, le=10**9)
    """Write a checkpoint every this many optimizer steps."""
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
    metric: str = Field(pattern=METRIC_NAME, examples=["roc_auc", "rmse"],
                        description="What a trial is judged by: a metric the trainer reports "
                        "on its validation rows. " + GATE_METRICS)
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
    """`framework: torch`: the bundled torch MLP, configured by hyperparameters."""
    xgboost: XGBoostTrainer | None = None
    """`framework: xgboost`: the bundled XGBoost trainer (docs/trainers.md)."""
    lightgbm: LightGBMTrainer | None = None
    """`framework: lightgbm`: the bundled LightGBM trainer (docs/trainers.md)."""
    sklearn: SklearnTrainer | None = None
    """`framework: sklearn`: the bundled scikit-learn trainer (docs/trainers.md)."""
    custom: CustomTrainer | None = None
    """Run your own image and command, under the same contract."""
    hardware: Name = "default"
    """Hardware profile (under `hardware`) of the training pods."""
    nodes: PositiveInt = Field(1, le=1024,
                               description="More than one runs distributed (PyTorchJob).")
    schedule: Cron | None = Field(None, description="Scheduled retraining.")
    timezone: str = "UTC"
    """IANA time zone of `schedule`, e.g. `Europe/Berlin`."""
    data_window: Seconds | None = Field(None, description="Train on this much recent data.")
    max_dropped_rows: Fraction | None = Field(
        None, description="Fail training when more than this share of the labelled rows in the "
        "window is lost by the feature join or comes back without any feature value (e.g. "
        "0.1); unset: report the share, never fail on it.")
    checkpoint: Checkpoint | None = None
    """Where training saves checkpoints to resume from after a failure."""
    search: Search | None = Field(None, description="Hyperparameter search before the "
                                  "training run (docs/lifecycle.md).")
    triggers: dict[Name, Trigger] = Field(
        default_factory=dict, description="Retrain on an event: a new object in a bucket, a "
        "message on a topic, another pipeline's success (docs/triggers.md).")
    retries: Retries = Field(default_factory=Retries)
    """How often a failed step is retried."""
    timeout: Seconds = "6h"
    """A run still going after this is stopped."""
    expected_duration: Seconds = Field(
        "1h", description="How long a run usually takes; the plan's cost of scheduled "
        "training (docs/cost.md). At most `timeout`.")

    @model_validator(mode="after")
    def _one(self):
        if self.custom is not None and any(
                block is not None for block in (self.builtin, self.xgboost, self.lightgbm,
                                                self.sklearn)):
            raise PydanticCustomError("mlc_one_of", "set either a bundled trainer (`builtin`, "
                                      "`xgboost`, `lightgbm`, `sklearn`) or `custom` "
                                      "training, not both", {})
        return self


class Gate(Spec):
    metric: str = Field(pattern=METRIC_NAME, examples=["roc_auc", "rmse"],
                        description=GATE_METRICS)
    min: float | None = None
    """Fail when the metric is below this."""
    max: float | None = None
    """Fail when the metric is above this."""

    @model_validator(mode="after")
    def _bound(self):
        if self.min is None and self.max is None:
            raise PydanticCustomError("mlc_one_of", "a gate needs `min`, `max` or both", {})
        return self


class ChampionComparison(Spec):
    metric: str = Field(pattern=METRIC_NAME, examples=["roc_auc", "rmse"],
                        description="Metric compared between the candidate and the production "
                        "model. " + GATE_METRICS)
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
    """Share of the rows held out for evaluation."""
    gates: list[Gate] = Field(default_factory=list)
    """Bounds on the candidate's metrics; a missed bound fails the run before the candidate is
    registered."""
    compare_with_production: ChampionComparison | None = None
    """Compare the candidate with the production model on the same test rows."""
    explain: Explain | None = Field(None, description="Explain the model with SHAP after "
                                    "its evaluation (docs/lifecycle.md).")
    slices: list[Slice] = Field(default_factory=list, description="Gates per slice of the "
                                "test rows (docs/lifecycle.md).")
    fairness: Fairness | None = Field(None, description="Fairness metrics over a sensitive "
                                      "column, gateable like any metric (classification).")


class Registry(Spec):
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$",
                             examples=["fraud-classifier"],
                             description="Registered model name; defaults to the model's name.")
    candidate_alias: Name = "challenger"
    """Alias set on a version that passed its gates."""
    production_alias: Name = "champion"
    """Alias of the version that endpoints serve by default."""
    auto_promote: bool = Field(False, description="Move the production alias when gates pass.")


class FeatureInputs(Spec):
    feature_service: Name | None = None
    """A feature service (under `featureServices`) to read."""
    features: list[str] | None = None
    """Or features listed here: `view` or `view:field`."""

    @model_validator(mode="after")
    def _one(self):
        if (self.feature_service is None) == (self.features is None):
            raise PydanticCustomError("mlc_one_of",
                                      "set exactly one of `featureService` and `features`", {})
        return self


class Label(Spec):
    source: Name = Field(description="Source holding the labels and the entity keys.")
    column: FieldName
    """Column of the label in that source."""


def _default_cutoffs() -> list[int]:
    return [5, 10]


class Ranking(Spec):
    """A ranking model's queries (`task: ranking`): the rows of one `group` value are one
    query's candidates, the label is each row's relevance grade (0 = irrelevant, higher =
    more relevant, whole numbers), and the model scores rows so that a query's more relevant
    rows come first. Trained with XGBoost's `rank:*` or LightGBM's `lambdarank` /
    `rank_xendcg` objectives on the group sizes; a query is never split between the fit,
    validation and test rows; judged by NDCG and MAP at each cutoff (docs/trainers.md)."""

    group: FieldName = Field(examples=["query_id"], description="The column naming each "
                             "row's query: an entity key of the model or a column of the "
                             "label source.")
    k: list[PositiveInt] = Field(default_factory=_default_cutoffs, min_length=1,
                                 max_length=10, examples=[[5, 10]],
                                 description="The cutoffs: the evaluation reports "
                                 "`ndcg_at_<k>` and `map_at_<k>` for each, on the test "
                                 "queries; early stopping reads NDCG at the largest.")
    objective: Literal["ndcg", "pairwise", "map", "xendcg"] = Field(
        "ndcg", description="What the trees learn: `ndcg` (XGBoost `rank:ndcg`, LightGBM "
        "`lambdarank`), `pairwise` (XGBoost `rank:pairwise`), `map` (XGBoost `rank:map`), "
        "`xendcg` (LightGBM `rank_xendcg`).")


DATASET_TASKS = ("generative", "custom")


class Dataset(Spec):
    """The training data of a `generative` or `custom` model, handed as it is to the custom
    trainer (MLC_DATASET_URI, docs/llm.md): one of `files`, `table` or `huggingface`."""

    files: str | None = Field(None, min_length=1, max_length=1024,
                              examples=["s3://corpora/support-chats/*.jsonl"],
                              description="A file, folder or glob: an object-store URI "
                              "(`s3://`, `gs://`, ...) or a path relative to ml.yaml.")
    format: Literal["text", "jsonl", "json", "csv", "parquet"] | None = Field(
        None, description="How `files` are written (MLC_DATASET_FORMAT); unset: the trainer "
        "decides from their names.")
    table: Name | None = Field(None, description="A source (under `sources`) read as a "
                               "table: the trainer gets its location and format.")
    huggingface: str | None = Field(None, min_length=1, max_length=1024,
                                    examples=["s3://corpora/alpaca-small"],
                                    description="A dataset saved with Hugging Face "
                                    "`datasets`' `save_to_disk`, in object storage (or a path "
                                    "relative to ml.yaml); read with `load_from_disk`.")

    @model_validator(mode="after")
    def _one(self):
        if sum(v is not None for v in (self.files, self.table, self.huggingface)) != 1:
            raise PydanticCustomError("mlc_one_of", "set exactly one of `files`, `table` and "
                                      "`huggingface`", {})
        if self.format is not None and self.files is None:
            raise PydanticCustomError("mlc_one_of", "`format` describes `files`; a table or a "
                                      "Hugging Face dataset says its own format", {})
        return self


class Model(Spec):
    task: Literal["classification", "regression", "ranking", "generative", "custom"]
    """What the model predicts: a class, a number, or a score that orders the rows of a
    query (`ranking`, with the `ranking` block), from `inputs` and a `label`; or `generative`
    (text generation, e.g. a fine-tuned language model) and `custom` (anything else a custom
    trainer makes), trained on a `dataset` (docs/llm.md)."""
    ranking: Ranking | None = None
    """The queries and cutoffs of a `task: ranking` model."""
    framework: Literal["torch", "sklearn", "xgboost", "lightgbm", "custom"] = "torch"
    """The model's framework: it decides the bundled trainer (`torch`: `training.builtin`,
    trained by default; `xgboost`, `lightgbm`, `sklearn`: their block under `training`, trained
    when it is set), and names the model's kind in the registry."""
    description: str | None = None
    """What the model does."""
    inputs: FeatureInputs | None = Field(None, description="The features the model reads "
                                         "(classification and regression).")
    label: Label | None = Field(None, description="Where the label (the value to predict) "
                                "comes from (classification and regression).")
    dataset: Dataset | None = Field(None, description="The training data of a `generative` "
                                    "or `custom` model, instead of features and a label.")
    training: Training = Field(default_factory=Training)
    """How and when the model is trained."""
    evaluation: Evaluation = Field(default_factory=Evaluation)
    """How the candidate is judged before it is registered."""
    registry: Registry = Field(default_factory=Registry)
    """How versions are named and promoted in the MLflow registry."""
