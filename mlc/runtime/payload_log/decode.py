"""An engine's request and response bodies as the prediction log's rows.

V2, the Open Inference Protocol (MLServer, Triton; KServe's `protocolVersion: v2`):

    {"inputs": [{"name", "shape", "datatype", "data"}, ...]}     a request
    {"model_name", "outputs": [{"name", "shape", "datatype", "data"}, ...]}   its answer

A request carries the model's inputs either as one tensor per input, named after it (shape
[n] or [n, 1]; what MLServer's pandas codec reads), or as one [n, features] tensor whose
columns are the model's inputs in the model's order (what the Triton repository mlc exports
reads). Tensors beside the model's inputs (an entity key sent along) are the rows' entity
keys. `data` is flat (row-major) or nested; BYTES data that is not a number is refused.

V1 (TorchServe under KServe): `{"instances": [...]}` of rows (lists in the model's order, or
objects by input name) and `{"predictions": [...]}`.

The prediction of a row is what prediction_log.py documents: a response's one value per row
(P(positive) or the regression's value), or a row of class probabilities, which the writer
logs as the class index; a binary classifier's two columns log the positive class's.
Everything that does not fit raises Undecodable, whose reason is a counter label.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

NUMERIC = frozenset({"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
                     "INT64", "FP16", "FP32", "FP64"})
MAX_ROWS = 100_000  # rows of one request: past it, not a request this log keeps


class Undecodable(ValueError):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _json(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Undecodable("not_json", f"the {what} body is not JSON") from None


def _flat(data: Any) -> list:
    if not isinstance(data, list):
        return [data]
    out: list = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _number(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if value is None:
        return math.nan
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise Undecodable("not_numeric", f"value {str(value)[:40]!r} is not a number")


def _tensor(t: Any) -> tuple[str, list[int], list]:
    """(name, shape, flat values) of one V2 tensor, checked."""
    if not isinstance(t, dict) or not isinstance(t.get("name"), str):
        raise Undecodable("bad_tensor", "a tensor is not an object with a name")
    shape = t.get("shape")
    if (not isinstance(shape, list) or not shape or len(shape) > 2
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                       for d in shape)):
        raise Undecodable("bad_shape", f"tensor `{t['name']}` has shape {shape!r}: [n] or "
                          "[n, k] is read")
    datatype = t.get("datatype")
    if datatype not in NUMERIC and datatype != "BYTES":
        raise Undecodable("datatype", f"tensor `{t['name']}` has datatype {datatype!r}")
    if "data" not in t:
        raise Undecodable("binary_data", f"tensor `{t['name']}` has no JSON `data` (the "
                          "binary tensor extension is not read)")
    values = _flat(t["data"])
    if len(values) != math.prod(shape):
        raise Undecodable("shape_mismatch", f"tensor `{t['name']}` holds {len(values)} "
                          f"values, not the {math.prod(shape)} of shape {shape}")
    if shape[0] > MAX_ROWS:
        raise Undecodable("too_many_rows", f"{shape[0]} rows (at most {MAX_ROWS})")
    return t["name"], shape, values


def v2_request(body: bytes, features: Sequence[str]) -> tuple[np.ndarray, dict]:
    """(rows [n, len(features)] float64, the request as prediction_log reads entity keys)."""
    doc = _json(body, "request")
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    if not isinstance(inputs, list) or not inputs:
        raise Undecodable("no_inputs", "the request has no `inputs` list")
    tensors = [_tensor(t) for t in inputs]
    named = {name: (shape, values) for name, shape, values in tensors}
    if any(f in named for f in features):
        n = {shape[0] for shape, _ in named.values()}
        if len(n) != 1:
            raise Undecodable("ragged", "the input tensors have different row counts")
        (rows,) = n
        out = np.full((rows, len(features)), np.nan)
        for i, f in enumerate(features):
            if f in named:
                shape, values = named[f]
                if len(shape) == 2 and shape[1] != 1:
                    raise Undecodable("bad_shape", f"input `{f}` has shape {shape}: one "
                                      "column is read")
                out[:, i] = [_number(v) for v in values]
        columns = {name: values for name, (shape, values) in named.items()
                   if name not in features and (len(shape) == 1 or shape[1] == 1)}
        return out, {"inputs": columns}
    if len(tensors) == 1 and len(tensors[0][1]) == 2 and tensors[0][1][1] == len(features):
        _, shape, values = tensors[0]
        data = np.array([_number(v) for v in values], dtype=np.float64)
        return data.reshape(shape[0], shape[1]), {}
    raise Undecodable("unknown_inputs", f"the inputs {sorted(named)} are neither the model's "
                      f"inputs by name nor one [n, {len(features)}] tensor")


def v1_request(body: bytes, features: Sequence[str]) -> tuple[np.ndarray, Any]:
    doc = _json(body, "request")
    instances = doc.get("instances") if isinstance(doc, dict) else None
    if not isinstance(instances, list) or not instances:
        raise Undecodable("no_instances", "the request has no `instances` list")
    if len(instances) > MAX_ROWS:
        raise Undecodable("too_many_rows", f"{len(instances)} rows (at most {MAX_ROWS})")
    out = np.full((len(instances), len(features)), np.nan)
    for r, row in enumerate(instances):
        if isinstance(row, dict):
            out[r] = [_number(row.get(f)) for f in features]
        elif isinstance(row, list) and len(row) == len(features):
            out[r] = [_number(v) for v in row]
        else:
            raise Undecodable("bad_instance", f"instance {r} is neither an object nor a list "
                              f"of {len(features)} values")
    return out, doc


def _predictions(values: list, shape: list[int], rows: int, task: str) -> np.ndarray:
    if shape[0] != rows:
        raise Undecodable("row_mismatch", f"the answer has {shape[0]} rows, the request "
                          f"{rows}")
    data = np.array([_number(v) for v in values], dtype=np.float64)
    if len(shape) == 1 or shape[1] == 1:
        return data.reshape(rows)
    data = data.reshape(rows, shape[1])
    if task == "classification" and shape[1] == 2:
        return data[:, 1]  # P(positive), as mlc's server logs a binary classifier
    if task != "classification":
        raise Undecodable("bad_shape", f"a {task} answer of shape {shape}: one value per row "
                          "is read")
    return data  # class probabilities: the writer logs the class index


def v2_response(body: bytes, rows: int, task: str) -> np.ndarray:
    doc = _json(body, "response")
    outputs = doc.get("outputs") if isinstance(doc, dict) else None
    if not isinstance(outputs, list) or not outputs:
        raise Undecodable("no_outputs", "the response has no `outputs` (an error answer?)")
    tensors = [_tensor(t) for t in outputs]
    matching = [t for t in tensors if t[1][0] == rows]
    if not matching:
        raise Undecodable("row_mismatch", f"no output has the request's {rows} rows")
    _, shape, values = matching[0]
    return _predictions(values, shape, rows, task)


def v1_response(body: bytes, rows: int, task: str) -> np.ndarray:
    doc = _json(body, "response")
    predictions = doc.get("predictions") if isinstance(doc, dict) else None
    if not isinstance(predictions, list) or not predictions:
        raise Undecodable("no_predictions", "the response has no `predictions` list")
    width = {len(p) if isinstance(p, list) else 0 for p in predictions}
    if len(width) != 1:
        raise Undecodable("ragged", "the predictions have different widths")
    (k,) = width
    shape = [len(predictions)] if k == 0 else [len(predictions), k]
    return _predictions(_flat(predictions), shape, rows, task)


REQUEST = {"v1": v1_request, "v2": v2_request}
RESPONSE = {"v1": v1_response, "v2": v2_response}
