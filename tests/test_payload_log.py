"""An engine endpoint's prediction log: the example project with an MLServer endpoint that a
drift check reads compiles to a predictor with KServe's payload logger and the receiver's
objects (payloadlog/); the receiver runs as its compiled Deployment declares (command, args,
env, mounts: tests/cluster_pods.py) as a local process; it is sent CloudEvents shaped as
KServe's agent sends them (binary mode, `ce-` headers), whose bodies are the requests and
answers of a real MLServer (`.venv-mlserver`, skipped where it is missing), out of order,
duplicated and mixed with garbage; the Parquet log it writes holds what MLServer answered,
and mlc's drift step reads it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from . import schema_check
from .cluster_pods import Cluster, Image, mlc_compile, read_tree
from .test_engines import ISVC_CRD, engines_patch, named, write_project

ROOT = Path(__file__).resolve().parents[1]
MLSERVER_VENV = Path(os.environ.get("MLC_MLSERVER_VENV", ROOT / ".venv-mlserver"))
MODEL = "fraud-classifier"
ENDPOINT = "fraud-ms"
PODMONITOR_CRD = "prometheus-operator/monitoring.coreos.com_podmonitors.yaml"


def drift_on_mlserver(values) -> None:
    engines_patch(values)
    values["serving"][ENDPOINT]["predictionLogSample"] = 1.0  # every row, for the test
    drift = values["monitoring"]["drift"]
    drift["ms-inputs"] = {**drift["fraud-inputs"], "endpoint": ENDPOINT}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("payload-log")
    out = mlc_compile(write_project(tmp / "project", drift_on_mlserver), "dev", tmp / "deploy")
    return out, read_tree(out)


def test_the_predictor_logs_to_the_receiver(tree):
    schema_check.require_schemas()
    out, docs = tree
    isvc = named(docs, "InferenceService", ENDPOINT)
    assert schema_check.check_crd(isvc, ISVC_CRD) == []
    logger = isvc["spec"]["predictor"]["logger"]
    assert logger == {"mode": "all",
                      "url": "http://fraud-ms-payload-log.fraud-dev.svc.cluster.local:8080"}
    # the engines no check reads log nothing
    for other in ("fraud-triton", "fraud-ts", "fraud-custom"):
        assert "logger" not in named(docs, "InferenceService", other)["spec"]["predictor"]
    service = named(docs, "Service", "fraud-ms-payload-log")
    deployment = named(docs, "Deployment", "fraud-ms-payload-log")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["port"] == 8080
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "mlc.runtime"]
    assert container["args"][:5] == ["payload-log", "--project", "/etc/mlc/project.json",
                                     "--endpoint", ENDPOINT]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["resources"]["limits"] and container["resources"]["requests"]
    # the endpoint's identity (its store access), as its predictor runs
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    assert account == isvc["spec"]["predictor"]["serviceAccountName"]
    assert named(docs, "ServiceAccount", account)
    # ingress from the predictor's pods (the agent) only, and Prometheus
    policy = named(docs, "NetworkPolicy", "fraud-ms-payload-log-ingress")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    predictor_labels = isvc["spec"]["predictor"]["labels"]
    peers = [p for rule in policy["spec"]["ingress"] for p in rule["from"]]
    assert any(p.get("podSelector", {}).get("matchLabels", {}).items() <= predictor_labels.items()
               and "namespaceSelector" not in p for p in peers)
    monitor = named(docs, "PodMonitor", "fraud-ms-payload-log")
    assert schema_check.check_crd(monitor, PODMONITOR_CRD) == []
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    kustomization = (out / "kustomization.yaml").read_text()
    for kind in ("deployment", "service", "networkpolicy", "podmonitor"):
        assert f"payloadlog/{kind}-{ENDPOINT}.yaml" in kustomization
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    version = kubernetes_validate.latest_version()
    for obj in (service, deployment, policy):
        kubernetes_validate.validate(obj, version, strict=True)


# --- the receiver, as its Deployment runs, fed a real MLServer's payloads --------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, log: Path, what: str, seconds: float = 180):
    import httpx

    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what} did not get ready:\n" + log.read_text()[-4000:])
        time.sleep(0.5)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _model(folder: Path, features: list[str]) -> None:
    """A binary classifier over the endpoint's inputs, saved as an MLflow model whose pyfunc
    answers P(class) per row (what the bundled trainer's classifiers answer)."""
    import mlflow.sklearn
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(10, 3, (400, len(features))), columns=features)
    y = (x[features[0]] + rng.normal(0, 1, 400) > 10).astype(int)
    model = LogisticRegression().fit(x, y)
    mlflow.sklearn.save_model(model, str(folder), pyfunc_predict_fn="predict_proba",
                              input_example=x.head(3))


def _headers(event_id: str, kind: str) -> dict[str, str]:
    """What KServe's agent sends with each payload (binary mode)."""
    return {"Content-Type": "application/json", "Ce-Specversion": "1.0", "Ce-Id": event_id,
            "Ce-Type": f"org.kubeflow.serving.inference.{kind}",
            "Ce-Source": "http://localhost:9081/",
            "Ce-Time": "2026-12-02T21:00:00Z",
            "Ce-Inferenceservicename": ENDPOINT, "Ce-Namespace": "fraud-dev",
            "Ce-Component": "predictor", "Ce-Endpoint": "default"}


@pytest.mark.slow
def test_receiver_logs_what_a_real_mlserver_answered(tree, tmp_path):
    mlserver = MLSERVER_VENV / "bin" / "mlserver"
    if not mlserver.exists():
        pytest.skip(f"no MLServer environment at {MLSERVER_VENV} (`make mlserver-venv` "
                    "makes it, `make test` too; MLC_MLSERVER_VENV names another)")
    import httpx
    import pandas as pd

    from mlc.compiler import ir
    from mlc.runtime.prediction_log import PREDICTION_COLUMN
    from mlc.runtime.step import EXIT_DRIFT

    _, docs = tree
    config = next(d for d in docs if d.get("kind") == "ConfigMap"
                  and "project.json" in d.get("data", {}))
    project = ir.ResolvedProject.model_validate_json(config["data"]["project.json"])
    features = [f.field for f in project.models[MODEL].features]
    _model(tmp_path / "model", features)

    # a real MLServer serving it, as kserve-mlserver starts it
    http, grpc, metrics = _free_port(), _free_port(), _free_port()
    settings = tmp_path / "models" / MODEL
    settings.mkdir(parents=True)
    (settings / "model-settings.json").write_text(json.dumps({
        "name": MODEL, "implementation": "mlserver_mlflow.MLflowRuntime",
        "parameters": {"uri": str(tmp_path / "model")}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLSERVER_", "PYTHON"))}
    env |= {"MLSERVER_HTTP_PORT": str(http), "MLSERVER_GRPC_PORT": str(grpc),
            "MLSERVER_METRICS_PORT": str(metrics), "MLSERVER_HOST": "127.0.0.1",
            "MLSERVER_PARALLEL_WORKERS": "0"}  # see tests/test_engines_fetch.py
    server_log = tmp_path / "mlserver.log"
    server = subprocess.Popen([str(mlserver), "start", str(tmp_path / "models")], env=env,
                              stdout=open(server_log, "w"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    # the receiver, as its Deployment declares it
    deployment = named(docs, "Deployment", "fraud-ms-payload-log")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    workdir = tmp_path / "image-serve"
    workdir.mkdir()
    cluster = Cluster(docs, tmp_path / "cluster", {container["image"]: Image(workdir)})
    argv, renv, cwd = cluster.pod_process(container, {v["name"]: v for v in pod["volumes"]},
                                          "fraud-ms-payload-log-0", {})
    port = _free_port()
    argv[argv.index("--port") + 1] = str(port)  # the pod's 8080, on a free port here
    log_dir = tmp_path / "predictions"
    renv |= {"MLC_PREDICTION_LOG_URI": str(log_dir),  # the bucket, as a local folder
             "MLC_MODEL_URI": f"models:/{MODEL}/3",  # the version the registry would name
             "MLC_PREDICTION_LOG_FLUSH_ROWS": "1000000"}  # one file, written at the stop
    receiver_log = tmp_path / "receiver.log"
    receiver = subprocess.Popen(argv, env=renv, cwd=cwd, stdout=open(receiver_log, "w"),
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{http}"
        _wait(f"{url}/v2/models/{MODEL}/ready", server, server_log, "MLServer")
        _wait(f"http://127.0.0.1:{port}/v2/health/ready", receiver, receiver_log, "receiver")
        rng = np.random.default_rng(7)
        sent: list[tuple[str, pd.DataFrame, bytes, bytes]] = []
        for n in (5, 1, 12):
            frame = pd.DataFrame(rng.normal(10, 3, (n, len(features))), columns=features)
            request = json.dumps({"inputs": [
                {"name": c, "datatype": "FP64", "shape": [n], "data": frame[c].tolist()}
                for c in features], "parameters": {"content_type": "pd"}}).encode()
            answer = httpx.post(f"{url}/v2/models/{MODEL}/infer", content=request,
                                headers={"Content-Type": "application/json"}, timeout=30)
            assert answer.status_code == 200, answer.text
            sent.append((str(uuid.uuid4()), frame, request, answer.content))
        # one [n, features] tensor in the model's input order (Triton's shape) also decodes
        frame = pd.DataFrame(rng.normal(10, 3, (3, len(features))), columns=features)
        answer = httpx.post(f"{url}/v2/models/{MODEL}/infer", timeout=30, json={"inputs": [
            {"name": c, "datatype": "FP64", "shape": [3], "data": frame[c].tolist()}
            for c in features], "parameters": {"content_type": "pd"}})
        assert answer.status_code == 200, answer.text
        tensor = json.dumps({"inputs": [{"name": "input-0", "datatype": "FP64",
                                         "shape": [3, len(features)],
                                         "data": frame.to_numpy().ravel().tolist()}]}).encode()
        sent.append((str(uuid.uuid4()), frame, tensor, answer.content))

        events = f"http://127.0.0.1:{port}/"
        post = lambda eid, kind, body, **h: httpx.post(  # noqa: E731
            events, content=body, headers={**_headers(eid, kind), **h}, timeout=10)
        for i, (eid, _, request, response) in enumerate(sent):
            first, second = (("response", response), ("request", request)) if i % 2 == 0 \
                else (("request", request), ("response", response))
            assert post(eid, *first).status_code == 200
            assert post(eid, *first).status_code == 200  # a duplicate: kept once
            assert post(eid, *second).status_code == 200
        # garbage: each counted and skipped, the receiver carries on
        assert post("g1", "request", b"{not json").status_code == 200
        assert post("g1", "response", sent[0][3]).status_code == 200
        assert post("g2", "request", b'{"inputs": [{"name": "x", "datatype": "FP64", '
                    b'"shape": [2], "data": [1.0]}]}').status_code == 200
        assert post("g2", "response", b'{"error": "boom"}').status_code == 200
        assert httpx.post(events, content=b"x", timeout=10,
                          headers={"Content-Type": "text/plain"}).status_code == 200
        assert post("g3", "other", b"{}").status_code == 200
        assert post("lonely", "request", sent[0][2]).status_code == 200  # never answered
        big = b"[" + b"0," * (1 << 20) + b"0]"  # over the 1 MiB a body may have
        assert post("big", "request", big).status_code == 413
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        _stop(receiver)
        _stop(server)
    assert receiver.returncode == 0, receiver_log.read_text()[-4000:]

    from prometheus_client.parser import text_string_to_metric_families
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for f in text_string_to_metric_families(scraped) for s in f.samples}
    total = sum(len(f) for _, f, _, _ in sent)
    ep = (("endpoint", ENDPOINT),)
    assert values[("mlc_payload_log_rows_total", ep)] == total
    assert values[("mlc_payload_log_paired_total", ep)] == len(sent) + 2  # g1, g2 paired
    assert values[("mlc_payload_log_duplicates_total", ep)] == len(sent)
    assert values[("mlc_payload_log_pending", ep)] == 1  # `lonely`, until it expires
    undecodable = {dict(k)["reason"]: v for (n, k), v in values.items()
                   if n == "mlc_payload_log_undecodable_total" and v}
    assert set(undecodable) == {"not_json", "not_cloudevent", "event_type", "shape_mismatch",
                                "too_large"}, undecodable
    assert sum(undecodable.values()) == 5

    import pyarrow.dataset as ds
    logged = ds.dataset(str(log_dir), format="parquet").to_table().to_pandas()
    assert len(logged) == total
    for eid, frame, _, response in sent:
        rows = logged[logged["request_id"] == eid]
        assert len(rows) == len(frame)
        assert set(rows["model_version"]) == {"3"}
        np.testing.assert_allclose(rows[features].to_numpy(), frame.to_numpy())
        (output,) = json.loads(response)["outputs"]
        p = np.asarray(output["data"], dtype=float).reshape(output["shape"])
        np.testing.assert_allclose(rows[PREDICTION_COLUMN].to_numpy(), p[:, 1])

    # the drift step, as its WorkflowTemplate's container declares, reads that log
    check = "ms-inputs"
    reference = pd.DataFrame(rng.normal(10, 3, (500, len(features))), columns=features)
    reference[PREDICTION_COLUMN] = rng.uniform(0, 1, 500)
    reference.to_parquet(tmp_path / "reference.parquet")
    template = named(docs, "WorkflowTemplate", f"drift-{check}")["spec"]
    step = next(t for t in template["templates"] if t["name"] == "drift-check")["container"]
    # the test's overrides: the bucket as the local folder, the model's reference data as a
    # file (no registry here), and the textfile export instead of the cluster's Pushgateway
    # (both copied into the pod's run volume: the pod's /tmp is its own emptyDir)
    run_volume = cluster.work / "pods" / "drift-0" / "fs" / "var" / "lib" / "mlc" / "run"
    shutil.copytree(log_dir, run_volume / "bucket" / "predictions")
    shutil.copy(tmp_path / "reference.parquet", run_volume / "bucket" / "reference.parquet")
    step = {**step, "env": [e for e in step["env"] if e["name"] != "MLC_PUSHGATEWAY_URL"] + [
        {"name": "MLC_PREDICTION_LOG_URI", "value": "/var/lib/mlc/run/bucket/predictions"},
        {"name": "MLC_DRIFT_REFERENCE", "value": "/var/lib/mlc/run/bucket/reference.parquet"}]}
    drift_workdir = tmp_path / "image-drift"
    drift_workdir.mkdir()
    cluster.images[step["image"]] = Image(drift_workdir)
    ran = cluster.run_pod(step, {v["name"]: v for v in template["volumes"]}, "drift-0",
                          {"workflow.name": "drift-0", "workflow.namespace": "fraud-dev",
                           "workflow.parameters.window_seconds": "86400"})
    assert ran.returncode in (0, EXIT_DRIFT), ran.log[-4000:]  # decided: stable or drifted
    out = run_volume / "drift"
    text = (out / check / "metrics.prom").read_text()
    assert f'mlc_drift_check_up{{check="{check}"}} 1' in text, text
    # up: it read rows (an empty or unreadable log fails closed, tests/test_drift.py)
    assert (out / check / "report.json").read_text().startswith("{")


def test_a_serverless_triton_endpoint_logs_too(tmp_path):
    def patch(values):
        engines_patch(values)
        drift = values["monitoring"]["drift"]
        drift["triton-inputs"] = {**drift["fraud-inputs"], "endpoint": "fraud-triton"}

    docs = read_tree(mlc_compile(write_project(tmp_path / "project", patch), "dev",
                                 tmp_path / "deploy"))
    isvc = named(docs, "InferenceService", "fraud-triton")
    assert schema_check.check_crd(isvc, ISVC_CRD) == []
    assert isvc["spec"]["predictor"]["logger"]["url"] == (
        "http://fraud-triton-payload-log.fraud-dev.svc.cluster.local:8080")
    assert "logger" not in named(docs, "InferenceService", ENDPOINT)["spec"]["predictor"]
    receiver = named(docs, "Deployment", "fraud-triton-payload-log")
    pod_labels = receiver["spec"]["template"]["metadata"]["labels"]
    # the namespace's model-servers policy gives the predictors egress to the receiver's
    # port and the receiver egress to the registry and the store, as to any server
    servers = named(docs, "NetworkPolicy", "model-servers")
    selected = servers["spec"]["podSelector"]["matchLabels"]
    assert selected.items() <= pod_labels.items()
    assert selected.items() <= isvc["spec"]["predictor"]["labels"].items()
    assert any(p.get("podSelector", {}).get("matchLabels") == selected
               and {"port": 8080, "protocol": "TCP"} in rule["ports"]
               for rule in servers["spec"]["egress"] for p in rule["to"])


def test_a_custom_server_declaring_its_protocol_logs(tmp_path):
    def patch(values):
        engines_patch(values)
        values["serving"]["fraud-custom"]["container"]["protocol"] = "v1"
        drift = values["monitoring"]["drift"]
        drift["custom-inputs"] = {**drift["fraud-inputs"], "endpoint": "fraud-custom"}

    out = mlc_compile(write_project(tmp_path / "project", patch), "dev", tmp_path / "deploy")
    docs = read_tree(out)
    isvc = named(docs, "InferenceService", "fraud-custom")
    assert schema_check.check_crd(isvc, ISVC_CRD) == []
    assert isvc["spec"]["predictor"]["logger"]["mode"] == "all"
    config = next(d for d in docs if d.get("kind") == "ConfigMap"
                  and "project.json" in d.get("data", {}))
    project = json.loads(config["data"]["project.json"])
    receiver = project["endpoints"]["fraud-custom"]["engine_serving"]["payload_log"]
    assert receiver == {"name": "fraud-custom-payload-log", "port": 8080, "protocol": "v1"}
    # the receiver decodes V1 for it (ReceiverSettings reads the IR as its pod does)
    from mlc.compiler import ir
    from mlc.runtime.payload_log.receiver import ReceiverSettings

    settings = ReceiverSettings.for_endpoint(
        ir.ResolvedProject.model_validate(project), "fraud-custom", env={})
    assert settings.protocol == "v1" and settings.endpoint == "fraud-custom"
