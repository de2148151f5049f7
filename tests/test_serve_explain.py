"""`POST /explain` (mlc/runtime/serve/explain.py): SHAP values of single requests, bounded.

The server test runs the serving runtime as the manifests do (`python -m mlc.runtime serve`
over project.json) on a real model in a real MLflow registry, with a reference sample, and
checks the answer against the model's own predictions: the values add up to the prediction,
a feature the network does not read gets nothing, and nothing of it reaches the prediction
routes' counters.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlc.compiler import ir
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import check_environment

from .conftest import ROOT
from .test_serve import ENDPOINT, Server

pytest.importorskip("shap", reason="shap (the train extra) is not installed")


def _register(folder: Path, tracking_uri: str, name: str, features: list[str],
              ignored: str) -> str:
    """An mlc model whose network never reads `ignored`, with a reference sample; returns
    the registered version."""
    import mlflow
    import pandas as pd
    import torch

    from mlc.runtime import model_format
    from mlc.runtime.train.tracking import PYFUNC_CODE

    n = len(features)
    rng = np.random.default_rng(0)
    reference = pd.DataFrame(rng.normal(size=(300, n)), columns=features)
    spec = model_format.make_spec(task="classification", features=features,
                                  feature_refs=features, hidden_layers=[8], dropout=0.0,
                                  fill=[0.0] * n, mean=[0.0] * n, std=[1.0] * n, label="y",
                                  classes=[0, 1])
    torch.manual_seed(0)
    module = model_format.build_module(spec)
    state = module.state_dict()
    first = next(k for k in state if k.endswith("weight"))
    state[first][:, features.index(ignored)] = 0.0  # the network never reads it
    model_format.save_model(folder, spec, state, reference=reference)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=str(PYFUNC_CODE),
                                       artifacts={model_format.ARTIFACT_KEY: str(folder)},
                                       pip_requirements=["numpy"])
    version = str(mlflow.register_model(info.model_uri, name).version)
    return version


def _counter(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v
                                           for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"no {name} {labels} in the exposition")


@pytest.fixture(scope="module")
def dev() -> ir.ResolvedProject:
    project = check_environment(ROOT, "dev", Diagnostics())
    assert project is not None
    return project


@pytest.mark.slow
def test_explain_adds_up_to_the_prediction_and_counts_apart(tmp_path, dev):
    import mlflow

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    model = dev.models["fraud-classifier"]
    features = [r.field for r in model.features]
    ignored = features[-1]
    version = _register(tmp_path / "model", tracking, model.registered_name, features, ignored)
    mlflow.MlflowClient(tracking).set_registered_model_alias(
        model.registered_name, model.production_alias, version)
    endpoint = dev.endpoints[ENDPOINT].model_copy(update={
        "explain": ir.OnlineExplain(max_rows=2, samples=512, background=10)})
    project = dev.model_copy(update={"endpoints": {**dev.endpoints, ENDPOINT: endpoint}})
    server = Server(tmp_path, project, {"MLFLOW_TRACKING_URI": tracking,
                                        "MLC_PREDICTION_LOG_URI": str(tmp_path / "log")})
    try:
        server.wait("/v2/health/ready", timeout=180)
        # whole numbers: some of the example's features are integers
        rows = [{f: float(i + 1) for i, f in enumerate(features)}, {f: -1.0 for f in features}]
        predicted = server.http.post("/predict", json={"instances": rows}).json()
        answer = server.http.post("/explain", json={"instances": rows})
        assert answer.status_code == 200, answer.text
        doc = answer.json()
        assert doc["model_version"] == version and doc["outputs"] == ["p(1)"]
        assert len(doc["explanations"]) == 2
        for explanation, p in zip(doc["explanations"], predicted["predictions"],
                                  strict=True):
            assert set(explanation["values"]) == set(features)
            # the model's own prediction, as /predict answers it
            assert explanation["prediction"][0] == pytest.approx(p, abs=1e-6)
            total = explanation["base_value"][0] + sum(v[0] for v in
                                                       explanation["values"].values())
            assert total == pytest.approx(p, abs=1e-6)
            assert abs(explanation["values"][ignored][0]) < 1e-6
            assert max(abs(v[0]) for v in explanation["values"].values()) > 1e-4

        too_many = server.http.post("/explain", json={"instances": rows * 2})
        assert too_many.status_code == 400 and "at most 2" in too_many.json()["error"]
        assert server.http.get("/explain").status_code == 405
        bad = server.http.post("/explain", json={"instances": [{"nope": 1}]})
        assert bad.status_code == 400

        text = server.http.get("/metrics").text
        assert _counter(text, "mlc_explain_requests_total", code="200") == 1
        assert _counter(text, "mlc_explain_requests_total", code="400") == 2
        assert _counter(text, "mlc_explain_requests_total", code="405") == 1
        assert _counter(text, "mlc_explain_requests_total", code="503") == 0
        assert _counter(text, "mlc_explain_duration_seconds_count") == 4
        # only the one /predict call reached the prediction routes' counters
        assert _counter(text, "mlc_requests_total", route="/predict", code="200",
                        model_version=version) == 1
        assert _counter(text, "mlc_requests_total", route="/predict", code="400",
                        model_version=version) == 0
    finally:
        code = server.stop()
    assert code == 0, server.output()


@pytest.mark.slow
def test_without_explain_the_route_is_unknown(tmp_path, dev):
    """An endpoint without `explain:` answers 404 and builds no explainer."""
    import mlflow

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    model = dev.models["fraud-classifier"]
    features = [r.field for r in model.features]
    version = _register(tmp_path / "model", tracking, model.registered_name, features,
                        features[0])
    mlflow.MlflowClient(tracking).set_registered_model_alias(
        model.registered_name, model.production_alias, version)
    server = Server(tmp_path, dev, {"MLFLOW_TRACKING_URI": tracking,
                                    "MLC_PREDICTION_LOG_URI": str(tmp_path / "log")})
    try:
        server.wait("/v2/health/ready", timeout=180)
        assert server.http.post("/explain", json={"instances": []}).status_code == 404
        text = server.http.get("/metrics").text
        assert _counter(text, "mlc_explain_requests_total", code="200") == 0
    finally:
        assert server.stop() == 0, server.output()


def _linear(x: np.ndarray) -> np.ndarray:
    return x @ np.array([2.0, -1.0, 0.0]) + 0.5


def test_one_explanation_at_a_time_and_exact_for_a_linear_model():
    from mlc.runtime.serve.explain import ExplainBusy, Explainer, ExplainSettings

    background = np.zeros((1, 3))
    explainer = Explainer(_linear, ["a", "b", "c"], background,
                          ExplainSettings(max_rows=1, samples=64, background=1), ["prediction"])
    [found] = explainer.try_explain(np.array([[1.0, 2.0, 3.0]]))
    # against an all-zero background a linear model's SHAP values are weight x value
    assert found["values"] == {"a": [pytest.approx(2.0)], "b": [pytest.approx(-2.0)],
                               "c": [pytest.approx(0.0, abs=1e-9)]}
    assert found["base_value"] == [pytest.approx(0.5)]
    assert found["prediction"] == [pytest.approx(0.5)]

    held, release = threading.Event(), threading.Event()

    def slow(x: np.ndarray) -> np.ndarray:
        held.set()
        release.wait(10)
        return _linear(x)

    busy = Explainer(slow, ["a", "b", "c"], background,
                     ExplainSettings(max_rows=1, samples=64, background=1), ["prediction"])
    held.clear()
    worker = threading.Thread(target=busy.try_explain, args=(np.ones((1, 3)),))
    worker.start()
    assert held.wait(10)
    with pytest.raises(ExplainBusy):
        busy.try_explain(np.ones((1, 3)))
    release.set()
    worker.join(10)
    assert busy.try_explain(np.ones((1, 3)))  # free again


def test_background_from_the_reference_sample_else_the_training_means():
    from mlc.runtime.serve.explain import background_rows

    reference = np.arange(40, dtype=np.float64).reshape(20, 2)
    reference[3, 1] = np.nan
    picked = background_rows(reference, [0.0, 0.0], 5, seed=1)
    assert picked.shape == (5, 2) and not np.isnan(picked).any()
    assert np.array_equal(picked, background_rows(reference, None, 5, seed=1))  # seeded
    assert background_rows(None, [1.0, 2.0], 5, seed=1).tolist() == [[1.0, 2.0]]
    assert background_rows(None, None, 5, seed=1) is None


def test_a_model_with_nothing_to_explain_against_answers_501():
    from mlc.runtime.serve.explain import ExplainSettings
    from mlc.runtime.serve.loader import LoadedModel
    from mlc.runtime.serve.server import _explainer

    pyfunc = LoadedModel(name="m", version="1", alias=None, trained_at=None, features=["a"],
                         task="regression", output_width=1, predict=lambda x: x[:, 0])
    explainer, reason = _explainer(pyfunc, ExplainSettings(max_rows=1, samples=8,
                                                           background=4))
    assert explainer is None and "reference sample" in reason
