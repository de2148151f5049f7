"""The serving runtime: request validation, batching, metrics and the prediction log on their
own, then the real server as a subprocess on a loopback port, loading a real torch model
from a real (SQLite) MLflow registry by alias: OIP v2, /predict, 400/413/503, readiness,
SIGTERM draining, /metrics against the contract, and the prediction log read back."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlc import metrics as contract
from mlc.compiler import ir
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import check_environment
from mlc.runtime.prediction_log import (
    PREDICTION_COLUMN,
    REQUEST_ID_COLUMN,
    VARIANT_COLUMN,
    PredictionLogWriter,
    read_log,
)
from mlc.runtime.serve.batching import Batcher, Closed, Overloaded
from mlc.runtime.serve.metrics import ServeMetrics
from mlc.runtime.serve.validation import RequestError, Signature

from .conftest import ROOT

ENDPOINT = "fraud-api"
SERVE_NAMES = {m.name for m in contract.CONTRACT if m.exporter == "serve"}
SHADOW_NAMES = {m.name for m in contract.CONTRACT if m.exporter == "shadow"}


# --- validation -------------------------------------------------------------------------------

SIG = Signature.build(["a", "b", "n"], {"n": "int64"}, max_rows=4)


def test_instances_become_rows_in_signature_order():
    rows = SIG.rows_from_predict({"instances": [{"n": 3, "b": 2.5, "a": 1, "extra": "x"},
                                                {"a": 0, "b": None, "n": 1}]})
    assert rows.tolist()[0] == [1.0, 2.5, 3.0]
    assert np.isnan(rows[1, 1])  # null is a missing value, filled by the model
    assert SIG.rows_from_predict({"a": 1, "b": 2, "n": 3}).shape == (1, 3)
    assert SIG.rows_from_predict({"inputs": {"a": [1, 2], "b": [3, 4], "n": [5, 6]}}
                                 ).tolist() == [[1, 3, 5], [2, 4, 6]]


@pytest.mark.parametrize("body, message", [
    ({"instances": [{"a": 1, "b": 2, "n": 1}, {"a": 1, "n": 1}]},
     "instance 1: missing feature `b`"),
    ({"instances": [{"a": "x", "b": 2, "n": 1}]}, "instance 0: feature `a` must be a number"),
    ({"instances": [{"a": 1, "b": 2, "n": 1.5}]}, "feature `n` must be an integer"),
    ({"instances": [{"a": 1, "b": 1e400, "n": 1}]}, "feature `b` is infinite"),
    ({"instances": [[1, 2, 3]]}, "instance 0 must be an object"),
    ({"instances": []}, "no instances"),
    ({"inputs": {"a": [1], "b": [1, 2], "n": [1]}}, "feature `b` has 2 values"),
    ({"inputs": {"a": [1], "n": [1]}}, "missing feature `b`"),
])
def test_a_bad_body_is_a_400_naming_the_field(body, message):
    with pytest.raises(RequestError) as err:
        SIG.rows_from_predict(body)
    assert err.value.status == 400
    assert message in err.value.message


def test_oip_tensors_per_feature_or_one_matrix():
    per_feature = {"inputs": [
        {"name": "a", "shape": [2], "datatype": "FP32", "data": [1, 2]},
        {"name": "b", "shape": [2, 1], "datatype": "FP64", "data": [[3], [4]]},
        {"name": "n", "shape": [2], "datatype": "INT64", "data": [5, 6]}]}
    assert SIG.rows_from_oip(per_feature).tolist() == [[1, 3, 5], [2, 4, 6]]
    matrix = {"inputs": [{"name": "input-0", "shape": [2, 3], "datatype": "FP32",
                          "data": [1, 3, 5, 2, 4, 6]}]}
    assert SIG.rows_from_oip(matrix).tolist() == [[1, 3, 5], [2, 4, 6]]
    for body, message in [
        ({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]},
         "must have shape [n, 3]"),
        ({"inputs": [{"name": "a", "shape": [1], "datatype": "BYTES", "data": ["x"]}]},
         "datatype BYTES"),
        ({"inputs": per_feature["inputs"][:2]}, "missing input `n`"),
        ({"inputs": [{"name": "m", "shape": [3], "datatype": "FP32", "data": [1, 2]}]},
         "needs 3 values"),
    ]:
        with pytest.raises(RequestError, match=".") as err:
            SIG.rows_from_oip(body)
        assert message in err.value.message


def test_more_rows_than_the_queue_holds_is_a_413():
    with pytest.raises(RequestError) as err:
        SIG.rows_from_predict({"instances": [{"a": 1, "b": 2, "n": 3}] * 5})
    assert err.value.status == 413


# --- batching ------------------------------------------------------------------------------------

def test_batcher_batches_refuses_overflow_and_drains_on_close():
    calls: list[int] = []

    def run(rows: np.ndarray) -> np.ndarray:
        calls.append(len(rows))
        time.sleep(0.05)
        return rows[:, 0] * 2

    async def scenario():
        batcher = Batcher(run, max_batch_size=8, max_latency=0.001, max_queue=3)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(np.array([[1.0]])))
        await asyncio.sleep(0.01)  # the first call is running; the next ones queue
        queued = [asyncio.ensure_future(batcher.submit(np.array([[float(i)]])))
                  for i in (2, 3, 4)]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded):
            await batcher.submit(np.array([[5.0]]))
        await batcher.close()  # finishes what was queued
        with pytest.raises(Closed):
            await batcher.submit(np.array([[6.0]]))
        return [float(f.result()[0]) for f in [first, *queued]]

    assert asyncio.run(scenario()) == [2.0, 4.0, 6.0, 8.0]
    assert calls == [1, 3]  # the three queued requests went in one model call


# --- metrics and prediction log --------------------------------------------------------------

def test_metrics_are_exactly_the_contracts():
    m = ServeMetrics("ep", ["x", "y"], 16, inflight=lambda: 2, queue_depth=lambda: 5)
    m.set_model("fraud", "3", "champion", 1.7e9)
    m.ready = True
    m.observe_request("3", "/predict", 200, 0.004)
    m.observe_request("3", "/predict", 503, 0.001)
    m.observe_batch("3", np.array([[0.5, np.nan], [2.0, -4.0]]), np.array([0.2, 0.9]))
    families = {f.name: f for f in text_string_to_metric_families(m.render().decode())}
    exported = {contract.BY_NAME[n].name for n in contract.BY_NAME
                if n.removesuffix("_total") in families or n in families}
    assert exported == SERVE_NAMES
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    for f in families.values():
        metric = contract.BY_NAME.get(f.name) or contract.BY_NAME[f.name + "_total"]
        for s in f.samples:
            assert set(s.labels) - {"le"} == set(metric.labels), s
    assert samples[("mlc_requests_total", (("code", "503"), ("endpoint", "ep"),
                                           ("model_version", "3"), ("route", "/predict"),
                                           ("variant", "primary")))] == 1
    x_buckets = {s.labels["le"]: s.value for s in families["mlc_input_feature_value"].samples
                 if s.name.endswith("_bucket") and s.labels["feature"] == "y"}
    assert x_buckets["-3.0"] == 1 and x_buckets["+Inf"] == 1  # NaN is not a value
    assert samples[("mlc_queue_depth", (("endpoint", "ep"), ("variant", "primary")))] == 5
    assert samples[("mlc_model_info", (("alias", "champion"), ("endpoint", "ep"),
                                       ("model", "fraud"), ("model_version", "3"),
                                       ("variant", "primary")))] == 1


def _requests(m: ServeMetrics) -> dict[tuple[str, str, str, str], float]:
    """(variant, model_version, route, code) -> count, as a scrape reads them."""
    families = text_string_to_metric_families(m.render().decode())
    return {(s.labels["variant"], s.labels["model_version"], s.labels["route"],
             s.labels["code"]): s.value
            for f in families if f.name == "mlc_requests" for s in f.samples
            if s.name == "mlc_requests_total"}


def test_every_status_code_is_exported_at_zero_from_start_up():
    """Before any request, and for a model version as soon as it is loaded: a counter that
    appeared only with its first 5xx would hide that 5xx from rate(), and leave the error
    ratio without a numerator (no result) on a healthy service."""
    m = ServeMetrics("ep", [], 16, inflight=lambda: 0, queue_depth=lambda: 0, variant="blue")
    expected = {("blue", "", route, code)
                for route, codes in contract.SERVE_CODES.items() for code in codes}
    assert _requests(m) == dict.fromkeys(expected, 0.0)
    assert {"200", "404", "500", "503"} <= {code for *_, code in expected}  # 2xx, 4xx, 5xx
    m.set_model("fraud", "3", "champion", None)
    counts = _requests(m)
    assert {k: v for k, v in counts.items() if k[1] == "3"} == {
        ("blue", "3", route, code): 0.0 for _, _, route, code in expected}
    m.observe_request("3", contract.PREDICT_ROUTE, 503, 0.01)
    m.observe_request("3", contract.UNMATCHED_ROUTE, 404, 0.001)
    counts = _requests(m)
    assert counts[("blue", "3", contract.PREDICT_ROUTE, "503")] == 1
    assert counts[("blue", "3", contract.UNMATCHED_ROUTE, "404")] == 1
    assert counts[("blue", "3", contract.PREDICT_ROUTE, "500")] == 0
    counts = {(s.name, s.labels.get("route")): s.value
              for f in text_string_to_metric_families(m.render().decode()) for s in f.samples
              if s.name.endswith("_count") and s.labels.get("model_version") == "3"}
    # latency histograms too, for every route; and the predictions the drift gate reads
    assert counts == {**{("mlc_request_duration_seconds_count", r): 0.0
                         for r in contract.SERVE_CODES if r != contract.PREDICT_ROUTE},
                      ("mlc_request_duration_seconds_count", contract.PREDICT_ROUTE): 1.0,
                      ("mlc_request_duration_seconds_count", contract.UNMATCHED_ROUTE): 1.0,
                      ("mlc_batch_size_count", None): 0.0,
                      ("mlc_prediction_value_count", None): 0.0}
    # explanations (POST /explain) are counted apart, every code at 0 from start-up too
    explains = {s.labels["code"]: s.value
                for f in text_string_to_metric_families(m.render().decode()) for s in f.samples
                if s.name == "mlc_explain_requests_total"}
    assert explains == dict.fromkeys(contract.EXPLAIN_CODES, 0.0)


def test_prediction_log_round_trip(tmp_path):
    writer = PredictionLogWriter(str(tmp_path / "log"), ["a", "b"], 1.0, flush_rows=3)
    writer.log(np.array([[1.0, 2.0], [3.0, np.nan]]), np.array([0.1, 0.9]), "7")
    writer.log(np.array([[5.0, 6.0]]), np.array([0.5]), "8")
    writer.close()
    frame = read_log(str(tmp_path / "log"), since=time.time() - 60)
    assert sorted(frame["model_version"]) == ["7", "7", "8"]
    assert sorted(frame[PREDICTION_COLUMN]) == [0.1, 0.5, 0.9]
    assert len(read_log(str(tmp_path / "log"), since=time.time() + 60)) == 0
    assert len(read_log(str(tmp_path / "nothing"))) == 0


def test_sampling_keeps_about_the_rate(tmp_path):
    writer = PredictionLogWriter(str(tmp_path), ["a"], 0.1, seed=3, flush_rows=10**9)
    kept = sum(writer.log(np.zeros((n, 1)), np.zeros(n), "1") for n in [1, 7, 64] * 500)
    assert 0.085 < kept / (72 * 500) < 0.115


@pytest.mark.slow  # imports torch
def test_a_model_without_spec_is_refused_unless_pickle_is_allowed(tmp_path):
    from mlc.runtime.serve.loader import ModelLoadError, load_folder

    (tmp_path / "MLmodel").write_text("flavors: {python_function: {}}\n")
    with pytest.raises(ModelLoadError, match="would unpickle"):
        load_folder(tmp_path, name="m", version="1", alias=None, trained_at=None,
                    allow_pickle=False)


# --- the real server -----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _register(folder: Path, tracking_uri: str, name: str, features: list[str],
              hidden: list[int]) -> str:
    """A real mlc model (random weights) as a new version of `name`; returns the version."""
    import mlflow
    import torch

    from mlc.runtime import model_format
    from mlc.runtime.train.tracking import PYFUNC_CODE

    n = len(features)
    spec = model_format.make_spec(task="classification", features=features,
                                  feature_refs=features, hidden_layers=hidden, dropout=0.0,
                                  fill=[0.0] * n, mean=[0.0] * n, std=[1.0] * n, label="y",
                                  classes=[0, 1])
    torch.manual_seed(0)
    model_format.save_model(folder, spec, model_format.build_module(spec).state_dict())
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=str(PYFUNC_CODE),
                                       artifacts={model_format.ARTIFACT_KEY: str(folder)},
                                       pip_requirements=["numpy"])
    return str(mlflow.register_model(info.model_uri, name).version)


DRAIN_ENV = "MLC_DRAIN_SECONDS"


class Server:
    def __init__(self, tmp: Path, project: ir.ResolvedProject, env: dict[str, str]):
        self.port = _free_port()
        (tmp / "project.json").write_text(project.model_dump_json())
        self.log = open(tmp / "server.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlc.runtime", "serve", "--project", str(tmp / "project.json"),
             "--endpoint", ENDPOINT, "--host", "127.0.0.1", "--port", str(self.port)],
            # a short drain after SIGTERM (5 s in the manifests) unless the test is about it
            env={**os.environ, DRAIN_ENV: "0.5", **env}, stdout=self.log,
            stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.url, timeout=10)
        self.signalled = False

    def wait(self, path: str, status: int = 200, timeout: float = 90) -> httpx.Response:
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.proc.poll() is None, self.output()
            try:
                r = self.http.get(path)
                if r.status_code == status:
                    return r
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{path} never answered {status}\n{self.output()}")

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def terminate(self) -> None:
        if not self.signalled:
            self.signalled = True
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.terminate()  # once: Kubernetes sends one SIGTERM, then waits
        code = self.proc.wait(timeout=60)
        self.http.close()
        self.log.close()
        return code


@pytest.fixture(scope="module")
def dev() -> ir.ResolvedProject:
    project = check_environment(ROOT, "dev", Diagnostics())
    assert project is not None
    return project


def _with_endpoint(project: ir.ResolvedProject, **changes) -> ir.ResolvedProject:
    endpoint = project.endpoints[ENDPOINT].model_copy(update=changes)
    return project.model_copy(update={"endpoints": {**project.endpoints, ENDPOINT: endpoint}})


@pytest.mark.slow
def test_server_end_to_end(tmp_path, dev):
    import mlflow

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    model = dev.models["fraud-classifier"]
    features = [r.field for r in model.features]
    version = _register(tmp_path / "model", tracking, model.registered_name, features, [16])
    project = _with_endpoint(dev, prediction_log_sample=1.0)
    server = Server(tmp_path, project, {"MLFLOW_TRACKING_URI": tracking,
                                        "MLC_PREDICTION_LOG_URI": str(tmp_path / "log"),
                                        "MLC_MAX_BODY_BYTES": "20000"})
    try:
        # no version holds the alias yet: alive, not ready, and inference is refused
        server.wait("/v2/health/live")
        deadline = time.time() + 60
        while True:  # "model loading" until the first attempt fails, then "not loaded: ..."
            not_ready = server.http.get("/v2/health/ready")
            assert not_ready.status_code == 503
            if "not loaded" in not_ready.json()["reason"] or time.time() > deadline:
                break
            time.sleep(0.1)
        assert "alias" in not_ready.json()["reason"], not_ready.json()
        refused = server.http.post("/predict", json={"instances": []})
        assert refused.status_code == 503 and refused.headers["retry-after"]
        mlflow.MlflowClient(tracking).set_registered_model_alias(
            model.registered_name, model.production_alias, version)
        server.wait("/v2/health/ready")

        row = {f: float(i) for i, f in enumerate(features)}
        # entity keys beside the inputs are logged (one row sends its customer), not used
        answer = server.http.post("/predict", json={
            "instances": [{**row, "customer_id": 7}, row]}).json()
        assert answer["model_version"] == version and len(answer["predictions"]) == 2
        assert all(0 < p < 1 for p in answer["predictions"])
        meta = server.http.get(f"/v2/models/{model.registered_name}").json()
        assert [i["name"] for i in meta["inputs"]] == features
        assert meta["inputs"][0]["datatype"] == "INT64"  # txn_count_7d is an int64 field
        oip = server.http.post(f"/v2/models/{ENDPOINT}/versions/{version}/infer", json={
            "id": "r1", "inputs": [{"name": f, "shape": [1], "datatype": "FP64",
                                    "data": [row[f]]} for f in features]}).json()
        assert oip["id"] == "r1" and oip["model_version"] == version
        assert oip["outputs"][0]["data"][0] == pytest.approx(answer["predictions"][0])
        assert server.http.get(f"/v2/models/{ENDPOINT}/ready").status_code == 200
        assert server.http.get("/v2/models/nope").status_code == 404

        bad = dict(row)
        del bad["chargeback_rate_30d"]
        r = server.http.post("/predict", json={"instances": [row, bad]})
        assert r.status_code == 400
        assert r.json()["error"] == "instance 1: missing feature `chargeback_rate_30d`"
        r = server.http.post("/predict", json={"instances": [{**row, "txn_count_7d": 2.5}]})
        assert r.status_code == 400 and "`txn_count_7d` must be an integer" in r.json()["error"]
        assert server.http.post("/predict", content=b"{nope").status_code == 400
        big = server.http.post("/predict", json={"instances": [row] * 200})
        assert big.status_code == 413

        text = server.http.get("/metrics").text
        families = {f.name for f in text_string_to_metric_families(text)}
        names = {n for n in contract.BY_NAME if n in families or n.removesuffix("_total")
                 in families}
        assert names == SERVE_NAMES | SHADOW_NAMES
        assert (f'mlc_requests_total{{code="400",endpoint="{ENDPOINT}",model_version='
                f'"{version}",route="/predict",variant="primary"}} 3.0') in text
        assert (f'mlc_requests_total{{code="500",endpoint="{ENDPOINT}",model_version='
                f'"{version}",route="/predict",variant="primary"}} 0.0') in text
        # /v2/models/nope: a 404, counted under one route whatever the path
        assert (f'mlc_requests_total{{code="404",endpoint="{ENDPOINT}",model_version='
                f'"{version}",route="unmatched",variant="primary"}} 1.0') in text
        assert 'mlc_model_ready{endpoint="fraud-api",variant="primary"} 1.0' in text
    finally:
        code = server.stop()
    assert code == 0, server.output()
    logged = read_log(str(tmp_path / "log"))
    assert len(logged) == 3  # /predict: 2 rows, infer: 1 row, every row sampled
    assert set(logged["model_version"]) == {version}
    assert list(logged.columns[2:]) == [*features, PREDICTION_COLUMN, REQUEST_ID_COLUMN,
                                        VARIANT_COLUMN, "customer_id", "merchant_id"]
    assert sorted(logged["customer_id"].dropna().tolist()) == [7]  # the OIP row has none
    assert logged["merchant_id"].isna().all()
    assert logged[REQUEST_ID_COLUMN].str.len().min() == 32  # ids the server made
    assert logged[VARIANT_COLUMN].isna().all()


@pytest.mark.slow
def test_server_sheds_load_and_drains_on_sigterm(tmp_path, dev):
    import mlflow

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    features = [r.field for r in dev.models["fraud-classifier"].features]
    # a wide network makes each model call take milliseconds: requests pile up behind it
    version = _register(tmp_path / "model", tracking, "slow", features, [4096, 4096])
    mlflow.MlflowClient(tracking).set_registered_model_alias("slow", "champion", version)
    project = _with_endpoint(dev, prediction_log_sample=0.0, batching=ir.Batching(
        max_batch_size=1, max_latency_seconds=0.0, max_queue=4))
    server = Server(tmp_path, project, {"MLFLOW_TRACKING_URI": tracking,
                                        "MLC_MODEL_URI": "models:/slow@champion",
                                        "MLC_TORCH_THREADS": "1", DRAIN_ENV: "5"})
    body = {"instances": [{f: 1.0 for f in features}]}

    async def floods():
        async with httpx.AsyncClient(base_url=server.url, timeout=60,
                                     limits=httpx.Limits(max_connections=40)) as client:
            first = await asyncio.gather(*[client.post("/predict", json=body)
                                           for _ in range(40)])
            # again on the same (now open) connections; SIGTERM when the first answer
            # arrives, while the queue still holds accepted requests
            pending = [asyncio.ensure_future(client.post("/predict", json=body))
                       for _ in range(40)]
            signalled, after = None, []
            for next_done in asyncio.as_completed(pending):
                try:
                    r = await next_done
                except httpx.TransportError as exc:  # sent on a connection the server
                    after.append(exc)                # closed: it never took the request
                    continue
                if signalled is None:
                    server.terminate()
                    signalled = time.monotonic()
                else:
                    after.append(r)
            return first, after

    try:
        server.wait("/v2/health/ready")
        first, after = asyncio.run(floods())
        codes = [r.status_code for r in first]
        assert codes.count(200) >= 1 and codes.count(503) >= 1, codes
        assert set(codes) <= {200, 503}
        assert all(r.headers["retry-after"] == "1" for r in first if r.status_code == 503)
        # after SIGTERM the requests already accepted (queued or running) are answered with
        # predictions; later ones hear 503 or find the connection closed
        answered = [r.status_code for r in after if isinstance(r, httpx.Response)]
        assert set(answered) <= {200, 503}
        assert answered.count(200) >= 1, after
    finally:
        code = server.stop()
    assert code == 0, server.output()
    text = server.output()
    assert "Waiting for application shutdown" in text or "Application shutdown complete" in text
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/v2/health/live", timeout=2)



@pytest.mark.slow
def test_batch_scoring_step(tmp_path):
    """The batch_score step of a batch endpoint: the model by alias from the registry, the
    features joined from the feature views as of each transaction, predictions written."""
    import shutil

    import mlflow
    import pandas as pd

    from mlc.runtime.step import build_context, run_step

    for name in ("ml.yaml", "environments", "data"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / name)
    text = (tmp_path / "ml.yaml").read_text()
    (tmp_path / "ml.yaml").write_text(text.replace("serving:\n", (
        "serving:\n  fraud-batch:\n    model: fraud-classifier\n    mode: batch\n"
        "    batch: {schedule: \"0 4 * * *\", input: transactions, "
        "output: scores/fraud.parquet}\n"), 1))
    project = check_environment(tmp_path, "dev", Diagnostics())
    assert project is not None and "score-fraud-batch" in project.pipelines
    model = project.models["fraud-classifier"]
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    version = _register(tmp_path / "model", tracking, model.registered_name,
                        [r.field for r in model.features], [8])
    mlflow.MlflowClient(tracking).set_registered_model_alias(
        model.registered_name, model.production_alias, version)
    env = {"MLFLOW_TRACKING_URI": tracking, "MLC_DATA_ROOT": str(tmp_path),
           "MLC_RUN_DIR": str(tmp_path / "run")}
    run_step(build_context(project, "score-fraud-batch", "score", environ=env))
    scores = pd.read_parquet(tmp_path / "scores" / "fraud.parquet")
    transactions = pd.read_parquet(tmp_path / "data" / "transactions.parquet")
    assert len(scores) == len(transactions)
    assert list(scores.columns) == ["customer_id", "merchant_id", "event_timestamp",
                                    "prediction", "model_version"]
    assert scores["prediction"].between(0, 1).all() and set(scores["model_version"]) == {version}
    assert scores["prediction"].nunique() > 100  # features differ per row: so do the scores


@pytest.mark.slow
def test_online_features_from_feast(tmp_path, dev):
    """onlineFeatures: requests carry entity keys; the server reads the feature service from
    a real Feast online store (SQLite), applied and materialised from the generated repo."""
    import shutil

    import mlflow
    import pandas as pd

    subprocess.run([sys.executable, "-m", "mlc", "compile", "--out", str(tmp_path / "deploy")],
                   cwd=ROOT, check=True, capture_output=True)
    repo = tmp_path / "deploy" / "dev" / "feast"
    (tmp_path / "root" / "data").mkdir(parents=True)
    for name in ("transactions", "customer_daily", "merchant_daily"):
        shutil.copy(ROOT / "data" / f"{name}.parquet", tmp_path / "root" / "data")
    env = {**os.environ, "MLC_DATA_ROOT": str(tmp_path / "root"),
           "MLC_MATERIALIZE_FROM": "all"}
    subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; from "
                    "mlc.runtime.features import apply_repo, materialize_repo; "
                    "apply_repo(Path(sys.argv[1])); materialize_repo(Path(sys.argv[1]))",
                    str(repo)], env=env, check=True, capture_output=True)

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    model = dev.models["fraud-classifier"]
    features = [r.field for r in model.features]
    version = _register(tmp_path / "model", tracking, model.registered_name, features, [8])
    mlflow.MlflowClient(tracking).set_registered_model_alias(
        model.registered_name, model.production_alias, version)
    project = _with_endpoint(dev, online_features=True, prediction_log_sample=1.0)
    server = Server(tmp_path, project, {"MLFLOW_TRACKING_URI": tracking,
                                        "MLC_FEAST_REPO": str(repo),
                                        "MLC_DATA_ROOT": str(tmp_path / "root"),
                                        "MLC_PREDICTION_LOG_URI": str(tmp_path / "log")})
    try:
        server.wait("/v2/health/ready")
        r = server.http.post("/predict", json={"instances": [
            {"customer_id": 1, "merchant_id": 2}, {"customer_id": 3, "merchant_id": 4}]})
        assert r.status_code == 200, r.text
        assert len(r.json()["predictions"]) == 2
        r = server.http.post("/predict", json={"instances": [{"customer_id": 1}]})
        assert r.status_code == 400 and "missing entity key `merchant_id`" in r.json()["error"]
    finally:
        assert server.stop() == 0, server.output()
    logged = read_log(str(tmp_path / "log")).sort_values("amount_avg_7d").reset_index()
    assert sorted(zip(logged["customer_id"], logged["merchant_id"], strict=True)) == [
        (1, 2), (3, 4)]
    customers = pd.read_parquet(ROOT / "data" / "customer_daily.parquet")
    merchants = pd.read_parquet(ROOT / "data" / "merchant_daily.parquet")
    newest_c = customers.sort_values("event_timestamp").groupby("customer_id").last()
    newest_m = merchants.sort_values("event_timestamp").groupby("merchant_id").last()
    expected = pd.DataFrame({
        "amount_avg_7d": newest_c.loc[[1, 3], "amount_avg_7d"].to_numpy(),
        "chargeback_rate_30d": newest_m.loc[[2, 4], "chargeback_rate_30d"].to_numpy(),
        "txn_count_30d": newest_m.loc[[2, 4], "txn_count_30d"].to_numpy()})
    expected["merchant_risk"] = (expected["chargeback_rate_30d"] * 100
                                 / (expected["txn_count_30d"] + 1))
    expected = expected.sort_values("amount_avg_7d").reset_index()
    for column in ("amount_avg_7d", "chargeback_rate_30d", "txn_count_30d", "merchant_risk"):
        assert logged[column].to_numpy() == pytest.approx(expected[column].to_numpy()), column


def test_the_mounted_workload_config_overrides_project_json(tmp_path):
    """A shadow or an A/B variant is told by its mounted endpoint.json which model it serves
    and which name its metrics carry; project.json alone describes the primary."""
    import json

    from mlc.compiler.diagnostics import Diagnostics
    from mlc.compiler.pipeline import check_environment
    from mlc.runtime.serve.settings import settings_for_endpoint

    from .conftest import ROOT

    project = check_environment(ROOT, "prod", Diagnostics())
    config = tmp_path / "endpoint.json"
    config.write_text(json.dumps({
        "model_uri": "models:/fraud-classifier@challenger", "metrics_endpoint": "fraud-api-shadow",
        "batching": {"max_batch_size": 8, "max_latency_seconds": 0.001, "max_queue": 16},
        "prediction_log": {"sample": 1.0, "uri": str(tmp_path / "shadow-log")}}))
    plain = settings_for_endpoint(project, "fraud-api", env={})
    assert plain.model_uri == "models:/fraud-classifier@champion"
    assert plain.endpoint == "fraud-api"
    shadow = settings_for_endpoint(project, "fraud-api",
                                   env={"MLC_ENDPOINT_CONFIG": str(config)})
    assert shadow.model_uri == "models:/fraud-classifier@challenger"
    assert shadow.endpoint == "fraud-api-shadow"
    assert plain.variant == "primary"  # no config: the endpoint's one server
    assert shadow.variant == "primary"  # a config that names neither variant nor role
    config.write_text(json.dumps({"role": "shadow", "variant": None}))
    assert settings_for_endpoint(project, "fraud-api",
                                 env={"MLC_ENDPOINT_CONFIG": str(config)}).variant == "shadow"
    config.write_text(json.dumps({"role": "variant", "variant": "b"}))
    assert settings_for_endpoint(project, "fraud-api",
                                 env={"MLC_ENDPOINT_CONFIG": str(config)}).variant == "b"
    assert (shadow.max_batch_size, shadow.max_queue, shadow.prediction_log_sample) == (8, 16, 1.0)
    assert shadow.prediction_log_uri.endswith("shadow-log")
