"""Fairness in the evaluation: fairlearn's group metrics, and how slice metrics are named.

Fairlearn's demographic parity and equalized odds (difference and ratio) of the candidate's
decisions (P(positive) >= 0.5) over the groups of the sensitive column join the
evaluation's metrics, so `evaluation.gates` judge them like any other (evaluation.py, which
also computes the per-slice metrics and gates).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from mlc.runtime.step import StepFailed
from mlc.step_contract import FAIRNESS_METRICS

_METRIC_TEXT = re.compile(r"[^A-Za-z0-9_.-]")


def fairness_metrics(truth: np.ndarray, predictions: np.ndarray, classes: list,
                     groups: np.ndarray) -> dict[str, float]:
    """FAIRNESS_METRICS of a binary classifier's decisions over `groups`."""
    from fairlearn import metrics as fm

    if predictions.ndim != 1 or len(classes) != 2:
        raise StepFailed("fairness metrics need a binary classifier: the model predicts "
                         f"{len(classes)} classes")
    known = np.isin(truth, classes)
    y_true = (truth[known] == classes[1]).astype(int)
    y_pred = (predictions[known].astype(np.float64) >= 0.5).astype(int)
    sensitive = groups[known]
    out = {
        "demographic_parity_difference": fm.demographic_parity_difference(
            y_true, y_pred, sensitive_features=sensitive),
        "demographic_parity_ratio": fm.demographic_parity_ratio(
            y_true, y_pred, sensitive_features=sensitive),
        "equalized_odds_difference": fm.equalized_odds_difference(
            y_true, y_pred, sensitive_features=sensitive),
        "equalized_odds_ratio": fm.equalized_odds_ratio(
            y_true, y_pred, sensitive_features=sensitive),
    }
    assert set(out) == set(FAIRNESS_METRICS)
    return {k: float(v) for k, v in sorted(out.items())}


def metric_name(result: dict[str, Any], metric: str) -> str:
    """How a slice's metric is logged to MLflow: test_slice_<column>_<value>_<metric>."""
    value = _METRIC_TEXT.sub("_", str(result["value"]))
    return f"test_slice_{result['column']}_{value}_{metric}"
