"""One metrics contract: every query mlc generates reads only metrics that `mlc.metrics` defines.

Queries are collected from everything the compiler emits: PrometheusRules and the plain rule
files, Grafana dashboards, Argo Rollouts AnalysisTemplates (rollout gates), and the input
series of the generated promtool tests. Each is parsed by a real PromQL parser (a Rust port
of Prometheus' own); every selector must name a series of the contract or a recording rule
mlc itself defines, and use only the contract's labels of that metric (plus the labels
Prometheus adds to a target, and `le` on histogram buckets).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from mlc import metrics
from mlc.compiler.backends import monitoring
from mlc.compiler.backends.monitoring import promql
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import compile_project
from mlc.compiler.render import render

from .conftest import ROOT
from .monitoring_projects import SHOP_ENVS, example, hostile, shop

promql_parser = pytest.importorskip(
    "promql_parser", reason="the PromQL parser package `promql-parser` is not installed "
    "(it is in the test extra: pip install -e '.[test]')")

BY_SERIES = {s: m for m in metrics.CONTRACT for s in m.series()}
ALL_LABELS = frozenset(label for m in metrics.CONTRACT for label in m.labels)
# Grafana's and Argo Rollouts' placeholders, replaced by what they stand for before parsing.
_GRAFANA_VARIABLES = re.compile(r"\$__(rate_interval|interval|range)")
_ARGO_ARGS = re.compile(r"\{\{\s*args\.[A-Za-z0-9_.-]+\s*\}\}")


# libyaml's loader where PyYAML has it: the pure-Python one takes seconds over a whole tree.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def documents(files: dict[str, bytes]) -> list[tuple[str, dict]]:
    return [(path, doc) for path, data in sorted(files.items())
            if path.endswith((".yaml", ".yml"))
            for doc in yaml.load_all(data, Loader=_LOADER) if isinstance(doc, dict)]


def queries(docs: list[tuple[str, dict]]) -> list[tuple[str, str]]:
    """(where, PromQL) for every query in the rendered files' documents."""
    out: list[tuple[str, str]] = []
    for path, doc in docs:
        kind = doc.get("kind")
        if kind == "PrometheusRule":
            out += _rule_exprs(path, doc["spec"]["groups"])
        elif "groups" in doc and "kind" not in doc:  # a plain rules file for promtool
            out += _rule_exprs(path, doc["groups"])
        elif "tests" in doc and "rule_files" in doc:  # promtool tests: input series
            out += [(f"{path} input", s["series"]) for case in doc["tests"]
                    for s in case.get("input_series", [])]
        elif kind == "ConfigMap" and (doc["metadata"].get("labels") or {}).get(
                "grafana_dashboard") == "1":
            for name, text in doc["data"].items():
                out += [(f"{path} {name}", e) for e in _dashboard_exprs(json.loads(text))]
        elif kind in ("AnalysisTemplate", "ClusterAnalysisTemplate"):
            out += [(f"{path} {m['name']}", m["provider"]["prometheus"]["query"])
                    for m in doc["spec"].get("metrics", [])
                    if "prometheus" in m.get("provider", {})]
    return out


def _rule_exprs(path: str, groups: list[dict]) -> list[tuple[str, str]]:
    return [(f"{path} {r.get('alert') or r.get('record')}", r["expr"])
            for g in groups for r in g["rules"]]


def _dashboard_exprs(dashboard: dict) -> list[str]:
    panels = list(dashboard.get("panels", []))
    out = []
    while panels:
        panel = panels.pop(0)
        panels += panel.get("panels", [])  # rows hold panels
        out += [t["expr"] for t in panel.get("targets", []) if "expr" in t]
    return out


def recorded(docs: list[tuple[str, dict]]) -> set[str]:
    return {r["record"] for _, doc in docs if doc.get("kind") == "PrometheusRule"
            for g in doc["spec"]["groups"] for r in g["rules"] if "record" in r}


def problems(expr: str, recorded_names: set[str]) -> list[str]:
    """What is wrong with `expr`: a parse error, or a series or label outside the contract."""
    text = _ARGO_ARGS.sub("5m", _GRAFANA_VARIABLES.sub("5m", expr))
    try:
        ast = promql_parser.parse(text)
    except Exception as error:  # the parser raises ValueError subclasses with the position
        return [f"does not parse: {error}"]
    found: list[str] = []

    def visit(node) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.extend(_selector_problems(node, recorded_names))
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            found.extend(_label_problems(node.modifier.labels, "grouping"))
        elif isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
            matching = node.modifier.matching
            if matching is not None:
                found.extend(_label_problems(matching.labels, "vector matching"))

    promql_parser.walk(ast, visit)
    return found


def _selector_problems(node, recorded_names: set[str]) -> list[str]:
    name = node.name
    labels = [m.name for m in node.matchers.matchers]
    if name is None or name not in BY_SERIES and name not in recorded_names:
        return [f"series {name!r} is neither in mlc.metrics nor recorded by mlc"]
    if name in recorded_names:
        allowed = ALL_LABELS | promql.TARGET_LABELS
    else:
        metric = BY_SERIES[name]
        allowed = set(metric.labels) | promql.TARGET_LABELS | (
            {"le"} if name.endswith("_bucket") else set())
    return [f"{name} has no label {label!r} in the contract" for label in labels
            if label not in allowed]


def _label_problems(labels: list[str], what: str) -> list[str]:
    allowed = ALL_LABELS | promql.TARGET_LABELS | {"le"}
    return [f"{what} on unknown label {label!r}" for label in labels if label not in allowed]


def check_files(files: dict[str, bytes]) -> None:
    docs = documents(files)
    found = queries(docs)
    assert found, "no queries found: the collector is broken"
    names = recorded(docs)
    bad = [f"{where}: {p}\n  {expr}" for where, expr in found for p in problems(expr, names)]
    assert not bad, "\n".join(bad)


def test_example_queries_read_only_the_contract():
    """The whole compiled example, every backend, every environment."""
    diags = Diagnostics()
    compiled = compile_project(ROOT, None, diags)
    assert not diags.has_errors()
    for result in compiled:
        kinds = {q[0].split(" ")[0] for q in queries(documents(result.files))}
        assert any("prometheusrule" in k for k in kinds)
        assert any("dashboard" in k for k in kinds)
        check_files(result.files)


@pytest.mark.parametrize("env", SHOP_ENVS)
def test_shop_queries_read_only_the_contract(tmp_path: Path, env: str):
    check_files(render(monitoring.emit(shop(tmp_path, env))))


def test_hostile_names_still_parse():
    check_files(render(monitoring.emit(hostile(example("prod")))))


def test_checker_rejects_what_is_outside_the_contract():
    names = {"endpoint:mlc_requests:error_ratio_rate5m"}
    ok = 'sum by (namespace, endpoint) (rate(mlc_requests_total{code=~"5.."}[$__rate_interval]))'
    assert problems(ok, names) == []
    assert problems("endpoint:mlc_requests:error_ratio_rate5m > 0.1", names) == []
    assert problems("rate(http_requests_total[5m])", names) == [
        "series 'http_requests_total' is neither in mlc.metrics nor recorded by mlc"]
    assert problems('mlc_requests_total{endpoint_name="x"}', names) == [
        "mlc_requests_total has no label 'endpoint_name' in the contract"]
    assert problems('mlc_requests_total{le="0.1"}', names)  # `le` only on buckets
    assert problems("sum by (tenant) (mlc_inflight_requests)", names) == [
        "grouping on unknown label 'tenant'"]
    assert problems("sum(rate(mlc_requests_total[5m]", names)[0].startswith("does not parse")
    assert problems('mlc_requests_total{namespace="{{args.ns}}"}[{{args.window}}]', names) == []
