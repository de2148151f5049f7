"""The compiler's side of the exports (mlc/compiler/resolve/exports.py): which exports a
model's training makes for the engines of its endpoints, the refusals (MLC332, MLC333), and
the train step's variables in the Argo manifest and under `mlc run`.

These tests take the example's resolved IR and set the endpoints' engines in it (tfserving
and huggingface, which `mlc validate` refuses with MLC387, included); the bad-input cases
(tests/bad_inputs.py) check the refusals' locations through the CLI.
"""

from __future__ import annotations

import pytest

from mlc import step_contract as sc
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import check_environment, load_environment
from mlc.compiler.resolve.context import Context
from mlc.compiler.resolve.exports import add_exports, export_env, model_exports
from mlc.compiler.validate import validate_document

from .conftest import ROOT

MODEL = "fraud-classifier"
ENDPOINT = "fraud-api"


@pytest.fixture(scope="module")
def resolved():
    project = check_environment(ROOT, "dev", Diagnostics())
    assert project is not None
    return project


def context() -> tuple[Context, Diagnostics]:
    diags = Diagnostics()
    loaded = load_environment(ROOT, "dev", diags)
    project = validate_document(loaded.document, diags)
    return Context(project=project, doc=loaded.document, env="dev", diags=diags,
                   development=False), diags


def endpoints_with(resolved, **engines):
    out = dict(resolved.endpoints)
    for name, engine in engines.items():
        base = out.get(name) or out[ENDPOINT].model_copy(update={"name": name})
        out[name] = base.model_copy(update={"engine": engine})
    return out


@pytest.mark.parametrize(("engines", "want"), [
    ({ENDPOINT: "mlc"}, None),
    ({ENDPOINT: "mlserver"}, None),
    ({ENDPOINT: "custom"}, None),
    ({ENDPOINT: "triton"}, ["onnx", "triton"]),
    ({ENDPOINT: "torchserve"}, ["torchscript", "torchserve"]),
    ({ENDPOINT: "torchserve", "fraud-triton": "triton"},
     ["onnx", "torchscript", "triton", "torchserve"]),
])
def test_a_model_s_exports_follow_its_endpoints_engines(resolved, engines, want):
    ctx, diags = context()
    found = model_exports(ctx, resolved.models, endpoints_with(resolved, **engines))
    assert not diags.has_errors()
    if want is None:
        assert found == {}
        return
    names, batching = found[MODEL]
    assert names == want
    assert (batching == resolved.endpoints[ENDPOINT].batching) == ("triton" in want)
    assert (batching is None) == ("triton" not in want)


def _codes(diags) -> list[str]:
    return [d.code for d in diags.items]


@pytest.mark.parametrize("framework", ["sklearn", "custom"])
def test_an_export_the_model_cannot_have_is_refused(resolved, framework):
    ctx, diags = context()
    model = resolved.models[MODEL].model_copy(update={"framework": framework})
    found = model_exports(ctx, {**resolved.models, MODEL: model},
                          endpoints_with(resolved, **{ENDPOINT: "triton"}))
    assert found == {} and _codes(diags) == ["MLC332"]
    (d,) = diags.items
    assert d.path == ("serving", ENDPOINT, "engine") and d.span is not None
    assert f"`{framework}` model has neither" in d.message


def test_a_custom_trained_model_has_no_exports(resolved):
    ctx, diags = context()
    model = resolved.models[MODEL]
    custom = model.model_copy(update={"training": model.training.model_copy(
        update={"kind": "custom"})})
    model_exports(ctx, {**resolved.models, MODEL: custom},
                  endpoints_with(resolved, **{ENDPOINT: "torchserve"}))
    assert _codes(diags) == ["MLC332"] and "custom command" in diags.items[0].message


@pytest.mark.parametrize("engine", ["tfserving", "huggingface"])
def test_engines_mlc_exports_nothing_for_are_refused(resolved, engine):
    ctx, diags = context()
    model_exports(ctx, resolved.models, endpoints_with(resolved, **{ENDPOINT: engine}))
    assert _codes(diags) == ["MLC332"]


def test_an_xgboost_model_gets_the_fil_repository_only(resolved):
    ctx, diags = context()
    trees = resolved.models[MODEL].model_copy(update={"framework": "xgboost"})
    found = model_exports(ctx, {**resolved.models, MODEL: trees},
                          endpoints_with(resolved, **{ENDPOINT: "triton"}))
    assert found[MODEL][0] == ["triton"] and not diags.has_errors()
    model_exports(ctx, {**resolved.models, MODEL: trees},
                  endpoints_with(resolved, **{ENDPOINT: "torchserve"}))
    assert _codes(diags) == ["MLC332"]


def test_triton_endpoints_of_one_model_must_batch_alike(resolved):
    ctx, diags = context()
    endpoints = endpoints_with(resolved, **{ENDPOINT: "triton", "fraud-bulk": "triton"})
    endpoints["fraud-bulk"] = endpoints["fraud-bulk"].model_copy(update={
        "batching": endpoints[ENDPOINT].batching.model_copy(update={"max_batch_size": 512})})
    model_exports(ctx, resolved.models, endpoints)
    assert _codes(diags) == ["MLC333"]
    assert diags.items[0].path == ("serving", "fraud-bulk", "batching")  # the second, by name


def test_the_train_step_declares_the_exports_in_argo_and_mlc_run(resolved, tmp_path):
    from mlc.compiler.backends.argo import steps
    from mlc.local.run import LocalProject

    ctx, _ = context()
    found = model_exports(ctx, resolved.models, endpoints_with(resolved, **{ENDPOINT: "triton"}))
    pipelines = add_exports(resolved.pipelines, found)
    pipeline = pipelines["train-fraud-classifier"]
    train = next(s for s in pipeline.steps if s.kind == "train")
    assert train.exports == ["onnx", "triton"]
    assert all(not s.exports for s in pipeline.steps if s.kind != "train")
    b = resolved.endpoints[ENDPOINT].batching
    want = {sc.EXPORTS_ENV: "onnx,triton", sc.EXPORT_BATCHING_ENV: (
        f"max_batch_size={b.max_batch_size},max_queue_delay_microseconds="
        f"{round(b.max_latency_seconds * 1e6)},max_queue_size={b.max_queue}")}
    assert export_env(train) == want
    project = resolved.model_copy(update={"pipelines": pipelines})
    env = {e["name"]: e.get("value") for e in steps.step_env(project, pipeline, train)}
    assert {k: env[k] for k in want} == want
    evaluate = next(s for s in pipeline.steps if s.kind == "evaluate")
    assert sc.EXPORTS_ENV not in {e["name"] for e in steps.step_env(project, pipeline,
                                                                    evaluate)}
    local = LocalProject(root=tmp_path, env="dev", project=project, state=tmp_path / ".mlc",
                         project_file=tmp_path / "project.json", feast_repo=None)
    assert {k: local.step_environ(pipeline, train, "r1", {})[k] for k in want} == want
    # the IR's JSON leaves the fields out while a step has no exports (goldens unchanged)
    plain = resolved.pipelines["train-fraud-classifier"].model_dump(mode="json")
    assert all("exports" not in s and "export_batching" not in s for s in plain["steps"])
