"""Triton model repositories: `<repo>/<model>/config.pbtxt` and `<repo>/<model>/<version>/`.

Three layouts, each a function of explicit arguments (the endpoint's batching is passed in;
the runtime never reads the compiler's IR):

    onnx      <version>/model.onnx, backend `onnxruntime`: the serving graph (graph.py)
    libtorch  <version>/model.pt, backend `pytorch`: the same graph traced (torchscript.py);
              Triton's libtorch backend names tensors `<name>__<index>`
    fil       <version>/xgboost.json or model.txt, backend `fil`: an XGBoost (JSON) or
              LightGBM (text) model as the trainer saved it, under FIL's default file name

config.pbtxt is written by pbtxt.py (strings escaped); its inputs and outputs are the
exported model's own names, dtypes and dims (without the batch axis, since
max_batch_size > 0). Dynamic batching takes the endpoint's `batching`: at most
max_batch_size rows a call, a request waiting at most max_queue_delay_microseconds for its
batch, at most max_queue_size requests queued (more are refused, as mlc's server does).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import pbtxt
from .pbtxt import Enum, repeated

CONFIG_FILE = "config.pbtxt"
DEFAULT_VERSION = 1
FIL_FILES = {"xgboost_json": "xgboost.json", "lightgbm": "model.txt"}
LIBTORCH_INPUT = "features__0"
LIBTORCH_OUTPUT = "prediction__0"
FIL_INPUT = "input__0"
FIL_OUTPUT = "output__0"
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


@dataclass(frozen=True)
class Batching:
    max_batch_size: int
    max_queue_delay_microseconds: int
    max_queue_size: int

    def __post_init__(self):
        for name in ("max_batch_size", "max_queue_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_queue_delay_microseconds < 0:
            raise ValueError("max_queue_delay_microseconds must not be negative")

    def text(self) -> str:
        """As the training step's variable carries it (`parse` reads it back)."""
        return (f"max_batch_size={self.max_batch_size},"
                f"max_queue_delay_microseconds={self.max_queue_delay_microseconds},"
                f"max_queue_size={self.max_queue_size}")

    @classmethod
    def parse(cls, text: str) -> Batching:
        values: dict[str, int] = {}
        for part in text.split(","):
            key, sep, value = part.strip().partition("=")
            if not sep or key not in cls.__dataclass_fields__ or key in values:
                raise ValueError(f"batching {text!r}: expected max_batch_size=N,"
                                 "max_queue_delay_microseconds=N,max_queue_size=N")
            values[key] = int(value)
        if set(values) != set(cls.__dataclass_fields__):
            raise ValueError(f"batching {text!r} lacks "
                             f"{', '.join(sorted(set(cls.__dataclass_fields__) - set(values)))}")
        return cls(**values)


@dataclass(frozen=True)
class Tensor:
    name: str
    data_type: str  # Triton's TYPE_* name
    dims: tuple[int, ...]  # without the batch axis


def check_model_name(name: str) -> str:
    """A model name that is one folder name (Triton names the model by its folder)."""
    if not _MODEL_NAME.match(name) or name in (".", ".."):
        raise ValueError(f"{name!r} cannot name a Triton model (letters, digits, `_.-`)")
    return name


def config_text(name: str, backend: str, inputs: list[Tensor], outputs: list[Tensor],
                batching: Batching, *, parameters: dict[str, str] | None = None,
                instance_kind: str = "KIND_AUTO") -> str:
    """config.pbtxt for one model."""
    def tensor(t: Tensor) -> pbtxt.Message:
        return [("name", t.name), ("data_type", Enum(t.data_type)),
                ("dims", repeated(*t.dims))]

    message: pbtxt.Message = [
        ("name", check_model_name(name)),
        ("backend", backend),
        ("max_batch_size", batching.max_batch_size),
        ("input", repeated(*(tensor(t) for t in inputs))),
        ("output", repeated(*(tensor(t) for t in outputs))),
        ("instance_group", [("kind", Enum(instance_kind))]),
        ("dynamic_batching", [
            ("max_queue_delay_microseconds", batching.max_queue_delay_microseconds),
            ("default_queue_policy", [("max_queue_size", batching.max_queue_size)])]),
    ]
    if parameters:
        message.append(("parameters", repeated(*(
            [("key", key), ("value", [("string_value", value)])]
            for key, value in sorted(parameters.items())))))
    return ("# Written by mlc (mlc/runtime/export/triton.py) from the model's mlc export.\n"
            + pbtxt.render(message))


def _version_dir(repo: Path, name: str, version: int) -> Path:
    if version < 1:
        raise ValueError("a Triton model version is a positive integer")
    folder = Path(repo) / check_model_name(name) / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _graph_tensors(spec: dict[str, Any], input_name: str, output_name: str
                   ) -> tuple[list[Tensor], list[Tensor]]:
    from .graph import output_width

    return ([Tensor(input_name, "TYPE_FP32", (len(spec["features"]),))],
            [Tensor(output_name, "TYPE_FP64", (output_width(spec),))])


def write_onnx_repository(repo: Path | str, name: str, folder: Path | str, batching: Batching,
                          *, version: int = DEFAULT_VERSION) -> Path:
    """The ONNX export of the mlc model in `folder` as Triton model `name`; returns the
    model's folder."""
    from mlc.runtime import model_format

    from . import onnx_export
    from .graph import INPUT_NAME, OUTPUT_NAME

    spec = model_format.load_spec(folder)
    onnx_export.export_onnx(folder, _version_dir(Path(repo), name, version) / onnx_export.FILE)
    inputs, outputs = _graph_tensors(spec, INPUT_NAME, OUTPUT_NAME)
    model = Path(repo) / name
    (model / CONFIG_FILE).write_text(config_text(name, "onnxruntime", inputs, outputs,
                                                 batching), "utf-8")
    return model


def write_libtorch_repository(repo: Path | str, name: str, folder: Path | str,
                              batching: Batching, *, version: int = DEFAULT_VERSION) -> Path:
    """The TorchScript export as Triton model `name` (backend `pytorch`)."""
    from mlc.runtime import model_format

    from . import torchscript

    spec = model_format.load_spec(folder)
    torchscript.export_torchscript(folder,
                                   _version_dir(Path(repo), name, version) / torchscript.FILE)
    inputs, outputs = _graph_tensors(spec, LIBTORCH_INPUT, LIBTORCH_OUTPUT)
    model = Path(repo) / name
    (model / CONFIG_FILE).write_text(config_text(name, "pytorch", inputs, outputs, batching),
                                     "utf-8")
    return model


def tree_model_shape(model_file: Path | str, model_type: str) -> tuple[int, int]:
    """(features, classes) read from the tree model's own file, without its library:
    classes is 0 for regression and binary classification (one output either way)."""
    path = Path(model_file)
    if model_type == "xgboost_json":
        learner = json.loads(path.read_text("utf-8"))["learner"]
        params = learner["learner_model_param"]
        classes = int(params.get("num_class", "0"))
        return int(params["num_feature"]), classes if classes > 1 else 0
    if model_type == "lightgbm":
        header: dict[str, str] = {}
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("Tree="):
                    break
                key, sep, value = line.strip().partition("=")
                if sep:
                    header[key] = value
        classes = int(header.get("num_class", "1"))
        return int(header["max_feature_idx"]) + 1, classes if classes > 1 else 0
    raise ValueError(f"unknown tree model type {model_type!r} (known: "
                     f"{', '.join(sorted(FIL_FILES))})")


def fil_model_type(folder: Path | str) -> tuple[str, Path]:
    """The FIL model type of the tree model in the trainer's folder, and its file."""
    folder = Path(folder)
    for model_type, source in (("xgboost_json", "model.json"), ("lightgbm", "model.txt")):
        if (folder / source).is_file():
            return model_type, folder / source
    raise FileNotFoundError(f"no model.json (XGBoost) or model.txt (LightGBM) in {folder}")


def write_fil_repository(repo: Path | str, name: str, model_file: Path | str, model_type: str,
                         task: str, batching: Batching, *, version: int = DEFAULT_VERSION,
                         instance_kind: str = "KIND_AUTO") -> Path:
    """A tree model file as Triton model `name` for the FIL backend: a classifier answers
    its class probabilities (P(positive) alone for a binary one, as FIL and mlc both do),
    a regressor its value, a ranker its score."""
    if task not in ("classification", "regression", "ranking"):
        raise ValueError(f"unknown task {task!r}")
    features, classes = tree_model_shape(model_file, model_type)
    target = _version_dir(Path(repo), name, version) / FIL_FILES[model_type]
    shutil.copyfile(model_file, target)
    classify = task == "classification"
    parameters = {"model_type": model_type, "output_class": "true" if classify else "false"}
    if classify:
        parameters["predict_proba"] = "true"
    outputs = [Tensor(FIL_OUTPUT, "TYPE_FP32", (classes if classify and classes else 1,))]
    model = Path(repo) / name
    (model / CONFIG_FILE).write_text(config_text(
        name, "fil", [Tensor(FIL_INPUT, "TYPE_FP32", (features,))], outputs, batching,
        parameters=parameters, instance_kind=instance_kind), "utf-8")
    return model
