"""SLO alerts: multi-window, multi-burn-rate, as chapter 5 of Google's SRE workbook sets out.

An endpoint has two objectives: availability (share of requests not answered 5xx) and latency
(share of requests faster than `slo.latency`). Each has an error budget, 1 - target. A burn
rate of 1 spends exactly the budget over the SLO window. The workbook's table, for 30 days:

    severity  long window  short window  burn rate  budget spent when it fires
    page      1h           5m            14.4       2%
    page      6h           30m           6          5%
    ticket    1d           2h            3          10%
    ticket    3d           6h            1          10%

An alert fires when both windows burn faster than the rate: the long window proves it is
significant, the short one that it is still happening (so the alert resets soon after a fix).
For another SLO window the windows scale with it and the rates stay (Pyrra does the same),
so each line still means "this share of the budget is gone". Pages are `critical`, tickets
`warning`. A line whose threshold would be 100% errors or more can never fire and is left out.

The error ratios per window are recording rules: each alert then compares stored series
instead of re-reading a month of raw counters every evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlc import metrics

from ...ir import Endpoint, ResolvedProject
from . import engine_queries, engine_traffic, promql, traffic
from .alerts import Alert, Recording, Scenario, Series, Severity

_WORKBOOK_WINDOW = 30 * 86400
_WORKBOOK = (  # long window (s), short window (s), burn rate, severity
    (3600, 300, 14.4, "critical"),
    (6 * 3600, 1800, 6.0, "critical"),
    (86400, 2 * 3600, 3.0, "warning"),
    (3 * 86400, 6 * 3600, 1.0, "warning"),
)
# Below a few scrape intervals a rate() has too few samples to mean anything.
_MIN_WINDOW = 300
# The error ratio the plain error-ratio alert and the dashboards read is always recorded.
ALWAYS_RECORDED = 300
# Synthetic traffic for the tests: requests per minute, sampled every minute. The rules are
# evaluated every 5 minutes in the tests (the shortest rate window and `for` of an endpoint's
# rules): an endpoint has many recording rules, and promtool evaluates all of them each time.
_RPM = 1200
TEST_PACE = 300


@dataclass(frozen=True)
class BurnWindow:
    long: int
    short: int
    rate: float
    severity: Severity


@dataclass(frozen=True)
class Objective:
    """One SLO of an endpoint: what counts as bad, and the budget for it."""

    kind: str  # "availability", "latency"; LLM engines: "ttft", "tokens"
    target_percent: float
    record_metric: str  # the middle part of the recording rule name

    @property
    def budget(self) -> float:
        return round(1 - self.target_percent / 100, 12)


def burn_windows(window_seconds: int) -> list[BurnWindow]:
    out = []
    for long, short, rate, severity in _WORKBOOK:
        scaled_long = max(_MIN_WINDOW, _minutes(long * window_seconds / _WORKBOOK_WINDOW))
        scaled_short = max(_MIN_WINDOW, _minutes(short * window_seconds / _WORKBOOK_WINDOW))
        out.append(BurnWindow(scaled_long, min(scaled_short, scaled_long), rate, severity))
    return out


def _minutes(seconds: float) -> int:
    return int(round(seconds / 60)) * 60


def availability(endpoint: Endpoint) -> Objective:
    requests = metrics.REQUESTS.name.removesuffix("_total")
    return Objective("availability", endpoint.slo.availability, f"{requests}:error_ratio")


def latency(endpoint: Endpoint) -> Objective:
    return Objective("latency", endpoint.slo.latency_target,
                     f"{metrics.REQUEST_DURATION.name}:slow_ratio")


def objectives(endpoint: Endpoint) -> list[Objective]:
    """The endpoint's objectives; of another engine's, those its series can measure (resolve
    refuses, or warns of, the others: mlc/compiler/resolve/engine_metrics.py)."""
    out = [availability(endpoint), latency(endpoint)]
    if endpoint.engine == "mlc":
        return out
    m = engine_queries.mapping(endpoint)
    out = [o for o in out
           if m.why_not("errors" if o.kind == "availability" else "latency_slo") is None]
    s = endpoint.slo
    if s.ttft_seconds is not None and s.ttft_target is not None:
        out.append(Objective("ttft", s.ttft_target, "time_to_first_token:slow_ratio"))
    if s.tokens_per_second is not None and s.tokens_per_second_target is not None:
        out.append(Objective("tokens", s.tokens_per_second_target, "output_tokens:slow_ratio"))
    return out


def _ratio(project: ResolvedProject, endpoint: Endpoint, objective: Objective,
           window: str) -> str:
    """The recorded bad-request (or bad-token) ratio of one objective over `window`."""
    if objective.kind == "availability":
        return promql.error_ratio(project, endpoint, window)
    if objective.kind == "latency":
        return promql.slow_ratio(project, endpoint, window, promql.latency_bucket(
            endpoint.slo.latency_seconds, endpoint))
    select = promql.engine_select(promql.endpoint_labels(project, endpoint))
    if objective.kind == "ttft":
        assert endpoint.slo.ttft_seconds is not None
        return engine_queries.ttft_slow_ratio(endpoint, select, window,
                                              endpoint.slo.ttft_seconds)
    assert endpoint.slo.tokens_per_second is not None
    return engine_queries.slow_token_ratio(endpoint, select, window,
                                           endpoint.slo.tokens_per_second)


def record_name(objective: Objective, window: int) -> str:
    return f"endpoint:{objective.record_metric}_rate{promql.duration(window)}"


def recorded_windows(endpoint: Endpoint) -> list[int]:
    windows = {ALWAYS_RECORDED}
    for w in burn_windows(endpoint.slo.window_seconds):
        windows.update((w.long, w.short))
    return sorted(windows)


def recording_rules(project: ResolvedProject, endpoint: Endpoint) -> list[Recording]:
    out = []
    for objective in objectives(endpoint):
        for window in recorded_windows(endpoint):
            text = promql.duration(window)
            expr = _ratio(project, endpoint, objective, text)
            out.append(Recording(record_name(objective, window), expr))
    return out


def burn_alerts(project: ResolvedProject, endpoint: Endpoint) -> list[Alert]:
    """One rule per line of the table, per objective; the lines share the alert name.

    The tests feed traffic whose share of bad requests lies halfway between consecutive
    thresholds (and above the highest, and below the lowest): each line must fire on every
    share above its own threshold and stay silent on every share below it, which pins each
    threshold from both sides. Every line also stays silent on a service that never fails
    and on one that gets no requests at all (its ratios are 0/0).
    """
    out = []
    labels = promql.endpoint_labels(project, endpoint)
    for objective in objectives(endpoint):
        lines = [w for w in burn_windows(endpoint.slo.window_seconds)
                 if _limit(objective, w) < 1]
        points = [1.0, *sorted({_limit(objective, w) for w in lines}, reverse=True), 0.0]
        shares = [(a + b) / 2 for a, b in zip(points, points[1:], strict=False)]
        scenarios = [(share, _scenario(project, endpoint, objective, share))
                     for share in shares]
        quiet = [_scenario(project, endpoint, objective, 0.0),
                 _scenario(project, endpoint, objective, 0.0, rpm=0)]
        for w in lines:
            limit = _limit(objective, w)
            out.append(Alert(
                name=f"Endpoint{objective.kind.capitalize()}BudgetBurn",
                expr=(f"(\n  {_over(objective, w.long, limit, labels)}\nand\n"
                      f"  {_over(objective, w.short, limit, labels)}\n)"),
                severity=w.severity,
                summary=_summary(endpoint, objective, w),
                description=_description(endpoint, objective, w),
                unhealthy=tuple((s, labels) for share, s in scenarios if share > limit),
                healthy=(*(s for share, s in scenarios if share <= limit), *quiet),
                labels={"slo": objective.kind, "long_window": promql.duration(w.long),
                        "short_window": promql.duration(w.short)}))
    return out


def _limit(objective: Objective, w: BurnWindow) -> float:
    return round(w.rate * objective.budget, 12)


def _over(objective: Objective, window: int, limit: float, labels: dict[str, str]) -> str:
    """The recorded bad-request ratio over `window`, where it is above `limit`."""
    selector = promql.selector(record_name(objective, window), labels)
    return f"{selector} > {promql.number(limit)}"


def _summary(endpoint: Endpoint, objective: Objective, w: BurnWindow) -> tuple[str, ...]:
    pace = "fast" if w.severity == "critical" else "steadily"
    return (f"Endpoint {endpoint.name} is spending its {objective.kind} error budget {pace}.",)


def _description(endpoint: Endpoint, objective: Objective, w: BurnWindow) -> tuple[str, ...]:
    slo = endpoint.slo
    if objective.kind == "availability":
        what = f"Objective: {promql.number(slo.availability)}% of requests succeed (not 5xx)"
    elif objective.kind in ("ttft", "tokens"):
        what = _llm_what(endpoint, objective)
    else:
        bucket = promql.latency_bucket(slo.latency_seconds, endpoint)
        what = (f"Objective: {promql.number(slo.latency_target)}% of requests take at most "
                f"{promql.number(bucket)}s")
        if abs(bucket - slo.latency_seconds) > 1e-12:
            what += (f" (ml.yaml asks for {promql.number(slo.latency_seconds)}s, which is not a "
                     "bucket of the latency histogram: measured at the next bucket up)")
    days = promql.duration(slo.window_seconds)
    spent = w.rate * w.long / slo.window_seconds * 100
    return (f"{what}, over {days}. Over the last {promql.duration(w.long)} and the last "
            f"{promql.duration(w.short)}, bad requests arrived at more than "
            f"{promql.number(w.rate)} times the rate the budget allows: "
            f"{promql.number(round(spent, 1))}% of the {days} budget is gone in "
            f"{promql.duration(w.long)}.",)


def _llm_what(endpoint: Endpoint, objective: Objective) -> str:
    m = engine_queries.mapping(endpoint)
    slo = endpoint.slo
    if objective.kind == "ttft":
        assert slo.ttft_seconds is not None and m.time_to_first_token is not None
        bound = engine_queries.histogram_bucket(m.time_to_first_token, slo.ttft_seconds)
        return (f"Objective: {promql.number(objective.target_percent)}% of requests get their "
                f"first token within {promql.number(bound)}s")
    assert slo.tokens_per_second is not None and m.time_per_output_token is not None
    bound = engine_queries.histogram_bucket(m.time_per_output_token, 1 / slo.tokens_per_second)
    return (f"Objective: {promql.number(objective.target_percent)}% of output tokens come "
            f"within {promql.number(bound)}s of the one before (at least "
            f"{promql.number(slo.tokens_per_second)} tokens per second)")


def _scenario(project: ResolvedProject, endpoint: Endpoint, objective: Objective,
              share: float, rpm: int = _RPM) -> Scenario:
    """Traffic of which a constant `share` is bad (5xx, or slower than the objective)."""
    base = traffic.server_labels(promql.endpoint_labels(project, endpoint))
    # The share is the same in every window, and rate() needs only two samples in one, so
    # 15 minutes of traffic exercises the 3-day windows as well as the 5-minute ones.
    steps = 15
    good_per_minute = rpm * (1 - share)
    if objective.kind in ("ttft", "tokens"):
        labels = promql.endpoint_labels(project, endpoint)
        m = engine_queries.mapping(endpoint)
        if objective.kind == "ttft":
            assert endpoint.slo.ttft_seconds is not None
            h, threshold = m.time_to_first_token, endpoint.slo.ttft_seconds
        else:
            assert endpoint.slo.tokens_per_second is not None
            h, threshold = m.time_per_output_token, 1 / endpoint.slo.tokens_per_second
        series = engine_traffic.latency(endpoint, labels, threshold, good_per_minute, rpm,
                                        steps, histogram=h)
    elif endpoint.engine != "mlc":
        labels = promql.endpoint_labels(project, endpoint)
        if objective.kind == "availability":
            rates = {"200": good_per_minute, "500": rpm * share} if rpm else {}
            series = engine_traffic.requests(endpoint, labels, [(steps, rates)])
        else:
            series = engine_traffic.latency(endpoint, labels, endpoint.slo.latency_seconds,
                                            good_per_minute, rpm, steps)
    elif objective.kind == "availability":
        rates = {"200": good_per_minute, "500": rpm * share} if rpm else {}
        series = traffic.requests(base, [(steps, rates)])
    else:
        bucket = promql.latency_bucket(endpoint.slo.latency_seconds, endpoint)
        series = (
            Series(promql.series(metrics.REQUEST_DURATION, "_bucket"),
                   {**base, "route": "/predict", "le": repr(float(bucket))},
                   f"0+{promql.number(good_per_minute)}x{steps}"),
            Series(promql.series(metrics.REQUEST_DURATION, "_count"),
                   {**base, "route": "/predict"}, f"0+{rpm}x{steps}"),
        )
    return Scenario(series, eval_seconds=steps * 60, pace_seconds=TEST_PACE)
