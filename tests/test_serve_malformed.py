"""Whatever a client sends, the server answers 4xx unless the model itself fails: a malformed
body counted as a 5xx would page the team (the SLO) or roll a release back (the canary's
error gate). Property-based over JSON shapes, through the real ASGI app with a numpy model
(the HTTP layer and the model are tested with the real server in test_serve_hardening.py)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlc import metrics as contract
from mlc.runtime.serve.loader import LoadedModel
from mlc.runtime.serve.server import ServeApp
from mlc.runtime.serve.settings import ServeSettings
from mlc.runtime.serve.validation import NUMERIC_DATATYPES

from .test_serve import ENDPOINT, dev  # noqa: F401

FEATURES = ["a", "b", "n"]
INFER = contract.INFER_ROUTE.format(name="ep")

scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=5))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=4),
                           max_leaves=12)
feature_names = st.sampled_from([*FEATURES, "x", "input-0"])
# near misses of the accepted shapes reach deeper into validation than arbitrary JSON
tensor = st.fixed_dictionaries(
    {"name": feature_names | json_values,
     "shape": st.lists(st.integers(-1, 4), max_size=3) | json_values,
     "datatype": st.sampled_from(sorted(NUMERIC_DATATYPES) + ["BYTES"]) | json_values,
     "data": st.lists(scalars | st.lists(scalars, max_size=3), max_size=6) | json_values},
    optional={"parameters": json_values})
oip_bodies = st.fixed_dictionaries({"inputs": st.lists(tensor, max_size=4) | json_values},
                                   optional={"id": json_values})
instance = st.dictionaries(feature_names, scalars | json_values, max_size=4)
predict_bodies = (st.fixed_dictionaries({"instances": st.lists(instance, max_size=4)
                                         | json_values})
                  | st.fixed_dictionaries({"inputs": st.dictionaries(
                      feature_names, st.lists(scalars, max_size=4) | json_values, max_size=4)})
                  | st.lists(instance, max_size=3) | instance)


class Driver:
    """A ServeApp with its model installed, on one event loop, called as uvicorn calls it."""

    def __init__(self, failing: bool = False):
        def predict(rows: np.ndarray) -> np.ndarray:
            if failing:
                raise RuntimeError("the model broke")
            return np.nan_to_num(rows).sum(axis=1)

        self.loop = asyncio.new_event_loop()
        self.app = ServeApp(ServeSettings(endpoint="ep", model_uri="models:/m@a",
                                          tracking_uri="", max_queue=8, model_thread=False))
        model = LoadedModel(name="m", version="1", alias="a", trained_at=None,
                            features=FEATURES, task="regression", output_width=1,
                            predict=predict)
        self.loop.run_until_complete(self._start())
        self.app._install({"model": model, "online": None, "log": None, "inline": True})

    async def _start(self) -> None:
        self.app.batcher.start()

    def post(self, path: str, body: bytes) -> tuple[int, dict]:
        return self.loop.run_until_complete(self._post(path, body))

    async def _post(self, path: str, body: bytes) -> tuple[int, dict]:
        sent: list[dict] = []
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive():
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": path,
                 "headers": [(b"content-type", b"application/json")]}
        await self.app(scope, receive, send)
        return sent[0]["status"], json.loads(sent[1]["body"])

    def close(self) -> None:
        self.loop.run_until_complete(self.app.batcher.close())
        self.loop.close()


@pytest.fixture(scope="module")
def driver():
    d = Driver()
    yield d
    d.close()


def _encode(doc) -> bytes:
    return json.dumps(doc, allow_nan=True).encode()  # NaN and Infinity tokens too


def _assert_client_error(driver: Driver, path: str, doc) -> None:
    status, answer = driver.post(path, _encode(doc))
    assert status < 500, (doc, status, answer)
    if status != 200:
        assert 400 <= status < 500 and answer["error"], (doc, answer)


@pytest.mark.parametrize("tensor, message", [
    ({"name": "a", "shape": [1], "datatype": ["FP32"], "data": [1]},
     "`datatype` must be a string such as FP32, got a list"),
    ({"name": "a", "shape": [1], "datatype": {"t": "FP32"}, "data": [1]},
     "`datatype` must be a string such as FP32, got an object"),
    ({"name": ["a"], "shape": [1], "datatype": "FP32", "data": [1]},
     "`inputs[0].name` must be a string, got a list"),
])
def test_the_three_bodies_that_gave_500_are_400s_naming_the_field(driver, tensor, message):
    status, answer = driver.post(INFER, _encode({"inputs": [tensor]}))
    assert (status, message in answer["error"]) == (400, True), answer


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=oip_bodies | json_values)
def test_no_oip_body_gives_a_5xx(driver, doc):
    _assert_client_error(driver, INFER, doc)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=predict_bodies | json_values)
def test_no_predict_body_gives_a_5xx(driver, doc):
    _assert_client_error(driver, contract.PREDICT_ROUTE, doc)


@settings(max_examples=50, deadline=None)
@given(raw=st.binary(max_size=40))
def test_no_byte_string_gives_a_5xx(driver, raw):
    for path in (INFER, contract.PREDICT_ROUTE):
        status, _ = driver.post(path, raw)
        assert 400 <= status < 500 or status == 200


def test_a_failing_model_is_still_a_500():
    """The property is not 'never 5xx': the model's own failure is the server's error."""
    d = Driver(failing=True)
    try:
        status, answer = d.post(contract.PREDICT_ROUTE, _encode({"a": 1, "b": 2, "n": 3}))
    finally:
        d.close()
    assert (status, answer["error"]) == (500, "inference failed: RuntimeError")


# --- the same over HTTP, against the real server process -----------------------------------

@pytest.fixture(scope="module")
def real_server(tmp_path_factory, dev):  # noqa: F811
    from .test_serve_hardening import _serve

    server, _ = _serve(tmp_path_factory.mktemp("malformed"), dev, [8], {})
    server.wait("/v2/health/ready")
    yield server
    assert server.stop() == 0, server.output()


def _assert_real_client_error(server, path: str, raw: bytes) -> None:
    r = server.http.post(path, content=raw, headers={"content-type": "application/json"})
    assert r.status_code < 500, (raw, r.status_code, r.text)


@pytest.mark.slow
@pytest.mark.parametrize("tensor", [
    {"name": "a", "shape": [1], "datatype": ["FP32"], "data": [1]},
    {"name": "a", "shape": [1], "datatype": {"t": "FP32"}, "data": [1]},
    {"name": ["a"], "shape": [1], "datatype": "FP32", "data": [1]},
])
def test_the_three_bodies_over_http_are_400s(real_server, tensor):
    r = real_server.http.post(f"/v2/models/{ENDPOINT}/infer", json={"inputs": [tensor]})
    assert r.status_code == 400 and "must be a string" in r.json()["error"], r.text


@pytest.mark.slow
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(doc=oip_bodies | predict_bodies | json_values, oip=st.booleans())
def test_no_body_sent_to_the_real_server_gives_a_5xx(real_server, doc, oip):
    path = f"/v2/models/{ENDPOINT}/infer" if oip else contract.PREDICT_ROUTE
    _assert_real_client_error(real_server, path, _encode(doc))


@pytest.mark.slow
def test_the_real_server_counted_no_5xx(real_server):
    """After every body above (module order): the SLO's error ratio saw none of them."""
    text = real_server.http.get("/metrics").text
    errors = [line for line in text.splitlines() if line.startswith("mlc_requests_total{")
              and 'code="5' in line and not line.endswith(" 0.0")]
    assert errors == []
