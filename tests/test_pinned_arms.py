"""A rollout's stable pods keep their own model when they restart mid-rollout.

All of an endpoint's pods mount one ConfigMap, which names the model the newest commit
serves. The model a server loads is therefore written into the pod template as well
(MLC_MODEL_URI, which the runtime prefers): each ReplicaSet (and Knative revision) carries
its own, so a stable pod restarted during a canary loads the stable version. Shown with the
runtime's own settings code on the compiled objects: the old Rollout's container with the
new ConfigMap.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from mlc.cli import main
from mlc.compiler import ir
from mlc.runtime.serve.settings import settings_for_endpoint

from .conftest import copy_example

ENV, ENDPOINT = "prod", "fraud-api"


def compiled(root: Path, version: int, out: Path) -> Path:
    overlay = root / "environments" / f"{ENV}.yaml"
    text = overlay.read_text("utf-8")
    marker = f"  {ENDPOINT}:\n"
    assert marker in text
    pinned = text.replace(marker, f"{marker}    version: {version}\n", 1)
    overlay.write_text(pinned, "utf-8")
    assert main(["compile", "-C", str(root), "--env", ENV, "--out", str(out)]) == 0
    overlay.write_text(text, "utf-8")
    return out / ENV


def test_a_restarted_stable_pod_loads_the_stable_version(tmp_path):
    root = copy_example(tmp_path)
    old = compiled(root, 3, tmp_path / "old")
    new = compiled(root, 4, tmp_path / "new")

    rollout = yaml.safe_load((old / "rollouts" / f"rollout-{ENDPOINT}.yaml").read_text())
    container = next(c for c in rollout["spec"]["template"]["spec"]["containers"]
                     if c["name"] == "serve")
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert "models:/" in env["MLC_MODEL_URI"] and env["MLC_MODEL_URI"].endswith("/3")

    # the new commit's ConfigMaps, mounted where the old pod template mounts them
    config = yaml.safe_load((new / "serving" / f"configmap-{ENDPOINT}.yaml").read_text())
    key = next(iter(config["data"]))
    assert json.loads(config["data"][key])["model_uri"].endswith("/4")
    endpoint_json = tmp_path / "endpoint.json"
    endpoint_json.write_text(config["data"][key], "utf-8")
    core = yaml.safe_load((new / "core" / "config.yaml")
                          .read_text())
    project = ir.ResolvedProject.model_validate_json(core["data"]["project.json"])

    env["MLC_ENDPOINT_CONFIG"] = str(endpoint_json)
    assert settings_for_endpoint(project, ENDPOINT, env).model_uri == env["MLC_MODEL_URI"]
    # without the pod template's variable, the shared ConfigMap's new version would load
    del env["MLC_MODEL_URI"]
    assert settings_for_endpoint(project, ENDPOINT, env).model_uri.endswith("/4")
