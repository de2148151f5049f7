"""An MLflow pyfunc model ("models from code") that fails or stalls on a marker input.

The real-Prometheus test serves it to make the serving runtime answer 5xx and slow requests
on demand: a row whose first column holds FAIL makes the model call raise (every request in
that batch gets a 500), SLOW makes the call take SLOW_SECONDS. Any other row scores 0.1.
"""

from __future__ import annotations

import time

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel

FAIL = -1.0e6
SLOW = -2.0e6
SLOW_SECONDS = 0.3
SCORE = 0.1


class FaultyModel(PythonModel):
    def predict(self, context, model_input, params=None):
        first = np.asarray(model_input.iloc[:, 0], dtype=np.float64)
        if (first == FAIL).any():
            raise RuntimeError("injected model failure")
        if (first == SLOW).any():
            time.sleep(SLOW_SECONDS)
        return np.full(len(first), SCORE)


mlflow.models.set_model(FaultyModel())
