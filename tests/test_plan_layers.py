"""`mlc plan --base-ref` names the layer that set each changed value, as `mlc explain` does:
one edit in a platform file that ml.yaml extends, one in ml.yaml, one in the environment's
overlay, against the commit before (text, markdown and JSON snapshots); a base without the
project's files (a deploy branch) lists none rather than every value as new."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from mlc.cli import main

from .bad_inputs import BASE, edit
from .conftest import write_project
from .test_plan import git, validate_against_documented_schema

SNAPSHOTS = Path(__file__).parent / "snapshots" / "plan"
PLATFORM = """\
apiVersion: mlc.dev/v1
kind: Platform
hardware:
  cpu-small: {cpu: 500m, memory: 1Gi}
platform:
  imagePolicy: tag
"""
ML = edit("platform:\n  imagePolicy: tag\nhardware:\n  cpu-small:\n    cpu: 500m\n"
          "    memory: 1Gi\n", "extends: ../platform/platform.yaml\n",
          BASE)
PROD = "platform: {development: true}\nserving:\n  churn-api:\n    autoscaling: {maxReplicas: 4}\n"


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    top = tmp_path_factory.mktemp("layers")
    git(top, "init", "-q", "-b", "main")
    write_project(top / "project", {"ml.yaml": ML, "environments/prod.yaml": PROD})
    write_project(top / "platform", {"platform.yaml": PLATFORM})
    assert main(["apply", "-C", str(top / "project"), "--out", str(top / "deploy")]) == 0
    git(top, "add", "-A")
    git(top, "commit", "-q", "-m", "base")
    (top / "platform" / "platform.yaml").write_text(PLATFORM.replace("memory: 1Gi",
                                                                     "memory: 2Gi"))
    (top / "project" / "ml.yaml").write_text(edit(
        "    task: classification\n",
        "    task: classification\n    description: the churn scores\n", ML))
    (top / "project" / "environments" / "prod.yaml").write_text(
        PROD.replace("maxReplicas: 4", "maxReplicas: 6"))
    return top


def plan(repo: Path, capsys, *args: str) -> tuple[int, str]:
    code = main(["plan", "-C", str(repo / "project"), "--out", str(repo / "deploy"), *args])
    return code, capsys.readouterr().out


@pytest.mark.parametrize("fmt,ext", [("text", "txt"), ("markdown", "md"), ("json", "json")])
def test_each_changed_value_names_its_layer(repo: Path, capsys, update_golden: bool,
                                            fmt: str, ext: str):
    code, out = plan(repo, capsys, "--base-ref", "HEAD", "--format", fmt)
    assert code == 0, out
    if fmt == "json":
        data = json.loads(out)
        validate_against_documented_schema(data)
        changes = {c["path"]: c for c in data["environments"][0]["source_changes"]}
        assert changes["hardware.cpu-small.memory"] == {
            "path": "hardware.cpu-small.memory", "old": "1Gi", "new": "2Gi",
            "origin": "../platform/platform.yaml:4:34", "layer": "platform file"}
        assert changes["models.churn.description"]["layer"] == "ml.yaml"
        assert changes["serving.churn-api.autoscaling.maxReplicas"]["layer"] == \
            "environment overlay"
        assert len(changes) == 3
    commit = git(repo, "rev-parse", "HEAD").strip()
    out = out.replace(commit, "<commit>").replace(commit[:12], "<commit>")
    snapshot = SNAPSHOTS / f"layers.{ext}"
    if update_golden:
        snapshot.write_text(out)
    assert out == snapshot.read_text()


def test_no_source_changes_without_a_git_base_or_without_the_project_there(repo: Path,
                                                                           capsys):
    code, out = plan(repo, capsys, "--format", "json")
    assert code == 0 and all(not e["source_changes"] for e in json.loads(out)["environments"])
    # a deploy branch: a commit with the rendered tree only
    tree = subprocess.run(["git", "mktree"], cwd=repo, input="", capture_output=True,
                          text=True, check=True).stdout.strip()
    empty = git(repo, "commit-tree", tree, "-m", "tree only").strip()
    code, out = plan(repo, capsys, "--base-ref", empty, "--format", "json")
    assert code == 0 and all(not e["source_changes"] for e in json.loads(out)["environments"])
