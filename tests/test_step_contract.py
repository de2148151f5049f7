"""The step contract (mlc/step_contract.py): the doc is generated from it, the emitted pods
and the runtime agree with it, and the compiler's metric list is the runtime's."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from mlc import step_contract as sc
from mlc.compiler.backends.argo import steps as argo_steps
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import check_environment
from mlc.runtime.step import StepFailed, param_from_env

from .conftest import ROOT

DOC = ROOT / "docs" / "training-contract.md"


def test_the_doc_is_generated_from_the_contract():
    text = DOC.read_text("utf-8")
    assert sc.render_doc(text) == text, \
        "docs/training-contract.md is stale: run python -m mlc.step_contract " \
        "docs/training-contract.md"
    for v in sc.VARIABLES:
        assert f"`{v.name.split(',')[0].strip()}`" in text


def test_every_pod_gets_the_variables_of_every_step():
    project = check_environment(ROOT, "dev", Diagnostics())
    assert project is not None
    everywhere = set(sc.names("pod", sc.ALL))
    for pipeline in project.pipelines.values():
        for step in pipeline.steps:
            env = {e["name"] for e in argo_steps.step_env(project, pipeline, step)}
            assert everywhere <= env, (pipeline.name, step.name, everywhere - env)
            assert step.command == ["python", "-m", "mlc.runtime", "step"]


def test_builtin_metric_lists_match_what_evaluation_computes():
    from mlc.runtime.train import evaluation

    rng = np.random.default_rng(0)
    truth = np.array([0, 1] * 20)
    binary = evaluation.classification_metrics(truth, rng.uniform(size=40), [0, 1])
    assert set(binary) == set(sc.CLASSIFICATION_METRICS)
    p = rng.dirichlet([1, 1, 1], size=40)
    multi = evaluation.classification_metrics(np.array([0, 1, 2, 0] * 10), p, [0, 1, 2])
    assert set(multi) == set(sc.MULTICLASS_METRICS)
    regression = evaluation.regression_metrics(rng.normal(size=40), rng.normal(size=40))
    assert set(regression) == set(sc.REGRESSION_METRICS)


def test_parameters_arrive_decoded():
    value = "{\"lr\": 0.1} it's \"quoted\""
    encoded = base64.b64encode(value.encode()).decode()
    assert param_from_env({"MLC_PARAM_HYPERPARAMETERS_B64": encoded}, "hyperparameters") \
        == value
    # the pod's encoded form wins over a plain one (an image's ENV, say)
    assert param_from_env({"MLC_PARAM_REASON": "drift",
                           "MLC_PARAM_REASON_B64": encoded}, "reason") == value
    assert param_from_env({"MLC_PARAM_REASON": "drift"}, "reason") == "drift"
    assert param_from_env({}, "reason") is None
    with pytest.raises(StepFailed, match="base64"):
        param_from_env({"MLC_PARAM_REASON_B64": "not base64!"}, "reason")
