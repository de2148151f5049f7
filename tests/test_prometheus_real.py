"""The generated gates, recording rules and alerts against a real Prometheus scraping the real
serving runtime.

The example's prod environment is compiled; its fraud-api Rollout's container is run as a
local process the way the pod runs it (its command and args, its env, its mounted ConfigMaps
written where the pod would see them, under a temp folder), serving a model that fails or
stalls on a marker input (tests/faulty_model.py). Prometheus scrapes it every second with the
labels the PodMonitor adds and evaluates the generated PrometheusRule groups every second.
What differs from the pod: the registry and the prediction log are local (MLFLOW_TRACKING_URI,
MLC_PREDICTION_LOG_URI), the server listens on a free loopback port, and MLC_ALLOW_PICKLE=1
lets it load the fault-injecting model, a custom pyfunc that it refuses otherwise.

Every query of the generated AnalysisTemplate is sent to that Prometheus and decided as Argo
Rollouts decides (tests/argo_analysis.py): an empty result is an Error there, counted
towards aborting the rollout; a NaN fails both conditions: Inconclusive. One server plays
both the new and the stable version (both hashes name it), so the drift gate compares a
version with itself.

Phases: idle (the model is loaded, no request yet), healthy traffic, injected 5xx, injected
latency. Alerts whose `for:` is longer than a test can wait (EndpointHighErrorRatio: 5m,
EndpointNoTraffic: 15m) are checked by their expression returning a sample and by their rule
being pending in Prometheus' own evaluation; the SLO burn-rate alerts have no `for:` and are
checked firing in /api/v1/alerts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import compile_project

from .argo_analysis import decide
from .conftest import ROOT
from .prometheus_server import PrometheusServer, Target, free_port, is_nan, wait_ok

pytestmark = pytest.mark.slow
ENV = "prod"
ENDPOINT = "fraud-api"
NEW_HASH = "6d4f7c9b8"  # the pod template hash Argo Rollouts would put on the pod
HEALTHY, FAILING, SLOW = 200, 100, 30  # requests per phase


def _objects(files: dict[str, bytes]) -> list[dict]:
    return [doc for path, data in sorted(files.items()) if path.endswith(".yaml")
            for doc in yaml.safe_load_all(data) if isinstance(doc, dict) and "kind" in doc]


def _named(objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


class Pod:
    """The Rollout's serving container as a local process: same command, args, env, files."""

    def __init__(self, folder: Path, objects: list[dict], rollout: dict):
        spec = rollout["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        config_maps = {o["metadata"]["name"]: o.get("data", {}) for o in objects
                       if o["kind"] == "ConfigMap"}
        volumes = {v["name"]: v for v in spec["volumes"]}
        self.root = folder / "pod"
        self.mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        for mount, name in self.mounts.items():
            target = self.local(mount)
            target.mkdir(parents=True, exist_ok=True)
            for source in volumes[name].get("projected", {}).get("sources", []):
                data = config_maps[source["configMap"]["name"]]
                for item in source["configMap"]["items"]:
                    (target / item["path"]).write_text(data[item["key"]])
        self.endpoint_config = json.loads(
            Path(self.local("/etc/mlc/endpoint.json")).read_text())
        self.command = [self._path(a) for a in container["command"] + container["args"]]
        assert self.command[:3] == ["python", "-m", "mlc.runtime"], self.command
        self.env = {e["name"]: self._path(e["value"]) for e in container["env"] if "value" in e}
        self.log = open(folder / "server.log", "wb")
        self.port = free_port()
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)
        self.proc: subprocess.Popen | None = None

    def start(self, env: dict[str, str]) -> None:
        # The container listens on 0.0.0.0 and its declared port; here a free loopback port.
        self.proc = subprocess.Popen(
            [sys.executable, *self.command[1:], "--host", "127.0.0.1", "--port", str(self.port)],
            env={**os.environ, **self.env, **env}, stdout=self.log, stderr=subprocess.STDOUT)

    def local(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def _path(self, value: str) -> str:
        """A path inside one of the container's mounts, moved to the local copy."""
        for mount in self.mounts:
            if value == mount or value.startswith(mount.rstrip("/") + "/"):
                return str(self.local(value))
        return value

    def wait_ready(self, timeout: float = 120) -> None:
        assert self.proc is not None
        wait_ok(self.http, "/v2/health/ready", self.proc, self.output, "the server", timeout)

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)
        self.http.close()
        self.log.close()


def _register(tracking_uri: str, model_uri: str, features: list[str]) -> None:
    """tests/faulty_model.py as the version the endpoint's model URI names."""
    import mlflow
    import numpy as np
    import pandas as pd

    from . import faulty_model

    name, alias = model_uri.removeprefix("models:/").split("@")
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    example = pd.DataFrame([[0.0] * len(features)], columns=features)  # every input a double
    signature = mlflow.models.infer_signature(example, np.array([faulty_model.SCORE]))
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=faulty_model.__file__,
                                       signature=signature, input_example=example,
                                       pip_requirements=["numpy"])
    version = mlflow.register_model(info.model_uri, name).version
    mlflow.MlflowClient(tracking_uri).set_registered_model_alias(name, alias, version)


class Sent:
    """What came back for a batch of requests: how many of each status, the slowest answer."""

    def __init__(self, pod: Pod, rows: list[dict], concurrency: int):
        def one(row: dict) -> tuple[int, float]:
            start = time.perf_counter()
            code = pod.http.post("/predict", json={"instances": [row]}).status_code
            return code, time.perf_counter() - start

        with ThreadPoolExecutor(concurrency) as pool:
            answers = list(pool.map(one, rows))
        codes = [code for code, _ in answers]
        self.codes = {code: codes.count(code) for code in sorted(set(codes))}
        self.slowest = max(seconds for _, seconds in answers)


def test_gates_and_alerts_against_a_real_prometheus(tmp_path):
    from . import faulty_model  # imports MLflow

    diags = Diagnostics()
    (compiled,) = compile_project(ROOT, [ENV], diags)
    assert not diags.has_errors()
    project, objects = compiled.project, _objects(compiled.files)
    endpoint = project.endpoints[ENDPOINT]
    rollout = _named(objects, "Rollout", endpoint.k8s_name)
    template = _named(objects, "AnalysisTemplate", f"{endpoint.k8s_name}-gates")
    groups = _named(objects, "PrometheusRule", f"endpoint-{endpoint.k8s_name}")["spec"]["groups"]
    gates = {m["name"]: m for m in template["spec"]["metrics"]}
    assert set(gates) == {"error-rate", "latency-p99", "prediction-drift"}
    rules = {r.get("alert") or r["record"]: r for g in groups for r in g["rules"]}
    ratios = sorted(r for r in rules if r.startswith("endpoint:mlc_requests:error_ratio"))
    assert ratios

    # the model the pod's config names, fault-injecting, in a local registry
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    features = [f.field for f in endpoint.input_features]
    floats = [f.field for f in endpoint.input_features if f.type == "float64"]
    marker = floats[0]
    features = [marker, *(f for f in features if f != marker)]  # the model reads column 0
    types = {f.field: f.type for f in endpoint.input_features}
    row = {f: 1 if types[f].startswith("int") else 0.5 for f in features}
    pod = None
    prometheus = None
    try:
        pod = Pod(tmp_path, objects, rollout)
        _register(tracking, pod.endpoint_config["model_uri"], features)
        pod.start({
            "MLFLOW_TRACKING_URI": tracking,  # the cluster's registry, here a local one
            # the cluster's object store, here a local folder
            "MLC_PREDICTION_LOG_URI": str(tmp_path / "prediction-log"),
            "MLC_ALLOW_PICKLE": "1"})
        labels = {"namespace": project.platform.namespace, "rollouts_pod_template_hash": NEW_HASH,
                  "pod": f"{endpoint.k8s_name}-{NEW_HASH}-x1"}
        prometheus = PrometheusServer(tmp_path / "prometheus",
                                      [Target(f"127.0.0.1:{pod.port}", labels)], groups)
        pod.wait_ready()
        selector = f'{{endpoint="{ENDPOINT}", namespace="{labels["namespace"]}"}}'

        def scraped(expr: str, at_least: float) -> None:
            """Wait until Prometheus has scraped (and evaluated the rules over) `expr`."""
            result = prometheus.wait_for(expr, lambda r: r and r[0][1] >= at_least)
            assert result and result[0][1] >= at_least, (expr, result, prometheus.output())
            time.sleep(2.1)  # two more evaluations of every rule over those samples

        def decisions() -> dict[str, str]:
            out = {}
            for name, gate in gates.items():
                query = gate["provider"]["prometheus"]["query"]
                query = query.replace("{{args.new-hash}}", NEW_HASH).replace(
                    "{{args.stable-hash}}", NEW_HASH)
                result = [v for _, v in prometheus.query(query)]
                assert len(result) == 1, (name, result)  # never empty: Argo would Error
                out[name] = decide(gate, result)
            return out

        def recorded(name: str) -> list[tuple[dict, float]]:
            return prometheus.query(name + selector)

        def condition(alert: str) -> list:
            return prometheus.query(rules[alert]["expr"])

        def state(alert: str) -> set[str]:
            return {r["state"] for r in prometheus.rules() if r.get("name") == alert}

        def firing(alert: str) -> list[dict]:
            return [a for a in prometheus.alerts() if a["labels"]["alertname"] == alert
                    and a["state"] == "firing" and a["labels"].get("endpoint") == ENDPOINT]

        # --- idle: the model is loaded, nobody has sent a request ---------------------------
        scraped(f"count_over_time(mlc_model_ready{selector}[1m])", 3)
        assert decisions() == dict.fromkeys(gates, "Inconclusive")
        for name in ratios:  # every ratio exists: 0/0, NaN, compared true by no alert
            assert is_nan(recorded(name)), (name, recorded(name))
        assert condition("EndpointNoTraffic"), "no request at all is no traffic"
        assert state("EndpointNoTraffic") == {"pending"}  # for: 15m
        assert not [a for a in prometheus.alerts() if a["state"] == "firing"]

        # --- healthy traffic --------------------------------------------------------------
        healthy = Sent(pod, [row] * HEALTHY, 4)
        assert healthy.codes == {200: HEALTHY}
        scraped(f'sum(mlc_requests_total{{code="200", endpoint="{ENDPOINT}"}})', HEALTHY)
        got = decisions()
        # No timing in pass/fail: the server's latencies are at most the client's, so when
        # every answer came within the 0.1 s bucket, below the gate's 0.15 s, the latency
        # gate must pass; on a machine too loaded for that, it only has to measure.
        fast = healthy.slowest <= 0.1
        assert got == {**dict.fromkeys(gates, "Successful"),
                       **({} if fast else {"latency-p99": got["latency-p99"]})}
        assert got["latency-p99"] in ("Successful", "Failed")
        for name in ratios:
            assert [v for _, v in recorded(name)] == [0.0], (name, recorded(name))
        assert not condition("EndpointHighErrorRatio")
        assert not condition("EndpointNoTraffic")
        assert not [a for a in prometheus.alerts() if a["state"] == "firing"
                    and (fast or a["labels"].get("slo") != "latency")]

        # --- the first 5xx since start-up ------------------------------------------------
        assert Sent(pod, [{**row, marker: faulty_model.FAIL}] * FAILING, 4).codes == {
            500: FAILING}
        scraped(f'sum(mlc_requests_total{{code="500", endpoint="{ENDPOINT}"}})', FAILING)
        got = decisions()
        assert got == {"error-rate": "Failed", "latency-p99": got["latency-p99"] if not fast
                       else "Successful", "prediction-drift": "Successful"}
        share = FAILING / (HEALTHY + FAILING)
        for name in ratios:  # every window holds the whole test: the same share
            (value,) = [v for _, v in recorded(name)]
            assert value == pytest.approx(share, rel=0.05), name
        assert condition("EndpointHighErrorRatio")
        assert state("EndpointHighErrorRatio") == {"pending"}  # for: 5m
        burn = prometheus.wait_for("ALERTS", lambda _: firing("EndpointAvailabilityBudgetBurn"))
        assert {a["labels"]["severity"] for a in firing("EndpointAvailabilityBudgetBurn")} == {
            "critical", "warning"}, burn

        # --- slow answers ---------------------------------------------------------------
        # each at least SLOW_SECONDS (0.3 s) in the server: p99 lands above 0.25 s whatever
        # the rest of the traffic took, and more than 6% of requests missed the 0.1 s objective
        # one at a time: with a queue of slow calls ahead, the server sheds (503) what could
        # not be answered within the latency SLO, which is its overload test's subject
        assert Sent(pod, [{**row, marker: faulty_model.SLOW}] * SLOW, 1).codes == {200: SLOW}
        scraped(f'sum(mlc_request_duration_seconds_count{{endpoint="{ENDPOINT}", '
                f'route="/predict"}})', HEALTHY + FAILING + SLOW)
        assert decisions() == {"error-rate": "Failed", "latency-p99": "Failed",
                               "prediction-drift": "Successful"}
        prometheus.wait_for("ALERTS", lambda _: firing("EndpointLatencyBudgetBurn"))
        assert firing("EndpointLatencyBudgetBurn"), prometheus.alerts()
    finally:
        if prometheus is not None:
            prometheus.stop()
        if pod is not None:
            pod.stop()
