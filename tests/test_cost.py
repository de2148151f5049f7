"""The cost of an environment and of a change, in the plan: hand-checked amounts, snapshots
of the plan in every format for each kind of cost change, budgets in plan and apply, and the
property that an unchanged project costs nothing more."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mlc.cli import main
from mlc.compiler.cost import estimate, plan_cost
from mlc.compiler.cost import prices as default_prices

from .conftest import write_project
from .test_plan import FORMATS, check_snapshot, validate_against_documented_schema
from .test_policy import ML, PROD

SNAPSHOTS = Path(__file__).parent / "snapshots" / "cost"
# One replica of `cpu-small` (500m, 1Gi) for an hour, at the default prices.
SMALL_HOUR = 0.5 * default_prices.CPU_CORE_HOUR + 1 * default_prices.MEMORY_GIB_HOUR
L4 = ("hardware:\n  gpu-l4:\n    cpu: \"2\"\n    memory: 8Gi\n"
      "    gpu: {type: NVIDIA-L4, count: 1}\n")


def _edit(old: str, new: str, text: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


SCHEDULED = _edit("      hardware: cpu-small\n", "      hardware: cpu-small\n"
                  "      schedule: \"0 3 * * *\"\n      expectedDuration: 2h\n", ML)
BUDGET = _edit("platform:\n", "platform:\n  cost: {monthlyBudget: 100}\n", PROD)

# name -> (ml.yaml before, prod before, ml.yaml after, prod after, expected total delta)
CASES = {
    "more-replicas": (ML, PROD, ML, _edit("maxReplicas: 4", "maxReplicas: 8", PROD),
                      (0.0, round(SMALL_HOUR * 4 * 730, 2))),
    "training-scheduled": (ML, PROD, SCHEDULED, PROD, None),
    "longer-training": (SCHEDULED, PROD, SCHEDULED.replace("expectedDuration: 2h",
                                                           "expectedDuration: 5h"), PROD,
                        (round(SMALL_HOUR * 3 * 365 / 12, 2),) * 2),
    "gpu-endpoint": (ML, PROD, _edit("    model: churn\n    hardware: cpu-small\n",
                                     "    model: churn\n    hardware: gpu-l4\n", ML),
                     PROD + L4, None),
    "over-budget": (ML, BUDGET, ML, _edit("maxReplicas: 4", "maxReplicas: 8", BUDGET), None),
}


def cli(*args: str) -> int:
    return main(list(args))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _project(workdir: Path, ml: str, prod: str) -> None:
    write_project(workdir / "project", {"ml.yaml": ml, "environments/prod.yaml": prod})


def _plan(capsys, fmt: str = "json") -> str:
    capsys.readouterr()
    assert cli("plan", "-C", "project", "--out", "out", "--format", fmt) == 0
    return capsys.readouterr().out


def _cost(capsys) -> dict:
    [env] = json.loads(_plan(capsys))["environments"]
    return env["cost"]


def test_serving_cost_by_hand(workdir: Path, capsys):
    _project(workdir, ML, PROD)
    cost = _cost(capsys)
    [serving] = [line for line in cost["lines"] if line["category"] == "serving"]
    assert serving == {"category": "serving", "subject": "serving.churn-api",
                       "monthly_min": round(SMALL_HOUR * 2 * 730, 2),
                       "monthly_max": round(SMALL_HOUR * 4 * 730, 2),
                       "delta_min": round(SMALL_HOUR * 2 * 730, 2),
                       "delta_max": round(SMALL_HOUR * 4 * 730, 2)}
    assert [line["category"] for line in cost["lines"]] == [
        "serving", "drift checks", "materialization"]
    assert cost["total"]["delta_max"] == cost["total"]["monthly_max"]  # nothing applied yet
    assert cost["per_thousand_predictions"] == {"churn-api": None}  # cpu metric: no rate


def test_an_applied_project_costs_nothing_more(workdir: Path, capsys):
    _project(workdir, SCHEDULED, PROD)
    assert cli("apply", "-C", "project", "--out", "out") == 0
    cost = _cost(capsys)
    assert cost["total"]["monthly_max"] > 0
    assert {(line["delta_min"], line["delta_max"]) for line in cost["lines"]} == {(0.0, 0.0)}
    assert "(+0.00)" in _plan(capsys, "text")


def test_own_prices_replace_the_defaults_and_are_no_change(workdir: Path, capsys):
    _project(workdir, ML, PROD)
    assert cli("apply", "-C", "project", "--out", "out") == 0
    _project(workdir, ML, _edit("platform:\n", "platform:\n  cost: {prices: {cpuCoreHour: 1}}\n",
                                PROD))
    cost = _cost(capsys)
    [serving] = [line for line in cost["lines"] if line["category"] == "serving"]
    assert serving["monthly_min"] == round((0.5 + 1 * default_prices.MEMORY_GIB_HOUR) * 2 * 730, 2)
    assert cost["total"]["delta_min"] == cost["total"]["delta_max"] == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_each_cost_change(case: str, workdir: Path, capsys, update_golden: bool):
    ml_before, prod_before, ml_after, prod_after, expected = CASES[case]
    _project(workdir, ml_before, prod_before)
    assert cli("apply", "-C", "project", "--out", "out") == 0
    _project(workdir, ml_after, prod_after)
    for fmt, suffix in FORMATS.items():
        out = _plan(capsys, fmt)
        check_snapshot(SNAPSHOTS / f"{case}.{suffix}", out, update_golden)
    plan = json.loads(out)
    validate_against_documented_schema(plan)
    total = plan["environments"][0]["cost"]["total"]
    assert total["delta_max"] > 0
    if expected is not None:
        assert (total["delta_min"], total["delta_max"]) == pytest.approx(expected, abs=0.011)
    markdown = _plan(capsys, "markdown")
    assert markdown.index("Cost per month") < markdown.index("| Environment | Add |")


def test_gpu_replicas_are_priced_per_gpu(workdir: Path, capsys):
    _project(workdir, _edit("    model: churn\n    hardware: cpu-small\n",
                            "    model: churn\n    hardware: gpu-l4\n", ML), PROD + L4)
    [serving] = [line for line in _cost(capsys)["lines"] if line["category"] == "serving"]
    hour = 2 * default_prices.CPU_CORE_HOUR + 8 * default_prices.MEMORY_GIB_HOUR \
        + default_prices.GPU_HOUR["NVIDIA-L4"]
    assert serving["monthly_min"] == round(hour * 2 * 730, 2)


def test_over_budget_is_refused_until_accepted(workdir: Path, capsys):
    over = _edit("maxReplicas: 4", "maxReplicas: 8", BUDGET)
    _project(workdir, ML, over)
    [env] = json.loads(_plan(capsys))["environments"]
    [risk] = [r for r in env["risks"] if r["code"] == "MLC508"]
    assert risk["blocks_apply"] and risk["subject"] == "platform.cost.monthlyBudget"
    capsys.readouterr()
    assert cli("apply", "-C", "project", "--out", "out") == 1
    assert "[MLC508]" in capsys.readouterr().err
    assert not (workdir / "out" / "prod").exists()
    _project(workdir, ML, over + "acceptedRisks:\n  - {code: MLC508, subject: "
             "platform.cost.monthlyBudget, reason: peak season}\n")
    assert cli("apply", "-C", "project", "--out", "out") == 0
    _project(workdir, ML, BUDGET)  # back within budget: nothing to accept
    [env] = json.loads(_plan(capsys))["environments"]
    assert env["risks"] == []


def test_expected_duration_past_timeout_is_refused(workdir: Path, capsys):
    _project(workdir, _edit("      hardware: cpu-small\n", "      hardware: cpu-small\n"
                            "      timeout: 1h\n      expectedDuration: 2h\n", ML), PROD)
    assert cli("validate", "-C", "project") == 1
    assert "MLC509" in capsys.readouterr().err


def test_mig_slices_and_spot():
    cost = {"cpu_core_hour": 0, "memory_gib_hour": 0, "gpu_hour": {"A100": 7.0},
            "spot_discount": 0.5, "job_duration_seconds": 900}
    ir = {"platform": {"cost": cost}, "hardware": {
        "mig": {"requests": {"cpu": "1", "memory": "1Gi"}, "gpu_count": 1, "gpu_type": "A100",
                "gpu_resource": "nvidia.com/mig-2g.20gb", "spot": True}},
        "endpoints": {"api": {"mode": "online", "hardware": "mig", "replicas": 1,
                              "autoscaling": {"metric": "rps", "target": 10}}}}
    result = estimate(ir)
    assert result.low == result.high == pytest.approx(7.0 * 2 / 7 * 0.5 * 730)
    assert result.per_thousand["api"] == pytest.approx(1.0 / 36000 * 1000)


_hardware = st.fixed_dictionaries({
    "requests": st.fixed_dictionaries({"cpu": st.sampled_from(["100m", "1", "2500m", "16"]),
                                       "memory": st.sampled_from(["128Mi", "1Gi", "30Gi"])}),
    "gpu_count": st.integers(0, 8), "gpu_type": st.sampled_from(["NVIDIA-L4", "unknown"]),
    "gpu_resource": st.sampled_from(["nvidia.com/gpu", "nvidia.com/mig-3g.40gb"]),
    "spot": st.booleans()})
_endpoint = st.fixed_dictionaries({
    "mode": st.sampled_from(["online", "serverless", "batch"]),
    "hardware": st.sampled_from(["a", "b"]), "replicas": st.none() | st.integers(1, 9),
    "autoscaling": st.fixed_dictionaries({"min_replicas": st.integers(0, 5),
                                          "max_replicas": st.integers(5, 50),
                                          "metric": st.sampled_from(["rps", "cpu"]),
                                          "target": st.integers(1, 500)})})
_pipeline = st.fixed_dictionaries({
    "kind": st.sampled_from(["training", "drift", "batch_scoring", "materialization"]),
    "model": st.just("m"),
    "schedule": st.sampled_from(["0 2 * * *", "*/10 * * * *", "@weekly", "0 9 * * 1-5", None]),
    "steps": st.lists(st.fixed_dictionaries({
        "kind": st.sampled_from(["train", "evaluate"]), "hardware": st.sampled_from(["a", "b"]),
        "nodes": st.integers(1, 4)}), max_size=3)})
_project_ir = st.fixed_dictionaries({
    "platform": st.just({"cost": {"cpu_core_hour": 0.032, "memory_gib_hour": 0.0043,
                                  "gpu_hour": {"NVIDIA-L4": 0.56}, "spot_discount": 0.6,
                                  "monthly_budget": None, "job_duration_seconds": 900}}),
    "hardware": st.fixed_dictionaries({"a": _hardware, "b": _hardware}),
    "endpoints": st.dictionaries(st.sampled_from(["x", "y", "z"]), _endpoint),
    "pipelines": st.dictionaries(st.sampled_from(["p", "q"]), _pipeline),
    "models": st.just({"m": {"training": {"expected_duration_seconds": 5400}}})})


@settings(max_examples=60, deadline=None)
@given(_project_ir)
def test_unchanged_project_costs_nothing_more(ir: dict):
    cost = plan_cost(copy.deepcopy(ir), ir)
    assert all(line["delta_min"] == line["delta_max"] == 0 for line in cost["lines"])
    assert cost["total"]["delta_min"] == cost["total"]["delta_max"] == 0
    assert cost["total"]["monthly_min"] <= cost["total"]["monthly_max"] or not ir["endpoints"]


GOLDEN_PROD = Path(__file__).parent / "golden" / "trees" / "example" / "prod"
ALLOCATION = {"app": "fraud-detection", "env": "prod", "team": "risk-ml"}


def _pod_templates(doc: dict) -> list[dict]:
    """The metadata of the pods a controller creates from this object."""
    spec = doc.get("spec") or {}
    if doc["kind"] in ("Deployment", "Rollout", "StatefulSet", "DaemonSet", "Job"):
        return [spec["template"]["metadata"]]
    if doc["kind"] in ("WorkflowTemplate", "CronWorkflow"):
        spec = spec.get("workflowSpec", spec)
        return [spec["podMetadata"]] if "workflowTemplateRef" not in spec else []
    return []


def test_every_object_and_pod_carries_the_cost_allocation_labels():
    seen = set()
    for path in sorted(GOLDEN_PROD.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or "kind" not in doc or "metadata" not in doc:
                continue
            seen.add(doc["kind"])
            for meta in [doc["metadata"], *_pod_templates(doc)]:
                labels = meta.get("labels") or {}
                assert ALLOCATION.items() <= labels.items(), (path.name, doc["kind"])
    assert {"Rollout", "WorkflowTemplate", "CronWorkflow"} <= seen
