"""The environment's alerting and recording rules, one rule set per thing watched.

Subjects and their alerts:
- each online or serverless endpoint: SLO burn rates (slo.py), error ratio, saturation, and
  (online only: serverless endpoints scale to zero on purpose) no traffic;
- each drift check: per-feature drift, dataset drift (the alert that starts retraining),
  check failing, check not running;
- each model: training pipeline failures, stale model;
- each online feature view: materialisation lag.

A rule set becomes three files: the PrometheusRule object, the same groups as a plain rules
file for promtool, and the promtool unit tests (promtool_tests.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mlc import metrics

from ...ir import DriftCheck, Endpoint, FeatureView, Model, Origin, ResolvedProject
from ...names import dns_label
from . import engine_queries, engine_traffic, promql, schedules, slo, traffic
from .alerts import Alert, Group, Scenario, Series
from .gotemplate import Label

# A serving queue this full has no headroom left for a burst: the next ones answer 503.
SATURATION = 0.8
# Quiet this long on an endpoint meant to be always on means the traffic went elsewhere.
NO_TRAFFIC_SECONDS = 15 * 60
# How far back a failed training run keeps its alert firing.
FAILURE_WINDOW = 86400
# A scheduled run reports when it ends, a while after its start time: a newly deployed check
# or pipeline is not "missing" until one interval and this much more have passed.
RUN_GRACE = 1800


@dataclass(frozen=True)
class RuleSet:
    name: str  # DNS label: the PrometheusRule's name and the rule and test files' stem
    origin: Origin | None
    groups: tuple[Group, ...]


def rule_sets(project: ResolvedProject) -> list[RuleSet]:
    out = []
    for endpoint in project.endpoints.values():
        if endpoint.mode not in ("batch", "stream"):  # stream: stream_rules.py
            ratios = tuple(slo.recording_rules(project, endpoint))
            alerts = tuple(slo.burn_alerts(project, endpoint) +
                           endpoint_alerts(project, endpoint))
            if not ratios and not alerts:
                continue  # `engine: custom`: nothing of its server is measured
            out.append(RuleSet(f"endpoint-{endpoint.k8s_name}", endpoint.origin, (
                Group(f"endpoint-{endpoint.k8s_name}-slo-ratios", ratios),
                Group(f"endpoint-{endpoint.k8s_name}-alerts", alerts))))
    for check in project.drift_checks.values():
        out.append(RuleSet(f"drift-{check.k8s_name}", check.origin, (
            Group(f"drift-{check.k8s_name}-alerts", tuple(drift_alerts(project, check))),)))
    for model in project.models.values():
        alerts = model_alerts(project, model)
        if alerts:
            out.append(RuleSet(f"model-{model.k8s_name}", model.origin, (
                Group(f"model-{model.k8s_name}-alerts", tuple(alerts)),)))
    for view in project.feature_views.values():
        # One rule set per view: promtool checks every alert of a name in a file together.
        alerts = materialization_alerts(project, view)
        if alerts:
            name = f"feature-view-{dns_label(view.name)}"
            out.append(RuleSet(name, view.origin, (Group(f"{name}-alerts", tuple(alerts)),)))
    return out


# ---------------------------------------------------------------------------------------
# Endpoints


def endpoint_alerts(project: ResolvedProject, endpoint: Endpoint) -> list[Alert]:
    if endpoint.engine == "custom":
        return []  # the user's server: no series of it are known (mlc/engine_metrics.py)
    labels = promql.endpoint_labels(project, endpoint)
    server = traffic.server_labels(labels)
    out = []

    def at(series: tuple[Series, ...], minutes: int) -> Scenario:
        return Scenario(series, minutes * 60, pace_seconds=slo.TEST_PACE)

    engine = endpoint.engine != "mlc"

    def phased(phases: list[tuple[int, traffic.PerMinute]]) -> tuple[Series, ...]:
        if engine:
            return engine_traffic.requests(endpoint, labels, phases)
        return traffic.requests(server, phases)

    def steady(minutes: int, per_minute: traffic.PerMinute) -> tuple[Series, ...]:
        return phased([(minutes, per_minute)])
    # No request since start-up: every counter exported, all at 0.
    idle = at(steady(35, {}), 35)
    limit = endpoint.rollout.gates.max_error_rate
    if limit < 1 and any(o.kind == "availability" for o in slo.objectives(endpoint)):
        ratio = promql.selector(
            slo.record_name(slo.availability(endpoint), slo.ALWAYS_RECORDED), labels)
        window = promql.duration(slo.ALWAYS_RECORDED)

        def share(errors: float) -> tuple[Series, ...]:
            return steady(15, {"200": 100 * (1 - errors), "503": 100 * errors})

        # The first 5xx since start-up, most of every minute's requests from minute 6 on
        # (the series was there at 0 before, as the runtime exports it).
        burst = phased([(5, {"200": 100}), (15, {"200": 80, "503": 920})])

        out.append(Alert(
            name="EndpointHighErrorRatio", expr=f"{ratio} > {promql.number(limit)}",
            severity="warning", for_seconds=slo.ALWAYS_RECORDED,
            summary=(f"Endpoint {endpoint.name} answers more than "
                     f"{promql.number(limit * 100)}% of requests with a server error.",),
            description=(f"Over the last {window} more than {promql.number(limit * 100)}% of "
                         f"the requests to {endpoint.name} got a 5xx answer (the rollout gate "
                         "maxErrorRate). Check the serving pods' logs and the last rollout.",),
            unhealthy=((at(share((1 + limit) / 2), 15), labels), (at(burst, 20), labels)),
            healthy=(at(share(limit / 2), 15), at(share(0), 15), idle)))
    if not engine:
        out.append(_saturated(endpoint, labels))
    if endpoint.mode == "online":
        out.append(_no_traffic(project, endpoint, labels, at, steady, idle, phased))
    return out


def _saturated(endpoint: Endpoint, labels: dict[str, str]) -> Alert:
    """mlc's runtime's queue (other engines export no queue capacity to compare with)."""
    depth = promql.selector(promql.series(metrics.QUEUE_DEPTH), labels)
    capacity = promql.selector(promql.series(metrics.QUEUE_CAPACITY), labels)
    pod = {**labels, "pod": f"{endpoint.k8s_name}-0"}

    def queue(rows: int) -> tuple[Series, ...]:
        return (Series(promql.series(metrics.QUEUE_DEPTH), pod, f"{rows}+0x10"),
                Series(promql.series(metrics.QUEUE_CAPACITY), pod, "256+0x10"))

    def at(series: tuple[Series, ...], minutes: int) -> Scenario:
        return Scenario(series, minutes * 60, pace_seconds=slo.TEST_PACE)

    return Alert(
        name="EndpointSaturated",
        expr=f"max by ({_by(labels)}) ({depth} / {capacity}) > {promql.number(SATURATION)}",
        severity="warning", for_seconds=300,
        summary=(f"Endpoint {endpoint.name} is running out of queue space.",),
        description=(f"A serving pod of {endpoint.name} has had its request queue more than "
                     f"{promql.number(SATURATION * 100)}% full for 5 minutes; when it is full, "
                     "requests are refused with 503. Scale out (autoscaling.maxReplicas) or "
                     "look for a slow model call.",),
        unhealthy=((at(queue(240), 10), labels),),
        healthy=(at(queue(10), 10),))


def _no_traffic(project: ResolvedProject, endpoint: Endpoint, labels: dict[str, str],
                at: Callable[[tuple[Series, ...], int], Scenario],
                steady: Callable[[int, traffic.PerMinute], tuple[Series, ...]],
                idle: Scenario,
                phased: Callable[[list[tuple[int, traffic.PerMinute]]], tuple[Series, ...]],
                ) -> Alert:
    if endpoint.engine == "mlc":
        requests = promql.selector(promql.series(metrics.REQUESTS), labels)
    else:
        requests = engine_queries.counter_selector(
            promql.engine_select(labels), engine_queries.mapping(endpoint).requests)
    window = promql.duration(NO_TRAFFIC_SECONDS)
    return Alert(
        name="EndpointNoTraffic",
        expr=(f"{promql.request_rate(project, endpoint, window)} == 0\nor\n"
              f"absent({requests})"),
        severity="warning", for_seconds=NO_TRAFFIC_SECONDS,
        summary=(f"Endpoint {endpoint.name} has had no requests for "
                 f"{promql.duration(NO_TRAFFIC_SECONDS)}.",),
        description=(f"No request reached {endpoint.name} for "
                     f"{promql.duration(NO_TRAFFIC_SECONDS)}, or its pods export no "
                     "request metrics at all. Check its clients, the Service and the "
                     "NetworkPolicy, and that Prometheus scrapes the pods.",),
        unhealthy=(
            (idle, labels),
            # traffic that stopped: the counters stay, flat
            (at(phased([(2, {"200": 100}), (38, {})]), 40), labels),
            (at((), 35), labels)),  # nothing exported at all
        healthy=(at(steady(35, {"200": 100}), 35),))


# ---------------------------------------------------------------------------------------
# Drift checks


def drift_alerts(project: ResolvedProject, check: DriftCheck) -> list[Alert]:
    labels = {**promql.scope(project), "check": check.name}
    by = _by(labels)
    per_feature = f"{by}, feature, method"

    def sel(metric: metrics.Metric) -> str:
        return promql.selector(promql.series(metric), labels)

    score, threshold = sel(metrics.DRIFT_SCORE), sel(metrics.DRIFT_THRESHOLD)
    feature = check.features[0].field if check.features else metrics.PREDICTION_FEATURE
    method = "psi" if check.method == "auto" else check.method
    feature_labels = {**labels, "feature": feature, "method": method}
    interval = schedules.max_interval_seconds(check.schedule)
    step = _step(interval)

    def gauge(metric: metrics.Metric, value: float, extra: dict[str, str] | None = None,
              ) -> Series:
        return Series(promql.series(metric), {**labels, **(extra or {})},
                      f"{_n(value)}+0x20")

    def at(series: tuple[Series, ...]) -> Scenario:
        # Sampled at the check's own pace, like the overdue alert below: promtool evaluates
        # one rule file at one interval.
        return Scenario(series, 10 * step, interval_seconds=step)

    def scores(value: float) -> tuple[Series, ...]:
        return (gauge(metrics.DRIFT_SCORE, value, feature_labels),
                gauge(metrics.DRIFT_THRESHOLD, 0.2, feature_labels))

    if check.on_drift.action == "retrain":
        then = (f" Retraining starts on its own (pipeline of model {check.model}), at most "
                f"{check.on_drift.max_runs} runs per {promql.duration(check.on_drift.per_seconds)}"
                f" and {promql.duration(check.on_drift.cooldown_seconds)} apart.")
    else:
        then = " Nothing is retrained automatically (onDrift.action is alert)."
    out = [
        Alert(
            name="FeatureDrift",
            expr=(f"max by ({per_feature}) ({score})\n> on ({per_feature})\n"
                  f"max by ({per_feature}) ({threshold})"),
            severity="warning",
            summary=("Feature ", Label("feature"), f" drifted (drift check {check.name})."),
            description=("The ", Label("method"), " drift score of ", Label("feature"),
                         f" in drift check {check.name} (model {check.model}) is above its "
                         "threshold: recent data no longer looks like the reference data."),
            unhealthy=((at(scores(0.5)), feature_labels),),
            healthy=(at(scores(0.05)),)),
        Alert(
            name="DriftDetected",
            expr=f"max by ({by}) ({sel(metrics.DATASET_DRIFT)}) > 0",
            severity="warning",
            summary=(f"Drift check {check.name} found the data drifted.",),
            description=(f"At least {promql.number(check.drift_share * 100)}% of the features "
                         f"that drift check {check.name} watches (model {check.model}) "
                         f"drifted in its last run.{then}",),
            unhealthy=((at((gauge(metrics.DATASET_DRIFT, 1),)), labels),),
            healthy=(at((gauge(metrics.DATASET_DRIFT, 0),)),)),
        Alert(
            name="DriftCheckFailing",
            expr=f"min by ({by}) ({sel(metrics.DRIFT_UP)}) == 0",
            severity="warning",
            summary=(f"Drift check {check.name} failed.",),
            description=(f"The last run of drift check {check.name} did not complete (bad or "
                         f"missing data, missing columns); drift is not being watched. See the "
                         f"logs of the last run of pipeline {check.pipeline}.",),
            unhealthy=((at((gauge(metrics.DRIFT_UP, 0),)), labels),),
            healthy=(at((gauge(metrics.DRIFT_UP, 1),)),)),
    ]
    if interval is not None:
        out.append(_overdue(
            "DriftCheckNotRunning", metrics.DRIFT_LAST_RUN, labels, interval, step,
            summary=(f"Drift check {check.name} has stopped running.",),
            description=(f"Drift check {check.name} has not reported a run for more than "
                         f"{promql.duration(2 * interval)} (its schedule `{check.schedule}` "
                         f"runs it at least every {promql.duration(interval)}). Check the "
                         f"CronWorkflow of pipeline {check.pipeline} and the Pushgateway.",)))
    return out


# ---------------------------------------------------------------------------------------
# Models and feature views


def model_alerts(project: ResolvedProject, model: Model) -> list[Alert]:
    out = []
    if model.pipeline:
        out.append(_training_failed(project, model, model.pipeline))
    served = sorted(e.name for e in project.endpoints.values()
                    if e.model == model.name and e.mode not in ("batch", "stream")
                    and e.engine == "mlc")  # mlc_model_trained_timestamp_seconds
    if served or model.pipeline:
        out.append(_model_stale(project, model, served))
    return out


def _training_failed(project: ResolvedProject, model: Model, pipeline: str) -> Alert:
    labels = {**promql.scope(project, metrics.PIPELINE_RUNS), "pipeline": pipeline}
    runs = promql.series(metrics.PIPELINE_RUNS)
    failed = promql.selector(runs, labels, {"status": "Failed|Error"})
    day = promql.duration(FAILURE_WINDOW)

    def counter(status: str, values: str) -> Series:
        return Series(runs, {**labels, "kind": "training", "status": status}, values)

    def at(samples: int, failures: Series) -> Scenario:
        # One sample every 3 hours: fine enough for a one-day window, and coarse enough
        # that the test evaluates three days of rules quickly.
        return Scenario((counter("Succeeded", "0+1x24"), failures), samples * 3 * 3600,
                        interval_seconds=3 * 3600)

    return Alert(
        name="TrainingPipelineFailed",
        # A counter's first increment is invisible to increase() (there is no earlier
        # sample), so a failure series that appeared within the window counts as well.
        expr=(f"sum by ({_by(labels)}) (increase({failed}[{day}])) > 0\nor\n"
              f"sum by ({_by(labels)}) ({failed} unless {failed} offset {day}) > 0"),
        severity="warning",
        summary=(f"Training of model {model.name} failed.",),
        description=(f"A run of training pipeline {pipeline} failed in the last {day}; model "
                     f"{model.name} was not retrained. See the failed Workflow's logs.",),
        unhealthy=((at(20, counter("Failed", "_x16 1+0x8")), labels),  # the first failure ever
                   (at(22, counter("Error", "1+0x20 2+0x4")), labels)),  # one more failure
        healthy=(at(24, counter("Failed", "1+0x24")),))  # an old failure only


def _model_stale(project: ResolvedProject, model: Model, served: list[str]) -> Alert:
    """The served version's age when the model is served online, else its last training."""
    stale = project.alerts.stale_model_after_seconds
    if served:
        metric, key = metrics.MODEL_TRAINED, "endpoint"
        regex: dict[str, str] | None = {"endpoint": promql.one_of(served)}
        where, extra = f"served by {', '.join(served)}", {"model": model.name,
                                                          "model_version": "1"}
    else:
        assert model.pipeline
        metric, key, regex = metrics.PIPELINE_LAST_SUCCESS, "pipeline", None
        where, extra = f"last trained by pipeline {model.pipeline}", {"kind": "training"}
    scope = promql.scope(project, metric)
    fired = {**scope, key: served[0] if served else str(model.pipeline)}
    selected = promql.selector(promql.series(metric), scope if regex else fired, regex)
    # At most the pace of the training test beside it: one rule file, one evaluation pace.
    step = min(_step(stale), 3 * 3600)
    steps = stale // step + 3

    def trained(values: str) -> Scenario:
        series = Series(promql.series(metric), {**fired, **extra}, values)
        return Scenario((series,), steps * step, interval_seconds=step)

    return Alert(
        name="ModelStale", severity="warning",
        expr=f"time() - max by ({_by(fired)}) ({selected}) > {stale}",
        summary=(f"Model {model.name} is older than {promql.duration(stale)}.",),
        description=(f"The version of model {model.name} {where} was trained more than "
                     f"{promql.duration(stale)} ago (alerts.staleModelAfter). Check that its "
                     "training runs, passes its gates and is promoted.",),
        labels={"model": model.name},
        unhealthy=((trained(f"0+0x{steps}"), fired),),  # trained at time 0
        healthy=(trained(f"0+{step}x{steps}"),))  # trained a moment ago, always


def materialization_alerts(project: ResolvedProject, view: FeatureView) -> list[Alert]:
    pipelines = [p for p in project.pipelines.values() if p.kind == "materialization"
                 and p.schedule == view.materialization_schedule]
    interval = schedules.max_interval_seconds(view.materialization_schedule)
    if not view.online or not pipelines or interval is None:
        return []
    pipeline = pipelines[0].name
    labels = {**promql.scope(project, metrics.PIPELINE_LAST_SUCCESS), "pipeline": pipeline}
    ttl = f", its ttl is {promql.duration(view.ttl_seconds)}" if view.ttl_seconds else ""
    return [_overdue(
        "MaterializationLagging", metrics.PIPELINE_LAST_SUCCESS, labels, interval,
        _step(interval), static={"feature_view": view.name},
        extra={"kind": "materialization"},
        summary=(f"Online features of view {view.name} are going stale.",),
        description=(f"Feature view {view.name} was last materialised to the online store more "
                     f"than {promql.duration(2 * interval)} ago (pipeline {pipeline}, schedule "
                     f"`{view.materialization_schedule}`{ttl}); online lookups serve old "
                     "values. Check the pipeline's CronWorkflow and its last runs.",))]


def _overdue(name: str, metric: metrics.Metric, labels: dict[str, str], interval: int,
             step: int, *, summary: tuple[str, ...], description: tuple[str, ...],
             static: dict[str, str] | None = None,
             extra: dict[str, str] | None = None) -> Alert:
    """A timestamp gauge older than two intervals, or missing, for one more (and a grace)."""
    sel = promql.selector(promql.series(metric), labels)
    steps = 4 * interval // step + 2
    last = {**labels, **(extra or {})}

    def at(series: tuple[Series, ...]) -> Scenario:
        return Scenario(series, steps * step, interval_seconds=step)
    return Alert(
        name=name, severity="warning", for_seconds=interval + RUN_GRACE,
        expr=f"time() - max by ({_by(labels)}) ({sel}) > {2 * interval}\nor\nabsent({sel})",
        summary=summary, description=description, labels=static or {},
        unhealthy=((at((Series(promql.series(metric), last, f"0+0x{steps}"),)), labels),
                   (at(()), labels)),  # never reported at all
        healthy=(at((Series(promql.series(metric), last, f"0+{step}x{steps}"),)),))


def _failed_run(name: str, metric: metrics.Metric, labels: dict[str, str], step: int, *,
                summary: tuple[str, ...], description: tuple[str, ...]) -> Alert:
    """A pushed `up` gauge at 0: the last run of a scheduled job could not complete."""
    up = promql.series(metric)

    def at(values: str) -> Scenario:
        return Scenario((Series(up, labels, values),), 10 * step, interval_seconds=step)
    return Alert(
        name=name, severity="warning",
        expr=f"min by ({_by(labels)}) ({promql.selector(up, labels)}) == 0",
        summary=summary, description=description,
        unhealthy=((at("0+0x20"), labels),), healthy=(at("1+0x20"),))


def _step(interval: int | None) -> int:
    """A test sampling step: about 20 samples per interval, in whole minutes, 1m to 1d."""
    if interval is None:
        return 60
    return min(86400, max(60, interval // 20 // 60 * 60))


def _by(labels: dict[str, str]) -> str:
    return ", ".join(labels)


def _n(value: float) -> str:
    return promql.number(value)


def per_endpoint(project: ResolvedProject, prefix: str, wanted: Callable[[Endpoint], bool],
                 alerts: Callable[[ResolvedProject, Endpoint], list[Alert]]) -> list[RuleSet]:
    """One rule set `<prefix>-<endpoint>` with one group of `alerts` for every endpoint that
    `wanted` picks (batch scoring, A/B verdicts)."""
    out = []
    for endpoint in project.endpoints.values():
        if wanted(endpoint):
            name = f"{prefix}-{endpoint.k8s_name}"
            out.append(RuleSet(name, endpoint.origin, (
                Group(f"{name}-alerts", tuple(alerts(project, endpoint))),)))
    return out
