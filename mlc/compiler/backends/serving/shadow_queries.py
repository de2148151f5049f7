"""PromQL over the shadow comparison and A/B router metrics, for gates and dashboards.

A shadow (or A/B) gate asks: does the shadow agree with the primary, does it answer without
errors and fast enough, and did the primary copy what it was asked to? Each function here
is one such question for one endpoint, per environment (`namespace`) and endpoint, over a
window; docs/shadow-and-ab.md lists them. Names come from the contract (mlc/metrics.py);
the endpoint's name is escaped by promql.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlc import metrics

from ...ir import Endpoint, ResolvedProject
from ..monitoring import promql
from . import analysis

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


# --- the shadow phase's gates ------------------------------------------------------------------
# Written as the canary gates are (analysis.py): one sample whatever the data, label values in
# `analysis.literal`, so that the same text serves an AnalysisTemplate and the gate file. A
# sample that means "nothing to measure yet" (no copy compared, no copy answered) is NaN:
# inconclusive, never a pass.

def _gate_selector(name: str, project: ResolvedProject, ep: Endpoint, **labels: str) -> str:
    # the primary exports the comparison under the endpoint's own name (config.py)
    every = {promql.SCOPE_LABEL: project.platform.namespace, "endpoint": ep.name, **labels}
    return name + "{" + ", ".join(f"{k}={analysis.literal(v)}"
                                  for k, v in sorted(every.items())) + "}"


def _sum_rate(metric: metrics.Metric, project: ResolvedProject, ep: Endpoint, window: str,
              **labels: str) -> str:
    sel = _gate_selector(promql.series(metric), project, ep, **labels)
    # a counter that does not exist yet has counted nothing
    return f"(sum(rate({sel}[{window}])) or vector(0))"


def agreement_gate(project: ResolvedProject, ep: Endpoint, window: str) -> str:
    return ("# Share of compared predictions on which the new version agreed with the stable\n"
            "# one; NaN (inconclusive) when nothing was compared.\n"
            f"{_sum_rate(metrics.SHADOW_AGREED, project, ep, window)}\n/\n"
            f"{_sum_rate(metrics.SHADOW_COMPARED, project, ep, window)}\n")


def error_rate_gate(project: ResolvedProject, ep: Endpoint, window: str) -> str:
    total = _sum_rate(metrics.SHADOW_RESPONSES, project, ep, window)
    ok = _sum_rate(metrics.SHADOW_RESPONSES, project, ep, window, code="200")
    return ("# Share of copies the new version answered with anything but 200, or not at\n"
            "# all; NaN (inconclusive) when no copy was sent.\n"
            f"({total}\n -\n {ok})\n/\n{total}\n")


def latency_gate(project: ResolvedProject, ep: Endpoint, window: str) -> str:
    buckets = _gate_selector(promql.series(metrics.SHADOW_DURATION, "_bucket"), project, ep)
    return ("# p99 of the new version's answers to copies, as the primary measured them.\n"
            f"histogram_quantile({promql.number(analysis.LATENCY_QUANTILE)},\n"
            f"  sum by (le) (rate({buckets}[{window}])))\n"
            f"or {analysis.NO_DATA}\n")


def drift_gate(project: ResolvedProject, ep: Endpoint, window: str) -> str:
    def role(name: str) -> analysis.Selector:
        return lambda series: _gate_selector(series, project, ep, role=name)

    return "\n".join([
        "# PSI of the new version's predictions against the stable version's, for the same",
        "# requests (the primary records both sides of every comparison).",
        analysis.psi_between(role("shadow"), role("primary"), metrics.SHADOW_PREDICTIONS,
                             window, window)])


@dataclass(frozen=True)
class Check:
    """One gate: its query and bound; `minimum` gates pass at or above it, others at or
    below it."""

    name: str
    query: str
    bound: float
    minimum: bool = False


def phase_checks(project: ResolvedProject, ep: Endpoint) -> list[Check]:
    """The gates of the endpoint's shadow phase: what both the shadow AnalysisTemplate and
    the delivery workflow's `shadow-gates.json` are made of."""
    phase = ep.rollout.shadow_phase
    assert phase is not None
    g = phase.gates
    window = promql.duration(max(analysis.MIN_WINDOW_SECONDS, g.interval_seconds))
    checks = [Check("shadow-agreement", agreement_gate(project, ep, window), g.min_agreement,
                    minimum=True),
              Check("shadow-error-rate", error_rate_gate(project, ep, window), g.max_error_rate),
              Check("shadow-latency-p99", latency_gate(project, ep, window),
                    g.max_latency_p99_seconds)]
    if g.max_prediction_drift is not None:
        checks.append(Check("shadow-prediction-drift", drift_gate(project, ep, window),
                            g.max_prediction_drift))
    for c in checks:
        analysis.check_references(c.query)
    return checks


# How long after a sync the stable pods may still copy nothing: on the first rollout after
# `shadowFirst` is added they were started without a mirror, and pick it up only once the
# kubelet has refreshed their ConfigMap volume (its sync period, 1 min by default, plus its
# ConfigMap cache) and the primary has re-read the file (every 5 s:
# mlc/runtime/serve/config_reload.py).
CONFIG_PROPAGATION_SECONDS = 120


def window_seconds(ep: Endpoint) -> int:
    """The rate window of the shadow gates: their first measurement waits this long, so that
    it reads copies answered by the new version only."""
    phase = ep.rollout.shadow_phase
    assert phase is not None
    return max(analysis.MIN_WINDOW_SECONDS, phase.gates.interval_seconds)


def first_measurement_seconds(ep: Endpoint) -> int:
    """When the shadow gates first measure, after the phase starts: once the stable pods
    copy requests (CONFIG_PROPAGATION_SECONDS), and one rate window later, so that the
    window holds the new version's answers only."""
    return CONFIG_PROPAGATION_SECONDS + window_seconds(ep)


def measurements(ep: Endpoint) -> int:
    """How many times each shadow gate is measured: every interval for the phase's duration."""
    phase = ep.rollout.shadow_phase
    assert phase is not None
    return max(1, phase.duration_seconds // phase.gates.interval_seconds)
