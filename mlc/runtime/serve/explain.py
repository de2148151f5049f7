"""`POST /explain`: SHAP values of the rows of one request, at a bounded cost.

An endpoint with `explain:` in ml.yaml answers

    POST /explain   {"instances": [{feature: value}, ...]}  (at most `maxRows` rows)
    -> {"model_name", "model_version", "outputs": [...],
        "explanations": [{"prediction": [...], "base_value": [...],
                          "values": {feature: [...]}}, ...]}

with one number per output in each list: the prediction for regression and binary
classification (P(positive)), each class's probability for multi-class, in the order of
`outputs`. `values` are the features' SHAP values, computed by shap's KernelExplainer (the
explainer of the training pipeline's `explain` step, docs/lifecycle.md) over the model's own
`predict`, with the rows of the model's reference sample (the training inputs it was saved
with) as the background; `base_value + sum(values) == prediction` for every output.

The cost is bounded three ways: `maxRows` rows per request, `samples` model evaluations per
row (KernelExplainer's `nsamples`; with few features every coalition is enumerated, which is
exact), `background` reference rows, so one row costs at most samples x background rows of
model calls; and one explanation runs at a time: a request that finds one running is answered
503 with Retry-After, so explanations never queue up behind each other nor take more than one
model thread from the predictions. Explanation requests are counted apart
(mlc_explain_requests_total, mlc_explain_duration_seconds): they never count towards the
endpoint's SLOs or rollout gates, which measure the prediction routes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ROUTE = "/explain"


class ExplainBusy(Exception):
    """Another explanation is running."""


@dataclass(frozen=True)
class ExplainSettings:
    max_rows: int
    samples: int
    background: int
    seed: int = 0


def background_rows(reference: np.ndarray | None, fill: list[float] | None, count: int,
                    seed: int) -> np.ndarray | None:
    """Up to `count` rows of the reference sample (seeded), rows with a missing value left
    out; else the one row of the training means (`fill`), which makes the explanation
    relative to the average input; None when the model has neither."""
    if reference is not None and len(reference):
        complete = reference[~np.isnan(reference).any(axis=1)]
        if len(complete):
            rng = np.random.default_rng(seed)
            pick = rng.choice(len(complete), size=min(count, len(complete)), replace=False)
            return complete[np.sort(pick)]
    if fill is not None:
        return np.asarray([fill], dtype=np.float64)
    return None


class Explainer:
    """SHAP values of request rows for one loaded model; call `explain` from one thread
    (the server runs it in a worker thread, one at a time)."""

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], features: list[str],
                 background: np.ndarray, settings: ExplainSettings,
                 outputs: list[str]):
        import shap  # imported here: only endpoints that explain need it

        self.features = features
        self._predict = predict
        self.settings = settings
        self.outputs = outputs
        self._explainer = shap.KernelExplainer(predict, background, seed=settings.seed)
        self._lock = threading.Lock()

    def try_explain(self, rows: np.ndarray) -> list[dict]:
        """Explain `rows`, or raise ExplainBusy at once if an explanation is running."""
        if not self._lock.acquire(blocking=False):
            raise ExplainBusy
        try:
            return self.explain(rows)
        finally:
            self._lock.release()

    def explain(self, rows: np.ndarray) -> list[dict]:
        values = self._explainer.shap_values(rows, nsamples=self.settings.samples,
                                             silent=True)
        values = np.asarray(values, dtype=np.float64)
        if values.ndim == 2:  # (rows, features): a single output
            values = values[:, :, None]
        base = np.atleast_1d(np.asarray(self._explainer.expected_value, dtype=np.float64))
        predictions = np.asarray(self._predict(rows), dtype=np.float64).reshape(len(rows), -1)
        out = []
        for row, prediction in zip(values, predictions, strict=True):  # (features, outputs)
            out.append({
                "prediction": [float(v) for v in prediction],
                "base_value": [float(v) for v in base],
                "values": {f: [float(v) for v in row[i]] for i, f in enumerate(self.features)},
            })
        return out


def output_names(task: str, output_width: int, classes: list | None) -> list[str]:
    """What each number of an explanation is of."""
    if task == "classification" and output_width > 1:
        return [f"p({c})" for c in (classes or range(output_width))]
    if task == "classification":
        positive = classes[-1] if classes else 1
        return [f"p({positive})"]
    return ["prediction"]
