"""An MLflow pyfunc model ("models from code") that agrees with tests/faulty_model.py on
ordinary rows and disagrees above a threshold.

The shadow-phase test serves it as the new version: rows whose first column is at most
THRESHOLD score faulty_model.SCORE (0.1), the same class as the stable version's answer;
rows above it score SHIFTED (0.9), the other class, with the stable version still at 0.1.
"""

from __future__ import annotations

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel

THRESHOLD = 100.0
SCORE = 0.1
SHIFTED = 0.9


class ShiftedModel(PythonModel):
    def predict(self, context, model_input, params=None):
        first = np.asarray(model_input.iloc[:, 0], dtype=np.float64)
        return np.where(first > THRESHOLD, SHIFTED, SCORE)


mlflow.models.set_model(ShiftedModel())
