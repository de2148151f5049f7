"""Synthetic request counters for the promtool tests, shaped as the serving runtime exports them.

The runtime starts a counter for every route and status code it answers with at 0
(`mlc.metrics.SERVE_CODES`), so a test whose 5xx series is missing until the first error, or
that leaves out the 4xx and unmatched-path series, tests rules against traffic no server
produces. Each scenario here writes every one of those series, from time 0: the codes it
names grow by their rate, the others stay at 0.
"""

from __future__ import annotations

from collections.abc import Mapping

from mlc import metrics

from . import promql
from .alerts import Series

# A steady share of a minute's requests, by code: {"200": 95, "503": 5}.
PerMinute = Mapping[str, float]
# What a server without an A/B variant or role in its config calls itself.
VARIANT = "primary"


def server_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """`labels` (namespace, endpoint) plus what one server adds to every series it exports."""
    return {**labels, "variant": VARIANT, "model_version": "1"}


def requests(labels: Mapping[str, str], phases: list[tuple[int, PerMinute]],
             route: str = metrics.PREDICT_ROUTE) -> tuple[Series, ...]:
    """Every request series of one server, sampled every minute from 0.

    `phases`: (minutes, requests per minute by code) in order; the first sample is 0 and
    each phase adds its rate for its minutes. Codes are those the runtime exports on
    `route`; a code it never answers with there is a bug in the scenario.
    """
    named = {code for _, rates in phases for code in rates}
    unknown = named - set(metrics.SERVE_CODES[route])
    if unknown:
        raise ValueError(f"the runtime answers {route} with {metrics.SERVE_CODES[route]}, "
                         f"not {sorted(unknown)}")
    out = []
    for r, route_codes in metrics.SERVE_CODES.items():
        for code in route_codes:
            rates = [(minutes, rate.get(code, 0.0) if r == route else 0.0)
                     for minutes, rate in phases]
            out.append(Series(promql.series(metrics.REQUESTS),
                              {**labels, "route": r, "code": code}, _values(rates)))
    return tuple(out)


def _values(phases: list[tuple[int, float]]) -> str:
    """promtool's expanding notation for a counter growing by each phase's rate in turn."""
    parts, total, first = [], 0.0, True
    for minutes, rate in phases:
        if first:  # the sample at time 0, then `minutes` more
            parts.append(f"{promql.number(total)}+{promql.number(rate)}x{minutes}")
            total += rate * minutes
            first = False
        elif minutes:
            total += rate
            parts.append(f"{promql.number(total)}+{promql.number(rate)}x{minutes - 1}")
            total += rate * (minutes - 1)
    return " ".join(parts)
