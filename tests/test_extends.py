"""`extends:` platform files: the platform's values reach the compiled output, the project
and its overlays override them, `mlc explain` names the layer that set each value, a
policies file named by the platform is enforced, and a saved plan goes stale with the
platform file. (Bad platform files: tests/bad_inputs.py, `extends-*`.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from mlc.cli import main
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import compile_project

from .bad_inputs import edit
from .conftest import write_project

PLATFORM = """\
apiVersion: mlc.dev/v1
kind: Platform
extends: base.yaml
hardware:
  cpu-small: {cpu: 500m, memory: 1Gi}
  cpu-large: {cpu: "4", memory: 8Gi}
images:
  train: ghcr.io/acme/mlc-train:2.0
policies: policies.yaml
platform:
  imagePolicy: tag
  argocd:
    repoUrl: https://git.example.com/platform/deploy.git
"""
BASE_PLATFORM = """\
kind: Platform
images:
  train: ghcr.io/acme/mlc-train:1.0
  serve: ghcr.io/acme/mlc-serve:1.0
platform:
  argocd: {project: ml-platform}
  cost:
    prices: {cpuCoreHour: 0.05}
"""
POLICIES = """\
apiVersion: mlc.dev/v1
kind: Policies
policies:
  - name: two-replicas
    path: endpoints.*.autoscaling.min_replicas
    operator: ">="
    value: 2
"""
# The project sets no hardware or images of its own but one hardware override.
ML = edit("platform:\n  imagePolicy: tag\nhardware:\n  cpu-small:\n    cpu: 500m\n"
          "    memory: 1Gi\n", "extends: ../platform/team.yaml\nhardware:\n"
          "  cpu-small: {cpu: 250m, memory: 1Gi}\n")


def cli(*args: str) -> int:
    return main(list(args))


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    write_project(tmp_path / "platform", {"team.yaml": PLATFORM, "base.yaml": BASE_PLATFORM,
                                          "policies.yaml": POLICIES})
    return write_project(tmp_path / "project", {
        "ml.yaml": ML, "environments/dev.yaml": "platform: {development: true}\n",
        "environments/prod.yaml": "platform: {development: true}\nimages:\n"
                                  "  serve: ghcr.io/acme/mlc-serve:1.1\n"})


def resolved(project: Path, env: str):
    [compiled] = compile_project(project, [env], Diagnostics())
    return compiled


def test_platform_values_reach_the_output_and_the_project_overrides_them(project: Path):
    compiled = resolved(project, "dev")
    ir = compiled.project
    assert ir.images["train"].ref == "ghcr.io/acme/mlc-train:2.0"  # the nearer file wins
    assert ir.images["serve"].ref == "ghcr.io/acme/mlc-serve:1.0"  # from the farther one
    assert ir.hardware["cpu-small"].requests["cpu"] == "250m"  # ml.yaml overrides it
    assert ir.hardware["cpu-large"].requests["memory"] == "8Gi"
    assert ir.platform.cost.cpu_core_hour == 0.05
    [app] = [yaml.safe_load(b) for p, b in compiled.files.items() if p.startswith("argocd/")]
    assert app["spec"]["source"]["repoURL"] == "https://git.example.com/platform/deploy.git"
    assert app["spec"]["project"] == "ml-platform"
    # an overlay overrides a platform value in its environment only
    assert resolved(project, "prod").project.images["serve"].ref == "ghcr.io/acme/mlc-serve:1.1"


def test_a_project_deletes_a_platform_value_with_patch_delete(project: Path):
    ml = (project / "ml.yaml").read_text()
    (project / "ml.yaml").write_text(ml.replace(
        "  cpu-small: {cpu: 250m, memory: 1Gi}\n",
        "  cpu-small: {cpu: 250m, memory: 1Gi}\n  cpu-large: {$patch: delete}\n"))
    assert "cpu-large" not in resolved(project, "dev").project.hardware


def test_explain_names_the_layer_that_set_each_value(project: Path, capsys):
    assert cli("explain", "-C", str(project), "prod", "images", "--format", "json") == 0
    origins = json.loads(capsys.readouterr().out)["origins"]
    assert origins["images.train"] == "../platform/team.yaml:8:10"
    assert origins["images.serve"] == "environments/prod.yaml:3:10"
    assert origins["images.drift"] == "default"
    assert cli("explain", "-C", str(project), "dev", "images.serve") == 0
    assert "(../platform/base.yaml:4:10)" in capsys.readouterr().out
    assert cli("explain", "-C", str(project), "dev", "hardware.cpu-small.cpu") == 0
    assert "(ml.yaml:" in capsys.readouterr().out


def test_the_platforms_policies_file_is_enforced(project: Path, capsys):
    # read relative to the platform file that names it, not to the project
    ir = resolved(project, "dev").project
    assert [p.name for p in ir.policies] == ["two-replicas"]
    assert ir.policies[0].origin.file == "../platform/policies.yaml"
    capsys.readouterr()
    assert cli("plan", "-C", str(project), "--env", "dev", "--format", "json") == 0
    [env] = json.loads(capsys.readouterr().out)["environments"]
    assert [r["code"] for r in env["risks"] if r["code"] == "MLC510"] == ["MLC510"]


def test_a_saved_plan_goes_stale_when_the_platform_file_changes(project: Path, capsys):
    assert cli("plan", "-C", str(project), "--save", "plan.json") == 0
    saved = json.loads(Path("plan.json").read_text())["inputs"]["sources"]
    assert {"../platform/team.yaml", "../platform/base.yaml",
            "../platform/policies.yaml"} <= set(saved)
    base = project.parent / "platform" / "base.yaml"
    base.write_text(base.read_text().replace("0.05", "0.07"))
    capsys.readouterr()
    assert cli("apply", "-C", str(project), "plan.json") == 1
    err = capsys.readouterr().err
    assert "MLC911" in err and "../platform/base.yaml" in err


def test_the_compiled_headers_and_lineage_name_the_platform_file(project: Path):
    compiled = resolved(project, "dev")
    assert compiled.project.source == "ml.yaml + ../platform/team.yaml + ../platform/base.yaml"\
        " + environments/dev.yaml"
    before = compiled.project.source_hash
    base = project.parent / "platform" / "base.yaml"
    base.write_text(base.read_text() + "# a comment changes the bytes, not the values\n")
    assert resolved(project, "dev").project.source_hash != before


def test_a_platform_file_that_is_a_fifo_is_refused_not_waited_on(project: Path, capsys):
    team = project.parent / "platform" / "team.yaml"
    team.unlink()
    os.mkfifo(team)
    assert cli("validate", "-C", str(project)) == 1
    err = capsys.readouterr().err
    assert "../platform/team.yaml" in err and "FIFO" in err, err


def test_promote_compiles_a_project_that_extends_a_platform_file(project: Path, capsys):
    # promote checks its edit by compiling a scratch copy of the project: the platform file
    # (outside the project) and the policies file it names must resolve from there too
    (project / "environments" / "staging.yaml").write_text(
        "platform: {development: true}\nimages:\n  serve: ghcr.io/acme/mlc-serve:1.2\n")
    assert cli("promote", "-C", str(project), "staging", "prod", "--dry-run") == 0
    assert "ghcr.io/acme/mlc-serve:1.2" in capsys.readouterr().out
    assert sorted(p.name for p in project.parent.iterdir()) == ["platform", "project"]
