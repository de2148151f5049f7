"""PromQL text, built in one place: escaping, selectors and the queries everything else reuses.

Alert rules, recording rules, dashboards and (through the query builders) rollout gates all
read the serving, drift and pipeline metrics of `mlc.metrics`, so the three things that are
easy to get subtly wrong live here once:

- which series name Prometheus stores for a contract metric (`series`);
- which labels scope a query to one environment (`scope`): every environment's rules are
  loaded into Prometheus side by side, and endpoint, check and pipeline names repeat across
  environments, so an unscoped query would mix dev's traffic into prod's SLO;
- how a string from ml.yaml becomes a PromQL string literal (`string`) or a regular
  expression that matches it literally (`quote_meta`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping

from mlc import metrics

from ...ir import Endpoint, ResolvedProject
from . import engine_queries

# The label that scopes every query to one environment. Prometheus sets it on every target
# from the pod's or service's namespace (the PodMonitor and ServiceMonitor live in the
# environment's namespace).
SCOPE_LABEL = "namespace"
# Pipeline metrics are exported by the Argo Workflows controller, which runs in its own
# namespace, so their `namespace` label names the controller's. They are scoped by this
# label once the contract gives it to them (value: the workflow's namespace); until then
# pipeline queries match the pipeline's name in every environment.
PIPELINE_SCOPE_LABEL = "workflow_namespace"

# Labels that Prometheus adds to scraped series, which a query may use besides the contract's
# own: the target's namespace and pod, and the Argo Rollouts pod template hash that the
# serving PodMonitor copies from the pod (servicemonitors.ROLLOUT_POD_LABEL).
TARGET_LABELS = frozenset({SCOPE_LABEL, "pod", "rollouts_pod_template_hash"})

def series(metric: metrics.Metric, suffix: str = "") -> str:
    """The stored series name of a contract metric (suffix: "_bucket", "_sum" or "_count").

    The contract's names are the names Prometheus stores. Where an exporter renames what it
    is given (Argo's controller prefixes custom metrics with `argo_workflows_`), the contract
    spells the stored name and the exporter's declaration strips the prefix, so every query
    here follows the contract without a second mapping.
    """
    if suffix and (metric.kind != "histogram" or suffix not in ("_bucket", "_sum", "_count")):
        raise ValueError(f"{metric.name} is a {metric.kind}: no {suffix!r} series")
    return f"{metric.name}{suffix}"


def scope_label(metric: metrics.Metric | None = None) -> str | None:
    """The label that tells this environment's series of `metric` from other environments'."""
    if metric is None or metric.exporter != "pipeline":
        return SCOPE_LABEL
    return PIPELINE_SCOPE_LABEL if PIPELINE_SCOPE_LABEL in metric.labels else None


def scope(project: ResolvedProject, metric: metrics.Metric | None = None) -> dict[str, str]:
    """Matchers restricting `metric` (default: a serving or drift metric) to this environment."""
    label = scope_label(metric)
    return {label: project.platform.namespace} if label else {}


# ---------------------------------------------------------------------------------------
# Escaping


# Pure, and every rule, alert and promtool case of every endpoint quotes the same few label
# values (namespace, endpoint, model): each distinct one is escaped once.
@functools.lru_cache(maxsize=1 << 14)
def string(value: str) -> str:
    """A double-quoted PromQL string literal that the parser reads back as exactly `value`.

    PromQL unquotes strings with Go's rules: backslash escapes, and `\\x` means a byte, so
    characters outside ASCII that need escaping use `\\u`/`\\U` (a rune) instead.
    """
    out = ['"']
    for ch in value:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\a": "\\a", "\b": "\\b", "\f": "\\f",
                  "\v": "\\v"}
# Go's regexp.QuoteMeta: exactly the characters RE2 gives a meaning to. Python's re.escape
# escapes more (spaces, `-`, `#`), and RE2 rejects some of those escapes.
_RE2_SPECIAL = frozenset("\\.+*?()|[]{}^$")


def quote_meta(value: str) -> str:
    """A regular expression (RE2) matching exactly `value`, like Go's regexp.QuoteMeta."""
    return "".join("\\" + ch if ch in _RE2_SPECIAL else ch for ch in value)


def one_of(values: Iterable[str]) -> str:
    """A regular expression matching any of `values` literally (Prometheus anchors it)."""
    return "|".join(quote_meta(v) for v in sorted(set(values)))


# ---------------------------------------------------------------------------------------
# Selectors


def matchers(labels: Mapping[str, str], regex: Mapping[str, str] | None = None,
             exclude: Mapping[str, str] | None = None) -> str:
    """`{a="x", b=~"y", c!="z"}`: equality matchers from `labels`, regex matchers from
    `regex`, inequality matchers from `exclude`.

    Label names come from the contract (identifiers), never from ml.yaml; values are escaped.
    """
    parts = [f"{name}={string(value)}" for name, value in sorted(labels.items())]
    parts += [f"{name}=~{string(value)}" for name, value in sorted((regex or {}).items())]
    parts += [f"{name}!={string(value)}" for name, value in sorted((exclude or {}).items())]
    return "{" + ", ".join(parts) + "}"


def selector(name: str, labels: Mapping[str, str], regex: Mapping[str, str] | None = None,
             exclude: Mapping[str, str] | None = None) -> str:
    return name + matchers(labels, regex, exclude)


def duration(seconds: int) -> str:
    """A Prometheus duration in the largest unit that divides it: 300 -> "5m", 86400 -> "1d"."""
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {seconds}")
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def number(value: float) -> str:
    """A float as PromQL reads it: `0.001`, `14.4`, `1` (no trailing `.0` noise)."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def le_values(bound: float) -> list[str]:
    """The texts a histogram's `le` label may carry for `bound`.

    Python's client writes 1.0 as "1.0", Go's as "1"; Prometheus 3 normalises on ingestion,
    2.x does not. Matching both keeps the query right whichever exported and stored it.
    """
    return sorted({repr(float(bound)), number(bound)})


# ---------------------------------------------------------------------------------------
# Queries over the serving metrics, shared by recording rules, dashboards and rollout gates


def endpoint_labels(project: ResolvedProject, endpoint: Endpoint) -> dict[str, str]:
    return {**scope(project), "endpoint": endpoint.name}


# The requests an endpoint's SLOs and gates count: those for a route the server knows
# (404s for unknown paths are counted apart, under this route, and say nothing of the model).
NOT_SERVED = {"route": metrics.UNMATCHED_ROUTE}


def request_rate(project: ResolvedProject, endpoint: Endpoint, window: str, *,
                 by: Iterable[str] = (), errors_only: bool = False,
                 extra: Mapping[str, str] | None = None) -> str:
    """Requests per second over `window`; `errors_only`: answers with a 5xx status code."""
    labels = {**endpoint_labels(project, endpoint), **(extra or {})}
    if endpoint.engine != "mlc":
        return engine_queries.request_rate(endpoint, engine_select(labels), window, by=by,
                                           errors_only=errors_only)
    regex = {"code": metrics.SERVER_ERROR_CODES} if errors_only else None
    sel = selector(series(metrics.REQUESTS), labels, regex, NOT_SERVED)
    return f"sum by ({_by(by)}) (rate({sel}[{window}]))"


def error_ratio(project: ResolvedProject, endpoint: Endpoint, window: str, *,
                extra: Mapping[str, str] | None = None) -> str:
    """Share of requests answered with a 5xx code over `window` (what availability counts).

    The serving runtime exports its 5xx counters at 0 from start-up, but a ratio must not
    depend on that: where no 5xx series exists (a pod of an older runtime, a scrape that lost
    them), the errors read as 0 times the requests, which keeps the requests' labels so that
    the division still pairs up (`or vector(0)` has no labels and would pair with nothing).
    With no requests at all the ratio is 0/0, NaN: no alert compares true on it, and a rollout
    gate reads it as "no data" (inconclusive), never as a pass.
    """
    if endpoint.engine != "mlc":
        labels = {**endpoint_labels(project, endpoint), **(extra or {})}
        return engine_queries.error_ratio(endpoint, engine_select(labels), window)
    errors = request_rate(project, endpoint, window, errors_only=True, extra=extra)
    total = request_rate(project, endpoint, window, extra=extra)
    return f"(\n  {errors}\n  or\n  0 * {total}\n)\n/\n{total}"


def latency_bucket(threshold_seconds: float, endpoint: Endpoint | None = None) -> float:
    """The histogram bucket a latency objective is measured at: the smallest >= threshold.

    Above the largest bucket the largest one is used (the description says so). For an
    endpoint of another engine, that engine's latency histogram's bucket, in seconds.
    """
    if endpoint is not None and endpoint.engine != "mlc":
        return engine_queries.latency_bucket_seconds(endpoint, threshold_seconds)
    for bound in metrics.REQUEST_DURATION.buckets:
        if bound >= threshold_seconds - 1e-12:
            return bound
    return metrics.REQUEST_DURATION.buckets[-1]


def slow_ratio(project: ResolvedProject, endpoint: Endpoint, window: str, bucket: float, *,
               extra: Mapping[str, str] | None = None) -> str:
    """Share of requests slower than the histogram bucket `bucket` over `window`.

    Unlike the 5xx counters, the bucket and the count are parts of one histogram, exported
    together (from start-up, by the serving runtime): the division always pairs up. No
    requests make it 1 - 0/0, NaN, as for the error ratio.
    """
    labels = {**endpoint_labels(project, endpoint), **(extra or {})}
    if endpoint.engine != "mlc":
        return engine_queries.slow_ratio(endpoint, engine_select(labels), window, bucket)
    fast = selector(series(metrics.REQUEST_DURATION, "_bucket"), labels,
                    {"le": one_of(le_values(bucket))}, NOT_SERVED)
    total = selector(series(metrics.REQUEST_DURATION, "_count"), labels, exclude=NOT_SERVED)
    by = _by(())
    return (f"1 - (\n  sum by ({by}) (rate({fast}[{window}]))\n  /\n"
            f"  sum by ({by}) (rate({total}[{window}]))\n)")


def latency_quantile(project: ResolvedProject, endpoint: Endpoint, quantile: float,
                     window: str, *, by: Iterable[str] = (),
                     extra: Mapping[str, str] | None = None) -> str:
    labels = {**endpoint_labels(project, endpoint), **(extra or {})}
    if endpoint.engine != "mlc":
        return engine_queries.latency_quantile(endpoint, engine_select(labels), quantile,
                                               window, by=by)
    sel = selector(series(metrics.REQUEST_DURATION, "_bucket"), labels, exclude=NOT_SERVED)
    return (f"histogram_quantile({number(quantile)}, "
            f"sum by ({_by(('le', *by))}) (rate({sel}[{window}])))")


def _by(extra: Iterable[str]) -> str:
    """Aggregation labels: always the scope and endpoint, so results stay per environment."""
    labels = [SCOPE_LABEL, "endpoint"]
    labels += [label for label in extra if label not in labels]
    return ", ".join(labels)


def engine_select(labels: Mapping[str, str]) -> engine_queries.Select:
    """How the rules and dashboards select an engine's series: scoped like mlc's own."""

    def select(name: str, regex: Mapping[str, str]) -> str:
        return selector(name, labels, regex)
    return engine_queries.both_spellings(select)
