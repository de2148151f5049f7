"""A canary's shadow phase (`rollout.shadowFirst`): the new version runs as a gated shadow
before the first canary step gives it any client.

The objects: in each form that delivers the phase (an Argo Rollout's inline analysis step,
the delivery workflow's shadow step on Knative and KServe) the shadow gates come before the
first weight, the canary gates start after it, and every object matches its upstream CRD.

The gates for real: the Knative Services' containers run as local processes as the pods run
them (command, args, env, mounted ConfigMaps), the stable primary on the previous version
(tests/faulty_model.py) copying every request to the shadow on the new one
(tests/shifted_model.py). Two endpoints: on `agrees` the new version gives the same class,
on `disagrees` the other one. A real Prometheus scrapes both primaries; the workflow's
`shadow-gate` step is run as its template declares it, and the Argo Rollout's shadow
AnalysisTemplate (the same endpoints compiled as `mode: online`) is decided on the same
Prometheus as Argo Rollouts decides (tests/argo_analysis.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hera.workflows import models as hera_models

from mlc.compiler.backends import core
from mlc.compiler.backends.serving import gate_driver
from mlc.runtime import gate as gate_runtime

from . import schema_check
from .argo_analysis import decide
from .conftest import ROOT
from .prometheus_server import PrometheusServer, Target
from .stopping import stop_all
from .test_delivery import templates
from .test_prometheus_real import Pod
from .test_serving import CRDS, Built, build

NAMESPACE = "scoring-default"
SHADOW_FIRST = {"duration": "3s", "percent": 100, "tolerance": 0.0, "gates": {
    "interval": "1s", "minAgreement": 0.9, "maxErrorRate": 0.05, "maxLatencyP99": "2s",
    "maxPredictionDrift": 0.2, "failureLimit": 1}}
STEPS = [{"weight": 20, "pause": "2s"}, {"weight": 100, "pause": "2s"}]


def endpoints(**form: Any) -> dict[str, dict[str, Any]]:
    rollout = {"strategy": "canary", "shadowFirst": SHADOW_FIRST, "steps": STEPS}
    return {name: {"model": "scorer", "rollout": rollout, **form}
            for name in ("agrees", "disagrees")}


@pytest.fixture(scope="module")
def serverless(tmp_path_factory) -> Built:
    return build(tmp_path_factory.mktemp("serverless"), endpoints(mode="serverless"))


@pytest.fixture(scope="module")
def online(tmp_path_factory) -> Built:
    return build(tmp_path_factory.mktemp("online"), endpoints())


# ---------------------------------------------------------------------------------------
# The objects


def test_the_rollout_measures_the_shadow_before_the_first_weight(online):
    rollout = online.named("Rollout", "agrees")
    canary = rollout["spec"]["strategy"]["canary"]
    assert canary["steps"][0] == {"analysis": {"templates": [
        {"templateName": "agrees-shadow-gates"}]}}
    assert canary["steps"][1] == {"setWeight": 20}
    # the canary gates measure the new pods, which exist only from the first setWeight
    assert canary["analysis"]["startingStep"] == 1
    # the stable pods follow their endpoint.json's mirror (tests/test_mirror_reload.py): the
    # kubelet refreshes a ConfigMap volume only where it is mounted without subPath
    (container,) = rollout["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mount = next(m for m in container["volumeMounts"]
                 if env["MLC_ENDPOINT_CONFIG"].startswith(m["mountPath"] + "/"))
    assert "subPath" not in mount
    template = online.named("AnalysisTemplate", "agrees-shadow-gates")
    metrics = {m["name"]: m for m in template["spec"]["metrics"]}
    assert set(metrics) == {"shadow-agreement", "shadow-error-rate", "shadow-latency-p99",
                            "shadow-prediction-drift"}
    for m in metrics.values():
        assert m["count"] == 3  # 3 s at 1 s: the step ends, passed or failed
        # the stable pods' refreshed config (2 min), then one rate window (the new version's
        # answers only)
        assert m["initialDelay"] == "180s"
    assert metrics["shadow-agreement"]["successCondition"].endswith("result[0] >= 0.9")
    assert metrics["shadow-error-rate"]["successCondition"].endswith("result[0] <= 0.05")


def test_the_shadow_arm_serves_the_new_version_and_the_primary_copies_to_it(online,
                                                                          serverless):
    for built in (online, serverless):
        data = built.named("ConfigMap", "agrees-serve")["data"]
        primary, shadow = json.loads(data["primary.json"]), json.loads(data["shadow.json"])
        assert shadow["model_uri"] == primary["model_uri"]  # what the sync changed
        assert shadow["metrics_endpoint"] == "agrees-shadow"  # never counted as live traffic
        assert primary["mirror"]["percent"] == 100
        assert primary["mirror"]["url"].startswith("http://agrees-shadow.")
    assert online.named("Deployment", "agrees-shadow")
    shadow = serverless.named("Service", "agrees-shadow", "serving.knative.dev/v1")
    assert shadow["metadata"]["labels"]["networking.knative.dev/visibility"] == "cluster-local"


def test_the_workflow_runs_the_shadow_step_first(serverless):
    wf = serverless.files["delivery/workflow-agrees.yaml"][0]
    steps = [s[0] for s in templates(wf)["rollout"]["steps"]]
    assert [s["name"] for s in steps][:3] == ["shadow", "weight-1", "gate-1"]
    assert steps[0]["template"] == "shadow-gate"
    args = templates(wf)["shadow-gate"]["container"]["args"]
    assert args[args.index("--gates") + 1] == gate_driver.SHADOW_GATES_PATH
    (volume,) = wf["spec"]["volumes"]
    assert [i["key"] for i in volume["configMap"]["items"]] == [
        gate_driver.GATES_KEY, gate_driver.SHADOW_GATES_KEY]
    # the deadline holds the phase (the stable pods' refreshed config, its window, its
    # duration), then each step's canary gates (their 1m delay and the pause)
    assert wf["spec"]["activeDeadlineSeconds"] == gate_driver.OVERHEAD_SECONDS + (
        120 + 60 + 3) + (60 + 2) * 2


def test_kserve_gets_the_shadow_step_too(tmp_path):
    built = build(tmp_path, endpoints(mode="serverless", kserve=True))
    wf = built.files["delivery/workflow-agrees.yaml"][0]
    assert [s[0]["name"] for s in templates(wf)["rollout"]["steps"]][0] == "shadow"
    assert len(built.of_kind("InferenceService")) == 4  # each endpoint's primary and shadow
    for obj in [*built.of_kind("InferenceService"), wf]:
        relpath = CRDS[(obj["apiVersion"], obj["kind"])]
        assert schema_check.check_crd(obj, relpath) == [], obj["metadata"]["name"]


def test_every_object_matches_its_upstream_schema(online, serverless):
    checked = set()
    for built in (online, serverless):
        for obj in built.objects():
            relpath = CRDS.get((obj["apiVersion"], obj["kind"]))
            if relpath:
                assert schema_check.check_crd(obj, relpath) == [], obj["metadata"]["name"]
                checked.add(obj["kind"])
    assert checked == {"Rollout", "AnalysisTemplate", "Service", "Workflow"}
    wf = serverless.files["delivery/workflow-agrees.yaml"][0]
    assert hera_models.Workflow.parse_obj(wf).dict(by_alias=True, exclude_none=True) == wf


def test_a_mirroring_primary_exports_every_comparison_series_from_zero():
    """rate() cannot see the first copies' answers in a series that appears with them: a
    shadow phase would lose its first batch, and the gates their first minutes."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from mlc import metrics
    from mlc.runtime.serve.shadow import ShadowStats

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ShadowStats("ep", "classification", 0.0, mirroring=True))
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(generate_latest(registry).decode())
               for s in f.samples}
    codes = {dict(labels)["code"] for name, labels in samples
             if name == "mlc_shadow_responses_total"}
    assert codes == {*metrics.SERVE_CODES[metrics.PREDICT_ROUTE], "error"}
    for series in ("mlc_shadow_duration_seconds_count", "mlc_shadow_prediction_value_count"):
        assert [v for (name, _), v in samples.items() if name == series], series
    assert all(v == 0 for v in samples.values())


# ---------------------------------------------------------------------------------------
# The gates against a real Prometheus scraping the real serving runtime


def _register(tracking: str, name: str, model_file: str, features: list[str]) -> str:
    import mlflow
    import numpy as np
    import pandas as pd

    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(tracking)
    example = pd.DataFrame([[0.0] * len(features)], columns=features)
    signature = mlflow.models.infer_signature(example, np.array([0.1]))
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=model_file,
                                       signature=signature, input_example=example,
                                       pip_requirements=["numpy"])
    return mlflow.register_model(info.model_uri, name).version


def _post(pod: Pod, rows: list[dict]) -> list[int]:
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda row: pod.http.post(
            "/predict", json={"instances": [row]}).status_code, rows))


def run_shadow_step(built: Built, folder: Path, endpoint: str,
                    prometheus: str) -> subprocess.CompletedProcess:
    """The workflow's shadow step as its template declares it: command, args, the step's
    arguments, the gate file where the template mounts it, the template's environment.

    Two changes: the cluster's Prometheus is the test's, and, to keep the test short, the
    gate file's initial delay (one rate window, 60 s) is 0. It waits for the window to hold
    only the new version's answers, which here it does from the start.
    """
    wf = built.files[f"delivery/workflow-{endpoint}.yaml"][0]
    t = templates(wf)
    call = next(s[0] for s in t["rollout"]["steps"] if s[0]["name"] == "shadow")
    values = {p["name"]: p["value"] for p in call["arguments"]["parameters"]}
    values |= {"new": f"{endpoint}-00002", "stable": f"{endpoint}-00001"}
    container = t["shadow-gate"]["container"]
    settings = json.loads(built.named("ConfigMap", f"{endpoint}-serve")["data"][
        gate_driver.SHADOW_GATES_KEY])
    assert settings["initialDelaySeconds"] == 180
    gates_file = folder / f"{endpoint}-shadow-gates.json"
    gates_file.write_text(json.dumps({**settings, "initialDelaySeconds": 0,
                                      "prometheus": prometheus}))
    argv = []
    for a in container["command"] + container["args"]:
        for key, value in values.items():
            a = a.replace("{{inputs.parameters." + key + "}}", value)
        argv.append(str(gates_file) if a == gate_driver.SHADOW_GATES_PATH else a)
    assert argv[:3] == ["python", "-m", "mlc.runtime"]
    env = {e["name"]: e["value"] for e in container["env"]}
    env |= {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.slow
def test_shadow_gates_pass_a_version_that_agrees_and_stop_one_that_does_not(
        serverless, online, tmp_path, monkeypatch):
    from . import faulty_model, shifted_model  # import MLflow

    project = serverless.project
    objects = [*serverless.objects(), *(f.content for f in core.emit(project)
                                        if f.path == "core/config.yaml")]
    features = [f.field for f in project.endpoints["agrees"].input_features]
    assert project.endpoints["agrees"].input_features[0].type == "float64"  # the marker
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)  # the registry's artifacts (./mlruns) stay in the test's folder
    registered = project.endpoints["agrees"].registered_name
    stable = _register(tracking, registered, faulty_model.__file__, features)
    new = _register(tracking, registered, shifted_model.__file__, features)
    import mlflow

    alias = project.endpoints["agrees"].alias
    mlflow.MlflowClient(tracking).set_registered_model_alias(registered, alias, new)
    # the mirror sender takes its share of this busy machine's CPU (by default only idle
    # time), so that the gates see every copy compared
    env = {"MLFLOW_TRACKING_URI": tracking, "MLC_ALLOW_PICKLE": "1",
           "MLC_PREDICTION_LOG_URI": str(tmp_path / "log"),
           "MLC_MIRROR_SENDER_SCHEDULING": "normal"}
    pods: list[Pod] = []
    prometheus = None
    try:
        # one shadow process answers both primaries' copies (the new version is one model)
        (tmp_path / "shadow").mkdir()
        shadow = Pod(tmp_path / "shadow", objects,
                     serverless.named("Service", "agrees-shadow", "serving.knative.dev/v1"))
        shadow.start(env)
        pods.append(shadow)
        primaries = {}
        for name in ("agrees", "disagrees"):
            (tmp_path / name).mkdir()
            primary = Pod(tmp_path / name, objects,
                          serverless.named("Service", name, "serving.knative.dev/v1"))
            config_file = primary.local("/etc/mlc/endpoint.json")
            config = json.loads(config_file.read_text())
            # the stable pods started on the previous version, before the sync: their pod
            # template (MLC_MODEL_URI) and the ConfigMap of then named it; the copies go to
            # the shadow's address, here its loopback port
            before = f"models:/{registered}/{stable}"
            config["model_uri"] = before
            config["mirror"]["url"] = f"http://127.0.0.1:{shadow.port}"
            config_file.write_text(json.dumps(config))
            primary.start({**env, "MLC_MODEL_URI": before})
            pods.append(primary)
            primaries[name] = primary
        prometheus = PrometheusServer(tmp_path / "prometheus", [
            Target(f"127.0.0.1:{p.port}", {"namespace": NAMESPACE}) for p in primaries.values()],
            [])
        for pod in pods:
            pod.wait_ready()

        shadow_checks = {m["name"]: m for m in online.named(
            "AnalysisTemplate", "agrees-shadow-gates")["spec"]["metrics"]}
        disagreeing = {m["name"]: m for m in online.named(
            "AnalysisTemplate", "disagrees-shadow-gates")["spec"]["metrics"]}

        def decisions(metrics: dict[str, dict]) -> dict[str, str]:
            out = {}
            for name, m in metrics.items():
                result = [v for _, v in prometheus.query(m["provider"]["prometheus"]["query"])]
                assert len(result) == 1, (name, result)  # never empty: Argo would Error
                out[name] = decide(m, result)
            return out

        # idle: nothing copied yet, so nothing to measure: inconclusive, never a pass
        prometheus.wait_for("up", lambda r: len(r) == 2 and all(v == 1 for _, v in r))
        assert decisions(shadow_checks) == dict.fromkeys(shadow_checks, "Inconclusive")

        types = {f.field: f.type for f in project.endpoints["agrees"].input_features}
        row = {f: 1 if types[f].startswith("int") else 0.5 for f in features}
        marker = features[0]  # both models read column 0
        assert _post(primaries["agrees"], [row] * 40) == [200] * 40
        assert _post(primaries["disagrees"],
                     [{**row, marker: shifted_model.THRESHOLD * 10}] * 40) == [200] * 40
        for name in primaries:
            compared = prometheus.wait_for(
                f'sum(mlc_shadow_compared_total{{endpoint="{name}"}})',
                lambda r: r and r[0][1] >= 40)
            assert compared and compared[0][1] >= 40, (name, compared, primaries[name].output())
        # rate() needs two scrapes of a series; the comparison's histogram appears with
        # the first comparison
        for name in primaries:
            prometheus.wait_for(
                f'sum(rate(mlc_shadow_prediction_value_count{{endpoint="{name}"}}[1m]))',
                lambda r: r and r[0][1] > 0)

        # the runtime's own `variant` label survives the scrape (honor_labels, as the
        # PodMonitor's honorLabels): the primary's series say which server they came from
        assert prometheus.query('sum(mlc_requests_total{endpoint="agrees", variant="primary", '
                                'code="200", route="/predict"})')[0][1] >= 40

        # the Argo Rollout's analysis step: the agreeing version passes every gate
        assert decisions(shadow_checks) == dict.fromkeys(shadow_checks, "Successful")
        got = decisions(disagreeing)
        assert got["shadow-agreement"] == "Failed"
        assert got["shadow-prediction-drift"] == "Failed"  # 0.1 against 0.9: another bin
        assert got["shadow-error-rate"] == "Successful"  # it answered, wrongly

        # the workflow's shadow step: passed hands on to weight-1, failed ends the rollout
        passed = run_shadow_step(serverless, tmp_path, "agrees", prometheus.url)
        assert passed.returncode == gate_runtime.EXIT_PASSED, passed.stdout + passed.stderr
        assert passed.stdout.count(": success") == 4 * 3  # 4 gates, 3 s at 1 s
        failed = run_shadow_step(serverless, tmp_path, "disagrees", prometheus.url)
        assert failed.returncode == gate_runtime.EXIT_FAILED, failed.stdout + failed.stderr
        assert "shadow-agreement: FAILED" in failed.stdout
    finally:
        if prometheus is not None:
            prometheus.stop()
        stop_all(pods)


# ---------------------------------------------------------------------------------------
# `mlc explain` shows the gates that apply, and none where nothing reads them


def test_explain_shows_the_gates_each_strategy_reads(tmp_path):
    from mlc.compiler.diagnostics import Diagnostics
    from mlc.compiler.explain import explain

    from .conftest import write_project
    from .test_serving import project_text

    write_project(tmp_path, {"ml.yaml": project_text({
        "phased": {"model": "scorer", "rollout": {"strategy": "canary",
                                                  "shadowFirst": {"duration": "30m"}}},
        "shadowed": {"model": "scorer", "rollout": {"strategy": "shadow",
                                                    "shadow": {"alias": "b"}}},
        "plain": {"model": "scorer"}})})

    def shown(dotted: str) -> str:
        diags = Diagnostics()
        text = explain(tmp_path, "default", dotted, diags)
        assert text is not None, [d.message for d in diags.items]
        return text

    def rows(text: str) -> dict[str, str]:
        return {line.split()[0]: " ".join(line.split()[1:]) for line in text.splitlines()}

    phased = shown("serving.phased.rollout")
    assert rows(phased)["serving.phased.rollout.shadowFirst.gates.minAgreement"] == \
        "0.95 (default)"
    assert rows(phased)["serving.phased.rollout.shadowFirst.duration"].startswith(
        '"30m" (ml.yaml:')
    assert "rollout.gates.maxErrorRate" in phased  # the canary steps' gates
    assert "rollout.variants" not in phased and "rollout.router" not in phased
    assert shown("serving.plain.rollout") == \
        'serving.plain.rollout.strategy  "rolling"  (default)\n'
    shadowed = shown("serving.shadowed.rollout")
    assert "rollout.gates" not in shadowed and "rollout.steps" not in shadowed
    assert "serving.shadowed.rollout.shadow.percent" in shadowed
    # asked for by its path, an unread setting is still explained
    assert "serving.plain.rollout.gates.maxErrorRate" in shown("serving.plain.rollout.gates")
