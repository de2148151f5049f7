"""The TorchServe handler of an mlc model archive (shipped in the .mar as `mlc_handler.py`).

TorchServe's handler contract (its `BaseHandler`): the worker calls `initialize(context)`
once, then `handle(data, context)` per batch, where `data` holds one entry per request
(`body` or `data`: the request's bytes) and the answer is a list with one entry per
request. `BaseHandler.initialize` loads the archive's `serializedFile` (model.pt, the
TorchScript serving graph: fill, standardise, the network, the output transform) with
`torch.jit.load`; this class reads the requests and writes the answers:

    request   {"instances": [row, ...]}, a row a list of the features in spec.json's order
              or an object by feature name; null or a missing name: a missing value
    answer    {"predictions": [p, ...]}: P(positive) or the value per row, or a list of
              class probabilities (spec.json's `classes`, in order)

It runs inside TorchServe's image and imports only torch and TorchServe, never mlc. The
module defines one class: TorchServe's loader takes the module's only class as the handler.
"""

import json
import math
import os

import torch
from ts.torch_handler.base_handler import BaseHandler
from ts.utils.util import PredictionException

SPEC_FILE = "spec.json"


class MlcHandler(BaseHandler):
    def initialize(self, context):
        super().initialize(context)
        model_dir = context.system_properties.get("model_dir")
        with open(os.path.join(model_dir, SPEC_FILE), encoding="utf-8") as fh:
            spec = json.load(fh)
        self.features = list(spec["features"])
        self.classes = spec.get("classes")
        self.width = len(self.classes) if spec["task"] == "classification" and \
            spec["architecture"]["output_dim"] > 1 else 1
        self.counts = []

    def _row(self, instance):
        if isinstance(instance, dict):
            unknown = sorted(set(instance) - set(self.features))
            if unknown:
                raise PredictionException(f"unknown feature(s) {', '.join(unknown)}", 400)
            instance = [instance.get(name) for name in self.features]
        if not isinstance(instance, list) or len(instance) != len(self.features):
            raise PredictionException(f"a row is a list of {len(self.features)} values "
                                      f"({', '.join(self.features)}) or an object", 400)
        row = []
        for value in instance:
            if value is None:
                row.append(math.nan)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                row.append(float(value))
            else:
                raise PredictionException(f"feature values are numbers or null, got "
                                          f"{type(value).__name__}", 400)
        return row

    def preprocess(self, data):
        rows, self.counts = [], []
        for request in data:
            body = request.get("body")
            if body is None:
                body = request.get("data")
            if isinstance(body, (bytes, bytearray)):
                body = body.decode("utf-8")
            if isinstance(body, str):
                try:
                    body = json.loads(body)
                except ValueError as exc:
                    raise PredictionException(f"the request is not JSON: {exc}", 400) from exc
            if not isinstance(body, dict) or not isinstance(body.get("instances"), list):
                raise PredictionException('the request is {"instances": [row, ...]}', 400)
            batch = [self._row(instance) for instance in body["instances"]]
            rows.extend(batch)
            self.counts.append(len(batch))
        return torch.tensor(rows, dtype=torch.float32).reshape(-1, len(self.features))

    def postprocess(self, data):
        values = data.tolist()
        answers, start = [], 0
        for count in self.counts:
            part = values[start:start + count]
            start += count
            answers.append({"predictions": [v[0] if self.width == 1 else v for v in part]})
        return answers
