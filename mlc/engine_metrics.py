"""The metrics contract per serving engine: which of an engine's own series give mlc's quantities.

mlc's own runtime exports the contract of `mlc/metrics.py`. An endpoint served by another
engine (`serving.<name>.engine`) exports that engine's series instead, under the engine's
names, units and labels. `ENGINES` below is the one table that maps them onto what mlc's
SLO rules, alerts, dashboards, rollout gates and autoscaling read:

- `requests`: every inference request answered (a counter, or counters summed);
- `server_errors` / `client_errors`: the requests answered with the server's fault (what the
  availability SLO and the error-rate gate count) and with the client's;
- `latency`: the request latency, as a histogram (p99 and the latency SLO's share of slow
  requests) or a summary (a p99 the engine computes itself; no share of slow requests);
- `inflight` / `queue`: requests being handled now, and waiting;
- LLM engines: `time_to_first_token`, `time_per_output_token` (histograms) and
  `output_tokens` (a counter, whose rate is tokens per second).

A quantity that is None cannot be had from that engine, and `missing` says why: a consumer
refuses it (MLC374-MLC376), never writes a query over series that do not exist. Every name
comes from the engine's documentation or source, cited in `source`; a test
(tests/test_engine_metrics.py) holds the table against the names recorded from those
documents, and docs/serving-metrics.md's table is generated from this one.

Plain data, no imports from the compiler or the runtimes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Unit = Literal["seconds", "milliseconds", "microseconds"]
TO_SECONDS: dict[str, float] = {"seconds": 1.0, "milliseconds": 1e-3, "microseconds": 1e-6}

# The quantities a consumer may ask of an engine.
Quantity = Literal["requests", "errors", "latency_quantile", "latency_slo", "inflight",
                   "queue", "prediction_drift", "shadow", "time_to_first_token",
                   "tokens_per_second"]
# What only mlc's runtime measures, whatever the engine: the predictions' histogram (PSI
# between canary and stable) and the primary's comparison with its shadow.
RUNTIME_ONLY: dict[str, str] = {
    "prediction_drift": "the canary's and the stable version's prediction histograms "
                        "(mlc_prediction_value) are exported by mlc's runtime only",
    "shadow": "the shadow comparison (mlc_shadow_*) is made by mlc's runtime only",
}


@dataclass(frozen=True)
class Counter:
    """Counters summed: `names` (stored names, `_total` included where the engine's client
    adds it), narrowed by `match` (label -> RE2 regex, anchored by Prometheus)."""

    names: tuple[str, ...]
    match: tuple[tuple[str, str], ...] = ()
    labels: tuple[str, ...] = ()  # the labels the engine puts on the series

    def all_names(self) -> tuple[str, ...]:
        return self.names


@dataclass(frozen=True)
class Gauge:
    names: tuple[str, ...]
    labels: tuple[str, ...] = ()
    match: tuple[tuple[str, str], ...] = ()

    def all_names(self) -> tuple[str, ...]:
        return self.names


@dataclass(frozen=True)
class Histogram:
    """A classic histogram (`<name>_bucket`, `_sum`, `_count`), in `unit`, with the engine's
    default bucket bounds (in `unit`)."""

    name: str
    unit: Unit
    buckets: tuple[float, ...]
    labels: tuple[str, ...] = ()
    match: tuple[tuple[str, str], ...] = ()

    def all_names(self) -> tuple[str, ...]:
        return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")


@dataclass(frozen=True)
class Summary:
    """A summary whose quantiles the engine computes over its own sliding window; quantile
    series cannot be summed across pods (the consumer takes the largest)."""

    name: str
    unit: Unit
    quantiles: tuple[float, ...]
    labels: tuple[str, ...] = ()

    def all_names(self) -> tuple[str, ...]:
        return (self.name, f"{self.name}_sum", f"{self.name}_count")


@dataclass(frozen=True)
class EngineMetrics:
    engine: str
    source: str  # the document (and version or commit) every name below is taken from
    scrape_port: int  # where the engine serves its metrics
    scrape_path: str
    model_label: str | None  # the label naming the model on the engine's series
    requires: tuple[str, ...]  # server settings the series below need (the engine's docs)
    requests: Counter | None
    server_errors: Counter | None
    client_errors: Counter | None
    latency: Histogram | Summary | None
    inflight: Gauge | None
    queue: Gauge | None
    time_to_first_token: Histogram | None = None
    time_per_output_token: Histogram | None = None
    output_tokens: Counter | None = None
    # the answers the error ratio divides by, where they are other series than `requests`
    answered: Counter | None = None
    missing: dict[str, str] = field(default_factory=dict)  # quantity -> why it is None
    notes: tuple[str, ...] = ()

    def series_names(self) -> tuple[str, ...]:
        """Every stored series name this mapping reads (what a test checks against the docs)."""
        parts = (self.requests, self.answered, self.server_errors, self.client_errors,
                 self.latency,
                 self.inflight, self.queue, self.time_to_first_token,
                 self.time_per_output_token, self.output_tokens)
        return tuple(sorted({n for p in parts if p is not None for n in p.all_names()}))

    def why_not(self, quantity: str) -> str | None:
        """None where the engine's series give `quantity`; else the reason it cannot."""
        if quantity in RUNTIME_ONLY:
            return RUNTIME_ONLY[quantity]
        have = {
            "requests": self.requests is not None,
            "errors": self.server_errors is not None and self.requests is not None,
            "latency_quantile": self.latency is not None,
            "latency_slo": isinstance(self.latency, Histogram),
            "inflight": self.inflight is not None,
            "queue": self.queue is not None,
            "time_to_first_token": self.time_to_first_token is not None,
            "tokens_per_second": self.output_tokens is not None,
        }[quantity]
        if have:
            return None
        return self.missing.get(quantity) or f"{self.engine} exports no series for it"


def exponential(scale: float, growth: float, count: int) -> tuple[float, ...]:
    """Bounds scale * growth**i, i < count (TensorFlow's monitoring::Buckets::Exponential)."""
    return tuple(scale * growth ** i for i in range(count))


# The Python client's default buckets (prometheus_client.Histogram.DEFAULT_BUCKETS), which
# starlette-exporter's middleware uses unless it is given others.
PYTHON_CLIENT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                         7.5, 10.0)

MLSERVER = EngineMetrics(
    engine="mlserver",
    source=("MLServer 1.7.1 docs/user-guide/metrics.md and source: mlserver/rest/app.py "
            "(starlette-exporter's PrometheusMiddleware, app_name mlserver, prefix "
            "metrics_rest_server_prefix = rest_server), mlserver/settings.py (metrics_port "
            "8082, metrics_endpoint /metrics); starlette-exporter 0.24.0 middleware.py "
            "(<prefix>_requests_total, _request_duration_seconds: method, path, status_code, "
            "app_name; _requests_in_progress: method, app_name; group_paths on)"),
    scrape_port=8082, scrape_path="/metrics", model_label="model",
    requires=("metrics_endpoint=/metrics (MLSERVER_METRICS_ENDPOINT, the default)",
              "metrics_port=8082 (MLSERVER_METRICS_PORT, the default)",
              "metrics_rest_server_prefix=rest_server (the default)"),
    # The REST middleware's counter has the HTTP status; the data plane's success/failure
    # counters do not tell a client's error from the server's.
    requests=Counter(("rest_server_requests_total",), (("path", "/v2/models/.+/infer"),),
                     ("app_name", "method", "path", "status_code")),
    server_errors=Counter(("rest_server_requests_total",),
                          (("path", "/v2/models/.+/infer"), ("status_code", "5..")),
                          ("app_name", "method", "path", "status_code")),
    client_errors=Counter(("rest_server_requests_total",),
                          (("path", "/v2/models/.+/infer"), ("status_code", "4..")),
                          ("app_name", "method", "path", "status_code")),
    latency=Histogram("rest_server_request_duration_seconds", "seconds", PYTHON_CLIENT_BUCKETS,
                      ("app_name", "method", "path", "status_code"),
                      (("path", "/v2/models/.+/infer"),)),
    inflight=Gauge(("rest_server_requests_in_progress",), ("app_name", "method")),
    queue=None,
    missing={"queue": "batch_request_queue and parallel_request_queue are histograms of "
                      "queue sizes observed, not a gauge of requests waiting now"},
    notes=("REST requests only: gRPC requests are in grpc_server_handled_total, which the "
           "contract does not read.",),
)

TRITON = EngineMetrics(
    engine="triton",
    source=("Triton Inference Server docs/user_guide/metrics.md (r23.04 and later: "
            "--metrics-config); label names model, version as in its examples"),
    scrape_port=8002, scrape_path="/metrics", model_label="model",
    requires=("--allow-metrics=true (the default)",
              "--metrics-config=summary_latencies=true (p99 latency gate: "
              "nv_inference_request_summary_us is off by default)"),
    requests=Counter(("nv_inference_request_success", "nv_inference_request_failure"), (),
                     ("model", "version")),
    # Triton counts every failed request, a malformed one included: it cannot tell the
    # client's errors from its own.
    server_errors=Counter(("nv_inference_request_failure",), (), ("model", "version")),
    client_errors=None,
    latency=Summary("nv_inference_request_summary_us", "microseconds",
                    (0.5, 0.9, 0.95, 0.99, 0.999), ("model", "version", "quantile")),
    inflight=None,
    queue=None,
    missing={
        "latency_slo": "Triton's request latency is a cumulative counter "
                       "(nv_inference_request_duration_us: a mean) or a summary "
                       "(nv_inference_request_summary_us: its own quantiles); neither gives "
                       "the share of requests slower than a threshold",
        "inflight": "the metrics page documents no gauge of requests in flight",
        "queue": "the metrics page documents no gauge of requests queued",
    },
    notes=("Failures include requests the client got wrong (Triton does not distinguish).",
           "The p99 is the largest pod's: summary quantiles cannot be aggregated."),
)

TORCHSERVE = EngineMetrics(
    engine="torchserve",
    source=("TorchServe docs/metrics_api.md (metrics_mode=prometheus, port 8082) and "
            "docs/metrics.md (Requests2XX/4XX/5XX, level Host)"),
    scrape_port=8082, scrape_path="/metrics", model_label="model_name",
    requires=("metrics_mode=prometheus in config.properties (TS_METRICS_MODE)",),
    requests=Counter(("ts_inference_requests_total",), (),
                     ("model_name", "model_version", "hostname")),
    # Requests<code>XX count every answer of the frontend (one model per pod here).
    server_errors=Counter(("Requests5XX",), (), ("Level", "Hostname")),
    client_errors=Counter(("Requests4XX",), (), ("Level", "Hostname")),
    answered=Counter(("Requests2XX", "Requests4XX", "Requests5XX"), (), ("Level", "Hostname")),
    latency=None,
    inflight=None,
    queue=None,
    missing={
        "latency_quantile": "ts_inference_latency_microseconds is a cumulative counter: a mean "
                            "latency, not a p99",
        "latency_slo": "no latency histogram: ts_inference_latency_microseconds gives a mean",
        "inflight": "no gauge of requests in flight",
        "queue": "QueueTime is a time, not a count of requests waiting",
    },
    notes=("The error ratio divides Requests5XX by Requests2XX + Requests4XX + Requests5XX "
           "(the same frontend counters).",),
)

# TensorFlow Serving's status label holds the tensorflow::error::Code name; the HTTP gateway
# answers these with a 5xx, the others (but OK) with a 4xx.
TFSERVING_SERVER_CODES = ("DATA_LOSS", "DEADLINE_EXCEEDED", "INTERNAL", "UNAVAILABLE",
                          "UNIMPLEMENTED", "UNKNOWN")
TFSERVING_CLIENT_CODES = ("ABORTED", "ALREADY_EXISTS", "CANCELLED", "FAILED_PRECONDITION",
                          "INVALID_ARGUMENT", "NOT_FOUND", "OUT_OF_RANGE", "PERMISSION_DENIED",
                          "RESOURCE_EXHAUSTED", "UNAUTHENTICATED")
TFSERVING = EngineMetrics(
    engine="tfserving",
    source=("TensorFlow Serving tensorflow_serving/servables/tensorflow/util.cc "
            "(/tensorflow/serving/request_count: model_name, status; "
            "/tensorflow/serving/request_latency: model_name, API, entrypoint, microseconds, "
            "Exponential(10, 1.8, 33)); docs serving_config.md, Monitoring Configuration "
            "(prometheus_config, names with `/` written as `:`)"),
    scrape_port=8501, scrape_path="/monitoring/prometheus/metrics", model_label="model_name",
    requires=("--monitoring_config_file with prometheus_config { enable: true, "
              "path: \"/monitoring/prometheus/metrics\" }",
              "--rest_api_port=8501 (the metrics are served on the REST port)"),
    requests=Counter((":tensorflow:serving:request_count",), (), ("model_name", "status")),
    server_errors=Counter((":tensorflow:serving:request_count",),
                          (("status", "|".join(TFSERVING_SERVER_CODES)),),
                          ("model_name", "status")),
    client_errors=Counter((":tensorflow:serving:request_count",),
                          (("status", "|".join(TFSERVING_CLIENT_CODES)),),
                          ("model_name", "status")),
    latency=Histogram(":tensorflow:serving:request_latency", "microseconds",
                      exponential(10, 1.8, 33), ("model_name", "API", "entrypoint")),
    inflight=None,
    queue=None,
    missing={"inflight": "no gauge of requests in flight",
             "queue": "no gauge of requests queued (batching's queue is a histogram of "
                      "latency, :tensorflow:serving:batching_session:queuing_latency)"},
)

# vLLM as the `huggingface` engine's backend (KServe's Hugging Face runtime serves vLLM's
# engine and its metrics).
VLLM_E2E_BUCKETS = (1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0)
VLLM_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                     5.0, 7.5, 10.0)
VLLM_TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
HUGGINGFACE = EngineMetrics(
    engine="huggingface",
    source=("vLLM vllm/engine/metrics.py (class Metrics, begin-metrics-definitions; commit "
            "00c33e81b526, the names docs/source/serving/metrics.md lists); label model_name"),
    scrape_port=8080, scrape_path="/metrics", model_label="model_name",
    requires=("the vLLM backend (KServe's Hugging Face runtime with --backend=vllm, the "
              "default for a text-generation model it supports)",),
    requests=Counter(("vllm:request_success_total",), (), ("model_name", "finished_reason")),
    server_errors=None,
    client_errors=None,
    latency=Histogram("vllm:e2e_request_latency_seconds", "seconds", VLLM_E2E_BUCKETS,
                      ("model_name",)),
    inflight=Gauge(("vllm:num_requests_running",), ("model_name",)),
    queue=Gauge(("vllm:num_requests_waiting",), ("model_name",)),
    time_to_first_token=Histogram("vllm:time_to_first_token_seconds", "seconds",
                                  VLLM_TTFT_BUCKETS, ("model_name",)),
    time_per_output_token=Histogram("vllm:time_per_output_token_seconds", "seconds",
                                    VLLM_TPOT_BUCKETS, ("model_name",)),
    output_tokens=Counter(("vllm:generation_tokens_total",), (), ("model_name",)),
    missing={"errors": "vLLM counts finished requests (vllm:request_success_total, by "
                       "finished_reason) and no failed ones: there is no error series"},
    notes=("Requests count when they finish (stop, length or abort).",
           "The e2e latency histogram starts at 1s: a latency objective under 1s is measured "
           "at the 1s bucket."),
)

# `custom` without a `container.metrics` mapping: nothing is known of the user's server's
# series; every quantity is refused. With one, `custom()` below builds its mapping.
CUSTOM = EngineMetrics(
    engine="custom", source="the endpoint's own `container.metrics` mapping in ml.yaml",
    scrape_port=8080, scrape_path="/metrics", model_label=None, requires=(),
    requests=None, server_errors=None, client_errors=None, latency=None, inflight=None,
    queue=None,
    missing={q: "mlc knows no series of the user's server (`engine: custom` without "
                "`container.metrics`)"
             for q in ("requests", "errors", "latency_quantile", "latency_slo", "inflight",
                       "queue", "time_to_first_token", "tokens_per_second")},
)


def custom(spec, port: int) -> EngineMetrics:
    """The mapping of a custom server from its `container.metrics` (the schema's or the IR's
    ServerMetrics, read by attribute), scraped at `port` (its own, or the container's). The
    requests' status label, where named, splits the server's errors (`5..`: a code `503` or
    a class `5xx`) from the client's (`4..`)."""

    def match(part, extra: tuple[tuple[str, str], ...] = ()) -> tuple[tuple[str, str], ...]:
        return tuple(sorted({**part.match, **dict(extra)}.items()))

    def labels(part) -> tuple[str, ...]:
        status = getattr(part, "status_label", None)
        return tuple(sorted({*part.match, *([status] if status else [])}))

    r = spec.requests
    requests = server_errors = client_errors = None
    if r is not None:
        requests = Counter(tuple(r.series), match(r), labels(r))
        if r.status_label:
            server_errors, client_errors = (
                Counter(tuple(r.series), match(r, ((r.status_label, f"{c}.."),)), labels(r))
                for c in "54")

    def gauge(part) -> Gauge | None:
        return None if part is None else Gauge(tuple(part.series), labels(part), match(part))

    h = spec.latency
    latency = None if h is None else Histogram(h.series, h.unit, tuple(h.buckets), labels(h),
                                               match(h))
    missing = {q: f"`container.metrics` maps no `{key}`" for q, key in (
        ("requests", "requests"), ("latency_quantile", "latency"), ("latency_slo", "latency"),
        ("inflight", "inflight"), ("queue", "queue"))}
    missing["errors"] = ("`container.metrics.requests` names no `statusLabel`" if r is not None
                         else "`container.metrics` maps no `requests`")
    missing |= {q: "the server's LLM series are not part of `container.metrics`"
                for q in ("time_to_first_token", "tokens_per_second")}
    return EngineMetrics(
        engine="custom", source="the endpoint's `container.metrics` in ml.yaml",
        scrape_port=port, scrape_path=spec.path, model_label=None, requires=(),
        requests=requests, server_errors=server_errors, client_errors=client_errors,
        latency=latency, inflight=gauge(spec.inflight), queue=gauge(spec.queue),
        missing=missing)


ENGINES: dict[str, EngineMetrics] = {
    e.engine: e for e in (MLSERVER, TRITON, TORCHSERVE, TFSERVING, HUGGINGFACE, CUSTOM)}
LLM_ENGINES = frozenset(name for name, e in ENGINES.items() if e.time_to_first_token)


def for_engine(engine: str) -> EngineMetrics:
    """The mapping of a non-mlc engine (KeyError for mlc, whose contract is mlc/metrics.py)."""
    return ENGINES[engine]


def markdown_table() -> str:
    """docs/serving-metrics.md's per-engine table (a test compares the page with it)."""

    def cell(part: Counter | Gauge | Histogram | Summary | None, why: str | None = None) -> str:
        if part is None:
            return f"none ({why})" if why else "none"
        names = ", ".join(f"`{n}`" for n in getattr(part, "names", ()) or (part.name,))
        match = getattr(part, "match", ())
        if match:
            names += " where " + ", ".join(f"`{k}=~\"{v}\"`" for k, v in match)
        if isinstance(part, Histogram):
            names += f" (histogram, {part.unit})"
        elif isinstance(part, Summary):
            names += f" (summary, {part.unit})"
        return names

    rows = ["| engine | scrape | requests | server errors | latency | in flight | LLM | "
            "needs | source |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for e in ENGINES.values():
        if e.engine == "custom":
            continue
        llm = "none"
        if e.time_to_first_token:
            llm = (f"TTFT {cell(e.time_to_first_token)}; per output token "
                   f"{cell(e.time_per_output_token)}; tokens {cell(e.output_tokens)}")
        cells = (f"`{e.engine}`", f"`:{e.scrape_port}{e.scrape_path}`", cell(e.requests),
                 cell(e.server_errors, e.missing.get("errors")),
                 cell(e.latency, e.missing.get("latency_quantile")),
                 cell(e.inflight, e.missing.get("inflight")), llm,
                 "; ".join(e.requires) or "-", e.source)
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"
