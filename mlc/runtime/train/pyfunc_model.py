"""The MLflow pyfunc face of an mlc model (MLflow "models from code": no pickle).

MLflow copies this file into the logged model and runs it when the model is loaded with
`mlflow.pyfunc.load_model`; the weights and spec are the model's `mlc_model` artifacts,
read by `mlc.runtime.model_format` (a copy of which is logged with the model, so that
`mlflow models serve` works without mlc). The serving runtime reads them directly.
"""

from __future__ import annotations

import mlflow
from mlflow.pyfunc import PythonModel


class MlcTabularModel(PythonModel):
    def load_context(self, context):
        try:
            from mlc.runtime import model_format
        except ImportError:  # outside mlc: the copy logged with the model (code_paths)
            import model_format

        self._format = model_format
        self.model, self.spec = model_format.load_model(context.artifacts["mlc_model"])

    def predict(self, context, model_input, params=None):
        import pandas as pd

        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input, columns=self.spec["features"])
        out = self._format.predict_frame(self.model, self.spec, model_input)
        return self._format.pyfunc_output(self.spec, out)


mlflow.models.set_model(MlcTabularModel())
