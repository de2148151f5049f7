"""The metrics contract per serving engine (mlc/engine_metrics.py), tested on real parts.

- The table against the series names recorded here from each engine's documentation or
  source (cited per engine): a name in the table that differs fails.
- docs/serving-metrics.md's table is the code's.
- For every engine, the generated rules (SLO ratios, burn-rate and endpoint alerts) pass
  `promtool check rules`, and their generated promtool tests, fed series named as the engine
  exports them, pass `promtool test rules`; renamed series make them fail.
- A real Prometheus loaded with the generated rules scrapes a real MLServer (where the
  engines' MLServer environment exists) and a vLLM-named exporter: the recorded SLO ratios,
  every rollout gate and KEDA's query return a number on healthy traffic, and the gates NaN
  (inconclusive) for pods without series.
- Resolve refuses, or warns of, what an engine cannot measure (MLC374-MLC379).

The builders are tested on the example's resolved IR with `engine` set (tfserving is
refused by resolve, MLC387, but its queries are written all the same).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import yaml

from mlc import engine_metrics as em
from mlc.compiler.backends import monitoring
from mlc.compiler.backends.monitoring import engine_queries, promql, servicemonitors
from mlc.compiler.backends.serving import analysis, kserve
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.ir import ResolvedProject
from mlc.compiler.render import render

from . import crd_monitoring_check
from .argo_analysis import decide
from .conftest import ROOT, write_project
from .monitoring_projects import example
from .prometheus_server import PrometheusServer, Target, free_port, is_nan, wait_ok

ENGINES = ("mlserver", "triton", "torchserve", "tfserving", "huggingface")

# The stored series names, as each engine's documentation or source names them.
DOC_NAMES: dict[str, tuple[str, set[str]]] = {
    "mlserver": (
        "MLServer 1.7.1 mlserver/rest/app.py + settings.py (PrometheusMiddleware, prefix "
        "metrics_rest_server_prefix='rest_server'); starlette-exporter 0.24.0 "
        "middleware.py: f'{prefix}_requests_total', f'{prefix}_request_duration_seconds' "
        "(Histogram), f'{prefix}_requests_in_progress' (Gauge)",
        {"rest_server_requests_total", "rest_server_request_duration_seconds_bucket",
         "rest_server_request_duration_seconds_sum",
         "rest_server_request_duration_seconds_count", "rest_server_requests_in_progress"}),
    "triton": (
        "triton-inference-server/server docs/user_guide/metrics.md: Counts "
        "(nv_inference_request_success, nv_inference_request_failure) and Summaries "
        "(nv_inference_request_summary_us, with _count and _sum)",
        {"nv_inference_request_success", "nv_inference_request_failure",
         "nv_inference_request_summary_us", "nv_inference_request_summary_us_sum",
         "nv_inference_request_summary_us_count"}),
    "torchserve": (
        "pytorch/serve docs/metrics_api.md, the example /metrics output: "
        "ts_inference_requests_total, Requests2XX, Requests4XX, Requests5XX",
        {"ts_inference_requests_total", "Requests2XX", "Requests4XX", "Requests5XX"}),
    "tfserving": (
        "tensorflow/serving tensorflow_serving/servables/tensorflow/util.cc: "
        "/tensorflow/serving/request_count (Counter), /tensorflow/serving/request_latency "
        "(Sampler: a histogram); the Prometheus exporter writes `/` as `:`",
        {":tensorflow:serving:request_count", ":tensorflow:serving:request_latency_bucket",
         ":tensorflow:serving:request_latency_sum",
         ":tensorflow:serving:request_latency_count"}),
    "huggingface": (
        "vllm-project/vllm vllm/engine/metrics.py (commit 00c33e81b526), class Metrics",
        {"vllm:request_success_total", "vllm:generation_tokens_total",
         "vllm:num_requests_running", "vllm:num_requests_waiting",
         *(f"vllm:{h}_{s}" for h in ("time_to_first_token_seconds",
                                     "time_per_output_token_seconds",
                                     "e2e_request_latency_seconds")
           for s in ("bucket", "sum", "count"))}),
}
MLSERVER_VENV = Path(os.environ.get("MLC_MLSERVER_VENV", ROOT / ".venv-mlserver"))  # make


def with_engine(project: ResolvedProject, engine: str, *, llm: bool = False
                ) -> ResolvedProject:
    (name,) = project.endpoints
    ep = project.endpoints[name]
    update: dict = {"engine": engine}
    if llm:
        update["slo"] = ep.slo.model_copy(update={
            "ttft_seconds": 0.1, "ttft_target": 99.0,
            "tokens_per_second": 20.0, "tokens_per_second_target": 99.0})
        update["rollout"] = ep.rollout.model_copy(update={
            "gates": ep.rollout.gates.model_copy(update={
                "max_ttft_seconds": 0.5, "min_tokens_per_second": 20.0,
                "max_latency_p99_seconds": 5.0})})  # a whole response takes seconds
    return project.model_copy(update={"endpoints": {name: ep.model_copy(update=update)}})


def write_tree(project: ResolvedProject, folder: Path) -> Path:
    for path, data in render(monitoring.emit(project)).items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return folder


# --- the table ---------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_table_names_are_the_documented_ones(engine: str):
    citation, names = DOC_NAMES[engine]
    assert set(em.ENGINES[engine].series_names()) == names, citation
    assert em.ENGINES[engine].source  # every engine says where its names come from


def test_every_engine_says_why_for_each_missing_quantity():
    for m in em.ENGINES.values():
        for quantity in ("requests", "errors", "latency_quantile", "latency_slo", "inflight",
                         "queue", "time_to_first_token", "tokens_per_second"):
            why = m.why_not(quantity)
            assert why is None or len(why) > 20, (m.engine, quantity, why)
        assert m.why_not("prediction_drift") and m.why_not("shadow")
    assert em.LLM_ENGINES == {"huggingface"}
    assert em.HUGGINGFACE.why_not("errors") and em.TRITON.why_not("latency_slo")
    assert em.TRITON.why_not("latency_quantile") is None  # its summary
    assert em.TORCHSERVE.why_not("latency_quantile")


def test_docs_table_is_the_codes():
    text = (ROOT / "docs" / "serving-metrics.md").read_text()
    start = text.index("<!-- engine-metrics-table: generated from mlc/engine_metrics.py -->\n")
    end = text.index("<!-- end engine-metrics-table -->")
    body = text[start:end].split("\n", 1)[1]
    assert body == em.markdown_table(), "regenerate docs/serving-metrics.md's engine table"


def test_mlc_engine_output_is_unchanged_by_the_engine_branches():
    """engine: mlc takes none of the engine branches (the golden trees check the bytes)."""
    project = example("prod")
    (ep,) = project.endpoints.values()
    assert ep.engine == "mlc"
    assert "mlc_requests_total" in promql.error_ratio(project, ep, "5m")
    assert analysis.gate_checks(project, ep)[0][1].count("mlc_requests_total") == 2


# --- the queries --------------------------------------------------------------------------


def test_queries_use_the_engine_names_and_units():
    tf = with_engine(example("prod"), "tfserving")
    (ep,) = tf.endpoints.values()
    q = promql.latency_quantile(tf, ep, 0.99, "5m")
    assert ":tensorflow:serving:request_latency_bucket" in q and q.endswith(" * 1e-06")
    assert "mlc_" not in q
    # 250ms objective: TensorFlow's next bucket up, 10 * 1.8^k microseconds, in seconds
    bucket = promql.latency_bucket(ep.slo.latency_seconds, ep)
    assert bucket >= ep.slo.latency_seconds and bucket < ep.slo.latency_seconds * 1.8
    tr = with_engine(example("prod"), "triton")
    (ep,) = tr.endpoints.values()
    rate = promql.request_rate(tr, ep, "5m")
    assert "nv_inference_request_success" in rate and "nv_inference_request_failure" in rate
    p99 = engine_queries.latency_gate(ep, promql.engine_select({}), 0.99, "1m")
    assert 'quantile=~"0\\\\.99"' in p99 and "* 1e-06" in p99 and "vector(NaN)" in p99


def test_unmeasurable_quantities_raise_not_query():
    hf = with_engine(example("prod"), "huggingface")
    (ep,) = hf.endpoints.values()
    with pytest.raises(engine_queries.Unmeasurable, match="no error series"):
        promql.error_ratio(hf, ep, "5m")
    ts = with_engine(example("prod"), "torchserve")
    (ep,) = ts.endpoints.values()
    with pytest.raises(engine_queries.Unmeasurable, match="mean"):
        promql.latency_quantile(ts, ep, 0.99, "5m")
    # the gates it cannot measure are not written
    assert [name for name, _, _ in analysis.gate_checks(ts, ep)] == ["error-rate"]
    hf = with_engine(example("prod"), "huggingface", llm=True)
    (ep,) = hf.endpoints.values()
    assert [name for name, _, _ in analysis.gate_checks(hf, ep)] == [
        "latency-p99", "time-to-first-token-p99", "time-per-output-token-p99"]


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_pod_monitor(engine: str):
    project = with_engine(example("prod"), engine)
    (ep,) = project.endpoints.values()
    pm = servicemonitors.pod_monitor(project, ep)
    endpoint = pm["spec"]["podMetricsEndpoints"][0]
    m = em.ENGINES[engine]
    assert (endpoint["portNumber"], endpoint["path"]) == (m.scrape_port, m.scrape_path)
    assert endpoint["relabelings"] == [{"action": "replace", "targetLabel": "endpoint",
                                        "replacement": ep.name}]
    if not crd_monitoring_check.available():
        pytest.skip("the prometheus-operator CRD schemas are not in ../shared/schemas")
    assert crd_monitoring_check.errors(pm) == []


# --- promtool -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (scripts/install-system-deps.sh installs it)")
    return path


def _promtool(promtool: str, folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], cwd=folder, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_rules_pass_promtool(promtool: str, tmp_path: Path, engine: str):
    project = with_engine(example("prod"), engine, llm=engine == "huggingface")
    folder = write_tree(project, tmp_path)
    rules = "monitoring/rules/endpoint-fraud-api.rules.yaml"
    tests = "monitoring/tests/endpoint-fraud-api.test.yaml"
    text = (folder / rules).read_text()
    # no series of mlc's runtime (recorded names, `endpoint:mlc_...:...`, name quantities)
    assert not re.search(r"(?<![:\w])mlc_[a-z_]+\{", text), text
    for name in DOC_NAMES[engine][1]:
        if name.endswith(("_sum", "_in_progress", "_waiting", "_running")) or (
                name.startswith("Requests") and name != "Requests5XX"):
            continue  # series the rules do not read (dashboards, KEDA), or the denominator
        if "summary" in name or "per_output" in name or "generation_tokens" in name:
            continue  # the gates' and dashboards' series
        assert name in text or name.removesuffix("_bucket") in text, name
    checked = _promtool(promtool, folder, "check", "rules", rules)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _promtool(promtool, folder, "test", "rules", tests)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # the tests' series are the engine's: renaming the engine's series in the rules breaks them
    first = sorted(n for n in DOC_NAMES[engine][1] if n in text)[0]
    (folder / rules).write_text(text.replace(first, first + "_renamed"))
    broken = _promtool(promtool, folder, "test", "rules", tests)
    assert broken.returncode != 0, f"renaming {first} went unnoticed"


def test_llm_rules_fire_on_slow_first_tokens(promtool: str, tmp_path: Path):
    project = with_engine(example("prod"), "huggingface", llm=True)
    folder = write_tree(project, tmp_path)
    text = (folder / "monitoring/rules/endpoint-fraud-api.rules.yaml").read_text()
    for name in ("endpoint:time_to_first_token:slow_ratio_rate5m",
                 "endpoint:output_tokens:slow_ratio_rate5m", "EndpointTtftBudgetBurn",
                 "EndpointTokensBudgetBurn"):
        assert name in text, name
    tests = (folder / "monitoring/tests/endpoint-fraud-api.test.yaml").read_text()
    assert "vllm:time_to_first_token_seconds_bucket" in tests
    assert "vllm:time_per_output_token_seconds_bucket" in tests


# --- a real Prometheus --------------------------------------------------------------------


def _rule_groups(project: ResolvedProject) -> list[dict]:
    files = render(monitoring.emit(project))
    return yaml.safe_load(files["monitoring/rules/endpoint-fraud-api.rules.yaml"])["groups"]


def _gate_results(prom: PrometheusServer, project: ResolvedProject, hash_: str
                  ) -> dict[str, list[tuple[dict, float]]]:
    (ep,) = project.endpoints.values()
    return {name: prom.query(query.replace("{{args.new-hash}}", hash_))
            for name, query, _ in analysis.gate_checks(project, ep)}


def _check_gates(prom: PrometheusServer, project: ResolvedProject) -> dict[str, float]:
    """Every gate: one finite number for the scraped pods, NaN for pods without series, and
    Argo Rollouts' decision on those (Successful on healthy traffic, Inconclusive on none)."""
    (ep,) = project.endpoints.values()
    template = {m["name"]: m for m in analysis.analysis_template(project, ep)["spec"]["metrics"]}
    deadline = time.time() + 60
    while True:
        healthy = _gate_results(prom, project, "new")
        if all(len(r) == 1 and math.isfinite(r[0][1]) for r in healthy.values()):
            break
        assert time.time() < deadline, healthy
        time.sleep(0.5)
    for name, result in healthy.items():
        assert decide(template[name], [v for _, v in result]) == "Successful", (name, result)
    for name, result in _gate_results(prom, project, "nobody").items():
        assert is_nan(result), (name, result)
        assert decide(template[name], [v for _, v in result]) == "Inconclusive", name
    return {name: r[0][1] for name, r in healthy.items()}


def _recorded(prom: PrometheusServer, name: str) -> float:
    result = prom.wait_for(name, lambda r: len(r) == 1 and math.isfinite(r[0][1]), timeout=60)
    assert len(result) == 1 and math.isfinite(result[0][1]), (name, result)
    return result[0][1]


def _keda(project: ResolvedProject, metric: str) -> str:
    (ep,) = project.endpoints.values()
    ep = ep.model_copy(update={"autoscaling": ep.autoscaling.model_copy(
        update={"metric": metric})})
    return kserve.keda_query(project, SimpleNamespace(endpoint=ep))


def _target(port: int, project: ResolvedProject) -> Target:
    (ep,) = project.endpoints.values()
    # what the engine PodMonitor's relabelling and the target add
    return Target(f"127.0.0.1:{port}", {"namespace": project.platform.namespace,
                                        "endpoint": ep.name, "pod": "fraud-api-new-0",
                                        "rollouts_pod_template_hash": "new"})


@pytest.mark.slow
def test_vllm_named_series_in_a_real_prometheus(tmp_path: Path):
    project = with_engine(example("prod"), "huggingface", llm=True)
    port = free_port()
    exporter = subprocess.Popen([sys.executable, "-m", "tests.engine_exporter", "vllm",
                                 str(port)], cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            wait_ok(http, "/metrics", exporter, lambda: "", "the vLLM-named exporter", 30)
        prom = PrometheusServer(tmp_path / "prom", [_target(port, project)],
                                _rule_groups(project))
        try:
            assert _recorded(prom, "endpoint:time_to_first_token:slow_ratio_rate5m") == 0
            assert _recorded(prom, "endpoint:output_tokens:slow_ratio_rate5m") == 0
            # the e2e latency (1.2s) is slower than the 250ms objective's 1s bucket: all slow
            # (the recorded names are the quantity's, whichever engine's series they read)
            assert _recorded(prom, "endpoint:mlc_request_duration_seconds:"
                                   "slow_ratio_rate5m") == 1
            gates = _check_gates(prom, project)
            assert 0.04 <= gates["time-to-first-token-p99"] <= 0.06
            assert 0.01 <= gates["time-per-output-token-p99"] <= 0.025
            assert 1.0 <= gates["latency-p99"] <= 2.5
            rps = prom.wait_for(_keda(project, "rps"), lambda r: r and r[0][1] > 0)
            assert rps and rps[0][1] > 0, rps
            assert prom.query(_keda(project, "concurrency"))[0][1] == 2
        finally:
            prom.stop()
    finally:
        exporter.terminate()
        exporter.wait(10)


@pytest.mark.slow
def test_real_mlserver_in_a_real_prometheus(tmp_path: Path):
    python = MLSERVER_VENV / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no MLServer environment at {MLSERVER_VENV} (`make mlserver-venv` "
                    "makes it, `make test` too; MLC_MLSERVER_VENV names another)")
    model = tmp_path / "model"
    model.mkdir()
    subprocess.run([str(python), "-c", (
        "import joblib, numpy as np\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "rng = np.random.default_rng(0)\n"
        "x = rng.normal(size=(200, 4)); y = (x[:, 0] > 0).astype(int)\n"
        "joblib.dump(LogisticRegression().fit(x, y), 'model.joblib')\n")],
        cwd=model, check=True, timeout=120)
    (model / "model-settings.json").write_text(json.dumps({
        "name": "fraud-classifier", "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "v1"}}))
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    (model / "settings.json").write_text(json.dumps({
        "http_port": http_port, "grpc_port": grpc_port, "metrics_port": metrics_port,
        "parallel_workers": 0, "host": "127.0.0.1"}))
    log = open(tmp_path / "mlserver.log", "wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLSERVER_", "PYTHON"))}
    server = subprocess.Popen([str(MLSERVER_VENV / "bin" / "mlserver"), "start", str(model)],
                              cwd=model, stdout=log, stderr=subprocess.STDOUT, env=env)

    def output() -> str:
        log.flush()
        return (tmp_path / "mlserver.log").read_text(errors="replace")[-3000:]
    project = with_engine(example("prod"), "mlserver")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=10) as http:
            wait_ok(http, "/v2/models/fraud-classifier/ready", server, output, "MLServer", 120)
            body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64",
                                "data": [0.5, -1.0, 0.2, 0.0]}]}
            assert http.post("/v2/models/fraud-classifier/infer", json=body).status_code == 200
            text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
            for name in DOC_NAMES["mlserver"][1]:
                assert f"\n{name}{{" in text, (name, text[:2000])  # the real names
            prom = PrometheusServer(tmp_path / "prom", [_target(metrics_port, project)],
                                    _rule_groups(project))
            try:
                stop = time.time() + 90
                ready = False
                while time.time() < stop and not ready:
                    for _ in range(20):
                        assert http.post("/v2/models/fraud-classifier/infer",
                                         json=body).status_code == 200
                    # MLServer creates its 5xx series only at the first 5xx: the ratio is
                    # still 0, not empty
                    result = prom.query("endpoint:mlc_requests:error_ratio_rate5m")
                    ready = len(result) == 1 and result[0][1] == 0
                    time.sleep(0.3)
                assert ready, prom.query("endpoint:mlc_requests:error_ratio_rate5m")
                slow = _recorded(prom, "endpoint:mlc_request_duration_seconds:slow_ratio_rate5m")
                assert 0 <= slow < 0.5, slow  # a linear model answers well within 250ms
                gates = _check_gates(prom, project)
                assert gates["error-rate"] == 0
                assert 0 < gates["latency-p99"] < 0.25, gates
                assert prom.query(_keda(project, "rps"))[0][1] > 0
                assert len(prom.query(_keda(project, "concurrency"))) == 1
            finally:
                prom.stop()
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


# --- resolve ------------------------------------------------------------------------------


def _codes(tmp_path: Path, serving_extra: str) -> list[tuple[str, str, str]]:
    from mlc.compiler.pipeline import check_environment

    from .bad_inputs import BASE as PROJECT
    text = PROJECT.replace("    hardware: cpu-small\nmonitoring",
                           "    hardware: cpu-small\n" + serving_extra + "monitoring")
    root = write_project(tmp_path / "p", {"ml.yaml": text})
    diags = Diagnostics()
    check_environment(root, "default", diags)
    return [(d.code, str(d.severity), ".".join(map(str, d.path or ()))) for d in diags]


def test_resolve_warns_of_defaults_an_engine_does_not_measure(tmp_path: Path):
    codes = _codes(tmp_path, "    engine: huggingface\n    rollout: {strategy: canary}\n")
    assert ("MLC375", "warning", "serving.churn-api.engine") in codes  # default availability
    assert ("MLC377", "warning", "serving.churn-api.rollout.strategy") in codes  # PSI, errors
    assert not [c for c in codes if c[0] in ("MLC374", "MLC376", "MLC378", "MLC379")]


def test_resolve_refuses_what_an_engine_cannot_measure(tmp_path: Path):
    codes = _codes(tmp_path, "    engine: triton\n    slo: {latency: 100ms}\n"
                             "    autoscaling: {metric: concurrency, target: 4}\n"
                             "    rollout:\n      strategy: canary\n"
                             "      gates: {maxPredictionDrift: 0.1, minTokensPerSecond: 5}\n")
    assert ("MLC374", "error", "serving.churn-api.slo.latency") in codes
    assert ("MLC379", "error", "serving.churn-api.autoscaling.metric") in codes
    assert ("MLC376", "error", "serving.churn-api.rollout.gates.maxPredictionDrift") in codes
    assert ("MLC378", "error", "serving.churn-api.rollout.gates.minTokensPerSecond") in codes


def test_resolve_refuses_the_shadow_phase_on_an_engine(tmp_path: Path):
    codes = _codes(tmp_path, "    engine: mlserver\n    rollout:\n      strategy: shadow\n"
                             "      shadow: {alias: challenger}\n")
    assert ("MLC376", "error", "serving.churn-api.rollout.strategy") in codes


def test_llm_settings_on_huggingface_pass_the_engine_checks(tmp_path: Path):
    from mlc.compiler.pipeline import check_environment

    from .bad_inputs import BASE as PROJECT
    text = PROJECT.replace("    hardware: cpu-small\nmonitoring",
                           "    hardware: cpu-small\n    engine: huggingface\n"
                           "    slo: {firstTokenLatency: 200ms, tokensPerSecond: 30}\n"
                           "    rollout:\n      strategy: canary\n"
                           "      gates: {maxFirstTokenLatency: 1s, minTokensPerSecond: 10,"
                           " maxPredictionDrift: null}\nmonitoring")
    root = write_project(tmp_path / "p", {"ml.yaml": text})
    diags = Diagnostics()
    check_environment(root, "default", diags)
    codes = {d.code for d in diags}
    assert codes & {"MLC374", "MLC376", "MLC378"} == set(), list(diags)
    assert "MLC332" in codes  # vLLM serves no bundled trainer's tabular model


# --- a custom server's own series (`container.metrics`) -----------------------------------

CUSTOM_METRICS = {  # tests/custom_server.py's series, as its user would map them
    "requests": {"series": ["http_requests_total"], "match": {"handler": "/predict"},
                 "statusLabel": "status"},
    "latency": {"series": "http_request_duration_seconds", "unit": "seconds",
                "buckets": [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
                "match": {"handler": "/predict"}},
    "inflight": {"series": ["http_requests_inflight"]},
}


def custom_project(tmp_path: Path, metrics: dict | None = CUSTOM_METRICS,
                   protocol: str | None = None) -> tuple[ResolvedProject, Diagnostics]:
    """The example (prod) whose fraud-api is the user's own server on KServe's Knative mode
    (a gated canary), compiled from ml.yaml: `container.metrics` maps its series."""
    from ruamel.yaml import YAML

    from mlc.compiler.pipeline import check_environment

    root = tmp_path / "project"
    shutil.copytree(ROOT / "environments", root / "environments")
    values = YAML(typ="safe").load((ROOT / "ml.yaml").read_text("utf-8"))
    container = {"image": "server", "port": 9000, "readinessPath": "/ready"}
    if metrics is not None:
        container["metrics"] = metrics
    if protocol is not None:
        container["protocol"] = protocol
    api = values["serving"]["fraud-api"]
    api.update({"engine": "custom", "mode": "serverless", "container": container})
    api["rollout"]["gates"]["maxPredictionDrift"] = None  # mlc's runtime only
    api["autoscaling"] = {"minReplicas": 2, "maxReplicas": 6, "metric": "concurrency",
                          "target": 8}
    del api["allowFrom"]  # Knative's address, not the pods', is what clients reach
    del values["monitoring"]["drift"]  # no prediction log from a custom server
    values.setdefault("images", {}).setdefault("custom", {})["server"] = \
        "registry.example.com/fraud/server@sha256:" + "ab" * 32  # prod pins by digest
    (root / "ml.yaml").write_text(json.dumps(values, indent=2), "utf-8")
    diags = Diagnostics()
    project = check_environment(root, "prod", diags)
    return project, diags


def test_a_custom_server_without_metrics_is_measured_by_nothing(tmp_path: Path):
    project, diags = custom_project(tmp_path, None)
    assert project is None
    refused = {(d.code, ".".join(map(str, d.path))) for d in diags if d.code == "MLC374"}
    assert ("MLC374", "serving.fraud-api.slo.availability") in refused, list(diags)


def test_a_custom_servers_rules_read_its_own_series_and_pass_promtool(promtool: str,
                                                                     tmp_path: Path):
    project, diags = custom_project(tmp_path)
    assert project is not None, [d.message for d in diags]
    assert not [d for d in diags if d.code.startswith("MLC37")], [str(d) for d in diags]
    folder = write_tree(project, tmp_path / "out")
    rules = "monitoring/rules/endpoint-fraud-api.rules.yaml"
    tests = "monitoring/tests/endpoint-fraud-api.test.yaml"
    text = (folder / rules).read_text()
    assert not re.search(r"(?<![:\w])mlc_[a-z_]+\{", text), text
    assert 'http_requests_total{' in text and 'status=~"5.."' in text
    assert "http_request_duration_seconds_bucket{" in text
    checked = _promtool(promtool, folder, "check", "rules", rules)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _promtool(promtool, folder, "test", "rules", tests)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    (folder / rules).write_text(text.replace("http_requests_total", "http_requests_renamed"))
    assert _promtool(promtool, folder, "test", "rules", tests).returncode != 0
    (ep,) = project.endpoints.values()
    monitor = servicemonitors.engine_pod_monitor(project, ep)
    assert monitor["spec"]["podMetricsEndpoints"][0]["portNumber"] == 9000
    assert monitor["spec"]["podMetricsEndpoints"][0]["path"] == "/metrics"


def test_a_custom_label_regex_that_does_not_compile_is_refused(tmp_path: Path):
    bad = {**CUSTOM_METRICS, "inflight": {"series": ["http_requests_inflight"],
                                          "match": {"pool": "5(.."}}}
    project, diags = custom_project(tmp_path, bad)
    assert project is None
    [d] = [d for d in diags if d.code == "MLC380"]
    assert ".".join(map(str, d.path)) == \
        "serving.fraud-api.container.metrics.inflight.match.pool"


def test_a_status_format_without_a_status_label_is_refused(tmp_path: Path):
    """`statusFormat` alone would compile to nothing (no errors are measured without the
    label it describes): refused, located at the requests block."""
    requests = {k: v for k, v in CUSTOM_METRICS["requests"].items() if k != "statusLabel"}
    project, diags = custom_project(tmp_path, {**CUSTOM_METRICS, "requests": {
        **requests, "statusFormat": "class"}})
    assert project is None
    [d] = [d for d in diags if d.code == "MLC114"]
    assert ".".join(map(str, d.path)) == "serving.fraud-api.container.metrics.requests"
    assert "statusLabel" in d.message


def test_a_protocol_nothing_decodes_is_refused(tmp_path: Path):
    """`container.protocol` is read by the payload logger's receiver only: with no drift
    check or quality monitor of the endpoint, none is deployed and it is refused."""
    project, diags = custom_project(tmp_path, protocol="v2")
    assert project is None
    [d] = [d for d in diags if d.code == "MLC395"]
    assert ".".join(map(str, d.path)) == "serving.fraud-api.container.protocol"


@pytest.mark.slow
def test_a_real_custom_server_in_a_real_prometheus(tmp_path: Path):
    """tests/custom_server.py (a Starlette app with its own prometheus_client series) under
    steady traffic, scraped by a real Prometheus with the compiled rules: the SLO ratios
    come from its series, the canary's gates decide as Argo would, KEDA's concurrency reads
    its in-flight gauge; then 5xx answers make the error gate fail."""
    project, diags = custom_project(tmp_path)
    assert project is not None, [d.message for d in diags]
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tests.custom_server", str(port)],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            wait_ok(http, "/ready", server, lambda: "", "the custom server", 30)
            prom = PrometheusServer(tmp_path / "prom", [_target(port, project)],
                                    _rule_groups(project))
            try:
                stop, ready = time.time() + 90, False
                while time.time() < stop and not ready:
                    for _ in range(20):
                        assert http.post("/predict", json={}).status_code == 200
                    http.post("/predict", json={"bad": True})  # a client's error
                    result = prom.query("endpoint:mlc_requests:error_ratio_rate5m")
                    ready = len(result) == 1 and result[0][1] == 0
                    time.sleep(0.3)
                assert ready, prom.query("endpoint:mlc_requests:error_ratio_rate5m")
                slow = _recorded(prom, "endpoint:mlc_request_duration_seconds:slow_ratio_rate5m")
                assert 0 <= slow < 0.5, slow  # 20 ms answers against a 100 ms objective
                gates = _check_gates(prom, project)
                assert gates["error-rate"] == 0  # 400s are the client's
                assert 0.01 < gates["latency-p99"] <= 0.1, gates
                assert len(prom.query(_keda(project, "concurrency"))) == 1
                (ep,) = project.endpoints.values()
                limit = ep.rollout.gates.max_error_rate
                template = {m["name"]: m for m in
                            analysis.analysis_template(project, ep)["spec"]["metrics"]}
                stop, failing = time.time() + 60, None
                while time.time() < stop:
                    for _ in range(10):
                        http.post("/predict", json={"fail": True})
                    [(_, value)] = _gate_results(prom, project, "new")["error-rate"]
                    if value > limit:
                        failing = value
                        break
                    time.sleep(0.3)
                assert failing is not None and failing > limit
                assert decide(template["error-rate"], [failing]) == "Failed"
            finally:
                prom.stop()
    finally:
        server.terminate()
        server.wait(10)
