"""A tiny project for the lifecycle tests (search, explain, fairness): one file source whose
rows carry their own features, so that `mlc run` trains in seconds. The label depends on
`x1` and `x2` (learnable), and `group` is a column the fairness tests slice by."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ENV = "default"
MODEL = "tiny"
PIPELINE = f"train-{MODEL}"
TRAIN_IMAGE = "ghcr.io/mlc-dev/mlc-train:0.1.0"
MLFLOW_HOST = "mlflow.mlc-tiny.svc.cluster.local:5000"


def rows(n: int = 400, seed: int = 0, *, biased: bool = False) -> pd.DataFrame:
    """`biased`: the label follows `group` (about 10% positives in group 0, 90% in group 1),
    so a model that learns it selects the groups at very different rates."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    group = rng.integers(0, 2, size=n)
    score = x1 + 0.5 * x2 + rng.normal(scale=0.3, size=n)
    if biased:
        score = x1 + 2.5 * group - 1.25 + rng.normal(scale=0.3, size=n)
    label = (score > 0).astype("int64")
    return pd.DataFrame({
        "row_id": np.arange(n, dtype="int64"),
        "event_timestamp": pd.date_range("2026-01-01", periods=n, freq="h", tz="UTC"),
        "x1": x1, "x2": x2, "group": group.astype("int64"), "label": label})


def values(model: dict[str, Any] | None = None) -> dict[str, Any]:
    """ml.yaml as data; `model` is merged over the model's defaults."""
    spec: dict[str, Any] = {
        "task": "classification",
        "inputs": {"features": ["row_stats:x1", "row_stats:x2", "row_stats:group"]},
        "label": {"source": "rows", "column": "label"},
        "training": {"builtin": {"hiddenLayers": [8], "epochs": 2, "batchSize": 64,
                                 "learningRate": 0.01}},
    }
    spec.update(model or {})
    return {
        "apiVersion": "mlc.dev/v1", "kind": "Project",
        "metadata": {"name": "tiny", "version": "0.1.0"},
        "images": {"train": TRAIN_IMAGE, "serve": "ghcr.io/mlc-dev/mlc-serve:0.1.0",
                   "drift": "ghcr.io/mlc-dev/mlc-drift:0.1.0"},
        "sources": {"rows": {"type": "file", "path": "data/rows.parquet",
                             "timestampField": "event_timestamp", "columns": [
                                 {"name": "row_id", "type": "int64", "nullable": False},
                                 {"name": "event_timestamp", "type": "unix_timestamp",
                                  "nullable": False},
                                 {"name": "x1", "type": "float64"},
                                 {"name": "x2", "type": "float64"},
                                 {"name": "group", "type": "int64"},
                                 {"name": "label", "type": "int64", "nullable": False}]}},
        "entities": {"row": {"joinKey": "row_id"}},
        "features": {"row_stats": {"entities": ["row"], "source": "rows", "ttl": "1d",
                                   "online": False, "fields": [
                                       {"name": "x1", "type": "float64"},
                                       {"name": "x2", "type": "float64"},
                                       {"name": "group", "type": "int64"}]}},
        "models": {MODEL: spec},
        "platform": {"namespace": "mlc-tiny", "development": True, "imagePolicy": "tag",
                     "mlflow": {"trackingUri": f"http://{MLFLOW_HOST}"}},
    }


def write(folder: Path, model: dict[str, Any] | None = None,
          data: pd.DataFrame | None = None) -> Path:
    """The project in `folder`: ml.yaml (JSON is YAML) and its data."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (data if data is not None else rows()).to_parquet(folder / "data" / "rows.parquet",
                                                      index=False)
    (folder / "ml.yaml").write_text(json.dumps(values(model), indent=2) + "\n", "utf-8")
    return folder
