"""The metrics contract: every metric mlc's runtimes and pipelines export, defined once.

The serving and drift runtimes export exactly these; the monitoring backend's alert and
recording rules, the dashboards and the rollout gates query only these (a test parses every
generated query and fails on any other name). Plain data, no imports: both the runtimes and
the compiler read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["counter", "gauge", "histogram"]
Exporter = Literal["serve", "shadow", "router", "drift", "batch", "verdict", "quality",
                   "guard", "pipeline", "ingest", "stream"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
PREDICTION_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
FEATURE_BUCKETS = (-3.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 100.0, 1000.0)


@dataclass(frozen=True)
class Metric:
    name: str  # as Prometheus stores it (histograms add _bucket, _sum and _count)
    kind: Kind
    labels: tuple[str, ...]
    help: str
    exporter: Exporter
    buckets: tuple[float, ...] = ()

    def series(self) -> tuple[str, ...]:
        """The series names a query may use for this metric."""
        if self.kind == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


# --- serving runtime (scraped from every serving pod) -------------------------------------
# Every serving series carries `variant`: which of an endpoint's servers exported it, the A/B
# variant's name or the server's role (`primary`, `shadow`), from its runtime settings.
#
# The request counters exist at 0 from start-up, for every route and every status code the
# server answers with (SERVE_CODES): rate() over a series that appears at its first 5xx
# misses that burst, and a ratio over a missing numerator is no result at all, where it
# should be 0. Requests for paths the server does not know count as route UNMATCHED_ROUTE,
# which the SLOs and gates leave out (a scanner's 404s say nothing about the model).
PREDICT_ROUTE = "/predict"
INFER_ROUTE = "/v2/models/{name}/infer"
UNMATCHED_ROUTE = "unmatched"
SERVED_ROUTES = (PREDICT_ROUTE, INFER_ROUTE)
SERVE_CODES = {
    PREDICT_ROUTE: ("200", "400", "405", "408", "413", "499", "500", "503"),
    INFER_ROUTE: ("200", "400", "405", "408", "413", "499", "500", "503"),
    UNMATCHED_ROUTE: ("404",),
}
SERVER_ERROR_CODES = "5.."  # the codes the availability SLO and the error-rate gate count

REQUESTS = Metric(
    "mlc_requests_total", "counter", ("endpoint", "variant", "model_version", "route", "code"),
    "Requests answered, by HTTP status code.", "serve")
REQUEST_DURATION = Metric(
    "mlc_request_duration_seconds", "histogram",
    ("endpoint", "variant", "model_version", "route"),
    "Time from request received to response sent.", "serve", LATENCY_BUCKETS)
INFLIGHT = Metric(
    "mlc_inflight_requests", "gauge", ("endpoint", "variant"), "Requests being handled now.",
    "serve")
QUEUE_DEPTH = Metric(
    "mlc_queue_depth", "gauge", ("endpoint", "variant"), "Rows waiting for the batcher.",
    "serve")
QUEUE_CAPACITY = Metric(
    "mlc_queue_capacity", "gauge", ("endpoint", "variant"),
    "Rows the queue holds before answering 503.", "serve")
BATCH_SIZE = Metric(
    "mlc_batch_size", "histogram", ("endpoint", "variant", "model_version"),
    "Rows per model call made by the dynamic batcher.", "serve", BATCH_BUCKETS)
PREDICTIONS = Metric(
    "mlc_prediction_value", "histogram", ("endpoint", "variant", "model_version"),
    "Predicted score (classification) or value (regression).", "serve", PREDICTION_BUCKETS)
FEATURE_VALUES = Metric(
    "mlc_input_feature_value", "histogram", ("endpoint", "variant", "feature"),
    "Values of each input feature, as received.", "serve", FEATURE_BUCKETS)
# `POST /explain` (mlc/runtime/serve/explain.py): counted apart from the prediction routes,
# so that explanations count towards no SLO, gate or autoscaler; exported at 0 by every server
EXPLAIN_CODES = ("200", "400", "405", "413", "500", "501", "503")
EXPLAIN_REQUESTS = Metric(
    "mlc_explain_requests_total", "counter", ("endpoint", "variant", "code"),
    "Explanation requests (POST /explain) answered, by HTTP status code.", "serve")
EXPLAIN_DURATION = Metric(
    "mlc_explain_duration_seconds", "histogram", ("endpoint", "variant"),
    "Time from explanation request received to response sent.", "serve", LATENCY_BUCKETS)
MODEL_INFO = Metric(
    "mlc_model_info", "gauge", ("endpoint", "variant", "model", "model_version", "alias"),
    "1 for the model version this pod serves.", "serve")
MODEL_READY = Metric(
    "mlc_model_ready", "gauge", ("endpoint", "variant"), "1 once the model is loaded and warm.",
    "serve")
MODEL_TRAINED = Metric(
    "mlc_model_trained_timestamp_seconds", "gauge",
    ("endpoint", "variant", "model", "model_version"),
    "When the served model version was registered.", "serve")
# Why the server refused a request before the model saw it; each series exists at 0 from
# start-up. `connections` answers are also in mlc_requests_total (code 503) when they were
# for an inference route; the others always are (503, or 408 for `body_timeout`).
REJECTION_REASONS = ("body_timeout", "connections", "deadline", "overload", "refusal_limit")
REJECTED = Metric(
    "mlc_rejected_requests_total", "counter", ("endpoint", "variant", "reason"),
    "Requests refused before the model saw them: `overload` (503: the time waited plus the "
    "expected wait passes the latency SLO, or the queue is full), `deadline` (503: admitted, "
    "but its latency SLO passed before the model reached it), `refusal_limit` (503 without a "
    "body, held back to the refusal rate: overload refusals past MLC_REFUSAL_RATE), "
    "`connections` (503: past the connection limit), `body_timeout` (408: the body did not "
    "arrive in time).", "serve")

# A primary re-reads the `mirror` section of its mounted endpoint.json while it runs
# (mlc/runtime/serve/config_reload.py): the shadow phase's first measurement comes after the
# kubelet's refresh of that file. Every series exists at 0 from start-up, on every server.
CONFIG_RELOAD_SECTIONS = ("mirror",)
CONFIG_RELOAD_RESULTS = ("applied", "invalid")
CONFIG_RELOADS = Metric(
    "mlc_config_reloads_total", "counter", ("endpoint", "variant", "section", "result"),
    "Changes of a section of the mounted endpoint config picked up by a running server "
    "(`applied`), and reads of it that were not valid and were ignored (`invalid`: "
    "unreadable, half written, not JSON or a section of the wrong shape).", "serve")

# --- shadow comparison (exported by a primary that mirrors requests to its shadow) --------
# Each mirrored request is compared row by row with the primary's own answer; a gate reads
# the agreement rate, the two roles' prediction histograms (PSI) and the shadow's latency
# and errors from these (docs/shadow-and-ab.md). `endpoint` is the primary's endpoint name;
# the model server exports them beside its `serve` metrics (empty where it mirrors nothing).
SHADOW_MIRRORED = Metric(
    "mlc_shadow_mirrored_total", "counter", ("endpoint",),
    "Requests sampled for the shadow and handed over to be sent to it.", "shadow")
SHADOW_DROPPED = Metric(
    "mlc_shadow_dropped_total", "counter", ("endpoint", "reason"),
    "Sampled requests never sent to the shadow (`queue_full`: the mirror sender's bounded "
    "queue and its hand-over socket were full; `too_large`: larger than one hand-over "
    "message; `sender_exit`: held by a mirror sender that died; `shutdown`: still queued "
    "when the primary stopped, or changed its mirror).", "shadow")
SHADOW_SENDER_RESTARTS = Metric(
    "mlc_shadow_sender_restarts_total", "counter", ("endpoint",),
    "Times the primary started its mirror sender process again after it exited.", "shadow")
SHADOW_RESPONSES = Metric(
    "mlc_shadow_responses_total", "counter", ("endpoint", "code"),
    "The shadow's answers to mirrored requests, by HTTP status code (`error`: no answer: "
    "connection failure or timeout).", "shadow")
SHADOW_DURATION = Metric(
    "mlc_shadow_duration_seconds", "histogram", ("endpoint",),
    "Time the shadow took to answer a mirrored request, as the primary measured it.", "shadow",
    LATENCY_BUCKETS)
SHADOW_COMPARED = Metric(
    "mlc_shadow_compared_total", "counter", ("endpoint",),
    "Predictions (rows) answered by both the primary and the shadow and compared.", "shadow")
SHADOW_AGREED = Metric(
    "mlc_shadow_agreed_total", "counter", ("endpoint",),
    "Compared predictions on which the shadow agreed (classification: the same class; "
    "regression: within the shadow's tolerance).", "shadow")
SHADOW_PREDICTIONS = Metric(
    "mlc_shadow_prediction_value", "histogram", ("endpoint", "role"),
    "Compared predictions of the primary (`role=primary`) and of the shadow (`role=shadow`) "
    "for the same requests.", "shadow", PREDICTION_BUCKETS)

# --- A/B router (exported by the router that assigns each request to a variant) -------------
ROUTER_REQUESTS = Metric(
    "mlc_router_requests_total", "counter", ("endpoint", "variant", "code"),
    "Requests the router forwarded, by assigned variant and the status code returned.",
    "router")
ROUTER_DURATION = Metric(
    "mlc_router_request_duration_seconds", "histogram", ("endpoint", "variant"),
    "Time from request received to response sent, through the router.", "router",
    LATENCY_BUCKETS)
# The guard's override as the router applies it (mlc/runtime/serve/weights_override.py).
ROUTER_STOPPED = Metric(
    "mlc_router_variant_stopped", "gauge", ("endpoint", "variant"),
    "1 while the A/B guard's override takes the variant's traffic away, 0 otherwise.",
    "router")
ROUTER_OVERRIDE_PROBLEMS = Metric(
    "mlc_router_override_problems_total", "counter", ("endpoint", "reason"),
    "Guard overrides the router could not apply in full (missing, malformed, unknown-variant, "
    "baseline, no-variant-left); it keeps ml.yaml's weights for what it cannot apply.",
    "router")
SHADOW_AB_METRICS: tuple[Metric, ...] = (
    SHADOW_MIRRORED, SHADOW_DROPPED, SHADOW_SENDER_RESTARTS, SHADOW_RESPONSES, SHADOW_DURATION,
    SHADOW_COMPARED, SHADOW_AGREED, SHADOW_PREDICTIONS, ROUTER_REQUESTS, ROUTER_DURATION,
    ROUTER_STOPPED, ROUTER_OVERRIDE_PROBLEMS)

# --- drift runtime (pushed to the Pushgateway by every drift-check run) --------------------
DRIFT_SCORE = Metric(
    "mlc_drift_score", "gauge", ("check", "feature", "method"),
    "Drift statistic per feature (and `__prediction__`), as the method defines it.", "drift")
DRIFT_THRESHOLD = Metric(
    "mlc_drift_threshold", "gauge", ("check", "feature", "method"),
    "The threshold the score is compared with.", "drift")
DRIFT_DETECTED = Metric(
    "mlc_drift_detected", "gauge", ("check", "feature"),
    "1 when the feature drifted in the last run.", "drift")
DRIFT_SHARE = Metric(
    "mlc_drift_share", "gauge", ("check",), "Share of features that drifted.", "drift")
DATASET_DRIFT = Metric(
    "mlc_dataset_drift", "gauge", ("check",),
    "1 when the share of drifted features reached the check's driftShare.", "drift")
DRIFT_LAST_RUN = Metric(
    "mlc_drift_last_run_timestamp_seconds", "gauge", ("check",),
    "When the check last ran, successfully or not.", "drift")
DRIFT_LAST_SUCCESS = Metric(
    "mlc_drift_last_success_timestamp_seconds", "gauge", ("check",),
    "When the check last completed.", "drift")
DRIFT_UP = Metric(
    "mlc_drift_check_up", "gauge", ("check",),
    "1 when the last run completed; 0 when it failed (bad data, missing columns).", "drift")

# --- batch scoring runtime (pushed to the Pushgateway by every scoring run) -----------------
SCORING_ROWS = Metric(
    "mlc_batch_scoring_rows", "gauge", ("endpoint", "stage"),
    "Rows of the last completed run: `input` read, `scored` written.", "batch")
SCORING_LAST_RUN = Metric(
    "mlc_batch_scoring_last_run_timestamp_seconds", "gauge", ("endpoint",),
    "When the endpoint's scoring last ran, successfully or not.", "batch")
SCORING_LAST_SUCCESS = Metric(
    "mlc_batch_scoring_last_success_timestamp_seconds", "gauge", ("endpoint",),
    "When the endpoint's scores were last published.", "batch")
SCORING_UP = Metric(
    "mlc_batch_scoring_up", "gauge", ("endpoint",),
    "1 when the last scoring run published its scores; 0 when it failed.", "batch")
SCORING_DURATION = Metric(
    "mlc_batch_scoring_duration_seconds", "gauge", ("endpoint",),
    "How long the last scoring run took.", "batch")

# --- A/B verdict runtime (pushed to the Pushgateway by every verdict run) -------------------
# `variant` is the A/B arm; `metric` the verdict's metric (accuracy, roc_auc, log_loss, rmse,
# mae). A run that reaches no decision still replaces the figures it computed.
VERDICT_VALUE = Metric(
    "mlc_ab_verdict_metric", "gauge", ("endpoint", "variant", "metric"),
    "The verdict's metric per variant, over its labelled predictions.", "verdict")
VERDICT_CI_LOWER = Metric(
    "mlc_ab_verdict_metric_ci_lower", "gauge", ("endpoint", "variant", "metric"),
    "Lower end of the metric's confidence interval (level 1 - alpha).", "verdict")
VERDICT_CI_UPPER = Metric(
    "mlc_ab_verdict_metric_ci_upper", "gauge", ("endpoint", "variant", "metric"),
    "Upper end of the metric's confidence interval (level 1 - alpha).", "verdict")
VERDICT_SAMPLES = Metric(
    "mlc_ab_verdict_samples", "gauge", ("endpoint", "variant"),
    "Predictions of the variant joined with a label in the window.", "verdict")
VERDICT_P_VALUE = Metric(
    "mlc_ab_verdict_p_value", "gauge", ("endpoint", "variant", "metric"),
    "Two-sided p-value of the variant against the baseline (not set for the baseline).",
    "verdict")
VERDICT_STATE = Metric(
    "mlc_ab_verdict_decision", "gauge", ("endpoint", "decision"),
    "1 for the last run's decision (winner, no-difference, waiting), 0 for the "
    "others.", "verdict")
VERDICT_WINNER = Metric(
    "mlc_ab_verdict_winner", "gauge", ("endpoint", "variant"),
    "1 for the variant the last run chose as winner, 0 for the others.", "verdict")
VERDICT_LAST_RUN = Metric(
    "mlc_ab_verdict_last_run_timestamp_seconds", "gauge", ("endpoint",),
    "When the verdict last ran, successfully or not.", "verdict")
VERDICT_LAST_SUCCESS = Metric(
    "mlc_ab_verdict_last_success_timestamp_seconds", "gauge", ("endpoint",),
    "When the verdict last completed (with or without a decision).", "verdict")
VERDICT_UP = Metric(
    "mlc_ab_verdict_up", "gauge", ("endpoint",),
    "1 when the last run completed; 0 when it failed (unreadable log or labels).", "verdict")
VERDICT_METRICS: tuple[Metric, ...] = (
    VERDICT_VALUE, VERDICT_CI_LOWER, VERDICT_CI_UPPER, VERDICT_SAMPLES, VERDICT_P_VALUE,
    VERDICT_STATE, VERDICT_WINNER, VERDICT_LAST_RUN, VERDICT_LAST_SUCCESS, VERDICT_UP)

# --- Kafka ingestion runtime (scraped from every ingestion pod) ----------------------------
# `source` is the Kafka source's name in ml.yaml. Every counter exists at 0 from start-up
# (failed: for every reason), so that rate() sees the first failure.
INGEST_FAILURE_REASONS = ("decode", "schema", "write", "kafka")
INGEST_CONSUMED = Metric(
    "mlc_ingest_messages_consumed_total", "counter", ("source",),
    "Messages read from the topic, whatever became of them.", "ingest")
INGEST_PUSHED = Metric(
    "mlc_ingest_rows_pushed_total", "counter", ("source", "view"),
    "Rows written to the feature view's online store.", "ingest")
INGEST_FAILED = Metric(
    "mlc_ingest_messages_failed_total", "counter", ("source", "reason"),
    "Messages not written: `decode` (not JSON), `schema` (a key, timestamp or field missing "
    "or of the wrong type), `write` (the online store refused the batch), `kafka` (an error "
    "the client delivered in place of a message).", "ingest")
INGEST_LAG = Metric(
    "mlc_ingest_consumer_lag", "gauge", ("source", "partition"),
    "Messages between the group's position and the end of each assigned partition.", "ingest")
INGEST_METRICS: tuple[Metric, ...] = (INGEST_CONSUMED, INGEST_PUSHED, INGEST_FAILED, INGEST_LAG)

# --- stream scoring (mlc/runtime/stream_score/, scraped from each consumer pod) -------------
# A poison event is one that cannot be scored; `action` says where it went: `dead_letter`
# (written to the dead-letter topic) or `skipped` (`onPoison: skip`). Never dropped uncounted.
STREAM_POISON_REASONS = ("decode", "schema")
STREAM_POISON_ACTIONS = ("dead_letter", "skipped")
STREAM_FAILURE_REASONS = ("produce", "kafka", "features", "model")
STREAM_CONSUMED = Metric(
    "mlc_stream_events_consumed_total", "counter", ("endpoint",),
    "Events read from the input topic, whatever became of them.", "stream")
STREAM_SCORED = Metric(
    "mlc_stream_events_scored_total", "counter", ("endpoint",),
    "Scored events written to the output topic and flushed.", "stream")
STREAM_POISON = Metric(
    "mlc_stream_events_poison_total", "counter", ("endpoint", "reason", "action"),
    "Events that could not be scored: `decode` (not a JSON object), `schema` (a feature, "
    "an entity key or the carried key missing or mistyped); `action` dead_letter or "
    "skipped.", "stream")
STREAM_FAILED = Metric(
    "mlc_stream_failures_total", "counter", ("endpoint", "reason"),
    "Batches that failed, and were not committed: `produce` (the brokers did not take the "
    "output), `kafka` (an error the client delivered in place of a message), `features` "
    "(the online store lookup failed), `model` (the model call raised).", "stream")
STREAM_LAG = Metric(
    "mlc_stream_consumer_lag", "gauge", ("endpoint", "partition"),
    "Events between the group's position and the end of each assigned partition.", "stream")
STREAM_METRICS: tuple[Metric, ...] = (STREAM_CONSUMED, STREAM_SCORED, STREAM_POISON,
                                      STREAM_FAILED, STREAM_LAG)

# --- model quality from late labels (mlc/runtime/quality/, pushed by each run) ------------
QUALITY_VALUE = Metric(
    "mlc_model_quality_metric", "gauge", ("monitor", "endpoint", "metric"),
    "The metric over the window's labelled predictions (set once minSamples are joined).",
    "quality")
QUALITY_BASELINE = Metric(
    "mlc_model_quality_baseline", "gauge", ("monitor", "endpoint", "metric"),
    "The served version's training evaluation of the metric (its `test_<metric>`).",
    "quality")
QUALITY_DROP = Metric(
    "mlc_model_quality_drop", "gauge", ("monitor", "endpoint", "metric"),
    "How much worse the live metric is than the baseline, in the metric's units (negative: "
    "better).", "quality")
QUALITY_SAMPLES = Metric(
    "mlc_model_quality_samples", "gauge", ("monitor", "endpoint"),
    "Predictions in the window joined with a label.", "quality")
QUALITY_WAITING = Metric(
    "mlc_model_quality_waiting", "gauge", ("monitor", "endpoint"),
    "1 when the last run had fewer than minSamples labelled predictions (nothing scored).",
    "quality")
QUALITY_LAST_RUN = Metric(
    "mlc_model_quality_last_run_timestamp_seconds", "gauge", ("monitor", "endpoint"),
    "When the monitor last ran, successfully or not.", "quality")
QUALITY_UP = Metric(
    "mlc_model_quality_up", "gauge", ("monitor", "endpoint"),
    "1 when the last run completed; 0 when it failed (unreadable log, labels or registry).",
    "quality")
QUALITY_METRICS: tuple[Metric, ...] = (
    QUALITY_VALUE, QUALITY_BASELINE, QUALITY_DROP, QUALITY_SAMPLES, QUALITY_WAITING,
    QUALITY_LAST_RUN, QUALITY_UP)

# --- A/B guard runtime (pushed to the Pushgateway by every guard run) -----------------------
# `variant` is a guarded arm (never the baseline); `state` one of AB_GUARD_STATES.
AB_GUARD_STATES = ("ok", "failing", "inconclusive", "stopped")
AB_GUARD_STATE = Metric(
    "mlc_ab_guard_variant_state", "gauge", ("endpoint", "variant", "state"),
    "1 for the variant's state after the last guard run (ok, failing, inconclusive, "
    "stopped), 0 for the others.", "guard")
AB_GUARD_VALUE = Metric(
    "mlc_ab_guard_gate_value", "gauge", ("endpoint", "variant", "gate"),
    "The gate's last measurement of the variant (NaN: no traffic to measure).", "guard")
AB_GUARD_FAILURES = Metric(
    "mlc_ab_guard_failed_runs", "gauge", ("endpoint", "variant"),
    "Runs in a row in which the variant failed a gate.", "guard")
AB_GUARD_LAST_RUN = Metric(
    "mlc_ab_guard_last_run_timestamp_seconds", "gauge", ("endpoint",),
    "When the guard last ran, successfully or not.", "guard")
AB_GUARD_UP = Metric(
    "mlc_ab_guard_up", "gauge", ("endpoint",),
    "1 when the last guard run measured every variant; 0 when Prometheus could not be read.",
    "guard")
AB_GUARD_METRICS: tuple[Metric, ...] = (
    AB_GUARD_STATE, AB_GUARD_VALUE, AB_GUARD_FAILURES, AB_GUARD_LAST_RUN, AB_GUARD_UP)

# --- pipelines (Argo Workflows' own Prometheus metrics, declared on each template) ----------
# Argo's controller (v3.6+) exports custom metrics with the prefix `argo_workflows_` and no
# extra `_total`; the names below are what Prometheus stores, and the Argo backend declares
# them without the prefix. Pipelines of every environment share one controller, so each
# series says which namespace (environment) its workflow ran in.
ARGO_PROMETHEUS_PREFIX = "argo_workflows_"
PIPELINE_RUNS = Metric(
    "argo_workflows_mlc_pipeline_runs_total", "counter",
    ("pipeline", "kind", "status", "workflow_namespace"),
    "Finished pipeline runs by status (Succeeded, Failed, Error).", "pipeline")
PIPELINE_DURATION = Metric(
    "argo_workflows_mlc_pipeline_duration_seconds", "gauge",
    ("pipeline", "kind", "workflow_namespace"),
    "Duration of the last run of the pipeline.", "pipeline")
PIPELINE_LAST_SUCCESS = Metric(
    "argo_workflows_mlc_pipeline_last_success_timestamp_seconds", "gauge",
    ("pipeline", "kind", "workflow_namespace"),
    "When the pipeline last succeeded (training: the model's freshness; materialisation: "
    "the online store's).", "pipeline")

CONTRACT: tuple[Metric, ...] = (
    REQUESTS, REQUEST_DURATION, INFLIGHT, QUEUE_DEPTH, QUEUE_CAPACITY, BATCH_SIZE, PREDICTIONS,
    FEATURE_VALUES, MODEL_INFO, MODEL_READY, MODEL_TRAINED, REJECTED, CONFIG_RELOADS,
    EXPLAIN_REQUESTS, EXPLAIN_DURATION,
    DRIFT_SCORE, DRIFT_THRESHOLD, DRIFT_DETECTED, DRIFT_SHARE, DATASET_DRIFT, DRIFT_LAST_RUN,
    DRIFT_LAST_SUCCESS, DRIFT_UP,
    SCORING_ROWS, SCORING_LAST_RUN, SCORING_LAST_SUCCESS, SCORING_UP, SCORING_DURATION,
    PIPELINE_RUNS, PIPELINE_DURATION, PIPELINE_LAST_SUCCESS,
    *SHADOW_AB_METRICS, *VERDICT_METRICS, *INGEST_METRICS, *STREAM_METRICS, *QUALITY_METRICS,
    *AB_GUARD_METRICS,
)
BY_NAME = {m.name: m for m in CONTRACT}
# Every series name a generated query may use.
SERIES = frozenset(s for m in CONTRACT for s in m.series())
PREDICTION_FEATURE = "__prediction__"  # the `feature` label value of the prediction's drift
