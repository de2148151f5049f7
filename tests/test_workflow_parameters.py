"""A submitted workflow parameter reaches the step's process exactly as submitted.

A submitter (`argo submit -p`, the drift Sensor) sets a parameter's value after compilation,
so no escaping at compile time can cover it. Between the submission and the process stand
Argo's substitution of `{{...}}` (a first pass over the workflow's globals, then one per pod)
and the kubelet's `$(VAR)` expansion of `env[].value`. The step runtime, run here as a real
process with the pod's argv and environment as those two rewrites leave them, must decode
each value byte for byte.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

from . import argo_projects as ap
from .cluster_pods import ROOT
from .test_escape import kubelet_expand

TRAIN = "argo/workflowtemplate-train-churn.yaml"
HOSTILE = {
    "hyperparameters": "$(HOME) $$ $$(MLC_STEP) {{workflow.name}} ${HOME} \"q\" 'q' \\ \n end",
    "reason": "$(MLC_PIPELINE)\n$",
    "data_window_seconds": "{{=toBase64(workflow.parameters.reason)}} $(",
}
TAG = re.compile(r"\{\{(.*?)\}\}")
B64_TAG = re.compile(r"=toBase64\(workflow\.parameters\.(\w+)\)")

# The step runtime's own decoding, in a process started as the pod starts it.
PROBE = """
import argparse, json, os, sys
from pathlib import Path
from mlc.runtime.step import build_context, load_project
p = argparse.ArgumentParser()
for flag in ("--project", "--pipeline", "--step"):
    p.add_argument(flag, required=True)
a = p.parse_args(sys.argv[1:])
ctx = build_context(load_project(Path(a.project)), a.pipeline, a.step)
print(json.dumps(ctx.params))
"""


def argo_pass(text: str, context: dict[str, str]) -> str:
    """One of Argo's passes: a known tag is replaced by its value (Argo JSON-escapes it into
    the template's JSON, which decodes back to the value); an unknown one is left for a
    later pass."""
    def one(match: re.Match) -> str:
        tag = match.group(1)
        encoded = B64_TAG.fullmatch(tag)
        if encoded:
            value = context[f"workflow.parameters.{encoded.group(1)}"]
            return base64.b64encode(value.encode("utf-8")).decode("ascii")
        return context.get(tag, match.group(0))
    return TAG.sub(one, text)


def pod_process(container: dict, submitted: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """argv and env of the container's process: the globals pass, the pod's pass, then the
    kubelet, each env value seeing the variables defined before it."""
    params = {f"workflow.parameters.{k}": v for k, v in submitted.items()}
    pod_context = {"workflow.name": "train-churn-x7k2q", **params}
    env: dict[str, str] = {}
    for e in container["env"]:
        if "value" in e:
            value = argo_pass(argo_pass(e["value"], params), pod_context)
            env[e["name"]] = kubelet_expand(value, env)
    argv = [kubelet_expand(argo_pass(argo_pass(a, params), pod_context), env)
            for a in container["command"] + container["args"]]
    return argv, env


def run_step_runtime(tmp_path: Path, resolved, argv: list[str], env: dict[str, str]) -> dict:
    project_json = tmp_path / "project.json"
    project_json.write_text(resolved.model_dump_json(), "utf-8")
    assert argv[1:4] == ["-m", "mlc.runtime", "step"]
    flags = [str(project_json) if a == env["MLC_PROJECT_JSON"] else a for a in argv[4:]]
    done = subprocess.run([sys.executable, "-c", PROBE, *flags], capture_output=True,
                          env={**env, "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                          text=True, timeout=60, check=True)
    return json.loads(done.stdout)


def test_submitted_parameters_reach_the_step_runtime_exactly(tmp_path):
    resolved = ap.resolve(tmp_path / "project", ap.project())
    [train] = [t["container"] for t in ap.emit(resolved)[TRAIN][0]["spec"]["templates"]
               if t["name"] == "train"]
    [step] = [s for s in resolved.pipelines["train-churn"].steps if s.name == "train"]
    assert set(HOSTILE) <= set(step.parameters)
    argv, env = pod_process(train, HOSTILE)
    seen = run_step_runtime(tmp_path, resolved, argv, env)
    assert {k: seen[k] for k in HOSTILE} == HOSTILE


def test_a_raw_parameter_would_not_survive(tmp_path):
    # the rewrites modelled above are not the identity: a value placed raw in the env would
    # reach the process changed
    raw = {"name": "MLC_PARAM_REASON", "value": "{{workflow.parameters.reason}}"}
    container = {"command": [], "args": [],
                 "env": [{"name": "MLC_PIPELINE", "value": "train-churn"}, raw]}
    _, env = pod_process(container, HOSTILE)
    assert env["MLC_PARAM_REASON"] == "train-churn\n$" != HOSTILE["reason"]
    _, env = pod_process(container, {**HOSTILE, "reason": "{{workflow.name}}"})
    assert env["MLC_PARAM_REASON"] == "train-churn-x7k2q"
