"""The whole computation of mlc's server as one torch module, the source of every export.

mlc's server (mlc/runtime/serve/loader.py) prepares a row in numpy (a missing or infinite
value replaced by the training mean, then standardised, in float64), runs the network in
float32 and turns its outputs into predictions (the sigmoid, the softmax, or the label's
standardisation undone, in float64). `ServingGraph` does the same steps in the same dtypes
inside one module, so that an engine that runs only the exported graph (Triton, TorchServe)
answers what mlc's server answers:

    input  `features`    float32 [batch, n]: the spec's features in order, NaN = missing
    output `prediction`  float64 [batch, 1]: P(positive) for binary classification, the
                         value in label units for regression; [batch, k]: one probability per
                         class (the spec's `classes`, in order) for k > 2 classes
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlc.runtime import model_format

INPUT_NAME = "features"
OUTPUT_NAME = "prediction"


def output_width(spec: dict[str, Any]) -> int:
    """The prediction's width: 1, or the number of classes of a multi-class model."""
    if spec["task"] == "classification":
        return int(spec["architecture"]["output_dim"])
    return 1


class ServingGraph(nn.Module):
    """fill, standardise, the network, the output transform: `model_format.predict` as one
    module. The task's branch is chosen here, once, so a trace records only that branch."""

    def __init__(self, network: nn.Module, spec: dict[str, Any]):
        super().__init__()
        self.network = network
        f64 = torch.float64
        self.register_buffer("fill", torch.tensor(spec["fill"], dtype=f64))
        self.register_buffer("mean", torch.tensor(spec["mean"], dtype=f64))
        self.register_buffer("std", torch.tensor(spec["std"], dtype=f64))
        self.kind = ("regression" if spec["task"] == "regression"
                     else "binary" if spec["architecture"]["output_dim"] == 1 else "multiclass")
        self.target_mean = float(spec["target_mean"] or 0.0)
        self.target_std = float(spec["target_std"] or 1.0)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = features.to(torch.float64)
        x = torch.where(torch.isfinite(x), x, self.fill)
        x = ((x - self.mean) / self.std).to(torch.float32)
        out = self.network(x).to(torch.float64)
        if self.kind == "regression":
            y = out[:, 0:1] * self.target_std + self.target_mean
        elif self.kind == "binary":
            y = torch.sigmoid(out[:, 0:1])
        else:
            y = torch.softmax(out, dim=1)
        return y


def serving_graph(folder: Path | str) -> tuple[ServingGraph, dict[str, Any]]:
    """The graph of the mlc model in `folder` (plain or as MLflow downloads it), in eval
    mode on the CPU, and its spec."""
    network, spec = model_format.load_model(folder)
    graph = ServingGraph(network, spec).eval()
    return graph, spec


def example_input(spec: dict[str, Any], rows: int = 2) -> torch.Tensor:
    """Rows of the training means: what a trace or an export runs the graph on."""
    return torch.tensor([spec["mean"]] * rows, dtype=torch.float32)
