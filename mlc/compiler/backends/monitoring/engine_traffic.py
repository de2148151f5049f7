"""Synthetic series for the promtool tests of an endpoint served by another engine.

The same scenarios as `traffic.py` (requests per minute by HTTP status code; fast and slow
requests), written as the engine exports them (mlc/engine_metrics.py): its series names,
labels and units. Where an engine creates a labelled series at its first increment (the
Python client's labelled counters, TensorFlow's cells), the series is missing until then
(`_` in promtool's notation), as a scrape of that engine finds it.
"""

from __future__ import annotations

from collections.abc import Mapping

from mlc import engine_metrics as em

from ...ir import Endpoint
from . import engine_queries, promql
from .alerts import Series

PerMinute = Mapping[str, float]  # requests per minute by HTTP status code: {"200": 95}
MLSERVER_INFER_PATH = "/v2/models/{model_name}/infer"
# What an HTTP status code is in TensorFlow Serving's `status` label (its error code).
TFSERVING_STATUS = {"200": "OK", "400": "INVALID_ARGUMENT", "404": "NOT_FOUND",
                    "500": "INTERNAL", "503": "UNAVAILABLE", "504": "DEADLINE_EXCEEDED"}


def _phases_values(phases: list[tuple[int, float]], lazy: bool) -> str | None:
    """Expanding notation for a counter growing by each phase's rate, one sample a minute
    from 0 (as traffic.py); with `lazy`, missing until its first increment (None: never
    incremented, so no series at all)."""
    samples: list[float | None] = [0.0]
    running = 0.0
    for minutes, rate in phases:
        for _ in range(minutes):
            running += rate
            samples.append(running)
    if lazy:
        first = next((i for i, s in enumerate(samples) if s), None)
        if first is None:
            return None
        samples = [None] * first + samples[first:]
    return _notation(samples)


def _notation(samples: list[float | None]) -> str:
    """promtool's notation for explicit samples: `_` for a missing one, runs compressed."""
    parts: list[str] = []
    i = 0
    while i < len(samples):
        s = samples[i]
        j = i
        if s is None:
            while j + 1 < len(samples) and samples[j + 1] is None:
                j += 1
            parts.append("_" if j == i else f"_x{j - i + 1}")
        else:
            step = (samples[i + 1] - s) if (i + 1 < len(samples) and
                                            samples[i + 1] is not None) else 0.0
            while (j + 1 < len(samples) and samples[j + 1] is not None
                   and abs(samples[j + 1] - samples[j] - step) < 1e-9):
                j += 1
            parts.append(f"{promql.number(s)}+{promql.number(step)}x{j - i}")
        i = j + 1
    return " ".join(parts)


def _sum_rates(phases: list[tuple[int, PerMinute]],
               codes: set[str] | None) -> list[tuple[int, float]]:
    return [(minutes, sum(v for c, v in rates.items() if codes is None or c in codes))
            for minutes, rates in phases]


def _codes(phases: list[tuple[int, PerMinute]]) -> list[str]:
    return sorted({c for _, rates in phases for c in rates})


def requests(endpoint: Endpoint, labels: Mapping[str, str],
             phases: list[tuple[int, PerMinute]]) -> tuple[Series, ...]:
    """The engine's request counters for traffic by status code, sampled every minute."""
    engine = endpoint.engine
    out: list[Series] = []

    def add(name: str, extra: Mapping[str, str], rates: list[tuple[int, float]],
            lazy: bool) -> None:
        values = _phases_values(rates, lazy)
        if values is not None:
            out.append(Series(name, {**labels, **extra}, values))

    codes = _codes(phases)
    if engine == "mlserver":
        for code in codes:
            add("rest_server_requests_total",
                {"app_name": "mlserver", "method": "POST", "path": MLSERVER_INFER_PATH,
                 "status_code": code}, _sum_rates(phases, {code}), lazy=True)
    elif engine == "triton":
        model = {"model": endpoint.model, "version": "1"}
        ok = {c for c in codes if c.startswith("2")}
        add("nv_inference_request_success", model, _sum_rates(phases, ok), lazy=False)
        add("nv_inference_request_failure", model, _sum_rates(phases, set(codes) - ok),
            lazy=False)
    elif engine == "torchserve":
        host = {"Level": "Host", "Hostname": f"{endpoint.k8s_name}-0"}
        add("ts_inference_requests_total",
            {"model_name": endpoint.model, "model_version": "default",
             "hostname": f"{endpoint.k8s_name}-0"}, _sum_rates(phases, None), lazy=True)
        for klass in ("2", "4", "5"):
            add(f"Requests{klass}XX", host,
                _sum_rates(phases, {c for c in codes if c.startswith(klass)}), lazy=True)
    elif engine == "tfserving":
        by_status: dict[str, set[str]] = {}
        for code in codes:
            by_status.setdefault(TFSERVING_STATUS[code], set()).add(code)
        for status, group in sorted(by_status.items()):
            add(":tensorflow:serving:request_count",
                {"model_name": endpoint.model, "status": status}, _sum_rates(phases, group),
                lazy=True)
    elif engine == "huggingface":
        ok = {c for c in codes if c.startswith("2")}
        add("vllm:request_success_total",
            {"model_name": endpoint.model, "finished_reason": "stop"}, _sum_rates(phases, ok),
            lazy=True)
    elif engine == "custom" and _server(endpoint) is not None:
        r = _server(endpoint).requests
        if r is None:
            raise ValueError(f"endpoint {endpoint.name}: no request counter to write")
        name = r.series[0]  # one of the counters summed carries the traffic
        if r.status_label is None:
            add(name, r.examples, _sum_rates(phases, None), lazy=True)
        for code in codes if r.status_label is not None else ():
            status = code if r.status_format == "code" else f"{code[0]}xx"
            add(name, {**r.examples, r.status_label: status}, _sum_rates(phases, {code}),
                lazy=True)
    else:
        raise ValueError(f"no synthetic traffic for engine {engine}")
    return tuple(out)


def _server(endpoint: Endpoint):
    """A custom server's `container.metrics` (the IR's ServerMetrics), if any."""
    es = endpoint.engine_serving
    return es.container.metrics if es is not None and es.container is not None else None


def latency(endpoint: Endpoint, labels: Mapping[str, str], threshold_seconds: float,
            good_per_minute: float, per_minute: float, steps: int,
            histogram: em.Histogram | None = None) -> tuple[Series, ...]:
    """The engine's latency histogram: `per_minute` requests, `good_per_minute` of them in
    the bucket the objective is measured at."""

    m = engine_queries.mapping(endpoint)
    h = histogram or m.latency
    if not isinstance(h, em.Histogram):
        raise ValueError(f"engine {endpoint.engine} has no latency histogram")
    bound = engine_queries.histogram_bucket(h, threshold_seconds)
    extra = dict(_histogram_labels(endpoint))
    le = repr(float(bound)) if endpoint.engine != "tfserving" else f"{bound:g}"
    return (
        Series(f"{h.name}_bucket", {**labels, **extra, "le": le},
               f"0+{promql.number(good_per_minute)}x{steps}"),
        Series(f"{h.name}_count", {**labels, **extra}, f"0+{promql.number(per_minute)}x{steps}"),
    )


def _histogram_labels(endpoint: Endpoint) -> dict[str, str]:
    if endpoint.engine == "mlserver":
        return {"app_name": "mlserver", "method": "POST", "path": MLSERVER_INFER_PATH,
                "status_code": "200"}
    if endpoint.engine == "tfserving":
        return {"model_name": endpoint.model, "API": "Predict", "entrypoint": "REST"}
    server = _server(endpoint) if endpoint.engine == "custom" else None
    if server is not None and server.latency is not None:
        return dict(server.latency.examples)
    return {"model_name": endpoint.model}
