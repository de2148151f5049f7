"""TorchScript: the serving graph (graph.py) traced, for TorchServe and Triton's
pytorch_libtorch backend. `torch.jit.load` reads it without mlc or its classes; the trace
holds the model's task branch only (chosen when the graph is built)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch

from .graph import example_input, serving_graph

FILE = "model.pt"


def torchscript_bytes(folder: Path | str) -> bytes:
    graph, spec = serving_graph(folder)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # torch.jit's notice that torch.export replaces it; TorchServe and Triton's libtorch
        # backend read TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(graph, (example_input(spec),), check_trace=True)
        torch.jit.save(traced, buffer)
    return buffer.getvalue()


def export_torchscript(folder: Path | str, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(torchscript_bytes(folder))
    return path
