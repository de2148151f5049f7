"""Built-in policies in production: each violation in the plan (snapshots in every format),
`mlc apply` refusing it, and accepting it once an `acceptedRisks:` entry says why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlc.cli import main
from mlc.compiler.cron import frequency
from mlc.compiler.policy import violations

from .bad_inputs import BASE, CLUSTER
from .conftest import write_project
from .test_plan import FORMATS, check_snapshot, validate_against_documented_schema

SNAPSHOTS = Path(__file__).parent / "snapshots" / "policy"
DIGEST = "@sha256:" + "a" * 64
ML = BASE.replace("  imagePolicy: tag\n", "  imagePolicy: digest\n")
# A production overlay that every built-in policy accepts; each case breaks one of them.
PROD = CLUSTER + f"""\
images:
  train: ghcr.io/mlc-dev/mlc-train:0.1.0{DIGEST}
  serve: ghcr.io/mlc-dev/mlc-serve:0.1.0{DIGEST}
  drift: ghcr.io/mlc-dev/mlc-drift:0.1.0{DIGEST}
serving:
  churn-api:
    autoscaling: {{minReplicas: 2, maxReplicas: 4}}
    rollout:
      strategy: canary
      steps: [{{weight: 20, pause: 5m}}]
      gates: {{maxLatencyP99: 150ms}}
"""
GPU_HARDWARE = ("hardware:\n  gpu-big:\n    cpu: \"4\"\n    memory: 16Gi\n"
                "    gpu: {type: NVIDIA-H100, count: 2}\n")


def _edit(old: str, new: str, text: str = PROD) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


# name -> (ml.yaml after, prod overlay after, code, subject)
CASES = {
    "ungated-rollout": (ML, _edit("      strategy: canary\n      steps: [{weight: 20, pause: 5m}]"
                                  "\n", "      strategy: rolling\n"), "MLC500",
                        "serving.churn-api"),
    "gate-loosened": (ML, _edit("maxLatencyP99: 150ms", "maxLatencyP99: 400ms"), "MLC501",
                      "serving.churn-api.rollout.gates"),
    "too-few-replicas": (ML, _edit("minReplicas: 2", "minReplicas: 1"), "MLC502",
                         "serving.churn-api"),
    "image-by-tag": (ML.replace("  imagePolicy: digest\n", "  imagePolicy: tag\n"),
                     _edit(f"mlc-serve:0.1.0{DIGEST}", "mlc-serve:0.1.0"), "MLC503",
                     "images.serve"),
    "gpu-over-cap": (ML.replace("      hardware: cpu-small\n", "      hardware: gpu-big\n"),
                     _edit("platform:\n", "platform:\n  guardrails: {maxGpusPerReplica: 1}\n")
                     + GPU_HARDWARE,
                     "MLC504", "pipelines.train-churn.train"),
    "scale-to-zero": (ML, _edit("    autoscaling: {minReplicas: 2, maxReplicas: 4}\n",
                                "    mode: serverless\n    autoscaling: {minReplicas: 0, "
                                "maxReplicas: 4, metric: concurrency, target: 10}\n"),
                      "MLC505", "serving.churn-api"),
    "training-too-often": (ML.replace("      hardware: cpu-small\n", "      hardware: cpu-small\n"
                                      "      schedule: \"*/15 * * * *\"\n"),
                           PROD, "MLC506", "models.churn"),
}


def cli(*args: str) -> int:
    return main(list(args))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)  # relative paths keep tmp_path out of the snapshots
    return tmp_path


def _project(workdir: Path, ml: str, prod: str) -> Path:
    return write_project(workdir / "project", {"ml.yaml": ml, "environments/prod.yaml": prod})


def _plan(capsys, fmt: str) -> str:
    capsys.readouterr()
    assert cli("plan", "-C", "project", "--out", "out", "--format", fmt) == 0
    return capsys.readouterr().out


def _accept(prod: str, code: str, subject: str) -> str:
    return prod + (f"acceptedRisks:\n  - code: {code}\n    subject: {subject}\n"
                   "    reason: approved in RISK-42 for the launch week\n")


def test_the_production_overlay_passes_every_policy(workdir: Path, capsys):
    _project(workdir, ML, PROD)
    plan = json.loads(_plan(capsys, "json"))
    [env] = plan["environments"]
    assert env["risks"] == [] and env["notes"] == []
    assert cli("apply", "-C", "project", "--out", "out") == 0


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_each_policy_in_plan_and_apply(case: str, workdir: Path, capsys, update_golden: bool):
    ml, prod, code, subject = CASES[case]
    _project(workdir, ML, PROD)
    assert cli("apply", "-C", "project", "--out", "out") == 0
    before = (workdir / "out" / "prod" / ".mlc-index.json").read_bytes()
    _project(workdir, ml, prod)
    for fmt, suffix in FORMATS.items():
        out = _plan(capsys, fmt)
        check_snapshot(SNAPSHOTS / f"{case}.{suffix}", out, update_golden)
    plan = json.loads(out)
    validate_against_documented_schema(plan)
    [env] = plan["environments"]
    [risk] = [r for r in env["risks"] if r["code"].startswith("MLC5")]
    assert (risk["code"], risk["subject"], risk["blocks_apply"], risk["accepted"]) == (
        code, subject, True, None)

    capsys.readouterr()
    assert cli("apply", "-C", "project", "--out", "out") == 1
    err = capsys.readouterr().err
    assert "MLC913" in err and f"[{code}]" in err and "acceptedRisks" in err
    assert (workdir / "out" / "prod" / ".mlc-index.json").read_bytes() == before

    _project(workdir, ml, _accept(prod, code, subject))
    text = _plan(capsys, "text")
    assert f"[{code}]" in text and "(accepted: approved in RISK-42 for the launch week " \
        "(environments/prod.yaml:" in text
    [risk] = [r for r in json.loads(_plan(capsys, "json"))["environments"][0]["risks"]
              if r["code"] == code]
    assert risk["blocks_apply"] is False and risk["accepted"].startswith("approved in RISK-42")
    assert cli("apply", "-C", "project", "--out", "out") == 0
    assert (workdir / "out" / "prod" / ".mlc-index.json").read_bytes() != before


def test_saved_plan_with_a_violation_is_refused(workdir: Path, capsys):
    _project(workdir, ML, _edit("minReplicas: 2", "minReplicas: 1"))
    assert cli("plan", "-C", "project", "--out", "out", "--save", "plan.json") == 0
    capsys.readouterr()
    assert cli("apply", "-C", "project", "plan.json") == 1
    assert "[MLC502]" in capsys.readouterr().err
    assert not (workdir / "out" / "prod").exists()


def test_an_acceptance_that_matches_nothing_is_a_note(workdir: Path, capsys):
    _project(workdir, ML, _accept(PROD, "MLC502", "serving.churn-api"))
    [env] = json.loads(_plan(capsys, "json"))["environments"]
    assert env["risks"] == []
    assert env["notes"] == ["acceptedRisks entry MLC502 for `serving.churn-api` "
                            "(environments/prod.yaml:23) matches no violation; remove it"]


def test_policies_are_off_outside_production(workdir: Path, capsys):
    write_project(workdir / "project", {"ml.yaml": ML, "environments/staging.yaml":
                                        _edit("minReplicas: 2", "minReplicas: 1")})
    [env] = json.loads(_plan(capsys, "json"))["environments"]
    assert env["risks"] == []
    marked = _edit("platform:\n", "platform:\n  production: true\n")
    write_project(workdir / "project", {"environments/staging.yaml": _edit(
        "minReplicas: 2", "minReplicas: 1", marked)})
    [env] = json.loads(_plan(capsys, "json"))["environments"]
    assert [r["code"] for r in env["risks"]] == ["MLC502"]


def _ir(**endpoint) -> dict:
    e = {"mode": "online", "replicas": None, "rollout": {"strategy": "canary", "gates": {}},
         "autoscaling": {"min_replicas": 2}, "slo": {"latency_seconds": 0.1},
         "image": {"ref": "x@sha256:1", "digest": "sha256:1"}, "hardware": "cpu"} | endpoint
    return {"platform": {"production": True}, "endpoints": {"api": e}}


def test_scale_to_zero_and_batch_endpoints():
    found = violations(None, _ir(autoscaling={"min_replicas": 0}))
    assert [(v.code, v.subject) for v in found] == [("MLC505", "serving.api")]
    assert violations(None, _ir(mode="batch", autoscaling={"min_replicas": 0},
                                rollout={"strategy": "rolling"})) == []


def test_model_gates_may_not_loosen():
    old = {"models": {"m": {"gates": [{"metric": "auc", "min": 0.9, "max": None}]}}}
    for gates in ([{"metric": "auc", "min": 0.8, "max": None}], []):
        new = _ir() | {"models": {"m": {"gates": gates}}}
        assert [(v.code, v.subject) for v in violations(old, new)] == [
            ("MLC501", "models.m.gates")]
    tighter = _ir() | {"models": {"m": {"gates": [{"metric": "auc", "min": 0.95}]}}}
    assert violations(old, tighter) == []


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 59), st.integers(1, 23))
def test_cron_gaps(minutes: int, hours: int):
    assert frequency(f"*/{minutes} * * * *").shortest_gap_seconds == min(
        minutes, 60 - (60 - 1) // minutes * minutes) * 60
    assert frequency(f"0 */{hours} * * *").shortest_gap_seconds == min(
        hours, 24 - (24 - 1) // hours * hours) * 3600


def test_weakening_risks_in_every_environment():
    from mlc.compiler.plan.weakening import weakening_risks

    def ir(strategy="canary", weights=(50, 50), gpus=0, max_replicas=4, production=False):
        variants = [{"name": n, "weight": w} for n, w in zip("ab", weights, strict=True)]
        return {"platform": {"production": production},
                "hardware": {"h": {"gpu_count": gpus}},
                "endpoints": {"api": {"hardware": "h", "replicas": None,
                                      "autoscaling": {"min_replicas": 2,
                                                      "max_replicas": max_replicas},
                                      "rollout": {"strategy": strategy,
                                                  "variants": variants}}}}

    def codes(old, new):
        return [r.code for r in weakening_risks(old, new)]

    assert codes(ir(), ir()) == []
    assert codes(ir(), ir(strategy="rolling")) == ["strategy-weakened"]
    assert codes(ir(strategy="rolling"), ir()) == []
    assert codes(ir("ab"), ir("ab", weights=(90, 10))) == ["ab-weight-change"]
    assert codes(ir(gpus=1), ir(gpus=1, max_replicas=6)) == ["gpu-replicas-added"]
    assert codes(ir(gpus=1), ir(gpus=2)) == ["gpu-replicas-added"]
    assert codes(ir(gpus=1, max_replicas=6), ir(gpus=1)) == []  # fewer GPUs: cheaper
    lowered = ir(production=True)
    lowered["endpoints"]["api"]["autoscaling"]["min_replicas"] = 1
    assert codes(ir(production=True), lowered) == ["replicas-lowered"]
    lowered["platform"]["production"] = False
    assert codes(ir(), lowered) == []
