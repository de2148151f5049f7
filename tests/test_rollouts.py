"""Rollouts: Argo Rollouts objects, their gates' PromQL evaluated by Prometheus' own promtool,
Knative's gradual rollout in serverless mode, and the escaping of label values in queries.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mlc import metrics
from mlc.compiler.backends.monitoring import traffic
from mlc.compiler.backends.serving import analysis

from .argo_analysis import decide
from .test_serving import ENDPOINTS, Built, build, example

NAMESPACE = "scoring-default"
GATED = {name: ENDPOINTS[name] for name in ("canary", "bluegreen", "serverless", "shadow")}


@pytest.fixture(scope="module")
def gated(tmp_path_factory) -> Built:
    return build(tmp_path_factory.mktemp("gated"), GATED)


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (scripts/install-system-deps.sh installs it)")
    return path


def queries(template: dict) -> dict[str, str]:
    return {m["name"]: m["provider"]["prometheus"]["query"] for m in template["spec"]["metrics"]}


def substituted(query: str, new: str = "new", stable: str = "old") -> str:
    """The query as Argo Rollouts sends it, with the pod template hashes filled in."""
    return query.replace("{{args.new-hash}}", new).replace("{{args.stable-hash}}", stable)


# ---------------------------------------------------------------------------------------
# The objects


def test_canary_rollout(gated):
    rollout = gated.named("Rollout", "canary")["spec"]
    canary = rollout["strategy"]["canary"]
    assert canary["steps"] == [{"setWeight": 20}, {"pause": {"duration": "120s"}},
                               {"setWeight": 60}, {"pause": {}}]  # no pause: a person promotes
    assert canary["maxUnavailable"] == 0
    assert "trafficRouting" not in canary  # no mesh: weights by replica count
    assert canary["analysis"] == {
        "templates": [{"templateName": "canary-gates"}],
        "args": [{"name": "new-hash", "valueFrom": {"podTemplateHashValue": "Latest"}},
                 {"name": "stable-hash", "valueFrom": {"podTemplateHashValue": "Stable"}}]}
    assert rollout["progressDeadlineAbort"] is True
    assert rollout["template"]["spec"]["topologySpreadConstraints"][0]["matchLabelKeys"] == [
        "rollouts-pod-template-hash"]
    hpa = gated.named("HorizontalPodAutoscaler", "canary")["spec"]["scaleTargetRef"]
    assert hpa["kind"] == "Rollout"
    assert not gated.of_kind("Deployment") or all(
        d["metadata"]["name"] != "canary" for d in gated.of_kind("Deployment"))


def test_gates_follow_ml_yaml(gated):
    template = gated.named("AnalysisTemplate", "canary-gates")["spec"]
    assert template["args"] == [{"name": "new-hash"}, {"name": "stable-hash"}]
    by_name = {m["name"]: m for m in template["metrics"]}
    assert set(by_name) == {"error-rate", "latency-p99", "prediction-drift"}
    for metric, limit in (("error-rate", "0.02"), ("latency-p99", "0.25"),
                          ("prediction-drift", "0.1")):
        gate = by_name[metric]
        assert gate["interval"] == "30s"
        assert gate["failureLimit"] == 2
        assert gate["successCondition"].endswith(f"result[0] <= {limit}")
        assert gate["failureCondition"].endswith(f"result[0] > {limit}")
        # no data is inconclusive, never a pass
        assert gate["successCondition"].startswith("len(result) > 0 && !isNaN(result[0])")
        assert gate["provider"]["prometheus"]["address"] == \
            "http://prometheus-operated.monitoring.svc:9090"
        assert "count" not in gate  # a canary's gates run until the rollout ends


def test_blue_green_rollout(gated):
    rollout = gated.named("Rollout", "bluegreen")["spec"]["strategy"]["blueGreen"]
    assert rollout["activeService"] == "bluegreen"
    assert rollout["previewService"] == "bluegreen-preview"
    assert rollout["autoPromotionEnabled"] is True
    assert rollout["postPromotionAnalysis"]["templates"] == [{"templateName": "bluegreen-gates"}]
    template = gated.named("AnalysisTemplate", "bluegreen-gates")["spec"]["metrics"]
    counts = {m["count"] for m in template}
    assert counts == {analysis.BLUE_GREEN_MEASUREMENTS}
    interval = 60  # the default gate interval
    # the previous version stays up while the gates can still fail
    assert rollout["scaleDownDelaySeconds"] >= interval * analysis.BLUE_GREEN_MEASUREMENTS
    services = {s["metadata"]["name"] for s in gated.of_kind("Service", "v1")}
    assert {"bluegreen", "bluegreen-preview"} <= services
    # the previous version's predictions come from before the switch
    assert "[1h]" in template[-1]["provider"]["prometheus"]["query"]


def test_no_drift_gate_when_disabled(tmp_path):
    built = build(tmp_path, {"api": {"model": "scorer", "rollout": {
        "strategy": "canary", "gates": {"maxPredictionDrift": None}}}})
    names = [m["name"] for m in built.named("AnalysisTemplate", "api-gates")["spec"]["metrics"]]
    assert names == ["error-rate", "latency-p99"]


def test_rolling_endpoints_are_plain_deployments():
    dev = example("dev")
    assert dev.project.endpoints["fraud-api"].rollout.strategy == "rolling"
    assert dev.named("Deployment", "fraud-api")["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}
    assert not dev.of_kind("Rollout") and not dev.of_kind("AnalysisTemplate")


def test_serverless_canary_is_stepped_by_the_delivery_workflow(gated):
    """Not Knative's gradual rollout, which would move traffic without measuring anything:
    tests/test_delivery.py covers the workflow."""
    knative = gated.named("Service", "serverless", "serving.knative.dev/v1")
    assert "serving.knative.dev/rollout-duration" not in knative["metadata"].get(
        "annotations", {})
    assert knative["spec"]["traffic"] == [{"latestRevision": True, "percent": 100}]
    assert gated.files["delivery/workflow-serverless.yaml"][0]["kind"] == "Workflow"
    assert not [r for r in gated.of_kind("Rollout") if r["metadata"]["name"] == "serverless"]


def test_queries_read_only_the_metrics_contract(gated):
    series_names = set()
    for template in gated.of_kind("AnalysisTemplate"):
        for query in queries(template).values():
            code = "\n".join(line.split("#")[0] for line in query.splitlines())
            found = set(re.findall(r"([A-Za-z_:][A-Za-z0-9_:]*)\{", code))
            assert found and found <= metrics.SERIES, found - metrics.SERIES
            series_names |= found
            analysis.check_references(query)
    assert {metrics.REQUESTS.name, f"{metrics.PREDICTIONS.name}_bucket"} <= series_names


def test_unexpected_template_references_are_refused():
    with pytest.raises(ValueError, match="unexpected"):
        analysis.check_references('up{job="{{args.other}}"}')


# ---------------------------------------------------------------------------------------
# The gates, evaluated by Prometheus on synthetic series


def _series(name: str, labels: dict[str, str], per_minute: float) -> dict:
    text = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items()))
    # a counter growing by `per_minute` every minute, sampled every 15 s
    return {"series": f"{name}{{{text}}}", "values": f"0+{per_minute / 4}x80"}


def _histogram(metric: metrics.Metric, labels: dict[str, str], per_bin: list[float],
               le_text=repr) -> list[dict]:
    """Series of a histogram whose bins (one per bucket, then +Inf) get `per_bin` a minute."""
    out, total = [], 0.0
    for bound, count in zip([*metric.buckets, math.inf], per_bin, strict=True):
        total += count
        le = "+Inf" if bound == math.inf else le_text(float(bound))
        out.append(_series(f"{metric.name}_bucket", {**labels, "le": le}, total))
    out.append(_series(f"{metric.name}_count", labels, total))
    out.append(_series(f"{metric.name}_sum", labels, total * 0.5))
    return out


def _psi(p: list[float], q: list[float]) -> float:
    ps, qs = [x / sum(p) for x in p], [x / sum(q) for x in q]
    eps = analysis.PSI_EPSILON
    return sum((a - b) * math.log(max(a, eps) / max(b, eps)) for a, b in zip(ps, qs, strict=True))


def _quantile(q: float, bounds: list[float], per_bin: list[float]) -> float:
    """histogram_quantile, as Prometheus interpolates inside the bucket."""
    rank, below, lower = q * sum(per_bin), 0.0, 0.0
    for upper, count in zip(bounds, per_bin, strict=True):
        if below + count >= rank:
            return lower + (upper - lower) * (rank - below) / count
        below, lower = below + count, upper
    raise AssertionError("rank beyond the finite buckets")


def _run_promtool(tmp_path: Path, series: list[dict], checks: dict[str, float]) -> None:
    """Assert with promtool that each query evaluates (at 15 m) to the expected value."""
    tests = [{"expr": f"abs(\n({query}\n) - {expected!r}) < bool 1e-9", "eval_time": "15m",
              "exp_samples": [{"labels": "{}", "value": 1}]} for query, expected in checks.items()]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": []}))
    (tmp_path / "test.yaml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yaml"], "evaluation_interval": "15s",
        "tests": [{"interval": "15s", "input_series": series, "promql_expr_test": tests}]}))
    result = subprocess.run([promtool(), "test", "rules", "test.yaml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


NEW_BINS = [5, 5, 10, 10, 10, 10, 10, 10, 10, 10, 5, 3, 2]  # 12 buckets and +Inf
OLD_BINS = [20, 15, 10, 10, 8, 8, 7, 6, 6, 4, 3, 2, 1]


@pytest.mark.slow
@pytest.mark.parametrize("go_style_le", [False, True], ids=["python-le", "go-le"])
def test_gates_compute_what_they_claim(tmp_path, gated, go_style_le):
    """Error rate, p99 latency and PSI from the generated queries, against the definitions.

    Series of the stable version, of another endpoint and of another namespace are present
    too, and must not leak into the new version's numbers. `go-le`: the new version's
    buckets as a Go client writes them ("1" for 1.0), which the PSI query must still pair.
    """
    template = gated.named("AnalysisTemplate", "canary-gates")
    q = {name: substituted(text) for name, text in queries(template).items()}
    labels = {"namespace": NAMESPACE, "endpoint": "canary"}
    new, old = ({**labels, "rollouts_pod_template_hash": h} for h in ("new", "old"))
    elsewhere = {**new, "namespace": "prod-elsewhere"}
    other = {**new, "endpoint": "bluegreen"}

    series = []
    for who, ok, errors in ((new, 400, 8), (old, 1000, 1), (elsewhere, 10, 10), (other, 5, 5)):
        series.append(_series(metrics.REQUESTS.name, {**who, "code": "200", "route": "/predict",
                                                      "model_version": "3"}, ok))
        series.append(_series(metrics.REQUESTS.name, {**who, "code": "503", "route": "/predict",
                                                      "model_version": "3"}, errors))
    latency_bins = [0, 0, 0, 10, 100, 200, 60, 20, 6, 4, 0, 0, 0, 0]
    series += _histogram(metrics.REQUEST_DURATION, new, latency_bins)
    series += _histogram(metrics.REQUEST_DURATION, old, [400] + [0] * 13)
    go = (lambda b: repr(b).removesuffix(".0")) if go_style_le else repr
    series += _histogram(metrics.PREDICTIONS, new, NEW_BINS, le_text=go)
    series += _histogram(metrics.PREDICTIONS, old, OLD_BINS)
    series += _histogram(metrics.PREDICTIONS, elsewhere, list(reversed(NEW_BINS)))

    _run_promtool(tmp_path, series, {
        q["error-rate"]: 8 / 408,
        q["latency-p99"]: _quantile(0.99, list(metrics.REQUEST_DURATION.buckets),
                                    latency_bins[:-1]),
        q["prediction-drift"]: _psi(NEW_BINS, OLD_BINS),
    })


@pytest.mark.slow
def test_identical_versions_do_not_drift(tmp_path, gated):
    template = gated.named("AnalysisTemplate", "canary-gates")
    query = substituted(queries(template)["prediction-drift"])
    labels = {"namespace": NAMESPACE, "endpoint": "canary"}
    series = (_histogram(metrics.PREDICTIONS, {**labels, "rollouts_pod_template_hash": "new"},
                         NEW_BINS)
              + _histogram(metrics.PREDICTIONS, {**labels, "rollouts_pod_template_hash": "old"},
                           [3 * x for x in NEW_BINS]))
    _run_promtool(tmp_path, series, {query: 0.0})


@pytest.mark.slow
def test_every_generated_query_parses(tmp_path, gated):
    rules = [{"record": f"gate:{i}", "expr": substituted(query)}
             for i, template in enumerate(gated.of_kind("AnalysisTemplate"))
             for query in queries(template).values()]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": [{"name": "gates",
                                                                      "rules": rules}]}))
    result = subprocess.run([promtool(), "check", "rules", "rules.yaml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def _nan_or(value: float) -> str:
    return "NaN" if math.isnan(value) else repr(value)


def _value_checks(query: str, expected: float) -> list[dict]:
    """promtool checks that `query` yields exactly one sample, of value `expected` (NaN too)."""
    one = {"expr": f"count(\n{query}\n)", "eval_time": "20m",
           "exp_samples": [{"labels": "{}", "value": 1}]}
    if math.isnan(expected):  # NaN is the one value not equal to itself
        value = {"expr": f"count(\n({query}\n) != ({query}\n))", "eval_time": "20m",
                 "exp_samples": [{"labels": "{}", "value": 1}]}
    else:
        value = {"expr": f"abs(\n({query}\n) - {expected!r}) < bool 1e-9", "eval_time": "20m",
                 "exp_samples": [{"labels": "{}", "value": 1}]}
    return [one, value]


@pytest.mark.slow
def test_gate_decisions_on_healthy_failing_and_idle_canaries(tmp_path, gated):
    """Each gate on traffic shaped as the serving runtime exports it (every status code's
    counter from 0), decided as Argo Rollouts decides (tests/argo_analysis.py).

    healthy: the canary never answers 5xx: every gate returns one value and passes (before
    the 5xx counters existed from start-up, the error rate was an empty result: an Error in
    Argo Rollouts). first burst: its first 5xx, 92% of requests, fails the error gate.
    idle: the canary's counters exist but nobody sends it requests; unscraped: it exports
    nothing yet. Both measure nothing: one NaN sample per gate, inconclusive, never a pass
    and never an Error.
    """
    template = gated.named("AnalysisTemplate", "canary-gates")
    by_name = {m["name"]: m for m in template["spec"]["metrics"]}
    q = {name: substituted(text) for name, text in queries(template).items()}
    labels = {"namespace": NAMESPACE, "endpoint": "canary"}
    new, old = (traffic.server_labels({**labels, "rollouts_pod_template_hash": h})
                for h in ("new", "old"))
    fast = [0, 0, 50, 200, 100, 40, 10, 0, 0, 0, 0, 0, 0, 0]  # p99 within 0.1 s
    latency_p99 = _quantile(0.99, list(metrics.REQUEST_DURATION.buckets), fast[:-1])

    def requests(labels: dict[str, str], phases) -> list[dict]:
        return [{"series": s.notation(), "values": s.values}
                for s in traffic.requests(labels, phases)]

    def canary(phases, latency=fast, predictions=OLD_BINS) -> list[dict]:
        return (requests(new, phases) + _histogram(metrics.REQUEST_DURATION, new, latency)
                + _histogram(metrics.PREDICTIONS, new, predictions))

    stable = (requests(old, [(80, {"200": 100})])
              + _histogram(metrics.REQUEST_DURATION, old, fast)
              + _histogram(metrics.PREDICTIONS, old, OLD_BINS))

    idle_bins = [0] * 14
    scenarios = {  # name: (series, {gate: expected value})
        "healthy": (canary([(80, {"200": 100})]),
                    {"error-rate": 0.0, "latency-p99": latency_p99, "prediction-drift": 0.0}),
        "first burst": (canary([(40, {"200": 100}), (40, {"200": 8, "503": 92})]),
                        {"error-rate": 0.92, "latency-p99": latency_p99,
                         "prediction-drift": 0.0}),
        "idle": (canary([(80, {})], latency=idle_bins, predictions=idle_bins[:-1]),
                 dict.fromkeys(q, math.nan)),
        "unscraped": ([], dict.fromkeys(q, math.nan)),
    }
    decisions = {
        "healthy": dict.fromkeys(q, "Successful"),
        "first burst": {"error-rate": "Failed", "latency-p99": "Successful",
                        "prediction-drift": "Successful"},
        "idle": dict.fromkeys(q, "Inconclusive"),
        "unscraped": dict.fromkeys(q, "Inconclusive"),
    }
    tests = []
    for name, (series, expected) in scenarios.items():
        assert set(expected) == set(q)
        tests.append({"name": name, "interval": "15s", "input_series": series + stable,
                      "promql_expr_test": [c for gate, value in expected.items()
                                           for c in _value_checks(q[gate], value)]})
        got = {gate: decide(by_name[gate], [value]) for gate, value in expected.items()}
        assert got == decisions[name], name
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": []}))
    (tmp_path / "test.yaml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yaml"], "evaluation_interval": "15s", "tests": tests}))
    result = subprocess.run([promtool(), "test", "rules", "test.yaml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    # what an empty result would have meant
    assert {decide(m, []) for m in by_name.values()} == {"Error"}


def test_argo_rollouts_model_decides_as_argo_does():
    metric = {"successCondition": "len(result) > 0 && !isNaN(result[0]) && result[0] <= 0.1",
              "failureCondition": "len(result) > 0 && !isNaN(result[0]) && result[0] > 0.1"}
    assert decide(metric, [0.0]) == "Successful"
    assert decide(metric, [0.5]) == "Failed"
    assert decide(metric, [math.nan]) == "Inconclusive"
    assert decide(metric, []) == "Error"  # the guard does not help: Argo checks first
    assert decide({"successCondition": "result[0] < 1"}, [2.0]) == "Failed"
    assert decide({"failureCondition": "result[0] > 1"}, [0.5]) == "Successful"
    assert decide({}, []) == "Successful"


# ---------------------------------------------------------------------------------------
# Escaping

HOSTILE = [
    'say "hi"', "back\\slash", "trailing\\", "new\nline", "tab\there", "cr\rhere",
    '"} or vector(1) #', "{{args.new-hash}}", "}}{{", "{", "a}b", "日本語", "emoji 😀",
    "bell\x07", "nul\x00byte", "\u2028sep", "$1 ${x}", "5..|.*", "x' or '1'='1",
]


def test_literals_never_open_a_template():
    for value in HOSTILE:
        text = analysis.literal(value)
        assert "{{" not in text and "}}" not in text
        assert text.startswith('"') and text.endswith('"') and "\n" not in text


@pytest.mark.slow
def test_literals_read_back_exactly_in_prometheus(tmp_path):
    """Prometheus parses each literal back to the very string: an equality matcher with it
    selects exactly the series whose label holds the string (written in the series notation
    with JSON's quoting, which is independent of ours), and no other hostile series."""
    series, checks = [], []
    for i, value in enumerate(HOSTILE):
        series.append({"series": f'hostile{{i="{i}", v={json.dumps(value, ensure_ascii=False)}}}',
                       "values": "1+0x4"})
        checks.append({"expr": f'count(hostile{{v={analysis.literal(value)}}})', "eval_time": "1m",
                       "exp_samples": [{"labels": "{}", "value": 1}]})
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": []}))
    (tmp_path / "test.yaml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yaml"], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": checks}]},
        allow_unicode=True))
    result = subprocess.run([promtool(), "test", "rules", "test.yaml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
