"""The IR: one environment of a project, every reference followed and every default filled.

Backends read only this (DESIGN rule 3): no backend looks a name up by string or picks a
default. Names here are final: `k8s_name` fields are valid DNS-1123 labels, unique per kind.
Mappings are keyed and ordered by the user's names, sorted, so that iteration is stable.

The IR is also the runtimes' contract: `project.json`, which the generated manifests mount
and `mlc run` hands to each step, is `ResolvedProject.model_dump_json()`.
"""


from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..model_cache import CachedModel, Family

# The cost-allocation labels among ResolvedProject.labels: the ones Kubecost allocates by out
# of the box (team, department, product from `app`, environment from `env`).
COST_LABELS = ("app", "department", "env", "team")


# Every class of the IR, built once and read back by later processes (model_cache.py)
IR_FAMILY = Family("ir", "mlc.compiler", ["ir"], docstrings=False)


def _off(value: bool) -> bool:  # a named function, not a lambda: the model cache pickles it
    return not value


def _is_mlc(value: str) -> bool:
    return value == "mlc"


def _unset(value: object) -> bool:
    return value is None


def _no_items(value: list) -> bool:
    return not value


class IR(CachedModel, BaseModel):
    __mlc_family__ = IR_FAMILY
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class Origin(IR):
    """Where a resolved object was declared: the `mlc.dev/source` annotation."""

    file: str
    line: int
    path: str  # dotted path in ml.yaml, e.g. "models.fraud-classifier"

    def annotation(self) -> str:
        return f"{self.file}#{self.path}"


class Image(IR):
    ref: str  # exactly what goes into a pod spec: repository[:tag][@digest]
    repository: str
    tag: str | None
    digest: str | None


class Toleration(IR):
    key: str
    operator: Literal["Equal", "Exists"]
    value: str | None
    effect: str | None


class Hardware(IR):
    """A hardware profile, already in Kubernetes terms."""

    name: str
    requests: dict[str, str]  # cpu, memory, ephemeral-storage, and the GPU resource
    limits: dict[str, str]
    gpu_resource: str | None  # "nvidia.com/gpu" or "nvidia.com/mig-1g.10gb"
    gpu_count: int
    gpu_type: str | None
    node_selector: dict[str, str]  # user's, plus GPU product and spot labels
    tolerations: list[Toleration]  # user's, plus the GPU and spot taints
    priority_class: str | None
    queue: str | None
    spot: bool
    # device-plugin resources (already in requests and limits), and /dev/shm's size; left out
    # of the JSON while unset
    extended_resources: dict[str, str] = Field(default_factory=dict, exclude_if=_no_items)
    shared_memory: str | None = Field(None, exclude_if=_unset)


class SecretRef(IR):
    """How a pod reads a secret: always a Kubernetes Secret by name and key.

    External secrets are synced into a Secret named `k8s_name` by an ExternalSecret object
    (backends/secrets.py); `kubernetes:` secrets exist already, and nothing creates them.
    """

    name: str
    k8s_name: str
    key: str
    external_store: str | None
    external_path: str | None
    external_key: str | None
    external_store_kind: Literal["ClusterSecretStore", "SecretStore"] | None = None
    origin: Origin | None = None  # where ml.yaml (or an overlay) declares it


class Column(IR):
    name: str
    type: str
    nullable: bool
    min: float | None
    max: float | None
    allowed: list[str | int] | None


class Expectation(IR):
    """One Great Expectations expectation, in the form GX's suite JSON holds it."""

    type: str  # e.g. expect_column_values_to_be_between
    kwargs: dict[str, Any]
    meta: dict[str, str]  # the ml.yaml check it stands for: {"check": "max", "column": "amount"}


class DataVersion(IR):
    """The pinned version of a file source's data (resolve/data_versions.py)."""

    kind: Literal["dvc", "lakefs", "object"]
    pinned: str  # what ml.yaml pins: the DVC rev, the lakeFS ref, the object version id
    repo: str | None = None  # dvc: the Git repository (a URL, or a path relative to ml.yaml)
    remote: str | None = None  # dvc
    endpoint: str | None = None  # lakefs: its S3 gateway and API
    repository: str | None = None  # lakefs

    def label(self) -> str:
        """One line for plans and tags: `dvc <repo>@<rev>`, `lakefs <repo>@<ref>`, ..."""
        if self.kind == "dvc":
            return f"dvc {self.repo}@{self.pinned}"
        if self.kind == "lakefs":
            return f"lakefs {self.repository}@{self.pinned}"
        return f"object version {self.pinned}"


class Upstream(IR):
    """The job that produces a source (resolve/upstream.py)."""

    tool: Literal["dbt", "airflow"]
    namespace: str  # the OpenLineage namespace of the producer's own events
    job: str  # its job name there: `<project>.<model>` (dbt), `<dag>.<task>` (Airflow)
    wait_timeout_seconds: int | None = None  # None: the pipeline does not wait for it
    wait_interval_seconds: int | None = None


class Source(IR):
    name: str
    type: str  # file, bigquery, snowflake, redshift, postgres, spark, kafka, push
    timestamp_field: str
    created_timestamp_field: str | None
    columns: list[Column]
    min_rows: int | None
    max_staleness_seconds: int | None
    description: str | None
    owner: str | None
    tags: dict[str, str]
    # type-specific settings, as in ml.yaml (snake_case keys), e.g. path/format for files
    options: dict[str, str | None]
    batch_source: str | None  # stream sources: the batch source with the same data
    origin: Origin
    # The data checks above as a GX suite (resolve/data_checks.py), run by the validate step.
    expectations: list[Expectation] = Field(default_factory=list)
    version: DataVersion | None = None  # file sources: the data pinned to a version
    produced_by: Upstream | None = None  # the dbt model or Airflow task that writes it


class Entity(IR):
    name: str
    join_key: str
    type: str
    description: str | None
    tags: dict[str, str]


class FeatureField(IR):
    name: str
    type: str
    description: str | None
    tags: dict[str, str]


class DerivedFeature(IR):
    name: str
    type: str
    expression: str  # checked: names of the view's fields, numbers, + - * / ( )
    inputs: list[str]  # the fields it reads
    description: str | None


class FeatureView(IR):
    name: str
    entities: list[str]
    join_keys: list[str]
    source: str
    stream: bool  # the source is a stream (kafka/push)
    fields: list[FeatureField]
    derived: list[DerivedFeature]
    ttl_seconds: int
    online: bool
    materialization_schedule: str
    description: str | None
    owner: str | None
    tags: dict[str, str]
    origin: Origin


class FeatureRef(IR):
    view: str
    field: str
    type: str
    derived: bool = False

    @property
    def qualified(self) -> str:
        return f"{self.view}:{self.field}"


class FeatureService(IR):
    name: str
    features: list[FeatureRef]
    description: str | None
    tags: dict[str, str]
    synthesized: bool  # made from a model's `inputs.features` list


class KafkaConnection(IR):
    """How a consumer reaches a topic: librdkafka's settings, secrets by reference."""

    bootstrap_servers: str
    topic: str
    format: Literal["json"]
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None
    sasl_username: str | None  # a plain user name, or...
    sasl_username_secret: SecretRef | None  # ...one read from a secret
    sasl_password_secret: SecretRef | None
    tls_ca: SecretRef | None  # None with TLS on: the image's CA bundle
    tls_cert: SecretRef | None
    tls_key: SecretRef | None


class VectorStoreConnection(IR):
    """A Milvus server, or a milvus-lite file in development; the token only by reference."""

    name: str
    uri: str
    database: str
    token: SecretRef | None
    token_env: str  # the variable the vectors step reads the token from
    host: str | None  # the server's host (for egress), None for a milvus-lite file
    port: int | None


class VectorWrite(IR):
    """A feature view's embeddings, or a batch endpoint's model outputs, written to one Milvus
    collection (mlc/runtime/vectors.py)."""

    view: str | None  # the feature view whose embeddings are written, or None (an endpoint)
    step: str  # the step of the materialisation (or scoring) pipeline that writes it
    store: VectorStoreConnection
    collection: str
    primary_key: str  # the view's one join key
    primary_key_type: Literal["int64", "string"]
    vector_field: str
    dimension: int
    metric: Literal["L2", "IP", "COSINE"]
    index_type: Literal["AUTOINDEX", "FLAT", "HNSW", "IVF_FLAT"]
    index_params: dict[str, int]
    scalar_fields: list[FeatureField]  # stored beside each vector, in the order written
    source: str  # the Parquet file source the latest row per key is read from
    timestamp_field: str
    batch_size: int
    endpoint: str | None = None  # a batch endpoint whose scoring run writes its outputs
    # the endpoint's scored rows, under the run folder: written by `score`, read by the step
    rows_file: str | None = None


class Ingestion(IR):
    """A Kafka source's consumer Deployment: each message written to its views' online store
    (mlc/runtime/ingest/)."""

    source: str
    k8s_name: str
    views: list[str]  # the online feature views the source feeds, sorted
    kafka: KafkaConnection
    consumer_group: str
    start_from: Literal["earliest", "latest"]
    replicas: int
    hardware: str
    image: Image
    batch_size: int
    max_lag: int
    lag_for_seconds: int
    origin: Origin


class StreamAutoscaling(IR):
    """The KEDA ScaledObject of a stream endpoint: replicas follow the group's lag."""

    min_replicas: int
    max_replicas: int
    lag_per_replica: int
    polling_interval_seconds: int
    cooldown_period_seconds: int


class StreamScoring(IR):
    """A `mode: stream` endpoint's consumer: each event of the input topic scored and written
    to the output topic, offsets committed after the output is flushed
    (mlc/runtime/stream_score/)."""

    input_source: str
    kafka: KafkaConnection  # the input's brokers, auth and topic; the outputs go to the same
    output_topic: str
    dead_letter_topic: str | None  # None: poison events are skipped (and counted)
    key_field: str | None  # None: the input message's Kafka key is carried over
    consumer_group: str
    start_from: Literal["earliest", "latest"]
    batch_size: int
    linger_seconds: float
    replicas: int  # fixed replicas, or KEDA's floor when `keda` is set
    keda: StreamAutoscaling | None  # None: `replicas` replicas, always
    max_lag: int
    lag_for_seconds: int


class Retries(IR):
    limit: int
    backoff_seconds: int
    backoff_factor: int
    backoff_max_seconds: int


class CustomMetric(IR):
    name: str
    higher_is_better: bool | None  # None: the trainer did not say


class SearchRange(IR):
    name: str  # the trainer's hyperparameter, as `hyperparameters` names it (snake case)
    type: Literal["uniform", "loguniform", "int", "choice"]
    low: int | float | None
    high: int | float | None
    step: int | None  # int ranges only
    values: list[int | float | str | bool | list[int]] | None  # choice only


class Search(IR):
    """A hyperparameter search before the training run (docs/lifecycle.md)."""

    method: Literal["random", "tpe", "grid"]
    # who runs the trials: Argo tasks, or a Katib Experiment (`platform.katib`), and then the
    # namespace Katib runs in
    engine: Literal["argo", "katib"]
    katib_namespace: str | None
    space: list[SearchRange]  # sorted by name
    trials: int
    parallelism: int
    metric: str  # a metric the trainer reports on its validation rows
    higher_is_better: bool
    pruning: bool
    seed: int


class Dataset(IR):
    """A `generative` or `custom` model's training data, handed to its trainer as it is."""

    kind: Literal["files", "table", "huggingface"]
    uri: str  # an object-store URI, or a path relative to the project folder (development)
    format: str | None  # files: text, jsonl, json, csv, parquet; a table: its source's format
    source: str | None  # kind table: the source it is


class Training(IR):
    kind: Literal["builtin", "custom"]
    # a bundled trainer's block (the framework's: builtin, xgboost, lightgbm, sklearn)
    hyperparameters: dict[str, int | float | str | list[int] | None]
    image: Image  # the training runtime, or the user's image
    command: list[str]
    args: list[str]
    env: dict[str, str]
    hardware: str
    nodes: int
    schedule: str | None
    timezone: str
    data_window_seconds: int | None
    checkpoint_path: str | None
    checkpoint_every_steps: int
    retries: Retries
    timeout_seconds: int
    checkpoint_volume: str | None = None  # a PVC; checkpoint_path is then a folder inside it
    secrets: dict[str, SecretRef] = Field(default_factory=dict)  # env var -> secret
    max_dropped_rows: float | None = None  # share of label rows the feature join may lose
    metrics: list[CustomMetric] = Field(default_factory=list)  # a custom trainer's, by name
    expected_duration_seconds: int = 3600  # a usual run, for the plan's cost
    search: Search | None = None  # trials before the run; the best one's values train it


class Gate(IR):
    metric: str
    min: float | None
    max: float | None


class ChampionComparison(IR):
    metric: str
    max_regression: float
    higher_is_better: bool


class Slice(IR):
    column: str  # a feature or entity key of the model
    values: list[int | float | str | bool]
    gates: list[Gate]


class Explain(IR):
    samples: int  # test rows explained
    background: int  # training rows standing for absent features
    seed: int


class Ranking(IR):
    group: str  # the column naming each row's query (an entity key or a label-source column)
    k: list[int]  # the cutoffs, ascending, each once
    objective: str  # the library's own: rank:ndcg, rank:pairwise, rank:map, lambdarank, rank_xendcg


class Model(IR):
    name: str
    k8s_name: str
    task: Literal["classification", "regression", "ranking", "generative", "custom"]
    framework: str
    description: str | None
    feature_service: str
    features: list[FeatureRef]  # model input order
    entity_keys: list[str]
    label_source: str
    label_column: str
    training: Training
    test_split: float
    gates: list[Gate]
    compare_with_production: ChampionComparison | None
    registered_name: str
    candidate_alias: str
    production_alias: str
    auto_promote: bool
    pipeline: str | None  # its training pipeline in ResolvedProject.pipelines, if trainable
    origin: Origin
    explain: Explain | None = None  # SHAP after the evaluation
    slices: list[Slice] = Field(default_factory=list)  # gates per group of test rows
    fairness_column: str | None = None  # fairlearn's metrics over this column's groups
    # task: ranking only (left out of the JSON otherwise)
    ranking: Ranking | None = Field(None, exclude_if=_unset)
    # a generative or custom model's data; then features, entity keys and label are empty
    dataset: Dataset | None = Field(None, exclude_if=_unset)


class Autoscaling(IR):
    min_replicas: int
    max_replicas: int
    metric: Literal["cpu", "rps", "concurrency"]
    target: int


class CanaryStep(IR):
    weight: int
    pause_seconds: int | None


class RolloutGates(IR):
    max_latency_p99_seconds: float
    max_error_rate: float
    max_prediction_drift: float | None
    interval_seconds: int
    failure_limit: int
    # LLM engines only (mlc/engine_metrics.py); left out of the JSON while unset
    max_ttft_seconds: float | None = Field(None, exclude_if=_unset)
    min_tokens_per_second: float | None = Field(None, exclude_if=_unset)


class ShadowGates(IR):
    min_agreement: float
    max_prediction_drift: float | None
    max_error_rate: float
    max_latency_p99_seconds: float
    interval_seconds: int
    failure_limit: int


class ShadowPhase(IR):
    """A canary's first phase: the new version as a gated shadow (`rollout.shadowFirst`)."""

    duration_seconds: int
    gates: ShadowGates


class Variant(IR):
    name: str
    alias: str | None
    version: int | None
    weight: int
    model_uri: str | None = None  # what this variant serves; set by resolve


class Verdict(IR):
    """An A/B endpoint's scheduled verdict (mlc/runtime/verdict/): every setting final."""

    labels_source: str
    key: str  # the prediction log's column (request_id, an input, or the entity's join key)
    # an as-of join on an entity (the log's column `key`, the labels' time column): a label
    # joins the latest prediction for its entity at most `within_seconds` before it; None:
    # labels join on `key` exactly
    within_seconds: int | None = None
    label_time_column: str | None = None
    label_column: str  # the labels source's outcome column
    metric: Literal["accuracy", "roc_auc", "log_loss", "rmse", "mae"]
    higher_is_better: bool
    # two-proportion z (accuracy), DeLong (roc_auc), Welch's t on per-row losses (the rest)
    test: Literal["two-proportion-z", "delong", "welch-t"]
    schedule: str
    window_seconds: int
    min_samples: int  # labelled predictions per variant
    alpha: float
    baseline: str  # a variant's name
    pipeline: str  # its pipeline in ResolvedProject.pipelines
    # where each run publishes verdict.json (beside the prediction logs), since the run's
    # own volume goes with the run: what `mlc promote --from-verdict` reads
    output_uri: str


class QualityMonitor(IR):
    """An online endpoint's quality on live traffic from late labels (mlc/runtime/quality/):
    the verdict's join and metrics, compared with the served version's training
    evaluation."""

    name: str
    k8s_name: str
    endpoint: str
    model: str
    labels_source: str
    key: str  # as Verdict.key
    label_column: str
    within_seconds: int | None  # as Verdict.within_seconds
    label_time_column: str | None
    metrics: list[Literal["accuracy", "roc_auc", "log_loss", "rmse", "mae"]]
    higher_is_better: dict[str, bool]  # by metric
    window_seconds: int
    schedule: str
    min_samples: int
    max_drop: float  # in the metric's units, against the training evaluation's `test_<m>`
    on_drop: "OnDrift"  # alert, or retrain through the drift retraining's guards
    routes: list[str]
    pipeline: str
    origin: Origin


class AbGuard(IR):
    """An A/B endpoint's guardrails (docs/delivery.md, "A/B guardrails"): every setting final.

    The guard CronWorkflow measures each guarded variant's gates as the A/B router saw its
    requests, and stops a variant that failed more than `failure_limit` runs in a row by
    writing it into the override ConfigMap, which the routers read."""

    workflow: str  # the CronWorkflow `ab-guard-<endpoint>`
    config_map: str  # the override ConfigMap `<endpoint>-ab-guard` the routers mount
    account: str  # the guard's service account: patches that one ConfigMap
    schedule: str  # cron, from the gates' interval
    baseline: str  # never measured, never stopped
    guarded: list[str]  # the other variants with traffic, sorted
    max_error_rate: float
    max_latency_p99_seconds: float
    interval_seconds: int  # also the rate window, at least MIN_WINDOW_SECONDS
    failure_limit: int  # failed runs in a row tolerated; one more stops the variant


class Rollout(IR):
    strategy: Literal["rolling", "canary", "blueGreen", "shadow", "ab"]
    steps: list[CanaryStep]
    gates: RolloutGates
    shadow_alias: str | None
    shadow_version: int | None
    shadow_percent: int
    variants: list[Variant]
    auto_promote: bool
    shadow_model_uri: str | None = None  # the shadow's model; set when strategy is shadow
    shadow_log_uri: str | None = None  # where the shadow logs every answer it computes
    # --- shadow comparison and A/B routing (mlc/runtime/serve/shadow.py, router.py) ---
    shadow_tolerance: float = 0.01  # regression: largest difference counted as agreement
    shadow_max_queue: int = 1000  # copies held for the shadow before they are dropped
    shadow_timeout_seconds: float = 1.0
    assignment_header: str | None = None  # A/B sticky key: a header (lower case)...
    assignment_field: str | None = None  # ...or an entity field of the request body
    # How live traffic reaches the variants (A/B) and the shadow: `router` (the router
    # Deployment assigns by weight and key), `gateway` (an HTTPRoute's weights and mirror),
    # `knative` (a Route's exact split), `pods` (one Service over all variants' pods: KServe
    # raw mode only, where resolve checked the replica ratio), or `server` (the primary
    # copies to its shadow). None: one server takes all live traffic.
    traffic: Literal["router", "gateway", "knative", "pods", "server"] | None = None
    router_replicas: int = 2
    router_hardware: str = "default"
    router_timeout_seconds: float = 30.0
    verdict: Verdict | None = None  # A/B only
    # A canary's shadow phase; its shadow arm serves the endpoint's own (new) model, and the
    # shadow_* settings above describe that arm.
    shadow_phase: ShadowPhase | None = None
    ab_guard: AbGuard | None = None  # A/B with `gates`: the guardrails


class Slo(IR):
    availability: float  # percent
    latency_seconds: float
    latency_target: float  # percent
    window_seconds: int
    # LLM engines only (mlc/engine_metrics.py); left out of the JSON while unset
    ttft_seconds: float | None = Field(None, exclude_if=_unset)
    ttft_target: float | None = Field(None, exclude_if=_unset)  # percent
    tokens_per_second: float | None = Field(None, exclude_if=_unset)
    tokens_per_second_target: float | None = Field(None, exclude_if=_unset)  # percent


class Batching(IR):
    max_batch_size: int
    max_latency_seconds: float
    max_queue: int


class OnlineExplain(IR):
    max_rows: int
    samples: int
    background: int


class AllowFrom(IR):
    namespace: str | None
    pod_labels: dict[str, str]


class BatchScoring(IR):
    schedule: str
    input_source: str
    output: str  # as ml.yaml writes it, `{date}` and `{hour}` filled in at run time
    output_folder: bool  # a folder of part files and `_SUCCESS`, else one file
    format: Literal["parquet", "csv"]
    timezone: str  # IANA: the schedule's and `{date}`'s
    timeout_seconds: int


class ServerSeries(IR):
    """Counters or gauges of a custom server, summed: names, and label -> regex, with a
    value of each that the regex matches (what the alert rules' unit tests export)."""

    series: list[str]
    match: dict[str, str]
    examples: dict[str, str]
    status_label: str | None  # requests only: the label holding the HTTP status
    status_format: Literal["code", "class"]  # `503`, or `5xx`


class ServerHistogram(IR):
    series: str  # without `_bucket`
    unit: Literal["seconds", "milliseconds", "microseconds"]
    buckets: list[float]
    match: dict[str, str]
    examples: dict[str, str]


class ServerMetrics(IR):
    """`container.metrics`: which of a custom server's series give mlc's quantities
    (mlc/engine_metrics.py `custom`)."""

    port: int  # where the metrics are served (the container's port unless set)
    path: str
    requests: ServerSeries | None
    latency: ServerHistogram | None
    inflight: ServerSeries | None
    queue: ServerSeries | None


class EngineContainer(IR):
    """`engine: custom`: the user's server (`serving.<e>.container`)."""

    image: Image
    command: list[str]
    args: list[str]
    port: int
    readiness_path: str
    liveness_path: str
    metrics: ServerMetrics | None


class PayloadLogReceiver(IR):
    """The receiver of an engine endpoint's KServe payload logger, which writes its
    prediction log (backends/serving/payload_log.py, mlc/runtime/payload_log/)."""

    name: str  # its Deployment, Service and pods (app.kubernetes.io/name)
    port: int  # where it listens: the endpoint's port, which the servers' egress allows
    protocol: Literal["v1", "v2"]  # what it decodes: the engine's, or `container.protocol`


class EngineServing(IR):
    """What an endpoint served by another engine than mlc's compiles to: a KServe predictor
    (backends/serving/engines.py, docs/serving-engines.md). Every choice is made here."""

    runtime: str | None  # KServe's stock ClusterServingRuntime; None: `custom`
    model_format: str | None  # predictor.model.modelFormat.name; None: `custom`
    model_format_version: str | None
    protocol: Literal["v1", "v2"] | None  # protocolVersion; None: `custom`
    # what the model fetch writes where the engine reads it (mlc/runtime/serve/fetch.py);
    # None: `custom`, whose server fetches its own model from MLFLOW_TRACKING_URI
    layout: Literal["mlflow", "triton", "torchserve", "huggingface"] | None
    model_name: str  # the name the engine serves the model under (Triton, TorchServe)
    http_port: int  # where the engine answers requests
    scrape_port: int  # where it serves its metrics (mlc/engine_metrics.py)
    container: EngineContainer | None  # `custom` only
    # set where a drift check or a quality monitor reads the endpoint's prediction log
    payload_log: PayloadLogReceiver | None = None


class Endpoint(IR):
    name: str
    k8s_name: str
    model: str
    registered_name: str
    alias: str | None  # exactly one of alias and version is set
    version: int | None
    model_uri: str  # models:/<name>@<alias> or models:/<name>/<version>
    mode: Literal["online", "serverless", "batch", "stream"]
    image: Image
    hardware: str
    replicas: int | None  # fixed replicas; None means autoscaling applies
    autoscaling: Autoscaling
    rollout: Rollout
    slo: Slo
    batching: Batching
    prediction_log_sample: float
    prediction_log_uri: str
    online_features: bool
    feature_service: str
    input_features: list[FeatureRef]
    allow_from: list[AllowFrom]
    kserve: bool
    batch: BatchScoring | None
    port: int = 8080
    pipeline: str | None  # batch scoring pipeline
    origin: Origin
    env: dict[str, str] = Field(default_factory=dict)  # the user's plain env vars
    secrets: dict[str, SecretRef] = Field(default_factory=dict)  # env var -> secret
    # load a model that is not in mlc's format with mlflow.pyfunc (unpickles its code);
    # left out of the JSON while off, so that its arrival rolls no existing server
    allow_pickle: bool = Field(False, exclude_if=_off)
    # `mode: stream` only; left out of the JSON otherwise
    stream: StreamScoring | None = Field(None, exclude_if=_unset)
    # what answers the requests; left out of the JSON for mlc's own runtime
    engine: str = Field("mlc", exclude_if=_is_mlc)
    # the engine's predictor; None for mlc's own runtime (and left out of the JSON)
    engine_serving: EngineServing | None = Field(None, exclude_if=_unset)
    # `POST /explain` (mlc/runtime/serve/explain.py); left out of the JSON while off
    explain: OnlineExplain | None = Field(None, exclude_if=_unset)


class OnDrift(IR):
    action: Literal["alert", "retrain"]
    cooldown_seconds: int
    max_runs: int
    per_seconds: int


class SqsWatch(IR):
    """An AWS S3 bucket's notifications, read from the SQS queue it sends them to."""

    queue: str
    region: str
    role_arn: str | None  # IRSA: the annotation on the trigger's own ServiceAccount


class PubSubWatch(IR):
    """A GCS bucket's notifications, pulled from an existing Pub/Sub subscription."""

    project: str
    subscription: str
    credentials: SecretRef | None  # a service account's JSON key; None: the pod's identity
    service_account: str | None  # GKE Workload Identity: the annotation on its ServiceAccount


class ObjectWatch(IR):
    """A bucket's new objects, filtered by key: MinIO's `s3:ObjectCreated:*` notifications
    (`endpoint`), an S3 bucket's through SQS (`sqs`) or a GCS bucket's through Pub/Sub
    (`pubsub`)."""

    store: Literal["minio", "s3", "gcs"]
    endpoint: str | None  # MinIO's API
    bucket: str
    prefix: str
    suffix: str
    insecure: bool
    access_key: SecretRef | None  # MinIO's keys, or S3's without an identity
    secret_key: SecretRef | None
    sqs: SqsWatch | None
    pubsub: PubSubWatch | None
    own_account: bool  # a cloud identity (S3's or GCS's): a ServiceAccount of its own


class TopicWatch(IR):
    """A Kafka source's topic; `filter_values` empty: every message."""

    kafka: KafkaConnection
    consumer_group: str
    filter_path: str | None  # gjson path into the message's JSON body
    filter_values: list[str]  # exact strings


class EventTrigger(IR):
    """`training.triggers.<name>` or `serving.<endpoint>.batch.triggers.<name>`: an event that
    starts the model's training or the endpoint's batch scoring through the cooldown gate."""

    name: str
    k8s_name: str  # unique among gated triggers: EventSource, Sensor, cooldown key, mutex
    model: str
    endpoint: str | None  # a batch endpoint's trigger: it scores
    action: Literal["retrain", "score"]
    target: str  # the pipeline the gate starts
    kind: Literal["object", "topic", "pipeline"]
    reason: str  # the run's `reason` parameter
    limits: OnDrift  # action retrain, cooldown, maxRuns per period
    object: ObjectWatch | None = None
    topic: TopicWatch | None = None
    watched_pipeline: str | None = None  # the watched pipeline's WorkflowTemplate
    origin: Origin


class DriftCheck(IR):
    name: str
    k8s_name: str
    model: str
    endpoint: str | None
    reference: Literal["training", "source"]
    reference_source: str | None
    reference_window_seconds: int | None
    current_source: str | None  # None: the endpoint's prediction log
    current_window_seconds: int
    features: list[FeatureRef]
    method: str
    threshold: float | None
    drift_share: float
    schedule: str
    on_drift: OnDrift
    routes: list[str]
    pipeline: str
    origin: Origin


class Route(IR):
    name: str
    type: Literal["slack", "pagerduty", "email", "webhook"]
    settings: dict[str, str | list[str]]  # channel, url, to, smarthost, from
    secret: SecretRef | None  # webhook URL, routing key, SMTP password or bearer token


class Alerts(IR):
    critical_routes: list[str]
    warning_routes: list[str]
    runbook_url: str
    stale_model_after_seconds: int
    # The bearer token of the drift webhook (argo/events.py); None only in development.
    webhook_secret: SecretRef | None = None


class Step(IR):
    """One step of a pipeline; the Argo backend and `mlc run` both execute these."""

    name: str  # DNS label, unique in its pipeline
    kind: Literal["validate_data", "feature_apply", "materialize", "search_start", "search",
                  "train", "evaluate", "explain", "register", "promote", "drift_check",
                  "batch_score", "ab_verdict", "wait_upstream", "model_quality",
                  "write_vectors"]
    runtime: Literal["train", "drift", "serve", "custom"]  # which image runs it
    image: Image
    command: list[str]  # the container's entry point
    args: list[str]  # its arguments; `{{param}}` never appears: parameters go by name
    parameters: list[str]  # pipeline parameters this step reads (MLC_PARAM_<NAME>_B64)
    hardware: str
    nodes: int
    depends: list[str]
    retries: Retries
    timeout_seconds: int
    checkpoint_path: str | None = None
    secrets: dict[str, SecretRef] = Field(default_factory=dict)  # env var -> secret
    checkpoint_volume: str | None = None  # a PVC; checkpoint_path is then a folder inside it
    env: dict[str, str] = Field(default_factory=dict)  # the user's plain env of a trainer
    # a train step: the exports its model's engines need (mlc.step_contract.EXPORTS order)
    # and, with `triton`, the Triton endpoints' batching; left out of the JSON when none
    exports: list[str] = Field(default_factory=list, exclude_if=_no_items)
    export_batching: Batching | None = Field(None, exclude_if=_unset)


class Parameter(IR):
    name: str  # a valid identifier; users set it with `-p name=value`
    default: str
    description: str


class Pipeline(IR):
    name: str  # DNS label, unique in the project
    kind: Literal["training", "drift", "batch_scoring", "materialization", "ab_verdict",
                  "model_quality"]
    model: str | None
    endpoint: str | None
    drift_check: str | None
    schedule: str | None
    timezone: str
    parameters: list[Parameter]
    steps: list[Step]  # in dependency order
    concurrency_key: str  # one run at a time per key (a mutex)
    routes: list[str] = Field(default_factory=list)  # notified when a run ends, either way


class Gateway(IR):
    api: Literal["gateway-api"]
    name: str
    namespace: str  # resolve fills the environment's namespace when ml.yaml names none
    section_name: str | None


class NetworkPeer(IR):
    """Pods (namespace and labels) or, with `cidr`, addresses outside the cluster."""

    namespace: str | None
    pod_labels: dict[str, str]
    cidr: str | None
    ports: list[int]  # TCP; empty: every port


class Network(IR):
    egress: list[NetworkPeer]  # the user's further destinations (platform.network.egress)
    kubernetes_api: list[str]  # CIDRs
    dns: NetworkPeer
    knative_namespace: str
    gateway_namespace: str
    alertmanager: NetworkPeer


class CostSettings(IR):
    """Prices (USD per hour) and the budget the plan's cost estimate uses."""

    cpu_core_hour: float
    memory_gib_hour: float
    gpu_hour: dict[str, float]  # per whole GPU, by GPU type
    spot_discount: float
    monthly_budget: float | None
    job_duration_seconds: int
    cost_center: str | None


class Lineage(IR):
    """Where the steps send OpenLineage run events (docs/lineage.md)."""

    transport: Literal["http", "file", "kafka"]
    namespace: str  # the OpenLineage namespace of mlc's jobs
    url: str | None = None  # http
    endpoint: str | None = None  # http
    api_key: SecretRef | None = None  # http: the bearer token, by reference
    path: str | None = None  # file
    bootstrap_servers: str | None = None  # kafka
    topic: str | None = None  # kafka


def _prometheus_pod_labels() -> dict[str, str]:  # named, not a lambda: model_cache.py stores it
    return {"app.kubernetes.io/name": "prometheus"}


class Platform(IR):
    namespace: str
    # Settings that work on one machine only (local paths, SQLite) are allowed (resolve checks).
    development: bool = False
    # The built-in policies hold here (mlc/compiler/policy/), with these limits.
    production: bool = False
    max_gpus_per_replica: int | None = None
    gpu_types: list[str] | None = None
    min_training_interval_seconds: int = 3600
    cost: CostSettings
    image_policy: Literal["digest", "tag"]
    gpu_node_provisioning: Literal["static", "autoscaled"]
    service_account: str
    artifact_root: str
    mlflow_tracking_uri: str
    mlflow_credentials: SecretRef | None
    feast_provider: str
    feast_registry: str
    online_store_type: str
    online_store_path: str
    online_store_secret: SecretRef | None
    offline_store_type: str
    offline_store_secret: SecretRef | None
    # Further Feast store settings from ml.yaml (never credentials), sorted by key.
    online_store_options: dict[str, str | int | float | bool | dict[str, str]] = Field(
        default_factory=dict)
    offline_store_options: dict[str, str | int | float | bool | dict[str, str]] = Field(
        default_factory=dict)
    argocd_repo_url: str
    argocd_target_revision: str
    argocd_path: str
    argocd_project: str
    argocd_namespace: str
    argocd_server: str
    # The volume that the steps of one pipeline run share (MLC_RUN_DIR).
    run_volume_size: str = "10Gi"
    run_volume_storage_class: str | None = None
    run_volume_access_mode: Literal["ReadWriteOnce", "ReadWriteMany"] = "ReadWriteOnce"
    # The Prometheus that rollout gates query, and its pods (NetworkPolicies let them scrape).
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"
    prometheus_namespace: str = "monitoring"
    prometheus_pod_labels: dict[str, str] = Field(
        default_factory=_prometheus_pod_labels)
    pushgateway_url: str = ""  # where drift checks push their metrics; set by resolve
    gateway: Gateway | None = None  # the Gateway API gateway of this environment, if any

    network: Network | None = None  # set by resolve
    lineage: Lineage | None = None  # OpenLineage events; None: the steps send none


class AcceptedRisk(IR):
    """A policy violation let through on purpose (`acceptedRisks:`)."""

    code: str
    subject: str
    reason: str
    origin: Origin


class UserPolicy(IR):
    """A rule of the policies file (schema/policies.py), checked by policy/user.py."""

    name: str
    path: str
    on: Literal["project", "objects"] = "project"  # objects: the rendered objects, by kind
    operator: str
    value: str | int | float | bool | list[str | int | float | bool] | None
    environments: list[str] | None
    severity: Literal["error", "warning"]
    message: str | None
    origin: Origin


class ResolvedProject(IR):
    name: str
    version: str
    env: str
    environments: list[str]  # every environment of the project, sorted
    team: str | None
    owners: list[str]
    description: str | None
    source: str  # "ml.yaml + environments/prod.yaml": the files this was compiled from
    source_hash: str  # sha256 over those files' bytes, for lineage
    labels: dict[str, str]  # common labels for every generated object
    platform: Platform
    images: dict[str, Image]  # train, serve, drift, and the user's images by name
    hardware: dict[str, Hardware]
    secrets: dict[str, SecretRef]
    sources: dict[str, Source]
    entities: dict[str, Entity]
    feature_views: dict[str, FeatureView]
    feature_services: dict[str, FeatureService]
    models: dict[str, Model]
    endpoints: dict[str, Endpoint]
    drift_checks: dict[str, DriftCheck]
    routes: dict[str, Route]
    quality_monitors: dict[str, QualityMonitor] = Field(default_factory=dict)
    alerts: Alerts
    pipelines: dict[str, Pipeline]
    accepted_risks: list[AcceptedRisk] = Field(default_factory=list)
    policies: list[UserPolicy] = Field(default_factory=list)  # from the policies file
    ingestions: dict[str, Ingestion] = Field(default_factory=dict)  # by Kafka source
    event_triggers: dict[str, EventTrigger] = Field(default_factory=dict)  # by k8s_name
    # by feature view, and by `serving.<endpoint>` for a batch endpoint's outputs
    vector_writes: dict[str, VectorWrite] = Field(default_factory=dict)
