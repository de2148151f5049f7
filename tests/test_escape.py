"""User text reaches a container's process exactly as written in ml.yaml.

Two rewrites happen between the generated manifest and the process: Argo substitutes its
`{{...}}` tags when it creates the pod, and the kubelet expands `$(NAME)` (and reads `$$` as
`$`) in `command`, `args` and `env[].value`. `kubelet_expand` below implements the kubelet's
rules as the Kubernetes API reference states them (Container.args: "Variable references
$(VAR_NAME) are expanded using the container's environment. If a variable cannot be
resolved, the reference in the input string will be unchanged. Double $$ are reduced to a
single $, which allows for escaping the $(VAR_NAME) syntax"), including the cases it leaves
implicit: an unterminated `$(` is kept, and a `$` before any other character is kept with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from mlc.compiler.backends.escape import container_text

from .argo_projects import emit, project, resolve


def kubelet_expand(text: str, env: dict[str, str]) -> str:
    out, i = [], 0
    while i < len(text):
        char = text[i]
        if char != "$" or i + 1 == len(text):
            out.append(char)
            i += 1
            continue
        after = text[i + 1]
        if after == "$":
            out.append("$")
            i += 2
        elif after == "(":
            end = text.find(")", i + 2)
            if end < 0:
                out.append("$(")
                i += 2
            else:
                name = text[i + 2:end]
                out.append(env.get(name, f"$({name})"))
                i = end + 1
        else:
            out.append("$" + after)
            i += 2
    return "".join(out)


def argo_substitute(text: str, tags: dict[str, str]) -> str:
    """Argo's one pass over `{{...}}`: the tags mlc writes, and `{{='{{'}}`, the expression
    that `literal()` writes for two braces of user text."""
    out, i = [], 0
    while i < len(text):
        start = text.find("{{", i)
        if start < 0:
            out.append(text[i:])
            break
        end = text.find("}}", start + 2)
        out.append(text[i:start])
        tag = text[start + 2:end]
        out.append("{{" if tag == "='{{'" else tags.get(tag, f"<{tag}>"))
        i = end + 2
    return "".join(out)


ENV = {"HOME": "/tmp", "MLC_STEP": "train", "X": "expanded", "": "empty-name"}
hostile = st.text(alphabet=st.sampled_from("$()${}ab X_HOME\\'\""), max_size=40)


@settings(max_examples=500, deadline=None)
@given(st.one_of(hostile, st.text(max_size=40)))
def test_escaped_text_survives_the_kubelet(text):
    assert kubelet_expand(container_text(text), ENV) == text


def test_the_expansion_would_change_unescaped_text():
    # the test's kubelet is not the identity: without escaping, these would change
    assert kubelet_expand("$(HOME)/x", ENV) == "/tmp/x"
    assert kubelet_expand("a$$b", ENV) == "a$b"
    assert kubelet_expand("$(NOPE) $( $x", ENV) == "$(NOPE) $( $x"


PROBE = ("import json, os, sys; print(json.dumps({'argv': sys.argv[1:], "
         "'env': {k: os.environ[k] for k in ('USER_A', 'USER_B', 'USER_C')}}))")
ARGS = ["--glob=$(HOME)/*.parquet", "price$$", "$$(MLC_STEP)", "{{workflow.name}}", "$(",
        "cost: $5", "${HOME}"]
USER_ENV = {"USER_A": "$(MLC_STEP)", "USER_B": "p@$$w{{x}}", "USER_C": "$(HOME)$"}


def test_custom_trainer_process_receives_ml_yaml_text(tmp_path: Path):
    """The step runtime runs the user's command from project.json (a mounted file, which
    nothing expands); the user's env reaches the container through the pod spec, which the
    kubelet expands: both must arrive as ml.yaml wrote them."""
    doc = project({"models": {"churn": {"framework": "custom", "training": {"custom": {
        "image": "ghcr.io/acme/trainer:1", "command": [sys.executable, "-c", PROBE],
        "args": ARGS, "env": USER_ENV}}}}})
    resolved = resolve(tmp_path / "project", doc)
    files = emit(resolved)
    [container] = [t["container"] for path, docs in sorted(files.items()) for o in docs
                   for t in o.get("spec", {}).get("templates", [])
                   if t.get("container") and "USER_A" in json.dumps(t["container"])]

    # what Argo makes of the template, then what the kubelet makes of the pod
    tags = {"workflow.name": "run-1"}
    env_list = [(e["name"], argo_substitute(e["value"], tags)) for e in container["env"]
                if "value" in e]
    resolved_env: dict[str, str] = {}
    for name, value in env_list:  # each value sees the variables defined before it
        resolved_env[name] = kubelet_expand(value, resolved_env)
    argv = [kubelet_expand(argo_substitute(a, tags), resolved_env)
            for a in container["command"] + container["args"]]
    assert argv[1:4] == ["-m", "mlc.runtime", "step"]  # the one step entry point

    # the command as the step runtime reads it from project.json, run with the pod's env
    training = resolved.models["churn"].training
    command = [*training.command, *training.args]
    result = subprocess.run(command, env={**resolved_env, "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(result.stdout)
    assert seen["argv"] == ARGS
    assert seen["env"] == USER_ENV
