"""Request bodies -> feature rows, checked against the model's signature.

The hot path builds a float64 matrix in C (`itemgetter` over the instances, one
`np.array`) and checks it with a few vectorised tests; only a body that fails them is
walked value by value, to name the offending instance and feature in the 400 answer.

Accepted bodies:

    /predict                 {"instances": [{feature: value, ...}, ...]}
                             {"inputs": {feature: [values...], ...}}      (columns)
                             [{feature: value, ...}, ...]  or one object
    /v2/models/{name}/infer  OIP v2: {"inputs": [{"name", "shape", "datatype", "data"}]},
                             either one tensor per feature (shape [n] or [n, 1]) or one
                             tensor of shape [n, number of features], in signature order.

`null` means a missing value (the model fills it as in training); a missing key, a
string, an infinity or a fraction for an integer feature is a 400 naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter

import numpy as np

# OIP v2 tensor datatypes a numeric feature accepts.
NUMERIC_DATATYPES = frozenset({"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16",
                               "INT32", "INT64", "FP16", "FP32", "FP64"})
INTEGER_TYPES = frozenset({"int32", "int64", "int", "integer", "unix_timestamp"})


class RequestError(Exception):
    """A 4xx answer: `message` names the field and what is wrong with it."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Signature:
    names: tuple[str, ...]  # the model's inputs, in the order the network reads them
    integer: tuple[bool, ...]  # declared integer: fractions are refused
    max_rows: int  # rows one request may carry

    @classmethod
    def build(cls, names: Sequence[str], types: dict[str, str] | None = None,
              max_rows: int = 10_000) -> Signature:
        types = types or {}
        return cls(tuple(names), tuple(types.get(n, "float64") in INTEGER_TYPES for n in names),
                   max_rows)

    @property
    def width(self) -> int:
        return len(self.names)

    def oip_datatype(self, i: int) -> str:
        return "INT64" if self.integer[i] else "FP64"

    # --- request shapes -----------------------------------------------------------------------
    def rows_from_predict(self, body) -> np.ndarray:
        if isinstance(body, list):
            return self.rows_from_instances(body)
        if not isinstance(body, dict):
            raise RequestError("the body must be a JSON object or a list of objects")
        if "instances" in body:
            instances = body["instances"]
            if not isinstance(instances, list):
                raise RequestError("`instances` must be a list of objects")
            return self.rows_from_instances(instances)
        if "inputs" in body and isinstance(body["inputs"], dict):
            return self.rows_from_columns(body["inputs"])
        return self.rows_from_instances([body])

    def rows_from_instances(self, instances: list) -> np.ndarray:
        if not instances:
            raise RequestError("no instances: send at least one row")
        self._check_count(len(instances))
        getter = itemgetter(*self.names)
        try:
            rows = np.array(list(map(getter, instances)))
        except (KeyError, TypeError, ValueError):
            rows = None
        if rows is None or rows.dtype.kind not in "fiub" or rows.shape != (
                len(instances), self.width) and not (self.width == 1
                                                     and rows.shape == (len(instances),)):
            return self._diagnose_instances(instances)
        return self._check(rows.reshape(len(instances), self.width), "instance")

    def rows_from_columns(self, columns: dict) -> np.ndarray:
        missing = [n for n in self.names if n not in columns]
        if missing:
            raise RequestError(f"missing feature `{missing[0]}` in `inputs`")
        data = []
        length = None
        for name in self.names:
            values = columns[name]
            if not isinstance(values, list):
                values = [values]
            if length is None:
                length = len(values)
                self._check_count(length)
            elif len(values) != length:
                raise RequestError(f"feature `{name}` has {len(values)} values, "
                                   f"`{self.names[0]}` has {length}")
            data.append(self._column(values, name))
        if not length:
            raise RequestError("no rows: send at least one value per feature")
        return self._check(np.stack(data, axis=1), "row")

    def rows_from_oip(self, body) -> np.ndarray:
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
            raise RequestError("an inference request needs `inputs`: a list of tensors")
        tensors = body["inputs"]
        for i, t in enumerate(tensors):
            if not isinstance(t, dict) or not {"name", "shape", "datatype", "data"} <= t.keys():
                raise RequestError(f"`inputs[{i}]` must have name, shape, datatype and data")
            # a list or an object here is unhashable: checked before any set or dict sees it
            if not isinstance(t["name"], str):
                raise RequestError(f"`inputs[{i}].name` must be a string, got "
                                   f"{_kind(t['name'])} {_short(t['name'])}")
            if not isinstance(t["datatype"], str):
                raise RequestError(f"input `{t['name']}`: `datatype` must be a string such as "
                                   f"FP32, got {_kind(t['datatype'])} {_short(t['datatype'])}")
            if t["datatype"] not in NUMERIC_DATATYPES:
                raise RequestError(f"input `{t['name']}` has datatype {t['datatype'][:40]}; "
                                   "this model takes numbers (FP32, FP64, INT64, ...)")
        if len(tensors) == 1 and tensors[0]["name"] not in self.names:
            t = tensors[0]
            data = self._tensor(t)
            if data.ndim != 2 or data.shape[1] != self.width:
                raise RequestError(f"input `{t['name']}` must have shape [n, {self.width}] "
                                   f"(features {', '.join(self.names)}), got {t['shape']}")
            self._check_count(data.shape[0])
            return self._check(data.astype(np.float64), "row")
        by_name = {t["name"]: t for t in tensors}
        unknown = sorted(set(by_name) - set(self.names))
        if unknown:
            raise RequestError(f"unknown input `{unknown[0]}` (inputs: {', '.join(self.names)})")
        missing = [n for n in self.names if n not in by_name]
        if missing:
            raise RequestError(f"missing input `{missing[0]}`")
        columns = []
        for name in self.names:
            data = self._tensor(by_name[name])
            if data.ndim == 2 and data.shape[1] == 1:
                data = data[:, 0]
            if data.ndim != 1:
                raise RequestError(f"input `{name}` must have shape [n] or [n, 1], got "
                                   f"{by_name[name]['shape']}")
            if columns and len(data) != len(columns[0]):
                raise RequestError(f"input `{name}` has {len(data)} rows, `{self.names[0]}` "
                                   f"has {len(columns[0])}")
            columns.append(data.astype(np.float64))
        self._check_count(len(columns[0]))
        return self._check(np.stack(columns, axis=1), "row")

    # --- checks -------------------------------------------------------------------------------
    def _check_count(self, n: int) -> None:
        if n > self.max_rows:
            raise RequestError(f"{n} rows in one request; at most {self.max_rows}", 413)

    def _check(self, rows: np.ndarray, what: str) -> np.ndarray:
        rows = rows.astype(np.float64, copy=False)
        if rows.size == 0:
            raise RequestError("no rows: send at least one row")
        # one reduction: a NaN or an infinity anywhere makes the sum non-finite (so can an
        # overflow; then the exact test below finds nothing wrong)
        if not np.isfinite(rows.sum()):
            bad = np.isinf(rows)
            if bad.any():
                r, c = map(int, np.argwhere(bad)[0])
                raise RequestError(f"{what} {r}: feature `{self.names[c]}` is infinite")
        if any(self.integer):
            cols = np.flatnonzero(self.integer)
            part = rows[:, cols]
            bad = (part != np.floor(part)) & ~np.isnan(part)
            if bad.any():
                r, c = map(int, np.argwhere(bad)[0])
                raise RequestError(f"{what} {r}: feature `{self.names[cols[c]]}` must be an "
                                   f"integer, got {part[r, c]!r}")
        return rows

    def _diagnose_instances(self, instances: list) -> np.ndarray:
        """The slow path: find the first bad value, or convert nulls to NaN."""
        out = np.empty((len(instances), self.width), dtype=np.float64)
        for r, inst in enumerate(instances):
            if not isinstance(inst, dict):
                raise RequestError(f"instance {r} must be an object of feature values")
            for c, name in enumerate(self.names):
                if name not in inst:
                    raise RequestError(f"instance {r}: missing feature `{name}`")
                out[r, c] = _number(inst[name], f"instance {r}: feature `{name}`")
        return self._check(out, "instance")

    def _column(self, values: list, name: str) -> np.ndarray:
        try:
            col = np.array(values)
        except ValueError:
            col = None
        if col is not None and col.dtype.kind in "fiub" and col.ndim == 1:
            return col.astype(np.float64)
        return np.array([_number(v, f"row {i}: feature `{name}`") for i, v in enumerate(values)],
                        dtype=np.float64)

    def _tensor(self, t: dict) -> np.ndarray:
        shape = t["shape"]
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise RequestError(f"input `{t['name']}`: shape must be a list of sizes")
        try:
            data = np.array(t["data"])
        except ValueError:
            data = None
        if data is None or data.dtype.kind not in "fiub":
            flat = t["data"] if isinstance(t["data"], list) else [t["data"]]
            data = np.array([_number(v, f"input `{t['name']}` value {i}")
                             for i, v in enumerate(np.ravel(np.array(flat, dtype=object)))],
                            dtype=np.float64)
        if data.size != math.prod(shape):
            raise RequestError(f"input `{t['name']}`: shape {shape} needs {math.prod(shape)} "
                               f"values, got {data.size}")
        return data.reshape(shape)


def _number(value, where: str) -> float:
    if value is None:
        return math.nan
    if not isinstance(value, int | float):  # bool is an int: true/false read as 1/0
        raise RequestError(f"{where} must be a number, got {_kind(value)} {_short(value)}")
    try:
        return float(value)
    except OverflowError:  # an integer past float64's range (the plain JSON parser keeps it)
        raise RequestError(f"{where} is out of range: {_short(value)}") from None


def _kind(value) -> str:
    """The JSON name of a parsed value's type, as the client wrote it."""
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
