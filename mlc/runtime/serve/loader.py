"""Load the served model from the MLflow registry, by alias (or pinned version), safely.

The alias is resolved to a version once, and that exact version is downloaded, so a
promotion during start-up cannot mix two versions. The download is plain files; the
network is built from spec.json and its weights read with `torch.load(weights_only=True)`,
a tree model read from its library's own file (XGBoost's JSON, LightGBM's text) and a
scikit-learn model by skops with a fixed list of trusted types
(mlc/runtime/model_format.py): no pickle runs, so a tampered registry entry cannot execute
code in the server. A model that is not in mlc's format (a custom pyfunc) is refused unless
the endpoint opts in (`allowPickle: true` in ml.yaml; or the image's operator, with
`MLC_ALLOW_PICKLE=1`), which loads it with `mlflow.pyfunc.load_model` (cloudpickle: it runs
the model's own code).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ALLOW_PICKLE_ENV = "MLC_ALLOW_PICKLE"
THREADS_ENV = "MLC_TORCH_THREADS"


class ModelLoadError(Exception):
    pass


@dataclass
class LoadedModel:
    name: str  # registered model name
    version: str
    alias: str | None
    trained_at: float | None  # when the version was registered (unix seconds)
    features: list[str]  # input columns, in the order predict() takes them
    task: str
    output_width: int  # 1, or the number of classes (probabilities per class)
    predict: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    spec: dict | None = field(default=None, repr=False)
    # rows of the model's reference sample, columns in `features` order (complete rows
    # only), when the caller asked for them (`load(reference_rows=...)`: /explain's
    # background); None otherwise or where the model has none
    reference: np.ndarray | None = field(default=None, repr=False)


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """models:/name@alias or models:/name/version -> (name, alias, version)."""
    if not uri.startswith("models:/"):
        raise ModelLoadError(f"model URI {uri!r} is not models:/<name>@<alias> or "
                             "models:/<name>/<version>")
    rest = uri[len("models:/"):]
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return name, alias, None
    name, _, version = rest.rpartition("/")
    if not name or not version:
        raise ModelLoadError(f"model URI {uri!r} names no alias or version")
    return name, None, version


def torch_threads() -> int:
    """Threads for one model call: leave a core to the event loop that parses requests."""
    if os.environ.get(THREADS_ENV):
        return max(1, int(os.environ[THREADS_ENV]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    return max(1, cores - 1)


def resolve_version(model_uri: str, tracking_uri: str) -> tuple[str, str, str | None, float | None]:
    """(name, version, alias, registered-at) of the version the URI names now."""
    from mlflow import MlflowClient

    from mlc.runtime.mlflow_plugins import skip_unused_header_plugins

    name, alias, version = parse_model_uri(model_uri)
    skip_unused_header_plugins()
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        mv = (client.get_model_version_by_alias(name, alias) if alias
              else client.get_model_version(name, version))
    except Exception as exc:
        raise ModelLoadError(f"cannot resolve {model_uri} in the registry at {tracking_uri}: "
                             f"{exc}") from exc
    created = mv.creation_timestamp / 1000.0 if mv.creation_timestamp else None
    return name, str(mv.version), alias, created


def download(name: str, version: str, tracking_uri: str, into: Path | None = None) -> Path:
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    into = into or Path(tempfile.mkdtemp(prefix="mlc-model-"))
    try:
        path = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}",
                                                   dst_path=str(into))
    except Exception as exc:
        raise ModelLoadError(f"cannot download models:/{name}/{version}: {exc}") from exc
    return Path(path)


def load_folder(folder: Path, *, name: str, version: str, alias: str | None,
                trained_at: float | None, allow_pickle: bool | None = None) -> LoadedModel:
    """A LoadedModel from a downloaded model folder (mlc format, or pyfunc if allowed)."""
    from mlc.runtime import model_format

    try:
        model_format.model_dir(folder)
    except FileNotFoundError:
        if allow_pickle is None:
            allow_pickle = os.environ.get(ALLOW_PICKLE_ENV, "") in ("1", "true", "yes")
        if not allow_pickle:
            raise ModelLoadError(
                f"models:/{name}/{version} is not an mlc model (no spec.json); loading it "
                "would unpickle and run its own code. Set `allowPickle: true` on the "
                f"endpoint in ml.yaml to allow that (or {ALLOW_PICKLE_ENV}=1 in the "
                "image).") from None
        return _load_pyfunc(folder, name=name, version=version, alias=alias,
                            trained_at=trained_at)
    spec = model_format.load_spec(folder)
    if model_format.is_native(spec):  # xgboost, lightgbm, sklearn: their own file
        native, spec = model_format.load_model(folder, threads=torch_threads())
        return LoadedModel(name=name, version=version, alias=alias, trained_at=trained_at,
                           features=list(spec["features"]), task=spec["task"],
                           output_width=int(spec["architecture"]["output_dim"])
                           if spec["task"] == "classification" else 1,
                           predict=native.predict, spec=spec)
    import torch

    torch.set_num_threads(torch_threads())
    module, spec = model_format.load_model(folder)  # on the CPU
    # model_format.predict, minus what is the same on every call: the standardisation
    # vectors as arrays once (prepare() takes arrays as they are) and no device lookup.
    arrays = {**spec, **{k: np.asarray(spec[k], dtype=np.float64)
                         for k in ("fill", "mean", "std")}}

    def predict(rows: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(model_format.prepare(arrays, rows))
        with torch.inference_mode():
            out = module(x).float().numpy()
        return model_format.outputs_to_predictions(spec, out)

    return LoadedModel(name=name, version=version, alias=alias, trained_at=trained_at,
                       features=list(spec["features"]), task=spec["task"],
                       output_width=int(spec["architecture"]["output_dim"])
                       if spec["task"] == "classification" else 1,
                       predict=predict, spec=spec)


def _load_pyfunc(folder: Path, **meta) -> LoadedModel:
    import mlflow.pyfunc
    import pandas as pd

    model = mlflow.pyfunc.load_model(str(folder))
    schema = model.metadata.get_input_schema()
    if schema is None or not schema.has_input_names():
        raise ModelLoadError("the pyfunc model has no named input signature to validate "
                             "requests against")
    names = schema.input_names()

    def predict(rows: np.ndarray) -> np.ndarray:
        out = np.asarray(model.predict(pd.DataFrame(rows, columns=names)), dtype=np.float64)
        out = out.reshape(len(rows), -1)
        return out[:, 0] if out.shape[1] == 1 else out

    return LoadedModel(features=list(names), task="regression", output_width=1,
                       predict=predict, **meta)


def reference_sample(folder: Path, features: list[str], limit: int) -> np.ndarray | None:
    """Up to `limit` complete rows of the folder's reference sample, in `features` order."""
    from mlc.runtime import model_format

    try:
        frame = model_format.load_reference(folder)
    except FileNotFoundError:  # not an mlc model folder (a pyfunc): no reference sample
        return None
    if frame is None or any(f not in frame.columns for f in features):
        return None
    rows = frame[features].to_numpy(dtype=np.float64)
    rows = rows[np.isfinite(rows).all(axis=1)]
    return rows[:limit] if len(rows) else None


def load(model_uri: str, tracking_uri: str, *, allow_pickle: bool | None = None,
         cache_dir: Path | None = None, reference_rows: int = 0) -> LoadedModel:
    """Resolve, download and load the model the URI names; warm it with one call. With
    `reference_rows`, keep that many rows of its reference sample too."""
    name, version, alias, created = resolve_version(model_uri, tracking_uri)
    folder = download(name, version, tracking_uri, cache_dir)
    model = load_folder(folder, name=name, version=version, alias=alias, trained_at=created,
                        allow_pickle=allow_pickle)
    if reference_rows:
        model.reference = reference_sample(folder, model.features, reference_rows)
    model.predict(np.zeros((1, len(model.features))))  # first call allocates; not a client's
    return model
