"""PromQL over the shadow comparison and A/B router metrics, for gates and dashboards.

A shadow (or A/B) gate asks: does the shadow agree with the primary, does it answer without
errors and fast enough, and did the primary copy what it was asked to? Each function here
is one such question for one endpoint, per environment (`namespace`) and endpoint, over a
window; docs/shadow-and-ab.md lists them. Names come from the contract (mlc/metrics.py);
the endpoint's name is escaped by promql.
"""

from __future__ import annotations

from mlc import metrics

from ...ir import Endpoint, ResolvedProject
from ..monitoring import promql

BY = f"{promql.SCOPE_LABEL}, endpoint"


def _rate(metric: metrics.Metric, project: ResolvedProject, ep: Endpoint, window: str,
          suffix: str = "", by: str = BY, **labels: str) -> str:
    sel = promql.selector(promql.series(metric, suffix),
                          {**promql.endpoint_labels(project, ep), **labels})
    return f"sum by ({by}) (rate({sel}[{window}]))"


def agreement_ratio(project: ResolvedProject, ep: Endpoint, window: str) -> str:
    """Share of compared predictions on which the shadow agreed with the primary."""
    return (f"{_rate(metrics.SHADOW_AGREED, project, ep, window)}\n/\n"
            f"{_rate(metrics.SHADOW_COMPARED, project, ep, window)}")


def shadow_error_ratio(project: ResolvedProject, ep: Endpoint, window: str) -> str:
    """Share of copies the shadow answered with anything but 200 (or not at all)."""
    ok = _rate(metrics.SHADOW_RESPONSES, project, ep, window, code="200")
    total = _rate(metrics.SHADOW_RESPONSES, project, ep, window)
    return f"1 - (\n  {ok}\n  /\n  {total}\n)"


def shadow_latency_quantile(project: ResolvedProject, ep: Endpoint, quantile: float,
                            window: str) -> str:
    """The shadow's answer time for copies, as the primary measured it."""
    buckets = _rate(metrics.SHADOW_DURATION, project, ep, window, "_bucket", f"{BY}, le")
    return f"histogram_quantile({promql.number(quantile)}, {buckets})"


def dropped_ratio(project: ResolvedProject, ep: Endpoint, window: str) -> str:
    """Share of sampled copies the primary dropped (queue full, or stopping) instead of
    sending: above 0, the shadow saw less than `shadow.percent` of the traffic."""
    dropped = _rate(metrics.SHADOW_DROPPED, project, ep, window)
    mirrored = _rate(metrics.SHADOW_MIRRORED, project, ep, window)
    return f"{dropped}\n/\n(\n  {dropped}\n  +\n  {mirrored}\n)"


def variant_share(project: ResolvedProject, ep: Endpoint, window: str) -> str:
    """Share of the router's requests that each A/B variant took (one series per variant)."""
    per_variant = _rate(metrics.ROUTER_REQUESTS, project, ep, window, by=f"{BY}, variant")
    total = _rate(metrics.ROUTER_REQUESTS, project, ep, window)
    return f"{per_variant}\n/ on ({BY}) group_left\n{total}"
