"""`mlc pin ENV`: aliases resolved against a real MLflow registry, written into the overlay."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pin import PIN_FAILED, pin
from mlc.compiler.pipeline import check_environment
from mlc.compiler.resolve.delivery import ALIAS_NOT_PINNED
from mlc.registry import alias_versions

from .conftest import ROOT, write_project
from .test_serving import project_text

mlflow = pytest.importorskip("mlflow")

SERVING = {
    "api": {"model": "scorer", "rollout": {"strategy": "canary"}},
    "mirror": {"model": "scorer", "rollout": {"strategy": "shadow",
                                              "shadow": {"alias": "challenger"}}},
    "split": {"model": "scorer", "rollout": {"strategy": "ab", "variants": [
        {"name": "control", "weight": 70},
        {"name": "treatment", "alias": "challenger", "weight": 30}]}},
}
OVERLAY = """\
# production: more replicas, same models
platform: {development: true}  # no cluster-only settings in this test project
serving:
  api:
    autoscaling: {minReplicas: 2, maxReplicas: 4}  # peak traffic
"""


@pytest.fixture
def registry(tmp_path):
    uri = f"sqlite:///{tmp_path / 'registry.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("scorer")
    source = tmp_path / "artifacts"
    source.mkdir()
    for _ in range(3):
        client.create_model_version("scorer", source=str(source))
    client.set_registered_model_alias("scorer", "champion", "1")  # the production alias
    client.set_registered_model_alias("scorer", "challenger", "2")
    return uri, client


@pytest.fixture
def project(tmp_path):
    folder = tmp_path / "project"
    write_project(folder, {"ml.yaml": project_text(SERVING),
                           "environments/prod.yaml": OVERLAY})
    return folder


def compiled(folder):
    diags = Diagnostics()
    resolved = check_environment(folder, "prod", diags)
    assert resolved is not None and not diags.has_errors()
    return resolved, diags


def test_unpinned_rollouts_are_warned_about(project):
    _, diags = compiled(project)
    warned = sorted(d.dotted_path for d in diags.items if d.code == ALIAS_NOT_PINNED)
    assert warned == ["serving.api.model", "serving.mirror.model",
                      "serving.mirror.rollout.shadow",
                      "serving.split.rollout.variants[0]", "serving.split.rollout.variants[1]"]


def test_pin_writes_the_registry_versions_and_keeps_the_comments(project, registry):
    uri, client = registry
    assert pin(project, "prod", Diagnostics(), alias_versions, tracking_uri=uri) == 0
    text = (project / "environments" / "prod.yaml").read_text()
    assert text.startswith(OVERLAY.splitlines()[0])
    assert "# peak traffic" in text
    resolved, diags = compiled(project)
    assert not [d for d in diags.items if d.code == ALIAS_NOT_PINNED]
    ep = resolved.endpoints
    assert ep["api"].model_uri == "models:/scorer/1"
    assert ep["mirror"].rollout.shadow_model_uri == "models:/scorer/2"
    assert {v.name: v.model_uri for v in ep["split"].rollout.variants} == {
        "control": "models:/scorer/1", "treatment": "models:/scorer/2"}
    assert ep["api"].autoscaling.min_replicas == 2  # the overlay's own settings stay

    # a retrain moves the aliases: what the rollout serves does not move with them
    client.set_registered_model_alias("scorer", "champion", "3")
    again, _ = compiled(project)
    assert again.endpoints["api"].model_uri == "models:/scorer/1"
    # and pinning again is a no-op
    out = []

    class Sink:
        def write(self, s):
            out.append(s)

        def writelines(self, lines):
            out.extend(lines)

    assert pin(project, "prod", Diagnostics(), alias_versions, tracking_uri=uri,
               stdout=Sink()) == 0
    assert "Nothing to pin" in "".join(out)


def test_an_alias_the_registry_lacks_changes_nothing(project, registry, tmp_path):
    uri, client = registry
    client.delete_registered_model_alias("scorer", "challenger")
    before = (project / "environments" / "prod.yaml").read_text()
    diags = Diagnostics()
    assert pin(project, "prod", diags, alias_versions, tracking_uri=uri) == 1
    assert [d.code for d in diags.errors] == [PIN_FAILED]
    assert any("scorer@challenger" in n for n in diags.errors[0].notes)
    assert (project / "environments" / "prod.yaml").read_text() == before


def test_the_command_line(project, registry):
    uri, _ = registry
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    dry = subprocess.run([sys.executable, "-m", "mlc", "pin", "prod", "-C", str(project),
                          "--tracking-uri", uri, "--dry-run"], capture_output=True, text=True,
                         env=env, timeout=300)
    assert dry.returncode == 0, dry.stderr
    assert "+    version: 1" in dry.stdout and "(dry run" in dry.stdout
    assert "version" not in (project / "environments" / "prod.yaml").read_text()
    checked = subprocess.run([sys.executable, "-m", "mlc", "validate", "-C", str(project),
                              "--format", "json"], capture_output=True, text=True, env=env,
                             timeout=300)
    codes = {d["code"] for d in json.loads(checked.stdout)["diagnostics"]}
    assert codes == {ALIAS_NOT_PINNED}
