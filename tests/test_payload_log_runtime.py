"""The payload logger's receiver in-process (mlc/runtime/payload_log/): each protocol's bodies
decoded into the rows and predictions mlc's server logs (V2 by name and as one tensor, V1
objects and lists; binary, multi-class, regression), entity keys carried beside MLServer's
inputs, the pairing's bounds in count, bytes and time, sampling, and bad events counted,
never raised. The Parquet files are the real writer's (prediction_log.py), read back with
pyarrow. tests/test_payload_log.py runs it as its Deployment declares against a real
MLServer."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.dataset as ds
import pytest

from mlc.runtime.payload_log import cloudevents, decode
from mlc.runtime.payload_log.pairing import Pairing
from mlc.runtime.payload_log.receiver import ReceiverApp, ReceiverSettings
from mlc.runtime.prediction_log import PREDICTION_COLUMN

FEATURES = ["a", "b", "c"]


def headers(event_id: str, kind: str, **extra: str) -> list[tuple[bytes, bytes]]:
    h = {"content-type": "application/json", "ce-specversion": "1.0", "ce-id": event_id,
         "ce-type": f"org.kubeflow.serving.inference.{kind}",
         "ce-source": "http://localhost:9081/", "ce-time": "2026-12-02T21:00:00Z",
         "ce-inferenceservicename": "churn", "ce-namespace": "ml", "ce-component": "predictor",
         "ce-endpoint": "default", **extra}
    return [(k.encode(), v.encode()) for k, v in h.items()]


def app_for(tmp_path, protocol="v2", task="classification", sample=1.0, entity_keys=None,
            **kw) -> ReceiverApp:
    app = ReceiverApp(ReceiverSettings(
        endpoint="churn", protocol=protocol, task=task, features=FEATURES,
        entity_keys=entity_keys or {}, log_uri=str(tmp_path / "log"), sample=sample,
        model_uri="models:/churn/7", tracking_uri="http://mlflow.invalid", **kw), seed=1)
    app.start()
    return app


def send(app: ReceiverApp, event_id: str, request, response) -> int:
    def body(d) -> bytes:
        return d if isinstance(d, bytes) else json.dumps(d).encode()

    app.receive_event(headers(event_id, "response"), body(response))
    return app.receive_event(headers(event_id, "request"), body(request))


def logged(app: ReceiverApp, tmp_path):
    app.close()
    return ds.dataset(str(tmp_path / "log"), format="parquet").to_table().to_pandas()


def v2(columns: dict[str, list], datatype="FP64") -> dict:
    return {"inputs": [{"name": k, "datatype": datatype, "shape": [len(v)], "data": v}
                       for k, v in columns.items()]}


def test_v2_by_name_and_as_one_tensor_binary(tmp_path):
    app = app_for(tmp_path)
    answer = {"outputs": [{"name": "predict", "datatype": "FP64", "shape": [2, 2],
                           "data": [0.9, 0.1, 0.2, 0.8]}]}
    # by name, in another order than the model's, INT64 among FP64
    request = {"inputs": [{"name": "c", "datatype": "FP64", "shape": [2], "data": [3, 6]},
                          {"name": "a", "datatype": "INT64", "shape": [2, 1], "data": [[1], [4]]},
                          {"name": "b", "datatype": "FP32", "shape": [2], "data": [2, 5]}]}
    assert send(app, "r1", request, answer) == 2
    tensor = {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [2, 3],
                          "data": [[7, 8, 9], [10, 11, 12]]}]}
    assert send(app, "r2", tensor, answer) == 2
    rows = logged(app, tmp_path).sort_values(["request_id", "a"])
    assert rows[FEATURES].to_numpy().tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]]
    np.testing.assert_allclose(rows[PREDICTION_COLUMN], [0.1, 0.8, 0.1, 0.8])  # P(positive)
    assert set(rows["model_version"]) == {"7"}  # the pinned version, no registry read
    assert rows["request_id"].tolist() == ["r1", "r1", "r2", "r2"]


def test_v2_multiclass_regression_and_entity_keys(tmp_path):
    app = app_for(tmp_path, entity_keys={"user_id": "int64"})
    request = v2({"a": [1, 2], "b": [3, 4], "c": [5, 6]})
    request["inputs"].append({"name": "user_id", "datatype": "INT64", "shape": [2],
                              "data": [41, 42]})
    probs = {"outputs": [{"name": "p", "datatype": "FP64", "shape": [2, 3],
                          "data": [0.1, 0.7, 0.2, 0.6, 0.3, 0.1]}]}
    assert send(app, "m", request, probs) == 2
    rows = logged(app, tmp_path).sort_values("a")
    assert rows[PREDICTION_COLUMN].tolist() == [1, 0]  # the class index
    assert rows["user_id"].tolist() == [41, 42]

    reg = app_for(tmp_path / "reg", task="regression")
    assert send(reg, "x", v2({"a": [1], "b": [2], "c": [3]}),
                {"outputs": [{"name": "y", "datatype": "FP32", "shape": [1], "data": [12.5]}]}
                ) == 1
    assert logged(reg, tmp_path / "reg")[PREDICTION_COLUMN].tolist() == [12.5]


def test_v1_instances_objects_and_lists(tmp_path):
    app = app_for(tmp_path, protocol="v1")
    assert send(app, "o", {"instances": [{"a": 1, "b": 2, "c": 3}, {"c": 6, "b": 5, "a": 4}]},
                {"predictions": [[0.3, 0.7], [0.6, 0.4]]}) == 2
    assert send(app, "l", {"instances": [[7, 8, 9]]}, {"predictions": [0.25]}) == 1
    rows = logged(app, tmp_path).sort_values("a")
    assert rows[FEATURES].to_numpy().tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    np.testing.assert_allclose(rows[PREDICTION_COLUMN], [0.7, 0.4, 0.25])


@pytest.mark.parametrize("request_body,response,reason", [
    (b"{nope", {"outputs": []}, "not_json"),
    ({"inputs": []}, {"outputs": []}, "no_inputs"),
    (v2({"x": [1.0]}), {"outputs": [{"name": "p", "datatype": "FP64", "shape": [1],
                                     "data": [1]}]}, "unknown_inputs"),
    (v2({"a": [1], "b": [2], "c": [3]}), {"error": "model failed"}, "no_outputs"),
    (v2({"a": [1], "b": [2], "c": [3]}), {"outputs": [{"name": "p", "datatype": "FP64",
                                                       "shape": [2], "data": [1, 2]}]},
     "row_mismatch"),
    ({"inputs": [{"name": "a", "datatype": "FP64", "shape": [2], "data": [1]}]},
     {"outputs": []}, "shape_mismatch"),
    ({"inputs": [{"name": "a", "datatype": "BYTES", "shape": [1], "data": ["hi"]}]},
     {"outputs": []}, "not_numeric"),
    ({"inputs": [{"name": "a", "datatype": "FP64", "shape": [1]}]}, {"outputs": []},
     "binary_data"),
])
def test_bad_pairs_are_counted_and_skipped(tmp_path, request_body, response, reason):
    app = app_for(tmp_path)
    assert send(app, "bad", request_body, response) == 0
    assert app.counts.undecodable[reason] == 1
    assert app.counts.paired == 1 and app.counts.rows == 0
    # and the next good pair is logged
    good = {"outputs": [{"name": "p", "datatype": "FP64", "shape": [1], "data": [0.5]}]}
    assert send(app, "good", v2({"a": [1], "b": [2], "c": [3]}), good) == 1
    app.close()


def test_events_that_are_not_the_loggers(tmp_path):
    app = app_for(tmp_path)
    cases = {
        "not_cloudevent": [(b"content-type", b"application/json")],
        "structured_mode": [(b"content-type", b"application/cloudevents+json"),
                            (b"ce-id", b"x"), (b"ce-type", b"t")],
        "specversion": [(k, b"0.3" if k == b"ce-specversion" else v)
                        for k, v in headers("x", "request")],
        "event_type": headers("x", "ping"),
        "bad_id": headers("y" * (cloudevents.MAX_ID_CHARS + 1), "request"),
    }
    for reason, h in cases.items():
        assert app.receive_event(h, b"{}") == 0
        assert app.counts.undecodable[reason] == 1, reason
    assert app.pairing.pending == 0
    app.close()


def test_pairing_is_bounded_in_count_bytes_and_time():
    clock = [0.0]
    pairing = Pairing(max_pending=3, timeout_seconds=30, max_bytes=100,
                      clock=lambda: clock[0])

    def half(i, kind="request", body=b"x"):
        return cloudevents.Event(id=str(i), kind=kind, source="", time=None,
                                 content_type="application/json", extensions={}, body=body)

    for i in range(5):
        assert pairing.add(half(i)) is None
    assert (pairing.pending, pairing.expired) == (3, 2)  # the oldest two dropped
    assert pairing.add(half(0, "response")) is None  # its request is gone: waits itself
    assert pairing.add(half(9, body=b"y" * 101)) is None  # alone over the byte bound
    assert pairing.bytes <= 100
    clock[0] = 31.0
    pairing.expire()
    assert pairing.pending == 0 and pairing.bytes == 0
    expired = pairing.expired
    pair = (pairing.add(half(7, "response")), pairing.add(half(7)))
    assert pair[0] is None and pair[1].request.kind == "request"
    assert pairing.add(half(7)) is None and pairing.duplicates == 1  # after pairing
    assert pairing.expired == expired


def test_sampling_at_the_endpoints_rate(tmp_path):
    app = app_for(tmp_path, sample=0.25)
    n = 400
    request = v2({f: list(range(n)) for f in FEATURES})
    answer = {"outputs": [{"name": "p", "datatype": "FP64", "shape": [n],
                           "data": [0.5] * n}]}
    kept = sum(send(app, f"s{i}", request, answer) for i in range(10))
    assert 0.2 * 10 * n < kept < 0.3 * 10 * n
    assert len(logged(app, tmp_path)) == kept == app.counts.rows


def test_decode_limits_rows():
    n = decode.MAX_ROWS + 1
    body = json.dumps({"instances": [[0, 0, 0]] * n}).encode()
    with pytest.raises(decode.Undecodable) as err:
        decode.v1_request(body, FEATURES)
    assert err.value.reason == "too_many_rows"
