"""Rollout gates: an Argo Rollouts AnalysisTemplate whose PromQL reads the serving metrics.

Three gates, each a metric of the template, measured every `gates.interval` while a canary
runs (or for a while after a blue-green switch); a failed gate aborts the rollout, which
sends all traffic back to the stable version and scales the new one down:

- error rate: share of the new pods' requests answered with a 5xx code;
- p99 latency of the new pods' requests;
- prediction drift: the population stability index (PSI) between the new pods' predictions
  and the stable pods' (see `psi_query`).

New and stable pods are told apart by the `rollouts_pod_template_hash` label, which Argo
Rollouts puts on the pods and the monitoring backend's PodMonitor copies onto every series;
the hashes arrive as the template's arguments.

Every query returns exactly one sample, whatever the data: Argo Rollouts reads an empty
result as a measurement error, not as "no data" (its condition evaluator refuses to index
into an empty result, even behind `len(result) > 0`), and enough errors in a row abort the
rollout. So a count that has no series reads as 0, and a query with nothing to measure
returns NaN: no traffic on the new pods (0/0), or no series at all. A NaN is neither passed
nor failed but inconclusive: a few in a row are tolerated, more pause the rollout for a
person to look, as Argo Rollouts does with inconclusive runs. A canary nobody sends traffic
to therefore never passes its gates by accident, and is not aborted for it either.

Every metric name comes from `mlc.metrics`; label values from ml.yaml go through `literal`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from mlc import metrics

from ...ir import Endpoint, ResolvedProject
from ...names import dns_label
from ..monitoring import engine_queries, promql
from ..monitoring.servicemonitors import ROLLOUT_POD_LABEL
from ..objects import metadata
from .workloads import COMPONENT

NEW_ARG = "new-hash"  # the pod template hash of the version being rolled out
STABLE_ARG = "stable-hash"  # the version that serves today
HASH_LABEL = ROLLOUT_POD_LABEL.replace("-", "_")  # as Prometheus names the copied pod label
LATENCY_QUANTILE = 0.99
# rate() needs a few scrapes in its window to say anything; shorter gate intervals still
# measure that often, over this much history.
MIN_WINDOW_SECONDS = 60
# Blue-green: the previous version gets no traffic once the new one is active, so its
# predictions are read from the hour before the switch.
BASELINE_WINDOW_SECONDS = 3600
BLUE_GREEN_MEASUREMENTS = 5
INCONCLUSIVE_LIMIT = 3
# PSI takes ln(p / q): an empty bin counts as this share instead of 0.
PSI_EPSILON = 1e-4

# A series name -> its full selector (one version's series of one endpoint).
Selector = Callable[[str], str]

_TEMPLATE_REF = re.compile(r"\{\{(.*?)\}\}")


def template_name(ep: Endpoint) -> str:
    return dns_label(ep.k8s_name, "gates")


def arg(name: str) -> str:
    return "{{args." + name + "}}"


def literal(value: str) -> str:
    """A PromQL string literal of `value` that Argo Rollouts' templating leaves alone.

    Argo Rollouts replaces `{{...}}` in a query before Prometheus parses it, so braces from
    ml.yaml are written as the escapes `\\x7b` and `\\x7d`, which PromQL reads back as braces.
    """
    return promql.string(value).replace("{", "\\x7b").replace("}", "\\x7d")


def selector(name: str, project: ResolvedProject, ep: Endpoint, hash_arg: str,
             regex: dict[str, str] | None = None, exclude: dict[str, str] | None = None) -> str:
    """`name{namespace="...", endpoint="...", rollouts_pod_template_hash="{{args.X}}"}`."""
    labels = {promql.SCOPE_LABEL: project.platform.namespace, "endpoint": ep.name}
    parts = [f"{k}={literal(v)}" for k, v in sorted(labels.items())]
    parts += [f"{k}=~{literal(v)}" for k, v in sorted((regex or {}).items())]
    parts += [f"{k}!={literal(v)}" for k, v in sorted((exclude or {}).items())]
    parts.append(f'{HASH_LABEL}="{arg(hash_arg)}"')  # our own reference: not escaped
    return name + "{" + ", ".join(parts) + "}"


# What a query with nothing to measure returns instead of an empty result (see the module
# docstring): one sample, which every gate's conditions read as inconclusive.
NO_DATA = "vector(NaN)"


def error_rate_query(project: ResolvedProject, ep: Endpoint, window: str) -> str:
    requests = promql.series(metrics.REQUESTS)
    errors = selector(requests, project, ep, NEW_ARG, {"code": metrics.SERVER_ERROR_CODES},
                      promql.NOT_SERVED)
    total = selector(requests, project, ep, NEW_ARG, exclude=promql.NOT_SERVED)
    # Both sides fall back to 0: no 5xx series is no 5xx, and no series at all is 0/0, NaN.
    return ("# Share of the new pods' requests answered 5xx; NaN (inconclusive) without "
            "traffic.\n"
            f"(sum(rate({errors}[{window}])) or vector(0))\n"
            f"/\n"
            f"(sum(rate({total}[{window}])) or vector(0))\n")


def latency_query(project: ResolvedProject, ep: Endpoint, window: str) -> str:
    buckets = selector(promql.series(metrics.REQUEST_DURATION, "_bucket"), project, ep, NEW_ARG,
                       exclude=promql.NOT_SERVED)
    # histogram_quantile over buckets that did not grow is NaN already; no buckets at all
    # would be no result.
    return ("# p99 latency of the new pods' requests; NaN (inconclusive) without traffic.\n"
            f"histogram_quantile({promql.number(LATENCY_QUANTILE)},\n"
            f"  sum by (le) (rate({buckets}[{window}])))\n"
            f"or {NO_DATA}\n")


def _canonical(bound: float) -> str:
    """The `le` text the Python client writes and Prometheus 3 stores: 1.0 -> "1.0"."""
    return repr(float(bound))


def _indent(text: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line if line else line for line in text.split("\n"))


def _relabel(expr: str, renames: list[tuple[str, str]]) -> str:
    """`expr` with its `le` label rewritten by each (new text, regex) in turn, first first.

    Written as one stack of label_replace calls with one rename per line, innermost first.
    """
    if not renames:
        return expr
    if any("$" in new for new, _ in renames):  # label_replace would expand it
        raise ValueError(f"a label_replace replacement may not hold `$`: {renames!r}")
    lines = ["label_replace(" * len(renames), _indent(expr, 2) + ","]
    lines += [f'  "le", {literal(new)}, "le", {literal(regex)})' + ("," if i < len(renames) - 1
                                                                     else "")
              for i, (new, regex) in enumerate(renames)]
    return "\n".join(lines)


def _cumulative(sel: Selector, metric: metrics.Metric, window: str, *,
                finite: bool = False) -> str:
    bucket = sel(promql.series(metric, "_bucket"))
    if finite:
        bucket = bucket[:-1] + ', le!="+Inf"}'
    return f"sum by (le) (rate({bucket}[{window}]))"


def _bin_shares(sel: Selector, metric: metrics.Metric, window: str) -> str:
    """Share of one version's predictions in each histogram bin, one series per bin (`le`).

    A bin's count is its bucket minus the bucket below (Prometheus buckets are cumulative):
    the buckets are read once as they are and once with each bound renamed to the next one
    up, and subtracted bin by bin. Below the lowest bound there is nothing: a 0.
    Bounds that two clients write differently (1.0 as "1.0" or "1") are made one text first.
    """
    bounds = list(metric.buckets)
    # Highest bound first, so that no renamed series is renamed again (two series with one
    # label set would make the query fail).
    shift = [(upper, promql.one_of(promql.le_values(bound)))
             for bound, upper in reversed(list(zip(
                 bounds, [*(_canonical(b) for b in bounds[1:]), "+Inf"], strict=True)))]
    same = [(_canonical(b), promql.one_of(promql.le_values(b))) for b in bounds
            if promql.le_values(b) != [_canonical(b)]]
    cumulative = _relabel(_cumulative(sel, metric, window), same)
    below = _relabel(_cumulative(sel, metric, window, finite=True), shift)
    count = sel(promql.series(metric, "_count"))
    nothing_below = f'label_replace(vector(0), "le", {literal(_canonical(bounds[0]))}, "", "")'
    return "\n".join([
        "(",
        _indent(cumulative, 2),
        "  - on (le)",
        "  (",
        _indent(below, 4),
        f"    or {nothing_below}",
        "  )",
        ")",
        "/ on () group_left",
        f"sum(rate({count}[{window}]))",
    ])


def psi_between(new: Selector, old: Selector, metric: metrics.Metric, window: str,
                baseline: str) -> str:
    """PSI = sum over bins of (p - q) * ln(p / q), p and q the two sides' shares per bin.

    The bins are those of the histogram `metric`, shares as `_bin_shares` computes them for
    the series each selector picks. PromQL has no variables, so each share appears twice,
    in the difference and in the logarithm. An empty bin counts as PSI_EPSILON, not 0. A PSI
    of 0.1 is commonly read as a small shift, 0.25 as a large one.
    """
    p = _bin_shares(new, metric, window)
    q = _bin_shares(old, metric, baseline)
    eps = promql.number(PSI_EPSILON)
    return "\n".join([
        "sum(",
        "  (",
        _indent(p, 4),
        "  - on (le)",
        _indent(q, 4),
        "  )",
        "  * on (le)",
        "  ln(",
        "    clamp_min(",
        _indent(p, 6) + ",",
        f"      {eps})",
        "    / on (le)",
        "    clamp_min(",
        _indent(q, 6) + ",",
        f"      {eps})",
        "  )",
        ")",
        # no prediction series of either side: no result, which Argo would call an error
        f"or {NO_DATA}",
    ]) + "\n"


def psi_query(project: ResolvedProject, ep: Endpoint, window: str, baseline: str) -> str:
    """PSI of the new pods' predictions (`mlc.metrics.PREDICTIONS`) against the stable's."""
    return "\n".join([
        "# Population stability index of the new version's predictions against the stable",
        "# version's: sum over the histogram's bins of (p - q) * ln(p / q), where p and q are",
        "# each version's share of predictions in the bin.",
        psi_between(lambda n: selector(n, project, ep, NEW_ARG),
                    lambda n: selector(n, project, ep, STABLE_ARG),
                    metrics.PREDICTIONS, window, baseline)])


def _gate(name: str, query: str, limit: float, project: ResolvedProject, interval: str,
          failure_limit: int, count: int | None, *, minimum: bool = False,
          initial_delay: str | None = None) -> dict[str, Any]:
    bound = promql.number(limit)
    known = "len(result) > 0 && !isNaN(result[0])"
    passes, fails = (">=", "<") if minimum else ("<=", ">")
    gate: dict[str, Any] = {
        "name": name,
        "interval": interval,
        # the first window must hold the new pods' traffic
        "initialDelay": initial_delay or interval,
        "successCondition": f"{known} && result[0] {passes} {bound}",
        "failureCondition": f"{known} && result[0] {fails} {bound}",
        "failureLimit": failure_limit,
        "inconclusiveLimit": INCONCLUSIVE_LIMIT,
        "provider": {"prometheus": {"address": project.platform.prometheus_url,
                                    "query": query}},
    }
    if count is not None:
        gate["count"] = count
    return gate


def check_references(query: str) -> str:
    """Every `{{...}}` in a query must be one of our arguments (a bug otherwise)."""
    for ref in _TEMPLATE_REF.findall(query):
        if ref not in (f"args.{NEW_ARG}", f"args.{STABLE_ARG}"):
            raise ValueError(f"unexpected Argo Rollouts reference {{{{{ref}}}}} in {query!r}")
    return query


def gate_checks(project: ResolvedProject, ep: Endpoint) -> list[tuple[str, str, float]]:
    """(name, query, limit) of every gate of the endpoint: the one list that both the
    AnalysisTemplate and the delivery workflow's gate file (gate_driver.py) are made of."""
    gates = ep.rollout.gates
    window = promql.duration(max(MIN_WINDOW_SECONDS, gates.interval_seconds))
    if ep.engine != "mlc":
        return [(name, check_references(query), limit)
                for name, query, limit in engine_gate_checks(project, ep, window)]
    blue_green = ep.rollout.strategy == "blueGreen"
    baseline = promql.duration(BASELINE_WINDOW_SECONDS) if blue_green else window
    checks = [
        ("error-rate", error_rate_query(project, ep, window), gates.max_error_rate),
        ("latency-p99", latency_query(project, ep, window), gates.max_latency_p99_seconds),
    ]
    if gates.max_prediction_drift is not None:
        checks.append(("prediction-drift", psi_query(project, ep, window, baseline),
                       gates.max_prediction_drift))
    return [(name, check_references(query), limit) for name, query, limit in checks]


def engine_select(project: ResolvedProject, ep: Endpoint,
                  hash_arg: str = NEW_ARG) -> engine_queries.Select:
    """How a gate selects an engine's series: one version's pods of the endpoint."""

    def select(name: str, regex: dict[str, str]) -> str:
        return selector(name, project, ep, hash_arg, dict(regex))
    return engine_queries.both_spellings(select)


def engine_gate_checks(project: ResolvedProject, ep: Endpoint,
                       window: str) -> list[tuple[str, str, float]]:
    """The gates of an endpoint of another engine, over that engine's series
    (mlc/engine_metrics.py). Those its series cannot measure are refused or, left at their
    defaults, warned of and left out by resolve (mlc/compiler/resolve/engine_metrics.py);
    prediction drift (PSI) needs mlc's runtime's prediction histograms and is never here."""
    gates = ep.rollout.gates
    m = engine_queries.mapping(ep)
    sel = engine_select(project, ep)
    checks = []
    if m.why_not("errors") is None:
        checks.append(("error-rate",
                       "# Share of the new pods' requests the engine failed; NaN "
                       "(inconclusive) without traffic.\n"
                       + engine_queries.error_rate_gate(ep, sel, window),
                       gates.max_error_rate))
    if m.why_not("latency_quantile") is None:
        checks.append(("latency-p99",
                       "# p99 latency of the new pods' requests; NaN (inconclusive) without "
                       "traffic.\n"
                       + engine_queries.latency_gate(ep, sel, LATENCY_QUANTILE, window),
                       gates.max_latency_p99_seconds))
    if gates.max_ttft_seconds is not None:
        checks.append(("time-to-first-token-p99",
                       "# p99 time to first token of the new pods' requests; NaN "
                       "(inconclusive) without traffic.\n"
                       + engine_queries.ttft_gate(ep, sel, LATENCY_QUANTILE, window),
                       gates.max_ttft_seconds))
    if gates.min_tokens_per_second is not None:
        # at least N tokens per second: the p99 time per output token at most 1/N seconds
        checks.append(("time-per-output-token-p99",
                       "# p99 time per output token of the new pods (minTokensPerSecond: at "
                       "most 1/that); NaN (inconclusive) without traffic.\n"
                       + engine_queries.tpot_gate(ep, sel, LATENCY_QUANTILE, window),
                       1 / gates.min_tokens_per_second))
    return checks


def for_label(query: str, label: str) -> str:
    """`query` with its version matchers on `label` instead of the pod template hash.

    Knative and KServe-on-Knative pods carry their revision's name, not a pod template hash;
    the matchers on HASH_LABEL are ours alone (text from ml.yaml sits in escaped literals, in
    which `="` cannot occur), so renaming them keeps every other part of the query as is.
    """
    return query.replace(f'{HASH_LABEL}="', f'{label}="')


def analysis_template(project: ResolvedProject, ep: Endpoint) -> dict[str, Any]:
    gates = ep.rollout.gates
    interval = f"{gates.interval_seconds}s"
    count = BLUE_GREEN_MEASUREMENTS if ep.rollout.strategy == "blueGreen" else None
    checks = [_gate(name, query, limit, project, interval, gates.failure_limit, count)
              for name, query, limit in gate_checks(project, ep)]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": metadata(project, template_name(ep), origin=ep.origin,
                             component=COMPONENT),
        "spec": {"args": [{"name": NEW_ARG}, {"name": STABLE_ARG}], "metrics": checks},
    }


def shadow_template_name(ep: Endpoint) -> str:
    return dns_label(ep.k8s_name, "shadow-gates")


def shadow_template(project: ResolvedProject, ep: Endpoint,
                    checks: list[tuple[str, str, float, bool]], count: int,
                    initial_delay_seconds: int) -> dict[str, Any]:
    """The shadow phase's AnalysisTemplate: `count` measurements of each check (name, query,
    bound, whether the bound is a minimum), run by the Rollout's first step."""
    phase = ep.rollout.shadow_phase
    assert phase is not None
    interval = f"{phase.gates.interval_seconds}s"
    metrics_ = [_gate(name, query, bound, project, interval, phase.gates.failure_limit, count,
                      minimum=minimum, initial_delay=f"{initial_delay_seconds}s")
                for name, query, bound, minimum in checks]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": metadata(project, shadow_template_name(ep), origin=ep.origin,
                             component=COMPONENT),
        "spec": {"metrics": metrics_},
    }


def analysis_seconds(ep: Endpoint) -> int:
    """How long a blue-green post-promotion analysis runs, at most."""
    gates = ep.rollout.gates
    return gates.interval_seconds * (BLUE_GREEN_MEASUREMENTS + 1)
