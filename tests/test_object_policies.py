"""User policies `on: objects`: rules over the Kubernetes objects an environment renders
(and over their change against the old tree), in plan and apply, accepted on purpose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlc.cli import main

from .bad_inputs import BASE
from .conftest import write_project

POLICIES = """\
apiVersion: mlc.dev/v1
kind: Policies
policies:
  - name: no-privilege-escalation
    on: objects
    path: Deployment.*.spec.template.spec.containers.*.securityContext.allowPrivilegeEscalation
    operator: "=="
    value: false
  - name: our-registry
    on: objects
    path: Deployment.*.spec.template.spec.containers.*.image
    operator: in
    value: [ghcr.io/mlc-dev/mlc-serve:0.1.0]
  - name: hpa-max-not-raised
    on: objects
    path: HorizontalPodAutoscaler.*.spec.maxReplicas
    operator: notIncreased
"""
MORE = BASE.replace("    model: churn\n    hardware: cpu-small\n",
                    "    model: churn\n    hardware: cpu-small\n"
                    "    autoscaling: {minReplicas: 1, maxReplicas: 9}\n")


def cli(*args: str) -> int:
    return main(list(args))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    write_project(tmp_path / "project", {"ml.yaml": BASE + "policies: policies.yaml\n",
                                         "policies.yaml": POLICIES})
    return tmp_path


def risks(capsys) -> dict[str, dict]:
    capsys.readouterr()
    assert cli("plan", "-C", "project", "--out", "out", "--format", "json") == 0
    [env] = json.loads(capsys.readouterr().out)["environments"]
    return {r["subject"]: r for r in env["risks"] if r["code"] == "MLC510"}


def test_rules_over_the_rendered_objects_and_their_change(workdir: Path, capsys):
    assert risks(capsys) == {}  # the rendered objects meet every rule; no old tree yet
    assert cli("apply", "-C", "project", "--out", "out") == 0

    (workdir / "project" / "ml.yaml").write_text(
        MORE.replace("platform:\n  imagePolicy: tag\n", "platform:\n  imagePolicy: tag\n"
                     "images: {serve: docker.io/someone/serve:latest}\n")
        + "policies: policies.yaml\n")
    found = risks(capsys)
    assert sorted(found) == [
        "hpa-max-not-raised@HorizontalPodAutoscaler.churn-api.spec.maxReplicas",
        "our-registry@Deployment.churn-api.spec.template.spec.containers.0.image"]
    hpa = found["hpa-max-not-raised@HorizontalPodAutoscaler.churn-api.spec.maxReplicas"]
    assert hpa["blocks_apply"] and hpa["message"].endswith("-> 9")
    assert '"docker.io/someone/serve:latest"' in found[
        "our-registry@Deployment.churn-api.spec.template.spec.containers.0.image"]["message"]

    capsys.readouterr()
    assert cli("apply", "-C", "project", "--out", "out") == 1
    assert "MLC913" in capsys.readouterr().err
    accepted = "".join(f"  - {{code: MLC510, subject: '{s}', reason: reviewed in OPS-7}}\n"
                       for s in sorted(found))
    ml = (workdir / "project" / "ml.yaml").read_text()
    (workdir / "project" / "ml.yaml").write_text(ml + "acceptedRisks:\n" + accepted)
    assert all(r["accepted"] and not r["blocks_apply"] for r in risks(capsys).values())
    assert cli("apply", "-C", "project", "--out", "out") == 0


def test_an_object_path_that_names_no_field_is_refused(workdir: Path, capsys):
    (workdir / "project" / "policies.yaml").write_text(
        "apiVersion: mlc.dev/v1\nkind: Policies\npolicies:\n"
        "  - {name: bad, on: objects, path: deployment.replicas, operator: exists}\n")
    assert cli("validate", "-C", "project") == 1
    err = capsys.readouterr().err
    assert "MLC511" in err and "`deployment.replicas` names no field of an object" in err
