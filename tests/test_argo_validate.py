"""`mlc validate` refuses what Argo would refuse (or run badly) later, with a source line."""

from __future__ import annotations

import pytest

from . import argo_projects as ap


def codes(tmp_path, *patches) -> dict[str, list[str]]:
    _, diags = ap.check(tmp_path, ap.project(*patches))
    out: dict[str, list[str]] = {}
    for d in diags.items:
        out.setdefault(d.code, []).append(f"{d.severity.value}: {d.dotted_path}")
    return out


def test_the_base_project_is_clean(tmp_path):
    assert codes(tmp_path) == {}


@pytest.mark.parametrize("schedule", ["0 3 * * 7", "0 3 * * 5-7", "0 3 * * 1,7/2"])
def test_sunday_as_seven_is_refused(tmp_path, schedule):
    found = codes(tmp_path, {"models": {"churn": {"training": {"schedule": schedule}}}})
    assert found == {"MLC324": ["error: models.churn.training.schedule"]}


def test_cron_checks_cover_every_schedule(tmp_path):
    found = codes(tmp_path, {
        "features": {"user_stats": {"materialization": {"schedule": "0 0 * * 7"}}},
        "monitoring": {"drift": {"churn-drift": {"schedule": "*/5 * * * 7"}}}})
    assert sorted(found["MLC324"]) == [
        "error: features.user_stats.materialization.schedule",
        "error: monitoring.drift.churn-drift.schedule"]


def test_schedules_argo_accepts_pass(tmp_path):
    assert codes(tmp_path, {"models": {"churn": {"training": {
        "schedule": "@weekly", "timezone": "America/New_York"}}}}) == {}
    assert codes(tmp_path, {"models": {"churn": {"training": {"schedule": "0 3 * * sun"}}}}) == {}


def test_unknown_time_zone(tmp_path):
    found = codes(tmp_path, {"models": {"churn": {"training": {
        "schedule": "0 3 * * 1", "timezone": "Mars/Olympus"}}}})
    assert found == {"MLC323": ["error: models.churn.training.timezone"]}


@pytest.mark.parametrize("checkpoint", [
    {"path": "/checkpoints/churn"},
    {"path": "churn"},
    {"path": "ftp://host/churn"},
    {"path": "s3://bucket/churn", "volume": "ckpt"},
    {"path": "../churn", "volume": "ckpt"},
    {"path": "/abs", "volume": "ckpt"},
])
def test_checkpoint_must_be_a_bucket_or_a_folder_on_a_volume(tmp_path, checkpoint):
    found = codes(tmp_path, {"models": {"churn": {"training": {"checkpoint": checkpoint}}}})
    assert found == {"MLC320": ["error: models.churn.training.checkpoint.path"]}


@pytest.mark.parametrize("checkpoint", [{"path": "s3://bucket/churn"},
                                        {"path": "gs://bucket"},
                                        {"path": "churn/run-1", "volume": "ckpt"}])
def test_good_checkpoints(tmp_path, checkpoint):
    assert codes(tmp_path, {"models": {"churn": {"training": {"checkpoint": checkpoint}}}}) == {}


def test_distributed_training_warnings(tmp_path):
    custom = {"image": "ghcr.io/acme/trainer:1", "command": ["python", "-m", "train"]}
    found = codes(tmp_path, {"models": {"churn": {"training": {"nodes": 2, "custom": custom}}}})
    assert found == {"MLC321": ["warning: models.churn.training.nodes"],
                     "MLC322": ["warning: models.churn.training.nodes"]}
    assert codes(tmp_path, ap.DISTRIBUTED) == {}
    # the builtin trainer runs on one node: several are refused, not silently run apart
    found = codes(tmp_path, {"models": {"churn": {"training": {"nodes": 2}}}})
    assert found["MLC325"] == ["error: models.churn.training.nodes"]


def test_drift_retrain_needs_training(tmp_path):
    found = codes(tmp_path, {"models": {"churn": {"framework": "sklearn"}}})
    assert found == {"MLC301": ["error: monitoring.drift.churn-drift.onDrift.action"]}


def test_fp16_needs_a_gpu(tmp_path):
    found = codes(tmp_path, {"models": {"churn": {"training": {
        "builtin": {"mixedPrecision": "fp16"}}}}})
    assert found == {"MLC305": ["error: models.churn.training.builtin.mixedPrecision"]}
    assert codes(tmp_path, ap.GPU, {"models": {"churn": {"training": {
        "builtin": {"mixedPrecision": "fp16"}}}}}) == {}
