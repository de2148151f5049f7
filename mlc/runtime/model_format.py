"""The model format shared by the trainer (writes), the server and the drift check (read).

A model is a folder of plain files, never a pickle, so that serving needs neither the
training code nor cloudpickle and a model cannot run code when it is loaded:

    spec.json        what the model is and how its inputs are prepared (below)
    the model file   by `architecture.type`:
        mlp          weights.pt: the state_dict, saved by torch.save; read with
                     weights_only=True
        xgboost      model.json: XGBoost's own JSON (`Booster.save_model`)
        lightgbm     model.txt: LightGBM's own text model (`Booster.save_model`)
        sklearn      model.skops: skops' format, loaded with a fixed list of trusted types
                     (scikit-learn has no format of its own but pickle; skops rebuilds the
                     estimator from its state without unpickling, and refuses any type not
                     trusted, so a tampered file cannot run code)
    reference.parquet  optional: a sample of the training inputs, the drift check's reference

The tree models (xgboost, lightgbm) get no preparation: the model file is the whole model.
Another engine serves it unchanged: MLServer's xgboost runtime loads model.json, its lightgbm
runtime model.txt, each with the columns of `features` in that order (float64, a missing value
as NaN). Their raw outputs are the predictions below (P(positive) for a binary label, one
probability per class otherwise, the value for regression), with the classes in `classes`'
order (the model was fitted on their indices 0..k-1).

The trainer logs this folder to MLflow as the artifacts of a pyfunc model (models-from-code,
see `mlc/runtime/train/pyfunc_model.py`), so `mlflow.pyfunc.load_model("models:/m@alias")`
works too; `load_model` accepts either the plain folder or the downloaded MLflow model.

spec.json (FORMAT 1):
    format            1
    task              "classification" | "regression" | "ranking" (xgboost and lightgbm only:
                      one score per row, higher = ranked first within its query)
    features          input column names, in the order the network reads them
    feature_refs      the same as "view:field" (lineage; names the columns came from)
    architecture      {"type": "mlp", "input_dim", "hidden_layers", "dropout", "output_dim"}, or
                      {"type": "xgboost" | "lightgbm" | "sklearn", "file", "input_dim",
                       "output_dim", "library_version", ...}: the model file and what made it
    fill              mlp: per feature, the value that replaces a missing input (training
                      mean); null for the other types
    mean, std         mlp: per feature, standardisation applied after filling; null otherwise
    classes           classification: the label values, in output order ([0, 1] for binary)
    target_mean, target_std   mlp regression: the label's standardisation, undone on output
    label             the label column's name
    extra             free-form lineage (model name, data snapshot, ...), never read here
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

FORMAT = 1
SPEC_FILE = "spec.json"
WEIGHTS_FILE = "weights.pt"
# the model file of each type other than mlp (mlc/trainer_catalog.py names the same)
NATIVE_FILES = {"xgboost": "model.json", "lightgbm": "model.txt", "sklearn": "model.skops"}
# the types a sklearn model file may hold beyond skops' own trusted list: the trees inside
# the forests and boosted models (a numpy dtype in a pipeline's imputer). Anything else in
# a file is refused at load time.
SKOPS_TRUSTED = ("numpy.dtype", "sklearn.tree._tree.Tree",
                 "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor")
REFERENCE_FILE = "reference.parquet"
# The folder's name among an MLflow pyfunc model's artifacts (`artifacts={ARTIFACT_KEY:
# folder}`); MLflow stores it under artifacts/<the folder's base name>.
ARTIFACT_KEY = "mlc_model"
# The reference sample's column of the model's predictions; the prediction log names it the
# same, and the double underscores keep it apart from any feature's name.
PREDICTION_COLUMN = "__prediction__"
# The pyfunc face's output column (one value per row), as MLflow's tools expect it.
PYFUNC_OUTPUT = "prediction"


class TabularMLP(nn.Module):
    """Linear -> ReLU -> Dropout per hidden layer, then one Linear to the outputs."""

    def __init__(self, input_dim: int, hidden_layers: list[int], output_dim: int,
                 dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        width = input_dim
        for size in hidden_layers:
            layers += [nn.Linear(width, size), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, output_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def output_dim(task: str, classes: list | None) -> int:
    """One logit for binary classification and regression; one per class otherwise."""
    if task == "classification" and classes is not None and len(classes) > 2:
        return len(classes)
    return 1


def make_spec(*, task: str, features: list[str], feature_refs: list[str],
              hidden_layers: list[int], dropout: float, fill: list[float], mean: list[float],
              std: list[float], label: str, classes: list | None = None,
              target_mean: float | None = None, target_std: float | None = None,
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
    if task not in ("classification", "regression"):
        raise ValueError(f"unknown task {task!r}")
    if task == "classification" and not classes:
        raise ValueError("a classification spec needs its classes")
    n = len(features)
    if not (len(feature_refs) == len(fill) == len(mean) == len(std) == n):
        raise ValueError("features, feature_refs, fill, mean and std must have one entry "
                         "per feature")
    return {
        "format": FORMAT,
        "task": task,
        "features": list(features),
        "feature_refs": list(feature_refs),
        "architecture": {"type": "mlp", "input_dim": n, "hidden_layers": list(hidden_layers),
                         "dropout": float(dropout), "output_dim": output_dim(task, classes)},
        "fill": [float(v) for v in fill],
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "classes": list(classes) if classes is not None else None,
        "target_mean": None if target_mean is None else float(target_mean),
        "target_std": None if target_std is None else float(target_std),
        "label": label,
        "extra": dict(extra or {}),
    }


def make_native_spec(*, kind: str, task: str, features: list[str],
                     feature_refs: list[str], label: str, classes: list | None = None,
                     architecture: dict[str, Any] | None = None,
                     extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The spec of a model of type `kind` (xgboost, lightgbm, sklearn): no preparation of
    its inputs, the model file holds everything."""
    if kind not in NATIVE_FILES:
        raise ValueError(f"unknown model type {kind!r}")
    if task == "ranking" and kind not in ("xgboost", "lightgbm"):
        raise ValueError(f"a {kind} model does not rank")
    if task not in ("classification", "regression", "ranking"):
        raise ValueError(f"unknown task {task!r}")
    if task == "classification" and not classes:
        raise ValueError("a classification spec needs its classes")
    if len(feature_refs) != len(features):
        raise ValueError("features and feature_refs must have one entry per feature")
    return {
        "format": FORMAT,
        "task": task,
        "features": list(features),
        "feature_refs": list(feature_refs),
        "architecture": {**(architecture or {}), "type": kind, "file": NATIVE_FILES[kind],
                         "input_dim": len(features), "output_dim": output_dim(task, classes)},
        "fill": None, "mean": None, "std": None,
        "classes": list(classes) if classes is not None else None,
        "target_mean": None, "target_std": None,
        "label": label,
        "extra": dict(extra or {}),
    }


def is_native(spec: dict[str, Any]) -> bool:
    return spec["architecture"].get("type") in NATIVE_FILES


class NativeModel:
    """A tree or scikit-learn model read from its own file: `predict(rows)` takes raw rows
    (features in spec order, NaN = missing) and returns what `outputs_to_predictions` does
    for a network. `native` is the library's object (an xgboost or lightgbm Booster, an
    sklearn estimator)."""

    def __init__(self, spec: dict[str, Any], native: Any, threads: int | None = None):
        self.spec, self.native, self.threads = spec, native, threads
        self.kind = spec["architecture"]["type"]
        self._width = len(spec["features"])

    def predict(self, rows: np.ndarray) -> np.ndarray:
        x = np.asarray(rows, dtype=np.float64)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != self._width:
            raise ValueError(f"expected rows of {self._width} features "
                             f"({', '.join(self.spec['features'])}), got shape "
                             f"{tuple(x.shape)}")
        x = np.where(np.isfinite(x), x, np.nan)  # an infinite input is missing, as for mlp
        task, k = self.spec["task"], self.spec["architecture"]["output_dim"]
        if self.kind == "xgboost":
            out = np.asarray(self.native.inplace_predict(x), dtype=np.float64)
        elif self.kind == "lightgbm":
            out = np.asarray(self.native.predict(x, num_threads=self.threads or 0),
                             dtype=np.float64)
        elif task == "classification":
            out = np.asarray(self.native.predict_proba(x), dtype=np.float64)
            out = out[:, 1] if k == 1 else out
        else:
            out = np.asarray(self.native.predict(x), dtype=np.float64)
        if task == "classification" and k > 1:
            return out.reshape(len(x), k)
        return out.reshape(len(x))


def save_native(directory: Path | str, spec: dict[str, Any], native: Any,
                reference=None) -> Path:
    """Write the model file of `spec`'s type from the library's object, then spec.json (and
    reference.parquet, from a DataFrame). The file is read back and checked against the spec
    before spec.json is written, so a folder with a spec.json always loads."""
    directory = Path(directory)
    kind = spec["architecture"]["type"]
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / NATIVE_FILES[kind]
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.",
                               suffix=target.suffix)
    os.close(fd)
    try:
        if kind in ("xgboost", "lightgbm"):
            booster = native.get_booster() if hasattr(native, "get_booster") else native
            booster.save_model(tmp)
        else:
            import skops.io

            skops.io.dump(native, tmp)
        _load_native(spec, Path(tmp))  # refuses what would not load at serving time
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    text = json.dumps(spec, indent=2, sort_keys=True) + "\n"
    if reference is not None:
        _atomic_write(directory / REFERENCE_FILE,
                      lambda fh: reference.to_parquet(fh, index=False))
    _atomic_write(directory / SPEC_FILE, lambda fh: fh.write(text.encode("utf-8")))
    return directory


def _load_native(spec: dict[str, Any], file: Path, threads: int | None = None) -> NativeModel:
    kind = spec["architecture"]["type"]
    if kind == "xgboost":
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(str(file))
        if threads:
            booster.set_param({"nthread": threads})
        native: Any = booster
    elif kind == "lightgbm":
        import lightgbm

        native = lightgbm.Booster(model_file=str(file))
    else:
        import skops.io

        native = skops.io.load(str(file), trusted=list(SKOPS_TRUSTED))
        if threads and "n_jobs" in native.get_params():
            native.set_params(n_jobs=threads)
    model = NativeModel(spec, native, threads)
    if model.predict(np.zeros((1, len(spec["features"])))).shape[0] != 1:
        raise ValueError(f"the {kind} model in {file} does not give one prediction per row")
    return model


def build_module(spec: dict[str, Any]) -> TabularMLP:
    arch = spec["architecture"]
    if arch.get("type") != "mlp":
        raise ValueError(f"unknown architecture {arch.get('type')!r}")
    return TabularMLP(arch["input_dim"], arch["hidden_layers"], arch["output_dim"],
                      arch.get("dropout", 0.0))


def save_model(directory: Path | str, spec: dict[str, Any],
               state_dict: dict[str, torch.Tensor], reference=None) -> Path:
    """Write spec.json, weights.pt (and reference.parquet, from a DataFrame) into `directory`.

    The weights are checked against the spec before anything is written, so a folder that
    exists always loads.
    """
    directory = Path(directory)
    build_module(spec).load_state_dict(state_dict)  # fails here, not at serving time
    directory.mkdir(parents=True, exist_ok=True)
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    _atomic_write(directory / WEIGHTS_FILE, lambda fh: torch.save(cpu, fh))
    text = json.dumps(spec, indent=2, sort_keys=True) + "\n"
    _atomic_write(directory / SPEC_FILE, lambda fh: fh.write(text.encode("utf-8")))
    if reference is not None:
        _atomic_write(directory / REFERENCE_FILE,
                      lambda fh: reference.to_parquet(fh, index=False))
    return directory


def model_dir(path: Path | str) -> Path:
    """The folder holding spec.json: `path` itself, or inside a downloaded MLflow model."""
    path = Path(path)
    # MLflow keeps a logged folder under artifacts/<the folder's own name>
    artifacts = sorted(p for p in (path / "artifacts").glob("*") if p.is_dir()) \
        if (path / "artifacts").is_dir() else []
    for candidate in (path, *artifacts):
        if (candidate / SPEC_FILE).is_file():
            return candidate
    found = sorted(path.rglob(SPEC_FILE))
    if len(found) == 1:
        return found[0].parent
    raise FileNotFoundError(f"no {SPEC_FILE} under {path}: not an mlc model")


def load_spec(path: Path | str) -> dict[str, Any]:
    spec = json.loads((model_dir(path) / SPEC_FILE).read_text("utf-8"))
    if spec.get("format") != FORMAT:
        raise ValueError(f"model format {spec.get('format')!r} is not supported "
                         f"(this mlc reads format {FORMAT})")
    return spec


def load_model(path: Path | str, device: str | torch.device = "cpu", *,
               threads: int | None = None) -> tuple[TabularMLP | NativeModel, dict[str, Any]]:
    """The model and its spec: the network, in eval mode on `device`, or a NativeModel (on
    `threads` threads where the library takes a count). Never unpickles anything."""
    folder = model_dir(path)
    spec = load_spec(folder)
    if is_native(spec):
        return _load_native(spec, folder / NATIVE_FILES[spec["architecture"]["type"]],
                            threads), spec
    module = build_module(spec)
    state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    module.load_state_dict(state)
    module.to(device).eval()
    return module, spec


def load_reference(path: Path | str):
    """The training inputs sample as a DataFrame, or None when the model has none."""
    file = model_dir(path) / REFERENCE_FILE
    if not file.is_file():
        return None
    import pandas as pd

    return pd.read_parquet(file)


def prepare(spec: dict[str, Any], rows: np.ndarray) -> np.ndarray:
    """Raw feature rows (features in spec order, NaN = missing) -> the network's inputs."""
    x = np.asarray(rows, dtype=np.float64)
    if x.ndim == 1:
        x = x.reshape(1, -1)
    n = len(spec["features"])
    if x.ndim != 2 or x.shape[1] != n:
        raise ValueError(f"expected rows of {n} features ({', '.join(spec['features'])}), "
                         f"got shape {tuple(x.shape)}")
    fill = np.asarray(spec["fill"], dtype=np.float64)
    x = np.where(np.isfinite(x), x, fill)  # missing (NaN) and infinite inputs alike
    x = (x - np.asarray(spec["mean"])) / np.asarray(spec["std"])
    return x.astype(np.float32)


def outputs_to_predictions(spec: dict[str, Any], out: np.ndarray) -> np.ndarray:
    """Network outputs -> predictions: P(positive) for binary classification, class
    probabilities (n, k) for multi-class, the value in label units for regression."""
    out = np.asarray(out, dtype=np.float64)
    if spec["task"] == "regression":
        return out[:, 0] * spec["target_std"] + spec["target_mean"]
    if spec["architecture"]["output_dim"] == 1:
        return 1.0 / (1.0 + np.exp(-out[:, 0]))
    z = out - out.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@torch.no_grad()
def predict(model: nn.Module | NativeModel, spec: dict[str, Any], rows: np.ndarray
            ) -> np.ndarray:
    """Predictions for raw feature rows (see `prepare` and `outputs_to_predictions`)."""
    if isinstance(model, NativeModel):
        return model.predict(rows)
    x = torch.from_numpy(prepare(spec, rows))
    device = next(model.parameters()).device
    out = model(x.to(device)).float().cpu().numpy()
    return outputs_to_predictions(spec, out)


def predict_frame(model: nn.Module | NativeModel, spec: dict[str, Any], frame) -> np.ndarray:
    """Like `predict`, for a DataFrame with (at least) the spec's feature columns."""
    missing = [f for f in spec["features"] if f not in frame.columns]
    if missing:
        raise KeyError(f"missing input columns: {', '.join(missing)}")
    rows = frame[spec["features"]].astype("float64").to_numpy()
    return predict(model, spec, rows)


def pyfunc_output(spec: dict[str, Any], predictions: np.ndarray):
    """What the pyfunc face returns: a `prediction` column (P(positive) or the value), or
    one column of probabilities per class."""
    import pandas as pd

    if predictions.ndim == 2:
        return pd.DataFrame(predictions, columns=[str(c) for c in spec["classes"]])
    return pd.DataFrame({PYFUNC_OUTPUT: predictions})


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder and rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
