"""A policies file shared by projects: rules over the resolved project and over the change,
in plan (every format) and apply, accepted on purpose, warnings that only show."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlc.cli import main

from .conftest import write_project
from .test_plan import FORMATS, check_snapshot, validate_against_documented_schema
from .test_policy import ML, PROD

SNAPSHOTS = Path(__file__).parent / "snapshots" / "policy"
POLICIES = """\
apiVersion: mlc.dev/v1
kind: Policies
policies:
  - name: three-replicas-in-prod
    path: endpoints.*.autoscaling.min_replicas
    operator: ">="
    value: 3
    environments: [prod]
  - name: max-replicas-do-not-shrink
    path: endpoints.*.autoscaling.max_replicas
    operator: notDecreased
  - name: small-hardware
    path: hardware.*.gpu_count
    operator: "=="
    value: 0
    severity: warning
    message: GPUs need the platform team's review
"""
SHARED = "../platform/policies.yaml"


def cli(*args: str) -> int:
    return main(list(args))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    write_project(tmp_path / "platform", {"policies.yaml": POLICIES})
    return tmp_path


def _project(workdir: Path, prod: str, ml: str = ML) -> None:
    write_project(workdir / "project", {"ml.yaml": ml + f"policies: {SHARED}\n",
                                        "environments/prod.yaml": prod})


def _risks(capsys) -> list[dict]:
    capsys.readouterr()
    assert cli("plan", "-C", "project", "--out", "out", "--format", "json") == 0
    [env] = json.loads(capsys.readouterr().out)["environments"]
    return [r for r in env["risks"] if r["code"] == "MLC510"]


def test_rules_over_the_project_and_the_change(workdir: Path, capsys, update_golden: bool):
    _project(workdir, PROD.replace("minReplicas: 2", "minReplicas: 3"))
    assert _risks(capsys) == []
    assert cli("apply", "-C", "project", "--out", "out") == 0

    shrunk = PROD.replace("maxReplicas: 4", "maxReplicas: 3")  # and min back to 2
    _project(workdir, shrunk)
    for fmt, suffix in FORMATS.items():
        capsys.readouterr()
        assert cli("plan", "-C", "project", "--out", "out", "--format", fmt) == 0
        out = capsys.readouterr().out
        check_snapshot(SNAPSHOTS / f"user-policies.{suffix}", out, update_golden)
    validate_against_documented_schema(json.loads(out))
    risks = _risks(capsys)
    assert [(r["subject"], r["blocks_apply"]) for r in risks] == [
        ("max-replicas-do-not-shrink@endpoints.churn-api.autoscaling.max_replicas", True),
        ("three-replicas-in-prod@endpoints.churn-api.autoscaling.min_replicas", True)]
    assert "../platform/policies.yaml:9" in risks[0]["message"] and "4 -> 3" in risks[0]["message"]

    capsys.readouterr()
    assert cli("apply", "-C", "project", "--out", "out") == 1
    assert capsys.readouterr().err.count("[MLC510]") == 2
    accepted = shrunk + "acceptedRisks:\n" + "".join(
        f"  - {{code: MLC510, subject: {r['subject']}, reason: load test done}}\n" for r in risks)
    _project(workdir, accepted)
    assert all(r["accepted"] for r in _risks(capsys))
    assert cli("apply", "-C", "project", "--out", "out") == 0


def test_warnings_show_but_do_not_block(workdir: Path, capsys):
    gpu = ML.replace("hardware:\n", "hardware:\n  gpu:\n    cpu: \"1\"\n    memory: 4Gi\n"
                     "    gpu: {type: NVIDIA-L4, count: 1}\n")
    _project(workdir, PROD.replace("minReplicas: 2", "minReplicas: 3"), ml=gpu)
    [risk] = _risks(capsys)
    assert (risk["severity"], risk["blocks_apply"], risk["subject"]) == (
        "medium", False, "small-hardware@hardware.gpu.gpu_count")
    assert "GPUs need the platform team's review" in risk["message"]
    assert cli("apply", "-C", "project", "--out", "out") == 0


def test_rules_for_other_environments_do_not_apply(workdir: Path, capsys):
    write_project(workdir / "project", {"ml.yaml": ML + f"policies: {SHARED}\n",
                                        "environments/staging.yaml": PROD})
    assert _risks(capsys) == []


def test_a_saved_plan_is_stale_when_the_policies_file_changes(workdir: Path, capsys):
    _project(workdir, PROD.replace("minReplicas: 2", "minReplicas: 3"))
    assert cli("plan", "-C", "project", "--out", "out", "--save", "plan.json") == 0
    (workdir / "platform" / "policies.yaml").write_text(POLICIES.replace("value: 3", "value: 4"))
    capsys.readouterr()
    assert cli("apply", "-C", "project", "plan.json") == 1
    err = capsys.readouterr().err
    assert "MLC911" in err and "../platform/policies.yaml" in err
