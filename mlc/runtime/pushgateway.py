"""Metrics of short-lived steps: pushed to the Pushgateway, or written as a textfile.

A step pod ends before Prometheus could scrape it, so drift checks and scoring runs push
their gauges (mlc/metrics.py) to MLC_PUSHGATEWAY_URL under their own grouping key; without
one (a local run, a test) the same gauges go into a textfile beside the step's output.
`replace` replaces every series of the group (a complete run); otherwise only the series
given are updated and the rest (the last good values) stay.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlc import metrics as contract

PUSHGATEWAY_ENV = "MLC_PUSHGATEWAY_URL"

Value = tuple[contract.Metric, float, dict[str, str]]


def export(values: list[Value], *, job: str, grouping: dict[str, str], textfile: Path,
           replace: bool) -> None:
    from prometheus_client import (
        CollectorRegistry,
        Gauge,
        push_to_gateway,
        pushadd_to_gateway,
        write_to_textfile,
    )

    registry = CollectorRegistry()
    gauges: dict[str, Gauge] = {}
    for metric, value, labels in values:
        if metric.name not in gauges:
            gauges[metric.name] = Gauge(metric.name, metric.help, list(metric.labels),
                                        registry=registry)
        gauges[metric.name].labels(**grouping, **labels).set(value)
    url = os.environ.get(PUSHGATEWAY_ENV)
    if url:
        push = push_to_gateway if replace else pushadd_to_gateway
        push(url, job=job, grouping_key=grouping, registry=registry, timeout=10)
    else:
        textfile.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(textfile), registry)
