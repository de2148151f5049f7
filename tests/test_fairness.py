"""Fairness metrics (fairlearn) and per-slice gates in the evaluation, through the real steps.

The model trains on data built for it: in the fair data the label ignores `group`; in the
biased data it follows `group`, so the model selects one group far more often. The same
fairness gate passes on the first and fails the run (exit 11, nothing registered) on the
second (the fair run is tests/test_lifecycle_run.py's `mlc run`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlc import step_contract as sc
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import check_environment
from mlc.runtime.step import EXIT_GATES, StepFailed, build_context, run_step
from mlc.runtime.train.fairness import fairness_metrics

from . import lifecycle_projects as lp

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAIR_GATE = {"metric": "demographic_parity_difference", "max": 0.25}
EVALUATION = {"gates": [FAIR_GATE, {"metric": "equalized_odds_difference", "max": 0.5}],
              "fairness": {"sensitive": "group"},
              "slices": [{"column": "group", "values": [0, 1],
                          "gates": [{"metric": "accuracy", "min": 0.6}]}]}
TRAINING = {"builtin": {"hiddenLayers": [8], "epochs": 20, "batchSize": 64,
                        "learningRate": 0.02}}


def test_fairness_metrics_are_the_group_rate_differences():
    rng = np.random.default_rng(3)
    groups = rng.integers(0, 3, size=300)
    truth = rng.integers(0, 2, size=300)
    p = np.clip(rng.random(300) + 0.2 * groups, 0, 1)
    got = fairness_metrics(truth, p, [0, 1], groups)
    decided = p >= 0.5
    selection = [decided[groups == g].mean() for g in range(3)]
    tpr = [decided[(groups == g) & (truth == 1)].mean() for g in range(3)]
    fpr = [decided[(groups == g) & (truth == 0)].mean() for g in range(3)]
    assert got["demographic_parity_difference"] == pytest.approx(max(selection) - min(selection))
    assert got["demographic_parity_ratio"] == pytest.approx(min(selection) / max(selection))
    assert got["equalized_odds_difference"] == pytest.approx(
        max(max(tpr) - min(tpr), max(fpr) - min(fpr)))
    with pytest.raises(StepFailed, match="binary"):
        fairness_metrics(truth, np.stack([p, 1 - p], axis=1), [0, 1, 2], groups)


def train_and_evaluate(folder: Path, *, biased: bool) -> dict:
    lp.write(folder, {"training": TRAINING, "evaluation": EVALUATION},
             data=lp.rows(1000, biased=biased))
    diags = Diagnostics()
    project = check_environment(folder, lp.ENV, diags)
    assert project is not None, [d.message for d in diags.items]
    # the features are joined from the file (no Feast repo in the environment)
    env = {"MLC_DATA_ROOT": str(folder), "MLC_RUN_DIR": str(folder / "run"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}
    failure = None
    for step in ("train", "evaluate"):
        try:
            run_step(build_context(project, lp.PIPELINE, step, environ=env))
        except StepFailed as exc:
            failure = exc
    result = json.loads((folder / "run" / sc.EVALUATION_FILE).read_text())
    result["failure"] = failure
    return result


@pytest.mark.slow
def test_the_fairness_gate_fails_the_run_on_biased_data(tmp_path):
    """Slow (a real training logs an MLflow model): the gate that passes on the fair data
    (tests/test_lifecycle_run.py) stops this run before registration."""
    biased = train_and_evaluate(tmp_path, biased=True)
    assert biased["failure"].exit_code == EXIT_GATES
    message = biased["failure"].message
    assert "demographic_parity_difference" in message and "FAILED" in message
    assert biased["metrics"]["demographic_parity_difference"] > 0.5
    gate = next(g for g in biased["gates"] if g["metric"] == FAIR_GATE["metric"])
    assert gate["passed"] is False and not biased["passed"]
    assert not (tmp_path / "run" / sc.REGISTER_FILE).exists()
