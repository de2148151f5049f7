"""A stand-in for an engine's metrics endpoint: its series, named as the engine names them.

`python -m tests.engine_exporter vllm PORT` serves, in Prometheus' text format, the series
that vLLM's engine exports (vllm/engine/metrics.py, class Metrics: the names, label and
buckets are written out here from that file, not taken from mlc/engine_metrics.py, so that a
table that differs from vLLM's names finds nothing), fed by steady healthy traffic: 20
requests a second, each with a first token after 50ms, 10 output tokens 20ms apart and an
end-to-end latency of 1.2s. Used where vLLM itself (a GPU and a model) cannot run.
"""

from __future__ import annotations

import sys
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

MODEL = "fraud-classifier"


def vllm(registry: CollectorRegistry) -> None:
    labels = ["model_name"]
    success = Counter("vllm:request_success", "Count of successfully processed requests.",
                      [*labels, "finished_reason"], registry=registry)
    tokens = Counter("vllm:generation_tokens", "Number of generation tokens processed.",
                     labels, registry=registry)
    running = Gauge("vllm:num_requests_running", "Number of requests currently running on GPU.",
                    labels, registry=registry)
    waiting = Gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.",
                    labels, registry=registry)
    ttft = Histogram("vllm:time_to_first_token_seconds",
                     "Histogram of time to first token in seconds.", labels, registry=registry,
                     buckets=[0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
                              1.0, 2.5, 5.0, 7.5, 10.0])
    tpot = Histogram("vllm:time_per_output_token_seconds",
                     "Histogram of time per output token in seconds.", labels,
                     registry=registry,
                     buckets=[0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
                              1.0, 2.5])
    e2e = Histogram("vllm:e2e_request_latency_seconds",
                    "Histogram of end to end request latency in seconds.", labels,
                    registry=registry,
                    buckets=[1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    running.labels(MODEL).set(2)
    waiting.labels(MODEL).set(0)
    while True:
        success.labels(MODEL, "stop").inc()
        ttft.labels(MODEL).observe(0.05)
        for _ in range(10):
            tpot.labels(MODEL).observe(0.02)
        tokens.labels(MODEL).inc(10)
        e2e.labels(MODEL).observe(1.2)
        time.sleep(0.05)


def main() -> None:
    engine, port = sys.argv[1], int(sys.argv[2])
    registry = CollectorRegistry()
    start_http_server(port, addr="127.0.0.1", registry=registry)
    {"vllm": vllm}[engine](registry)


if __name__ == "__main__":
    main()
