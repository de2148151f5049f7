"""A Grafana dashboard per serving endpoint, as a ConfigMap that Grafana's sidecar loads.

The sidecar (kube-prometheus-stack's default) picks up every ConfigMap labelled
`grafana_dashboard: "1"`. The JSON is serialized here with sorted keys, so the ConfigMap's
bytes are as deterministic as the rest of the tree. Every query comes from the same builders
and contract metrics as the alert rules, and reads the SLO ratios they record.

Grafana substitutes `$name` variables even inside queries, with no way to escape `$`; the
names that end up in queries (project, endpoint, drift check) are restricted by the ml.yaml
schema to letters, digits, `-` and `_`, so none can carry one.
"""

from __future__ import annotations

import json
from typing import Any

from mlc import engine_metrics, metrics

from ...ir import Endpoint, ResolvedProject
from ...names import dns_label, short_hash
from ..objects import metadata
from . import engine_queries, promql, slo

RATE = "$__rate_interval"  # Grafana's: at least four scrape intervals, whatever the zoom
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SIDECAR_LABEL = {"grafana_dashboard": "1"}
_WIDTH, _HEIGHT, _COLUMNS = 8, 8, 3


def config_map(project: ResolvedProject, endpoint: Endpoint) -> dict[str, Any]:
    text = json.dumps(dashboard(project, endpoint), sort_keys=True, indent=2,
                      ensure_ascii=False) + "\n"
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(project, dns_label(endpoint.k8s_name, "dashboard"),
                             origin=endpoint.origin, component="monitoring",
                             extra_labels=SIDECAR_LABEL),
        "data": {f"{endpoint.k8s_name}.json": text},
    }


def dashboard(project: ResolvedProject, endpoint: Endpoint) -> dict[str, Any]:
    panels = [dict(p, id=i + 1, gridPos={"h": _HEIGHT, "w": _WIDTH,
                                         "x": (i % _COLUMNS) * _WIDTH,
                                         "y": (i // _COLUMNS) * _HEIGHT})
              for i, p in enumerate(_panels(project, endpoint))]
    return {
        # Stable across compiles and distinct per project, environment and endpoint.
        "uid": "mlc-" + short_hash(f"{project.name}/{project.env}/{endpoint.name}"),
        "title": f"{project.name} / {endpoint.name} ({project.env})",
        "tags": ["mlc", project.name, project.env],
        "editable": False,  # generated: edits belong in ml.yaml
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "1m",
        "templating": {"list": [{"name": "datasource", "label": "Data source",
                                 "type": "datasource", "query": "prometheus"}]},
        "panels": panels,
    }


def _panels(project: ResolvedProject, endpoint: Endpoint) -> list[dict[str, Any]]:
    if endpoint.engine != "mlc":
        return _engine_panels(project, endpoint)
    labels = promql.endpoint_labels(project, endpoint)

    def sel(metric: metrics.Metric, suffix: str = "") -> str:
        return promql.selector(promql.series(metric, suffix), labels)

    window = promql.duration(endpoint.slo.window_seconds)
    bucket = promql.latency_bucket(endpoint.slo.latency_seconds, endpoint)
    by_pod = "namespace, endpoint, pod"
    burn = []
    for objective in slo.objectives(endpoint):
        if objective.budget <= 0:
            continue  # a 100% objective has no budget to burn: any bad request breaks it
        for w in slo.burn_windows(endpoint.slo.window_seconds)[::2]:  # one page, one ticket
            record = promql.selector(slo.record_name(objective, w.long), labels)
            burn.append((f"{record} / {promql.number(objective.budget)}",
                         f"{objective.kind} over {promql.duration(w.long)}"))
    panels = [
        _stat(f"Availability over {window} (objective {promql.number(endpoint.slo.availability)}%)",
              f"1 - (\n{promql.error_ratio(project, endpoint, window)}\n)", "percentunit"),
        _stat(f"Requests within {promql.number(bucket)}s over {window} "
              f"(objective {promql.number(endpoint.slo.latency_target)}%)",
              f"1 - (\n{promql.slow_ratio(project, endpoint, window, bucket)}\n)",
              "percentunit"),
        _series("Error budget burn rate (1 = on budget)", burn, "none"),
        _series("Requests per second by status code",
                [(promql.request_rate(project, endpoint, RATE, by=("code",)), "{{code}}")],
                "reqps"),
        _series("Server error ratio (5xx)",
                [(promql.error_ratio(project, endpoint, RATE), "5xx")], "percentunit"),
        _series("Latency", [(promql.latency_quantile(project, endpoint, q, RATE), f"p{p}")
                            for q, p in ((0.5, "50"), (0.9, "90"), (0.99, "99"))], "s"),
        _series("Requests in flight per pod",
                [(f"sum by ({by_pod}) ({sel(metrics.INFLIGHT)})", "{{pod}}")], "none"),
        _series("Queue fill per pod",
                [(f"max by ({by_pod}) ({sel(metrics.QUEUE_DEPTH)} / "
                  f"{sel(metrics.QUEUE_CAPACITY)})", "{{pod}}")], "percentunit"),
        _series("Rows per model call (dynamic batching)",
                [(f"histogram_quantile({q}, sum by (namespace, endpoint, le) "
                  f"(rate({sel(metrics.BATCH_SIZE, '_bucket')}[{RATE}])))", f"p{p}")
                 for q, p in (("0.5", "50"), ("0.99", "99"))], "none"),
        _series("Model versions served (pods)",
                [(f"sum by (namespace, endpoint, model_version, alias) "
                  f"({sel(metrics.MODEL_INFO)})", "v{{model_version}} {{alias}}"),
                 (f"sum by (namespace, endpoint) ({sel(metrics.MODEL_READY)})", "ready")],
                "none"),
        _series("Age of the served model",
                [(f"time() - max by (namespace, endpoint) ({sel(metrics.MODEL_TRAINED)})",
                  "age")], "s"),
        _heatmap("Predictions",
                 f"sum by (le) (increase({sel(metrics.PREDICTIONS, '_bucket')}[{RATE}]))"),
    ]
    for check in project.drift_checks.values():
        if check.endpoint == endpoint.name:
            check_labels = {**promql.scope(project), "check": check.name}
            per = "namespace, check, feature"
            score = promql.selector(promql.series(metrics.DRIFT_SCORE), check_labels)
            limit = promql.selector(promql.series(metrics.DRIFT_THRESHOLD), check_labels)
            panels.append(_series(
                f"Drift score by feature (check {check.name})",
                [(f"max by ({per}) ({score})", "{{feature}}"),
                 (f"max by ({per}) ({limit})", "threshold {{feature}}")], "none"))
    return panels


def _engine_panels(project: ResolvedProject, endpoint: Endpoint) -> list[dict[str, Any]]:
    """An endpoint of another engine: the panels its series can fill (mlc/engine_metrics.py),
    from the same query builders as its rules; none over series the engine does not have."""
    m = engine_queries.mapping(endpoint)
    labels = promql.endpoint_labels(project, endpoint)
    select = promql.engine_select(labels)
    window = promql.duration(endpoint.slo.window_seconds)
    objectives = {o.kind: o for o in slo.objectives(endpoint)}
    panels = []
    if "availability" in objectives:
        panels.append(_stat(
            f"Availability over {window} (objective {promql.number(endpoint.slo.availability)}%)",
            f"1 - (\n{promql.error_ratio(project, endpoint, window)}\n)", "percentunit"))
    if "latency" in objectives:
        bucket = promql.latency_bucket(endpoint.slo.latency_seconds, endpoint)
        panels.append(_stat(
            f"Requests within {promql.number(bucket)}s over {window} "
            f"(objective {promql.number(endpoint.slo.latency_target)}%)",
            f"1 - (\n{promql.slow_ratio(project, endpoint, window, bucket)}\n)", "percentunit"))
    burn = []
    for objective in objectives.values():
        if objective.budget <= 0:
            continue
        for w in slo.burn_windows(endpoint.slo.window_seconds)[::2]:
            record = promql.selector(slo.record_name(objective, w.long), labels)
            burn.append((f"{record} / {promql.number(objective.budget)}",
                         f"{objective.kind} over {promql.duration(w.long)}"))
    if burn:
        panels.append(_series("Error budget burn rate (1 = on budget)", burn, "none"))
    if m.why_not("requests") is None:  # `engine: custom` has no known series
        panels.append(_series(f"Requests per second ({endpoint.engine})",
                              [(promql.request_rate(project, endpoint, RATE), "requests")],
                              "reqps"))
    if m.why_not("errors") is None:
        panels.append(_series("Server error ratio",
                              [(promql.error_ratio(project, endpoint, RATE), "errors")],
                              "percentunit"))
    if m.why_not("latency_quantile") is None:
        panels.append(_series("Latency", [
            (engine_queries.latency_quantile(endpoint, select, q, RATE), f"p{p}")
            for q, p in ((0.5, "50"), (0.9, "90"), (0.99, "99"))
            if not isinstance(m.latency, engine_metrics.Summary) or q in m.latency.quantiles],
            "s"))
    if m.why_not("inflight") is None:
        panels.append(_series("Requests in flight",
                              [(engine_queries.inflight(endpoint, select), "running")], "none"))
    if m.why_not("queue") is None:
        panels.append(_series("Requests waiting",
                              [(engine_queries.queue(endpoint, select), "waiting")], "none"))
    if m.why_not("time_to_first_token") is None:
        panels.append(_series("Time to first token", [
            (engine_queries.ttft_quantile(endpoint, select, q, RATE), f"p{p}")
            for q, p in ((0.5, "50"), (0.9, "90"), (0.99, "99"))], "s"))
    if m.why_not("tokens_per_second") is None:
        panels.append(_series("Output tokens per second",
                              [(engine_queries.tokens_per_second(endpoint, select, RATE),
                                "tokens/s")], "none"))
    return panels


def _target(expr: str, legend: str, ref: int, **extra: Any) -> dict[str, Any]:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend,
            "refId": chr(ord("A") + ref), **extra}


def _series(title: str, queries: list[tuple[str, str]], unit: str) -> dict[str, Any]:
    return {"type": "timeseries", "title": title, "datasource": DATASOURCE,
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [_target(e, legend, i) for i, (e, legend) in enumerate(queries)]}


def _stat(title: str, expr: str, unit: str) -> dict[str, Any]:
    return {"type": "stat", "title": title, "datasource": DATASOURCE,
            "fieldConfig": {"defaults": {"unit": unit, "decimals": 3}, "overrides": []},
            "targets": [_target(expr, "", 0, instant=True)]}


def _heatmap(title: str, expr: str) -> dict[str, Any]:
    return {"type": "heatmap", "title": title, "datasource": DATASOURCE,
            "targets": [_target(expr, "{{le}}", 0, format="heatmap")]}
