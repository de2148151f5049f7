"""A trained model's predictions on a frame, in the form the evaluation's metrics take,
whatever the model's format.

An mlc model (spec.json + weights) is read directly, as the builtin trainer and the serving
runtime do. Any other MLflow model (a custom trainer may log sklearn, xgboost, a pyfunc, ...)
is loaded with mlflow.pyfunc and its output read as: one column per class, or a 2-column
array for a binary label, are probabilities; a single column is P(positive) when every value
lies in [0, 1] and the label is binary, otherwise class labels (scored as certain). For
probabilities from an sklearn classifier, log it with `pyfunc_predict_fn="predict_proba"`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlc.compiler import ir
from mlc.runtime import model_format
from mlc.runtime.step import StepFailed

INTEGER_TYPES = ("int32", "int64")


@dataclass(frozen=True)
class Predictor:
    features: list[str]
    classes: list | None  # classification: the label values, in the predictions' order
    predict: Callable[..., np.ndarray]  # a DataFrame -> P(positive), (n, k) or values
    flavour: str  # "mlc" or "mlflow"


def typed_inputs(frame, model: ir.Model, columns: list[str] | None = None):
    """The input columns (the model's features unless named) with ml.yaml's types where the
    values allow it: integer features as int64 (the signature says long), so a model sees
    what Feast would hand it."""
    types = {ref.field: ref.type for ref in model.features}
    columns = list(types) if columns is None else list(columns)
    out = frame[columns].copy()
    for name in columns:
        column = out[name]
        if types.get(name) in INTEGER_TYPES and not column.isna().any() \
                and np.all(np.mod(column.to_numpy(dtype=np.float64), 1) == 0):
            out[name] = column.astype("int64")
    return out


def load(path: Path, model: ir.Model, classes: list | None) -> Predictor:
    """The model in `path` (an mlc folder or a downloaded MLflow model)."""
    try:
        module, spec = model_format.load_model(path)
    except FileNotFoundError:
        return _pyfunc(path, model, classes)
    return mlc_predictor(module, spec)


def mlc_predictor(module, spec: dict) -> Predictor:
    return Predictor(features=list(spec["features"]), classes=spec.get("classes"),
                     predict=lambda frame: model_format.predict_frame(module, spec, frame),
                     flavour="mlc")


def _pyfunc(path: Path, model: ir.Model, classes: list | None) -> Predictor:
    import mlflow.pyfunc

    try:
        loaded = mlflow.pyfunc.load_model(str(path))
    except Exception as exc:  # MLflow raises several types for a folder it cannot read
        raise StepFailed(f"the model in {path} is neither an mlc model nor an MLflow model "
                         f"that mlflow.pyfunc can load: {exc}") from exc
    features = [ref.field for ref in model.features]
    declared = signature_types(loaded)

    def predict(frame) -> np.ndarray:
        inputs = typed_inputs(frame, model)
        if declared:  # the model's own signature wins: MLflow refuses int64 for a double
            inputs = inputs.astype({k: v for k, v in declared.items() if k in inputs
                                    and (v != "int64" or not inputs[k].isna().any())})
        return as_predictions(loaded.predict(inputs), model.task, classes)

    return Predictor(features=features, classes=classes, predict=predict, flavour="mlflow")


_NUMPY_TYPES = {"double": "float64", "float": "float32", "long": "int64", "integer": "int32"}


def signature_types(loaded) -> dict[str, str]:
    """The numeric input columns of a pyfunc model's signature, as numpy types."""
    schema = loaded.metadata.get_input_schema()
    if schema is None or not schema.has_input_names():
        return {}
    out = {}
    for spec in schema.inputs:
        kind = getattr(getattr(spec, "type", None), "name", None)
        if spec.name and kind in _NUMPY_TYPES:
            out[spec.name] = _NUMPY_TYPES[kind]
    return out


def as_predictions(out, task: str, classes: list | None) -> np.ndarray:
    """A pyfunc model's output as P(positive) (binary), (n, k) probabilities or values."""
    import pandas as pd

    if isinstance(out, pd.DataFrame):
        by_name = {str(c): c for c in out.columns}
        if classes and len(out.columns) > 1 and all(str(c) in by_name for c in classes):
            out = out[[by_name[str(c)] for c in classes]]
        out = out.to_numpy() if len(out.columns) > 1 else out.iloc[:, 0].to_numpy()
    values = np.asarray(out)
    if task in ("regression", "ranking"):  # a value, or a ranker's score
        return values.reshape(len(values), -1)[:, 0].astype(np.float64)
    k = len(classes or [])
    if values.ndim == 2 and values.shape[1] > 1:
        probabilities = values.astype(np.float64)
        return probabilities[:, 1] if probabilities.shape[1] == 2 and k <= 2 else probabilities
    values = values.reshape(-1)
    numeric = np.issubdtype(values.dtype, np.number)
    if k <= 2 and numeric and np.all((values >= 0) & (values <= 1)):
        return values.astype(np.float64)
    # class labels: each prediction is certain
    index = {_key(c): i for i, c in enumerate(classes or [])}
    hits = np.array([index.get(_key(v), -1) for v in values.tolist()])
    if k <= 2:
        return (hits == 1).astype(np.float64)
    onehot = np.zeros((len(values), k))
    known = hits >= 0
    onehot[np.flatnonzero(known), hits[known]] = 1.0
    return onehot


def _key(value):
    """1, 1.0 and np.int64(1) name the same class; other labels compare as text."""
    if isinstance(value, bool | int | float | np.number):
        return float(value)
    return str(value)
