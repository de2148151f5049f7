"""`mlc run` with the whole lifecycle of issue 14 at once, on the tiny project: a search of
three trials, the best one trained, evaluated with fairness and slice gates on fair data,
explained, registered. One run proves them all (each `mlc run` starts Feast and MLflow,
which is most of its time); what it logged is read back from the MLflow store."""

from __future__ import annotations

import io
import json

import pytest

from mlc import step_contract as sc
from mlc.compiler.diagnostics import Diagnostics

from . import lifecycle_projects as lp
from .test_fairness import EVALUATION, FAIR_GATE
from .test_search import SEARCH, check_the_search

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def test_mlc_run_searches_explains_and_gates_fairness(tmp_path):
    from mlflow.tracking import MlflowClient

    from mlc.local import run as local
    from mlc.local.progress import Progress

    model = {"training": {"builtin": {"hiddenLayers": [8], "epochs": 2, "batchSize": 64},
                          "search": {**SEARCH, "space": {
                              **SEARCH["space"],
                              "learningRate": {"type": "loguniform", "low": 0.01,
                                               "high": 0.1}}}},
             "evaluation": {**EVALUATION, "explain": {"samples": 40, "background": 20}}}
    lp.write(tmp_path, model, data=lp.rows(1000))
    out = io.StringIO()
    assert local.run(tmp_path, lp.ENV, {}, Diagnostics(), progress=Progress(out)) == 0, \
        out.getvalue()
    assert "registered tiny version 1 (@challenger, @champion)" in out.getvalue()
    (run_dir,) = (tmp_path / ".mlc" / "runs" / lp.PIPELINE).iterdir()
    search_log = (run_dir / "logs" / "search.log").read_text()
    assert [f"trial {i}: complete" in search_log for i in range(3)] == [True] * 3
    tracking = f"sqlite:///{tmp_path / '.mlc' / 'mlflow.db'}"
    check_the_search(tracking, run_dir, 3)

    # fairness and slices: the fair data passes the gate that biased data fails
    evaluation = json.loads((run_dir / sc.EVALUATION_FILE).read_text())
    assert evaluation["passed"]
    assert evaluation["metrics"][FAIR_GATE["metric"]] < FAIR_GATE["max"]
    assert [(s["value"], s["passed"]) for s in evaluation["slices"]] == [(0, True), (1, True)]
    client = MlflowClient(tracking)
    run = client.get_run(client.get_model_version_by_alias("tiny", "challenger").run_id)
    for name in ("test_demographic_parity_difference", "test_equalized_odds_ratio",
                 "test_slice_group_0_accuracy", "test_slice_group_1_roc_auc"):
        assert name in run.data.metrics, sorted(run.data.metrics)

    # the explanation: logged before registration, the label's own inputs first
    shap = {k: v for k, v in run.data.metrics.items() if k.startswith("shap_")}
    assert set(shap) == {"shap_x1", "shap_x2", "shap_group"}
    assert shap["shap_x1"] > shap["shap_x2"] > shap["shap_group"]
    report = json.loads((run_dir / sc.EXPLAIN_FILE).read_text())
    assert [f["name"] for f in report["features"]] == ["x1", "x2", "group"]
    assert report["samples"] == 40 and report["background"] == 20
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "mlc")}
    assert {"mlc/explain.json", "mlc/explain.html", "mlc/evaluation.json"} <= artifacts
