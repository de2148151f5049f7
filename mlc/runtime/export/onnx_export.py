"""ONNX: the serving graph (graph.py) as one ONNX model, for Triton's onnxruntime backend.

Exported by torch's TorchScript-based exporter (`dynamo=False`): it needs nothing beyond
torch and `onnx`, and the same model gives the same bytes on every export (the
torch.export-based exporter would add onnxscript to the image). The opset is pinned, so an
upgrade of torch does not change which onnxruntime versions can read the file. The batch
axis is dynamic (`batch`); the feature axis is the spec's feature count.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch

from .graph import INPUT_NAME, OUTPUT_NAME, example_input, serving_graph

# Read by onnxruntime 1.13 and later (Triton 22.11 and later).
OPSET = 17
FILE = "model.onnx"


def onnx_bytes(folder: Path | str) -> bytes:
    """The ONNX model of the mlc model in `folder`."""
    graph, spec = serving_graph(folder)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # the exporter's notice that a newer exporter exists; this one is chosen (above)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            graph, (example_input(spec),), buffer, dynamo=False, opset_version=OPSET,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True)
    return buffer.getvalue()


def export_onnx(folder: Path | str, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(onnx_bytes(folder))
    return path
