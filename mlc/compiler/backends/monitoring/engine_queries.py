"""PromQL over a non-mlc serving engine's own series (the table in mlc/engine_metrics.py).

One function per contract quantity; `promql` (rules, alerts, dashboards), the rollout gates
(`serving/analysis.py`, which the KServe gate driver reads too) and KEDA's query
(`serving/kserve.py`) call these for an endpoint whose `engine` is not `mlc`, so every
consumer follows the engine. Each builder is given a `Select`: how the consumer writes a
selector (the monitoring rules scope by namespace and endpoint; a gate adds the new pods'
hash, written for Argo Rollouts' templating). A quantity the engine cannot give raises
`Unmeasurable`: resolve refuses such settings first (mlc/compiler/resolve/engine_metrics.py),
so reaching it is a compiler bug, never a query over series that do not exist.

The engine's series carry `endpoint` because the PodMonitor sets it (servicemonitors.py), and
`namespace` from the target; the engine's own labels are used only to narrow (`match`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from mlc import engine_metrics as em

from ...ir import Endpoint

# (metric name, or "" for a selector by `__name__`; regex matchers) -> the selector's text
Select = Callable[[str, Mapping[str, str]], str]
BY = ("namespace", "endpoint")


class Unmeasurable(ValueError):
    """The engine's series do not give the quantity asked for."""


def mapping(endpoint: Endpoint) -> em.EngineMetrics:
    """The endpoint's engine's series: the engine's table, or a custom server's own
    `container.metrics`."""
    es = endpoint.engine_serving
    server = es.container.metrics if es is not None and es.container is not None else None
    if endpoint.engine == "custom" and server is not None:
        return em.custom(server, server.port)
    return em.for_engine(endpoint.engine)


def _need(endpoint: Endpoint, quantity: str) -> em.EngineMetrics:
    m = mapping(endpoint)
    why = m.why_not(quantity)
    if why:
        raise Unmeasurable(f"endpoint {endpoint.name} (engine {endpoint.engine}): "
                           f"{quantity}: {why}")
    return m


def _by(by: Iterable[str]) -> str:
    return ", ".join([*BY, *(b for b in by if b not in BY)])


def spellings(name: str) -> tuple[str, ...]:
    """The names a series of `name` may be stored under. The Python client's OpenMetrics
    exposition (prometheus_client 0.24-0.26, which a Prometheus that negotiates OpenMetrics
    1.0.0 gets) writes `:` in a sample's name as `_`, though `:` is a valid name character:
    vLLM's `vllm:...` series are stored as `vllm_...` then, as text format 0.0.4 keeps them."""
    if ":" not in name:
        return (name,)
    return (name, name.replace(":", "_"))


def both_spellings(select: Select) -> Select:
    """`select`, matching a name with `:` in either of its stored spellings (`spellings`)."""

    def spelled(name: str, regex: Mapping[str, str]) -> str:
        names = spellings(name) if name else ()
        if len(names) < 2:
            if name == "" and "__name__" in regex:
                every = [n for part in regex["__name__"].split("|") for n in spellings(part)]
                return select("", {**regex, "__name__": "|".join(every)})
            return select(name, regex)
        return select("", {"__name__": "|".join(names), **regex})
    return spelled


def counter_selector(select: Select, c: em.Counter | em.Gauge,
                     match: Mapping[str, str] | None = None) -> str:
    regex = dict(c.match)
    regex.update(match or {})
    if len(c.names) == 1:
        return select(c.names[0], regex)
    return select("", {"__name__": "|".join(c.names), **regex})


def rate_sum(select: Select, c: em.Counter, window: str, by: str | None) -> str:
    """`sum by (by) (rate(...))` of the counters `c` names (`sum(...)` where `by` is None).

    Counters of several names are rated one by one and told apart by a label before they
    are summed: rate() drops the name, and two series left with the same labels in one
    rate() are an error; `or` keeps the others where one name has no series yet.
    """
    group = "sum" if by is None else f"sum by ({by})"
    if len(c.names) == 1:
        return f"{group} (rate({counter_selector(select, c)}[{window}]))"
    parts = [f'label_replace(rate({select(name, dict(c.match))}[{window}]), '
             f'"engine_series", "{i}", "", "")' for i, name in enumerate(c.names)]
    return f"{group} (\n    " + "\n    or\n    ".join(parts) + "\n  )"


def _factor(unit: str) -> str:
    return "" if unit == "seconds" else f" * {_number(em.TO_SECONDS[unit])}"


def _number(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _by_labels(c: em.Counter | em.Gauge, by: Iterable[str]) -> list[str]:
    """The aggregation labels the engine's series have (mlc's `code` or `route` have no
    counterpart on every engine: they are left out where the series lack them)."""
    return [b for b in by if b in c.labels]


def request_rate(endpoint: Endpoint, select: Select, window: str, *, by: Iterable[str] = (),
                 errors_only: bool = False) -> str:
    """Requests per second over `window`; `errors_only`: those the server failed."""
    m = _need(endpoint, "errors" if errors_only else "requests")
    c = m.server_errors if errors_only else m.requests
    return rate_sum(select, c, window, _by(_by_labels(c, by)))


def _answered(m: em.EngineMetrics) -> em.Counter:
    return m.answered or m.requests


def error_ratio(endpoint: Endpoint, select: Select, window: str) -> str:
    """Share of answers that were the server's failure; NaN (0/0) without traffic, 0 where
    the error series is absent but answers are there (as for mlc's own runtime)."""
    m = _need(endpoint, "errors")
    errors = rate_sum(select, m.server_errors, window, _by(()))
    total = rate_sum(select, _answered(m), window, _by(()))
    return f"(\n  {errors}\n  or\n  0 * {total}\n)\n/\n{total}"


def error_rate_gate(endpoint: Endpoint, select: Select, window: str) -> str:
    """The gate's form: one unlabelled sample whatever the data (0/0 is NaN)."""
    m = _need(endpoint, "errors")
    errors = rate_sum(select, m.server_errors, window, None)
    total = rate_sum(select, _answered(m), window, None)
    return f"({errors} or vector(0))\n/\n({total} or vector(0))\n"


def histogram_bucket(h: em.Histogram, threshold_seconds: float) -> float:
    """The engine's bucket (in its unit) a threshold in seconds is measured at: the smallest
    at or above it, else the largest."""
    want = threshold_seconds / em.TO_SECONDS[h.unit]
    for bound in h.buckets:
        if bound >= want * (1 - 1e-9):
            return bound
    return h.buckets[-1]


def le_regex(bound: float) -> str:
    """The `le` texts an exporter may write for `bound` (Python: 1.0, Go: 1, C++: %g)."""
    texts = {repr(float(bound)), _number(bound), f"{bound:g}", f"{bound:.17g}"}
    return "|".join(sorted(t.replace(".", "\\.").replace("+", "\\+") for t in texts))


def _slow_ratio(h: em.Histogram, select: Select, window: str, threshold_seconds: float,
                by: Iterable[str] = ()) -> str:
    bound = histogram_bucket(h, threshold_seconds)
    fast = select(f"{h.name}_bucket", {**dict(h.match), "le": le_regex(bound)})
    total = select(f"{h.name}_count", dict(h.match))
    group = _by(by)
    return (f"1 - (\n  sum by ({group}) (rate({fast}[{window}]))\n  /\n"
            f"  sum by ({group}) (rate({total}[{window}]))\n)")


def latency_bucket_seconds(endpoint: Endpoint, threshold_seconds: float,
                           quantity: str = "latency_slo") -> float:
    """The bucket, in seconds, that the objective is measured at on this engine."""
    h = _histogram(endpoint, quantity)
    return histogram_bucket(h, threshold_seconds) * em.TO_SECONDS[h.unit]


def _histogram(endpoint: Endpoint, quantity: str) -> em.Histogram:
    m = _need(endpoint, quantity)
    h = m.time_to_first_token if quantity == "time_to_first_token" else m.latency
    assert isinstance(h, em.Histogram)
    return h


def slow_ratio(endpoint: Endpoint, select: Select, window: str,
               threshold_seconds: float) -> str:
    """Share of requests slower than the engine's bucket at `threshold_seconds`."""
    return _slow_ratio(_histogram(endpoint, "latency_slo"), select, window, threshold_seconds)


def latency_quantile(endpoint: Endpoint, select: Select, quantile: float, window: str, *,
                     by: Iterable[str] = ()) -> str:
    """The request latency's quantile in seconds, from the engine's histogram, or the largest
    pod's own summary quantile."""
    m = _need(endpoint, "latency_quantile")
    h = m.latency
    if isinstance(h, em.Summary):
        if not any(abs(q - quantile) < 1e-12 for q in h.quantiles):
            raise Unmeasurable(f"{m.engine}'s summary has no quantile {quantile}")
        sel = select(h.name, {"quantile": _number(quantile).replace(".", "\\.")})
        return f"max by ({_by(by)}) ({sel}){_factor(h.unit)}"
    sel = select(f"{h.name}_bucket", dict(h.match))
    return (f"histogram_quantile({_number(quantile)}, "
            f"sum by ({_by(('le', *by))}) (rate({sel}[{window}]))){_factor(h.unit)}")


def latency_gate(endpoint: Endpoint, select: Select, quantile: float, window: str) -> str:
    """The p99 gate: one sample, NaN where there is nothing to measure."""
    m = _need(endpoint, "latency_quantile")
    h = m.latency
    if isinstance(h, em.Summary):
        sel = select(h.name, {"quantile": _number(quantile).replace(".", "\\.")})
        return f"max({sel}){_factor(h.unit)}\nor vector(NaN)\n"
    sel = select(f"{h.name}_bucket", dict(h.match))
    return (f"histogram_quantile({_number(quantile)},\n"
            f"  sum by (le) (rate({sel}[{window}]))){_factor(h.unit)}\nor vector(NaN)\n")


def inflight(endpoint: Endpoint, select: Select, *, by: Iterable[str] = ()) -> str:
    m = _need(endpoint, "inflight")
    return f"sum by ({_by(by)}) ({counter_selector(select, m.inflight)})"


def queue(endpoint: Endpoint, select: Select, *, by: Iterable[str] = ()) -> str:
    m = _need(endpoint, "queue")
    return f"sum by ({_by(by)}) ({counter_selector(select, m.queue)})"


# --- LLM serving -------------------------------------------------------------------------


def ttft_quantile(endpoint: Endpoint, select: Select, quantile: float, window: str) -> str:
    h = _histogram(endpoint, "time_to_first_token")
    sel = select(f"{h.name}_bucket", dict(h.match))
    return (f"histogram_quantile({_number(quantile)}, "
            f"sum by ({_by(('le',))}) (rate({sel}[{window}]))){_factor(h.unit)}")


def ttft_slow_ratio(endpoint: Endpoint, select: Select, window: str,
                    threshold_seconds: float) -> str:
    """Share of requests whose first token came later than the threshold's bucket."""
    return _slow_ratio(_histogram(endpoint, "time_to_first_token"), select, window,
                       threshold_seconds)


def ttft_gate(endpoint: Endpoint, select: Select, quantile: float, window: str) -> str:
    h = _histogram(endpoint, "time_to_first_token")
    sel = select(f"{h.name}_bucket", dict(h.match))
    return (f"histogram_quantile({_number(quantile)},\n"
            f"  sum by (le) (rate({sel}[{window}]))){_factor(h.unit)}\nor vector(NaN)\n")


def tokens_per_second(endpoint: Endpoint, select: Select, window: str) -> str:
    """Output tokens generated per second by the endpoint (all its pods)."""
    m = _need(endpoint, "tokens_per_second")
    return rate_sum(select, m.output_tokens, window, _by(()))


def slow_token_ratio(endpoint: Endpoint, select: Select, window: str,
                     min_tokens_per_second: float) -> str:
    """Share of output tokens generated slower than `min_tokens_per_second` (time per output
    token above 1/min, at the engine's next bucket up)."""
    m = _need(endpoint, "tokens_per_second")
    h = m.time_per_output_token
    if h is None:
        raise Unmeasurable(f"{m.engine} has no time-per-output-token histogram")
    return _slow_ratio(h, select, window, 1 / min_tokens_per_second)


def tpot_gate(endpoint: Endpoint, select: Select, quantile: float, window: str) -> str:
    """The quantile of the time per output token, in seconds (a tokens-per-second floor is
    a ceiling on it: at least N tokens per second is at most 1/N seconds a token)."""
    m = _need(endpoint, "tokens_per_second")
    h = m.time_per_output_token
    if h is None:
        raise Unmeasurable(f"{m.engine} has no time-per-output-token histogram")
    sel = select(f"{h.name}_bucket", dict(h.match))
    return (f"histogram_quantile({_number(quantile)},\n"
            f"  sum by (le) (rate({sel}[{window}]))){_factor(h.unit)}\nor vector(NaN)\n")
