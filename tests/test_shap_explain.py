"""SHAP explanations: the library call checked against the exact answer for an additive
model, and the `explain` step in the pipeline (tests/test_fairness.py runs it through
`mlc run` and reads what it logged)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import check_environment
from mlc.runtime.train.explain import importance, report_html

from . import lifecycle_projects as lp


def test_importance_of_an_additive_model_is_its_exact_shapley_value():
    """For f(x) = w.x the Shapley value of feature i is w_i (x_i - mean of the background),
    so the mean |SHAP| is |w_i| times the mean distance to the background's mean."""
    rng = np.random.default_rng(1)
    w = np.array([3.0, -1.0, 0.0])
    rows, background = rng.normal(size=(30, 3)), rng.normal(size=(20, 3))
    means, base = importance(lambda x: x @ w, ["a", "b", "c"], rows, background, seed=0)
    expected = np.abs(w) * np.abs(rows - background.mean(axis=0)).mean(axis=0)
    assert [means[k] for k in "abc"] == pytest.approx(expected.tolist(), abs=1e-9)
    assert base == pytest.approx(float(background.mean(axis=0) @ w))
    # two outputs (a class each): importance averages over them
    both, _ = importance(lambda x: np.stack([x @ w, -(x @ w)], axis=1), ["a", "b", "c"],
                         rows, background, seed=0)
    assert both == pytest.approx(means)


def test_the_report_escapes_feature_names():
    page = report_html("m<1>", {"features": [{"name": "<script>", "mean_abs_shap": 0.5}],
                                "samples": 3, "background": 2, "explainer": "x",
                                "base_value": 0.1})
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_explain_is_a_step_between_evaluate_and_register(tmp_path):
    lp.write(tmp_path, {"evaluation": {"explain": {"samples": 40, "background": 20}}})
    diags = Diagnostics()
    project = check_environment(tmp_path, lp.ENV, diags)
    assert project is not None, [d.message for d in diags.items]
    steps = {s.name: s for s in project.pipelines[lp.PIPELINE].steps}
    assert steps["explain"].depends == ["evaluate"]
    assert steps["register"].depends == ["explain"]
    explain = project.models[lp.MODEL].explain
    assert (explain.samples, explain.background, explain.seed) == (40, 20, 0)
    assert json.loads(project.model_dump_json())["models"][lp.MODEL]["explain"]["samples"] == 40
