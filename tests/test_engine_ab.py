"""An A/B rollout of an endpoint served by another engine (resolve/traffic.py
`engine_routed`, backends/serving/__init__.py `_engine_router`): each variant a KServe
InferenceService, mlc's A/B router in front of their predictor Services, the router's own
PodMonitor, and the A/B guard over the router's per-variant series.

The objects are checked against KServe's and the Prometheus operator's CRDs and
Kubernetes' own schemas. The router then runs as its compiled Deployment declares it
(command, args, env, the ConfigMap key it reads as MLC_ENDPOINT_CONFIG) as a local process,
in front of two V2 servers standing in for the variants' predictors (mlc's own server
speaking the Open Inference Protocol: no MLServer environment is needed to see the split,
the stickiness and the V2 round trip), and a real Prometheus scrapes the router while the
guard's compiled queries decide which variant passes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any

import httpx
import numpy as np
import pytest

from mlc.compiler.backends.monitoring import servicemonitors
from mlc.compiler.backends.serving.ab_guard import VARIANT, gate_checks

from . import schema_check
from .stopping import stop_all
from .test_serve import _free_port
from .test_serve_traffic import Process, Prometheus, _registry, _total
from .test_serving import build, diagnostic_paths

ISVC_CRD = "kserve/serving.kserve.io_inferenceservices.yaml"
PODMONITOR_CRD = "prometheus-operator/monitoring.coreos.com_podmonitors.yaml"
NAMESPACE = "scoring-default"
WEIGHTS = {"control": 70, "treatment": 30}
GATES = {"maxErrorRate": 0.05, "maxLatencyP99": "2s", "interval": "1m", "failureLimit": 1}


def shop(engine: str = "mlserver", **extra: Any) -> dict[str, Any]:
    rollout = {"strategy": "ab", "assignment": {"header": "X-User-Id"}, "gates": GATES,
               "variants": [{"name": "control", "weight": WEIGHTS["control"]},
                            {"name": "treatment", "alias": "challenger",
                             "weight": WEIGHTS["treatment"]}]}
    rollout |= extra.pop("rollout", {})
    return {"model": "scorer", "engine": engine, "hardware": "cpu-small", **extra,
            "rollout": rollout}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build(tmp_path_factory.mktemp("engine-ab"), {"shop": shop()})


def _router_config(built) -> dict[str, Any]:
    return json.loads(built.named("ConfigMap", "shop-serve")["data"]["router.json"])


# ---------------------------------------------------------------------------------------
# The objects


def test_each_variant_is_an_inference_service_behind_the_router(built):
    schema_check.require_schemas()
    assert built.project.endpoints["shop"].rollout.traffic == "router"
    isvcs = built.of_kind("InferenceService")
    assert [d["metadata"]["name"] for d in isvcs] == ["shop-control", "shop-treatment"]
    for doc in isvcs:
        assert schema_check.check_crd(doc, ISVC_CRD) == [], doc["metadata"]["name"]
        assert doc["spec"]["predictor"]["model"]["runtime"] == "kserve-mlserver"
        assert "canaryTrafficPercent" not in doc["spec"]["predictor"]
    uris = {d["metadata"]["name"]: d["spec"]["predictor"]["initContainers"][0]["args"]
            for d in isvcs}
    assert "models:/scorer@champion" in uris["shop-control"]
    assert "models:/scorer@challenger" in uris["shop-treatment"]
    # the router forwards to each predictor Service KServe makes (Standard mode: port 80)
    cfg = _router_config(built)
    assert cfg["variants"] == [
        {"name": n, "weight": w,
         "url": f"http://shop-{n}-predictor.{NAMESPACE}.svc.cluster.local"}
        for n, w in WEIGHTS.items()]
    assert cfg["assignment"] == {"header": "x-user-id"}
    assert cfg["guard"]["baseline"] == "control"


def test_the_router_deployment_service_and_policies_are_valid(built):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    version = kubernetes_validate.latest_version()
    deployment = built.named("Deployment", "shop-router")
    (service,) = built.of_kind("Service")
    assert service["metadata"]["name"] == "shop"
    assert service["spec"]["selector"]["mlc.dev/role"] == "router"
    policies = {p["metadata"]["name"]: p for p in built.of_kind("NetworkPolicy")}
    assert set(policies) == {"shop-control-ingress", "shop-treatment-ingress",
                             "shop-router-ingress"}
    for obj in [deployment, service, *policies.values(),
                *built.of_kind("PodDisruptionBudget"), *built.of_kind("ConfigMap")]:
        kubernetes_validate.validate(obj, version, strict=True)
    # the variants take the router's requests on the engine's port
    rules = policies["shop-treatment-ingress"]["spec"]["ingress"]
    assert {"podSelector": {"matchLabels": {**service["spec"]["selector"]}}} in rules[0]["from"]
    assert rules[0]["ports"] == [{"port": 8080, "protocol": "TCP"}]
    # the router listens as mlc's server does, on its named port
    assert policies["shop-router-ingress"]["spec"]["ingress"][0]["ports"] == [
        {"port": "http", "protocol": "TCP"}]


def test_the_router_has_its_own_pod_monitor(built):
    schema_check.require_schemas()
    engine, router = servicemonitors.pod_monitors(built.project,
                                                  built.project.endpoints["shop"])
    for doc in (engine, router):
        assert schema_check.check_crd(doc, PODMONITOR_CRD) == [], doc["metadata"]["name"]
    assert engine["spec"]["selector"]["matchExpressions"] == [
        {"key": "mlc.dev/role", "operator": "NotIn", "values": ["router"]}]
    assert engine["spec"]["podMetricsEndpoints"][0]["portNumber"] == 8082  # MLServer's
    assert router["spec"]["selector"]["matchLabels"]["mlc.dev/role"] == "router"
    assert router["spec"]["podMetricsEndpoints"][0]["portNumber"] == 8080


def test_the_guard_is_built_for_an_engine_ab(built):
    assert {"delivery/cronworkflow-shop.yaml", "delivery/configmap-shop.yaml",
            "delivery/rbac-shop.yaml"} <= set(built.files)


PLAIN_AB = {"strategy": "ab", "variants": [
    {"name": "control", "weight": 70}, {"name": "treatment", "alias": "challenger",
                                        "weight": 30}]}


@pytest.mark.parametrize(("section", "codes"), [
    ({"mode": "serverless", "rollout": PLAIN_AB}, {"MLC392": ["serving.shop.rollout.strategy"]}),
    ({"rollout": {"strategy": "shadow", "shadow": {"alias": "challenger"}}},
     {"MLC392": ["serving.shop.rollout.strategy"],
      "MLC376": ["serving.shop.rollout.strategy"]}),
], ids=["serverless-ab", "shadow"])
def test_what_an_engine_still_cannot_deliver_is_refused(tmp_path, section, codes):
    got = diagnostic_paths(tmp_path, {"shop": {"model": "scorer", "engine": "mlserver",
                                               "hardware": "cpu-small", **section}})
    assert {k: v for k, v in got.items() if k in codes} == codes, got


# ---------------------------------------------------------------------------------------
# The router as a process in front of two V2 servers, and the guard's queries


def _v2(features: list[str], rng) -> dict[str, Any]:
    return {"inputs": [{"name": f, "datatype": "FP64", "shape": [1],
                        "data": [float(rng.normal())]} for f in features]}


@pytest.mark.slow
def test_the_compiled_router_splits_v2_requests_and_the_guard_judges_each_variant(
        built, tmp_path):
    prometheus_bin = shutil.which("prometheus")
    # the variants' stand-ins: mlc's server for the same model, one per arm, speaking V2
    standin = build(tmp_path / "standin", {"shop": {
        "model": "scorer", "rollout": {"strategy": "ab", "variants": [
            {"name": "control", "weight": WEIGHTS["control"]},
            {"name": "treatment", "alias": "challenger", "weight": WEIGHTS["treatment"]}]}}})
    project = standin.project
    (tmp_path / "project.json").write_text(project.model_dump_json())
    tracking, versions = _registry(tmp_path, project, "scorer")
    data = standin.named("ConfigMap", "shop-serve")["data"]
    serve = ["serve", "--project", str(tmp_path / "project.json"), "--endpoint", "shop"]
    env = {"MLFLOW_TRACKING_URI": tracking, "MLC_TORCH_THREADS": "1"}
    variants = {n: Process(tmp_path, n, serve, json.loads(data[f"variant-{n}.json"]),
                           {**env, "MLC_PREDICTION_LOG_URI": str(tmp_path / f"{n}-log")})
                for n in WEIGHTS}

    # the router as its Deployment declares it; only the predictors' addresses are local
    deployment = built.named("Deployment", "shop-router")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "mlc.runtime"]
    declared_env = {e["name"]: e["value"] for e in container["env"]}
    cfg = _router_config(built)
    for v in cfg["variants"]:
        v["url"] = variants[v["name"]].url
    cfg.pop("guard")  # its override file is the cluster's (tests/test_ab_guard.py)
    cfg_path = tmp_path / "endpoint.json"
    cfg_path.write_text(json.dumps(cfg))
    port = _free_port()
    router_env = {**os.environ, **declared_env, "MLC_ENDPOINT_CONFIG": str(cfg_path),
                  "HOME": str(tmp_path)}
    log = open(tmp_path / "router.log", "wb")
    router = subprocess.Popen([sys.executable, "-m", "mlc.runtime", *container["args"],
                               "--host", "127.0.0.1", "--port", str(port)],
                              env=router_env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    prometheus = None
    features = [r.field for r in project.models["scorer"].features]
    rng = np.random.default_rng(7)
    users = [f"user-{u}" for u in rng.permutation(np.repeat(np.arange(300), 2))]
    bodies = [_v2(features, rng) for _ in users]
    try:
        for p in variants.values():
            p.wait_ready()
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(url + "/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert router.poll() is None and time.time() < deadline, \
                (tmp_path / "router.log").read_text()[-3000:]
            time.sleep(0.2)
        if prometheus_bin:
            prometheus = Prometheus(tmp_path, prometheus_bin, [f"127.0.0.1:{port}"], NAMESPACE)
            prometheus.wait_scraping()
        path = "/v2/models/scorer/infer"
        with httpx.Client(base_url=url, timeout=30) as http:
            answers = [http.post(path, json=b, headers={"X-User-Id": u})
                       for b, u in zip(bodies, users, strict=True)]
        assert all(a.status_code == 200 for a in answers), answers[0].text
        arms = [a.headers["x-mlc-variant"] for a in answers]
        served = {n: _total(p.metrics(), "mlc_requests_total", code="200")
                  for n, p in variants.items()}
        # V2 round trip: the router's answer is the variant's own answer to the same body
        for a, b, arm in list(zip(answers, bodies, arms, strict=True))[:40]:
            direct = httpx.post(variants[arm].url + path, json=b, timeout=30)
            mine = {k: v for k, v in a.json().items() if k != "id"}
            theirs = {k: v for k, v in direct.json().items() if k != "id"}
            assert mine == theirs and "outputs" in mine
        gates: dict[str, dict[str, float]] = {}
        if prometheus is not None:
            # the treatment's predictor goes away: the router answers its share 502
            variants["treatment"].stop()
            with httpx.Client(base_url=url, timeout=30) as http:
                later = [http.post(path, json=b, headers={"X-User-Id": u})
                         for b, u in zip(bodies, users, strict=True)]
            assert {a.status_code for a, u in zip(later, users, strict=True)
                    if a.headers.get("x-mlc-variant") == "treatment"} == {502}
            time.sleep(3)  # two scrapes
            for name in WEIGHTS:
                gates[name] = {}
                for gate, query, _limit in gate_checks(built.project,
                                                       built.project.endpoints["shop"]):
                    got = prometheus.query(query.replace(VARIANT, name))
                    gates[name][gate] = next(iter(got.values()), float("nan"))
    finally:
        if prometheus is not None:
            prometheus.stop()
        if router.poll() is None:
            router.terminate()
        router.wait(timeout=60)
        log.close()
        stop_all([p for p in variants.values() if p.proc.poll() is None])

    share = arms.count("treatment") / len(arms)
    assert abs(share - WEIGHTS["treatment"] / 100) < 0.08, share
    by_user: dict[str, set[str]] = {}
    for u, arm in zip(users, arms, strict=True):
        by_user.setdefault(u, set()).add(arm)
    assert all(len(a) == 1 for a in by_user.values())  # sticky
    assert served == {n: arms.count(n) for n in WEIGHTS}
    version_of = {"control": versions["production"], "treatment": versions["candidate"]}
    assert all(a.json()["model_version"] == version_of[arm]
               for a, arm in zip(answers, arms, strict=True))
    if prometheus_bin is None:
        pytest.skip("prometheus is not installed: the guard's queries were not evaluated")
    limits = {g: lim for g, _q, lim in gate_checks(built.project,
                                                   built.project.endpoints["shop"])}
    assert gates["control"]["error-rate"] == 0.0
    assert gates["control"]["latency-p99"] <= limits["latency-p99"]
    assert gates["treatment"]["error-rate"] > limits["error-rate"]  # the guard stops it


def _with_engine_ab(values) -> None:
    values["serving"]["fraud-ab"] = {
        "model": "fraud-classifier", "engine": "mlserver", "hardware": "small",
        "rollout": {"strategy": "ab", "assignment": {"header": "X-User"},
                    "gates": {"maxErrorRate": 0.05, "interval": "1m"},
                    "variants": [{"name": "a", "weight": 60}, {"name": "b", "weight": 40}]}}


def test_the_example_with_an_engine_ab_compiles_and_its_rules_pass_promtool(tmp_path):
    """The whole tree, through the CLI: every backend takes the router of an engine's A/B;
    the guard's and the engine's alert rules pass their promtool tests."""
    from .cluster_pods import mlc_compile
    from .test_engines import write_project

    out = mlc_compile(write_project(tmp_path / "project", _with_engine_ab), "dev",
                      tmp_path / "deploy")
    assert (out / "serving" / "deployment-fraud-ab.yaml").is_file()
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (scripts/install-system-deps.sh installs it)")
    monitoring = out / "monitoring"
    tests = [f"tests/{n}-fraud-ab.test.yaml" for n in ("ab-guard", "endpoint")]
    done = subprocess.run([promtool, "test", "rules", *tests], cwd=monitoring,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
