"""`mlc run` runs every step in one process, each with the environment its container declares
in the compiled WorkflowTemplate (mapped to this machine's folders), nothing left over from
the step before, and a step that exits failing as its pod would."""

from __future__ import annotations

import base64
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from mlc import step_contract as sc
from mlc.compiler.diagnostics import Diagnostics
from mlc.local import run as local
from mlc.local.progress import Progress
from mlc.runtime import step as runtime_step

from .conftest import ROOT

PIPELINE = "train-fraud-classifier"
# what a pod has that a step here gets otherwise: HOME stays the user's, and the pod's
# checkpoint bucket is a folder under .mlc/checkpoints
POD_ONLY = {"HOME", sc.CHECKPOINT_URI_ENV}
LOCAL_ONLY = {"MLC_ARTIFACT_ROOT", "MLC_MATERIALIZE_FROM", "MLFLOW_DISABLE_TELEMETRY",
              sc.CHECKPOINT_DIR_ENV}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> local.LocalProject:
    folder = tmp_path_factory.mktemp("example")
    shutil.copy(ROOT / "ml.yaml", folder / "ml.yaml")
    shutil.copytree(ROOT / "environments", folder / "environments")
    shutil.copytree(ROOT / "data", folder / "data",
                    ignore=shutil.ignore_patterns("*.db", "*.py"))
    return local.prepare(folder, "dev", Diagnostics())


def container_env(prepared: local.LocalProject, pipeline: str) -> dict[str, dict[str, str]]:
    """step -> {name: value} of each container template of the compiled WorkflowTemplate."""
    path = prepared.state / "deploy" / "dev" / "argo" / f"workflowtemplate-{pipeline}.yaml"
    doc = yaml.safe_load(path.read_text("utf-8"))
    return {t["name"]: {e["name"]: e.get("value", "<ref>") for e in t["container"]["env"]}
            for t in doc["spec"]["templates"] if "container" in t}


@pytest.mark.parametrize("pipeline", [PIPELINE, "materialize", "drift-fraud-inputs"])
def test_each_step_gets_what_its_container_declares(prepared, pipeline):
    pipe = prepared.project.pipelines[pipeline]
    declared = container_env(prepared, pipeline)
    params = {p.name: p.default for p in pipe.parameters} | (
        {"hyperparameters": '{"epochs": 1, "note": "$(HOME) {{x}}"}'}
        if pipeline == PIPELINE else {})
    for step in pipe.steps:
        pod = declared[step.name]
        here = prepared.step_environ(pipe, step, "r1", params)
        expected = set(pod) - POD_ONLY - local.LOCAL_UNSET
        assert set(here) - LOCAL_ONLY == expected, step.name
        assert here[sc.STEP_ENV] == pod[sc.STEP_ENV] == step.name
        assert here[sc.PIPELINE_ENV] == pod[sc.PIPELINE_ENV]
        assert here.get(sc.MODEL_ENV) == pod.get(sc.MODEL_ENV)
        assert Path(here[sc.PROJECT_JSON_ENV]) == prepared.project_file
        assert (sc.CHECKPOINT_DIR_ENV in here) == (sc.CHECKPOINT_URI_ENV in pod
                                                   or sc.CHECKPOINT_DIR_ENV in pod)
        for name in step.parameters:  # as the step runtime decodes them in the pod
            key = f"{sc.PARAM_PREFIX}{name.upper()}{sc.PARAM_B64_SUFFIX}"
            assert base64.b64decode(here[key]).decode("utf-8") == params[name]
    if pipeline == "drift-fraud-inputs":  # a cluster address: nothing here listens on it
        assert all("MLC_PUSHGATEWAY_URL" in declared[s.name] for s in pipe.steps)


SEEN: list[dict] = []


def record_and_leave_things_behind(ctx) -> None:
    """A step that records what it was given, then changes the process it shares."""
    SEEN.append({"env": dict(os.environ), "cwd": os.getcwd(), "params": dict(ctx.params)})
    os.environ["LEFT_BY_A_STEP"] = "1"
    os.environ[sc.PARAM_PREFIX + "STRAY"] = "x"
    os.chdir("/")


def exit_three(ctx) -> None:
    sys.exit(3)


def test_steps_share_a_process_but_not_what_the_one_before_left(prepared, monkeypatch,
                                                                  tmp_path):
    import io

    pipe = prepared.project.pipelines[PIPELINE]
    here = sys.modules[__name__].__name__
    entries = dict(runtime_step.ENTRY_POINTS)
    for kind in ("validate_data", "materialize", "train", "evaluate", "register"):
        entries[kind] = (here, "record_and_leave_things_behind")
    entries["promote"] = (here, "exit_three")
    monkeypatch.setattr(runtime_step, "ENTRY_POINTS", entries)
    monkeypatch.setenv(sc.STEP_ENV, "from-the-shell")  # a pod's variable the user had set
    SEEN.clear()
    out = io.StringIO()
    code = local.run_pipeline(prepared, pipe, {"hyperparameters": '{"epochs": 1}'}, "r2",
                              Progress(out, tty=False))
    assert code == 3, out.getvalue()  # the step's exit is the step's failure, with its code
    assert "promote" in out.getvalue() and "exit 3" in out.getvalue()
    assert [s["env"][sc.STEP_ENV] for s in SEEN] == [s.name for s in pipe.steps[:-1]]
    for seen, step in zip(SEEN, pipe.steps, strict=False):
        expected = prepared.step_environ(pipe, step, "r2", {
            p.name: p.default for p in pipe.parameters} | {"hyperparameters": '{"epochs": 1}'})
        assert {k: seen["env"][k] for k in expected} == expected
        assert "LEFT_BY_A_STEP" not in seen["env"]
        assert sc.PARAM_PREFIX + "STRAY" not in seen["env"]
        assert not [k for k in seen["env"] if k.startswith(sc.PARAM_PREFIX)
                    and k not in expected]  # only the parameters this step reads
        assert seen["cwd"] == str(prepared.root)
        assert seen["params"]["hyperparameters"] == (
            '{"epochs": 1}' if "hyperparameters" in step.parameters else "{}")
    assert os.environ[sc.STEP_ENV] == "from-the-shell"
    assert "LEFT_BY_A_STEP" not in os.environ
