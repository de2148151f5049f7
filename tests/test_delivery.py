"""Knative and KServe canaries: the delivery workflow, and its gates measured for real.

The workflow objects are checked against Argo Workflows' CRD schema and read back by hera; the
gate step's command runs as a local process exactly as its template declares it, with the
gate file from the endpoint's ConfigMap, against a real `prometheus` that scrapes a small
exporter of this test (series with the labels a Knative pod's metrics carry).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from hera.workflows import models as hera_models

from mlc import metrics
from mlc.compiler.backends import argocd
from mlc.compiler.backends.serving import gate_driver
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import check_environment
from mlc.runtime import gate as gate_runtime

from . import schema_check
from .conftest import ROOT
from .test_serving import CRDS, Built, build, diagnostic_paths

NAMESPACE = "scoring-default"
WORKFLOW_CRD = "argo-workflows/argoproj.io_workflows.yaml"
GATES = {"maxLatencyP99": "500ms", "maxErrorRate": 0.05, "maxPredictionDrift": 0.2,
         "interval": "1s", "failureLimit": 0}
ENDPOINTS: dict[str, dict[str, Any]] = {
    "knative-canary": {"model": "scorer", "mode": "serverless", "rollout": {
        "strategy": "canary", "steps": [{"weight": 10, "pause": "3s"}, {"weight": 50}],
        "gates": GATES}},
    "kserve-canary": {"model": "scorer", "kserve": True, "mode": "serverless",
                      "rollout": {"strategy": "canary", "gates": GATES}},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _param(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{{inputs.parameters." + key + "}}", value)
    return text


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    return build(tmp_path_factory.mktemp("delivery"), ENDPOINTS)


def templates(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in workflow["spec"]["templates"]}


# ---------------------------------------------------------------------------------------
# The objects


def test_driven_endpoints_get_a_workflow_and_its_identity(built):
    assert set(built.files) >= {"delivery/workflow-knative-canary.yaml",
                                "delivery/rbac-knative-canary.yaml",
                                "delivery/workflow-kserve-canary.yaml",
                                "delivery/rbac-kserve-canary.yaml"}
    knative = built.named("Service", "knative-canary", "serving.knative.dev/v1")
    # Knative's own gradual rollout would move traffic without the gates
    assert "serving.knative.dev/rollout-duration" not in knative["metadata"].get(
        "annotations", {})
    assert knative["spec"]["traffic"] == [{"latestRevision": True, "percent": 100}]
    isvc = built.named("InferenceService", "kserve-canary")
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 0  # a new revision starts at 0


def test_every_custom_resource_matches_its_upstream_schema(built):
    checked = set()
    for obj in built.objects():
        relpath = CRDS.get((obj["apiVersion"], obj["kind"]))
        if relpath:
            assert schema_check.check_crd(obj, relpath) == [], obj["metadata"]["name"]
            checked.add(obj["kind"])
    assert checked == {"Workflow", "Service", "InferenceService"}


def test_workflows_match_the_upstream_schema_and_round_trip_through_hera(built):
    for name in ENDPOINTS:
        wf = built.files[f"delivery/workflow-{name}.yaml"][0]
        assert schema_check.check_crd(wf, WORKFLOW_CRD) == [], name
        model = hera_models.Workflow.parse_obj(wf)
        assert model.dict(by_alias=True, exclude_none=True) == wf
        # an Argo CD PostSync hook: it runs after each sync, once the new revision is ready
        assert wf["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PostSync"


def test_knative_steps_move_the_service_traffic(built):
    wf = built.files["delivery/workflow-knative-canary.yaml"][0]
    t = templates(wf)
    steps = [s[0] for s in t["rollout"]["steps"]]
    assert [(s["name"], s["template"]) for s in steps] == [
        ("weight-1", "set-weight"), ("gate-1", "gate"),
        ("weight-2", "set-weight"), ("gate-2", "gate"), ("approve-2", "approve"),
        ("promote", "pin")]
    args = {p["name"]: p["value"] for p in steps[0]["arguments"]["parameters"]}
    assert (args["new-percent"], args["stable-percent"]) == ("10", "90")
    assert {p["name"]: p["value"] for p in steps[1]["arguments"]["parameters"]}[
        "duration"] == "3"  # the step's pause
    patch = yaml.safe_load(_param(t["set-weight"]["resource"]["manifest"], {
        "new": "svc-00002", "stable": "svc-00001", "new-percent": "10",
        "stable-percent": "90"}))
    assert patch["spec"] == {"traffic": [{"percent": 90, "revisionName": "svc-00001"},
                                         {"percent": 10, "revisionName": "svc-00002"}]}
    assert t["set-weight"]["resource"]["mergeStrategy"] == "merge"
    # a failure gives everything back to the revision that served before
    rollback = t["finish"]["steps"][0][0]
    assert rollback["template"] == "pin" and "Succeeded" in rollback["when"]
    assert wf["spec"]["onExit"] == "finish"
    # 1 s gates after a 1 s delay: 3 s pause, then one interval and a day for the approval
    assert wf["spec"]["activeDeadlineSeconds"] == 600 + (1 + 3) + (1 + 1) + 24 * 3600


def test_kserve_steps_move_canary_traffic_percent(built):
    t = templates(built.files["delivery/workflow-kserve-canary.yaml"][0])
    patch = yaml.safe_load(_param(t["set-weight"]["resource"]["manifest"], {
        "new": "a", "stable": "b", "new-percent": "50", "stable-percent": "50"}))
    assert patch["spec"] == {"predictor": {"canaryTrafficPercent": 50}}
    assert yaml.safe_load(t["rearm"]["resource"]["manifest"])["spec"] == {
        "predictor": {"canaryTrafficPercent": 0}}
    steps = [s[0]["name"] for s in t["rollout"]["steps"]]
    assert steps[-2:] == ["promote", "rearm"]
    # nothing new: the split stays at 0, so that the next revision starts without traffic
    same = t["deliver"]["steps"][1][1]
    assert (same["name"], same["template"]) == ("pin-current", "rearm")
    assert t["finish"]["steps"][0][0]["template"] == "rearm"


def test_the_workflow_may_patch_only_its_one_object(built):
    role = next(o for o in built.files["delivery/rbac-kserve-canary.yaml"] if o["kind"] == "Role")
    assert role["rules"] == [
        {"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"],
         "resourceNames": ["kserve-canary"], "verbs": ["get", "patch"]},
        {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"],
         "verbs": ["create", "patch"]}]
    gate = templates(built.files["delivery/workflow-knative-canary.yaml"][0])["gate"]
    assert gate["automountServiceAccountToken"] is False  # it reads Prometheus only
    assert gate["container"]["securityContext"]["readOnlyRootFilesystem"] is True


def test_argo_cd_leaves_the_traffic_to_the_workflow(built):
    app = argocd.application(built.project)
    assert "RespectIgnoreDifferences=true" in app["spec"]["syncPolicy"]["syncOptions"]
    assert app["spec"]["ignoreDifferences"] == [
        {"group": "serving.knative.dev", "kind": "Service", "name": "knative-canary",
         "namespace": NAMESPACE, "jsonPointers": ["/spec/traffic"]},
        {"group": "serving.kserve.io", "kind": "InferenceService", "name": "kserve-canary",
         "namespace": NAMESPACE, "jsonPointers": ["/spec/predictor/canaryTrafficPercent"]}]
    assert schema_check.check_crd(app, "argo-cd/application-crd.yaml") == []


def test_gate_file_holds_the_analysis_template_queries_on_the_revision_label(built):
    config = json.loads(built.named("ConfigMap", "knative-canary-serve")["data"]["gates.json"])
    assert [g["name"] for g in config["gates"]] == ["error-rate", "latency-p99",
                                                    "prediction-drift"]
    assert [g["max"] for g in config["gates"]] == [0.05, 0.5, 0.2]
    for g in config["gates"]:
        assert "rollouts_pod_template_hash" not in g["query"]
        assert 'serving_knative_dev_revision="{{args.new-hash}}"' in g["query"]


# ---------------------------------------------------------------------------------------
# The verdict, as Argo Rollouts decides it


def test_verdicts():
    vector = {"data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "0.2"]}]}}
    assert gate_runtime.value_of(vector) == 0.2
    assert gate_runtime.value_of({"data": {"resultType": "vector", "result": []}}) is None
    assert gate_runtime.value_of({"data": {"resultType": "scalar", "result": [1, "3"]}}) == 3
    assert gate_runtime.verdict(0.2, 0.2) == "success"
    assert gate_runtime.verdict(0.21, 0.2) == "failure"
    assert gate_runtime.verdict(math.nan, 0.2) == "inconclusive"
    assert gate_runtime.verdict(None, 0.2) == "inconclusive"


def test_revision_names_are_escaped_into_the_query():
    q = gate_runtime.substitute('x{r="{{args.new-hash}}"}', {"new": "{{args.new-hash}}"},
                                {"new": 'a"b\\'})
    assert q == 'x{r="a\\"b\\\\"}'


# ---------------------------------------------------------------------------------------
# The gate step against a real Prometheus

STABLE_BINS = [20, 15, 10, 10, 8, 8, 7, 6, 6, 4, 3, 2, 1]  # 12 buckets and +Inf
DRIFTED_BINS = [1, 1, 1, 1, 2, 2, 4, 6, 10, 15, 20, 20, 17]
# revision -> (ok, errors, latency bucket index, prediction bins) per scrape
REVISIONS = {
    "svc-00001": (100, 0, 2, STABLE_BINS),  # stable
    "svc-00002": (100, 0, 2, STABLE_BINS),  # a sound new version
    "svc-00003": (80, 20, 2, STABLE_BINS),  # 20 % errors
    "svc-00004": (100, 0, 10, STABLE_BINS),  # p99 between 1 s and 2.5 s
    "svc-00005": (100, 0, 2, DRIFTED_BINS),  # predicts differently
}  # svc-00006: no traffic at all


class _Exporter(BaseHTTPRequestHandler):
    scrapes = 0
    endpoint = "knative-canary"

    def do_GET(self):  # noqa: N802 (http.server's name)
        type(self).scrapes += 1
        body = exposition(self.endpoint, type(self).scrapes).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def exposition(endpoint: str, n: int) -> str:
    """Counters that grow by the same amounts at every scrape: steady rates."""
    lines = []
    for rev, (ok, errors, slow_bin, bins) in sorted(REVISIONS.items()):
        labels = (f'endpoint="{endpoint}",namespace="{NAMESPACE}",'
                  f'serving_knative_dev_revision="{rev}",model_version="1"')
        lines.append(f'mlc_requests_total{{{labels},route="/predict",code="200"}} {ok * n}')
        lines.append(f'mlc_requests_total{{{labels},route="/predict",code="500"}} {errors * n}')
        total = ok + errors
        for i, bound in enumerate([*metrics.REQUEST_DURATION.buckets, math.inf]):
            le = "+Inf" if bound == math.inf else repr(float(bound))
            count = total * n if i >= slow_bin else 0
            lines.append(f'mlc_request_duration_seconds_bucket{{{labels},route="/predict",'
                         f'le="{le}"}} {count}')
        cumulative = 0
        for bound, per in zip([*metrics.PREDICTIONS.buckets, math.inf], bins, strict=True):
            cumulative += per
            le = "+Inf" if bound == math.inf else repr(float(bound))
            lines.append(f'mlc_prediction_value_bucket{{{labels},le="{le}"}} {cumulative * n}')
        lines.append(f"mlc_prediction_value_count{{{labels}}} {cumulative * n}")
    return "\n".join(lines) + "\n"


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (scripts/install-system-deps.sh installs it)")
    folder = tmp_path_factory.mktemp("prometheus")
    exporter = ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    port = _free_port()
    (folder / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "serve", "static_configs": [
            {"targets": [f"127.0.0.1:{exporter.server_address[1]}"]}]}]}))
    proc = subprocess.Popen(
        [binary, f"--config.file={folder / 'prometheus.yml'}",
         f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(folder / "prometheus.log").open("w"))
    url = f"http://127.0.0.1:{port}"
    try:
        # ready once rate() has two scrapes of every series to work with
        for _ in range(240):
            try:
                answer = _get(url + "/api/v1/query?query=" + urllib.parse.quote(
                    'sum(rate(mlc_requests_total{serving_knative_dev_revision="svc-00002"}'
                    '[1m]))'))
                if answer["data"]["result"] and float(answer["data"]["result"][0]["value"][1]):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("prometheus did not come up: " + (folder / "prometheus.log").read_text())
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        exporter.shutdown()


@pytest.fixture(scope="module")
def gated(tmp_path_factory, prometheus) -> Built:
    return build(tmp_path_factory.mktemp("gated"), {"knative-canary": ENDPOINTS["knative-canary"]},
                 platform={"prometheus": {"url": prometheus}})


def run_gate_step(built: Built, tmp_path: Path, new: str, stable: str = "svc-00001",
                  step: str = "gate-1") -> subprocess.CompletedProcess:
    """The gate step as the workflow runs it: its template's command and args, the step's
    arguments, the gate file where the template mounts it, the template's environment."""
    wf = built.files["delivery/workflow-knative-canary.yaml"][0]
    t = templates(wf)
    call = next(s[0] for s in t["rollout"]["steps"] if s[0]["name"] == step)
    values = {p["name"]: p["value"] for p in call["arguments"]["parameters"]}
    values |= {"new": new, "stable": stable}  # what `revisions` read from the Service
    container = t["gate"]["container"]
    mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "gates")
    gates_file = tmp_path / "gates.json"
    gates_file.write_text(built.named("ConfigMap", "knative-canary-serve")["data"][
        gate_driver.GATES_KEY])
    argv = [_param(a, values).replace(f"{mount}/{gate_driver.GATES_KEY}", str(gates_file))
            for a in container["command"] + container["args"]]
    assert argv[:3] == ["python", "-m", "mlc.runtime"]
    env = {e["name"]: e["value"] for e in container["env"]}
    env |= {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.slow
def test_a_sound_revision_passes(gated, tmp_path):
    result = run_gate_step(gated, tmp_path, "svc-00002")
    assert result.returncode == gate_runtime.EXIT_PASSED, result.stdout + result.stderr
    assert result.stdout.count(": success") == 9  # 3 gates x 3 s of pause at 1 s


@pytest.mark.slow
@pytest.mark.parametrize(("revision", "gate"), [("svc-00003", "error-rate"),
                                                ("svc-00004", "latency-p99"),
                                                ("svc-00005", "prediction-drift")])
def test_a_failing_gate_fails_the_step(gated, tmp_path, revision, gate):
    result = run_gate_step(gated, tmp_path, revision)
    assert result.returncode == gate_runtime.EXIT_FAILED, result.stdout + result.stderr
    assert f"{gate}: FAILED" in result.stdout


@pytest.mark.slow
def test_no_traffic_is_not_a_pass(gated, tmp_path):
    result = run_gate_step(gated, tmp_path, "svc-00006", step="gate-2")
    assert result.returncode == gate_runtime.EXIT_INCONCLUSIVE, result.stdout + result.stderr


def test_bad_revision_names_are_refused(tmp_path):
    gates = tmp_path / "gates.json"
    gates.write_text("{}")
    assert gate_runtime.main(["--gates", str(gates), "--new", 'x"}) or vector(1', "--stable",
                              "y", "--duration", "1"]) == gate_runtime.EXIT_USAGE


# ---------------------------------------------------------------------------------------
# What was dropped without a word before: now refused with a located error


def _diagnostics(tmp_path, endpoint: dict[str, Any]) -> dict[str, list[str]]:
    return diagnostic_paths(tmp_path, {"e": endpoint})


@pytest.mark.parametrize(("endpoint", "expected"), [
    ({"kserve": True, "rollout": {"strategy": "canary"}},
     {"MLC341": ["serving.e.rollout.strategy"]}),
    ({"kserve": True, "rollout": {"strategy": "blueGreen"}},
     {"MLC340": ["serving.e.rollout.strategy"]}),
    ({"mode": "serverless", "rollout": {"strategy": "blueGreen"}},
     {"MLC340": ["serving.e.rollout.strategy"]}),
    ({"rollout": {"strategy": "shadow", "shadow": {"alias": "b"}, "gates": {"interval": "2m"}}},
     {"MLC340": ["serving.e.rollout.gates"]}),
    ({"mode": "serverless", "rollout": {"strategy": "ab", "gates": {"maxErrorRate": 0.1},
                                        "variants": [{"name": "a", "weight": 50},
                                                     {"name": "b", "weight": 50}]}},
     {"MLC340": ["serving.e.rollout.gates"]}),
    ({"kserve": True, "mode": "serverless", "rollout": {
        "strategy": "shadow", "shadow": {"alias": "b"}, "steps": [{"weight": 10}]}},
     {"MLC342": ["serving.e.rollout.steps"]}),
    ({"rollout": {"strategy": "canary", "shadow": {"alias": "b"}, "autoPromote": True}},
     {"MLC342": ["serving.e.rollout.shadow", "serving.e.rollout.autoPromote"]}),
    # an environment turning the canary off keeps its gates and steps for later: no error
    ({"rollout": {"strategy": "rolling", "gates": {"maxErrorRate": 0.1},
                  "steps": [{"weight": 10}]}}, {}),
    ({"mode": "serverless", "kserve": True, "rollout": {"strategy": "canary"}}, {}),
], ids=["kserve-standard-canary", "kserve-blue-green", "knative-blue-green", "shadow-gates",
        "ab-gates", "shadow-steps", "canary-with-shadow-settings", "rolling-keeps-them",
        "kserve-serverless-canary"])
def test_what_nothing_would_deliver_is_refused(tmp_path, endpoint, expected):
    assert _diagnostics(tmp_path, {"model": "scorer", **endpoint}) == expected


def test_the_example_has_no_delivery_workflow():
    """An online canary is an Argo Rollout: its gates need no workflow."""
    project = check_environment(ROOT, "prod", Diagnostics())
    assert project is not None
    assert not gate_driver.driven(project.endpoints["fraud-api"])
    assert gate_driver.ignored_fields(project) == []
