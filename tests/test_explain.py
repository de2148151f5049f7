"""`mlc explain`: a key deleted by `$patch: delete` shows as deleted (with the overlay's
line), and the resolved project's names (`pipelines`) that the docs tell users to ask for
can be asked for."""

from __future__ import annotations

import json

from mlc.cli import main

from .bad_inputs import BASE
from .conftest import ROOT, write_project


def test_a_deleted_key_with_a_default_names_the_deletion(capsys):
    assert main(["explain", "-C", str(ROOT), "dev",
                 "models.fraud-classifier.training.schedule"]) == 0
    line = (ROOT / "environments" / "dev.yaml").read_text().splitlines()
    number = next(i for i, x in enumerate(line, 1) if "schedule: {$patch: delete}" in x)
    column = line[number - 1].index("{") + 1
    assert capsys.readouterr().out.split(None, 2) == [
        "models.fraud-classifier.training.schedule", "null",
        f"(deleted at environments/dev.yaml:{number}:{column}; the default)\n"]


def test_a_deleted_section_without_a_default(tmp_path, capsys):
    project = write_project(tmp_path, {
        "ml.yaml": BASE,
        "environments/dev.yaml": "platform: {development: true}\n"
                                 "monitoring:\n  drift:\n    churn-drift: {$patch: delete}\n"})
    assert main(["explain", "-C", str(project), "dev", "monitoring.drift.churn-drift"]) == 0
    assert capsys.readouterr().out.split() == [
        "monitoring.drift.churn-drift", "null", "(deleted", "at",
        "environments/dev.yaml:4:18)"]
    assert main(["explain", "-C", str(project), "dev", "monitoring.drift.churn-drift",
                 "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["value"] is None
    assert result["origins"] == {"monitoring.drift.churn-drift":
                                 "deleted at environments/dev.yaml:4:18"}
    # a key that nobody set or deleted is still an error
    assert main(["explain", "-C", str(project), "dev", "monitoring.drift.other"]) == 1
    assert "MLC016" in capsys.readouterr().err


def test_pipelines_as_the_training_contract_says(capsys):
    assert main(["explain", "-C", str(ROOT), "dev", "pipelines"]) == 0
    out = capsys.readouterr().out
    assert "pipelines.train-fraud-classifier." in out
    assert all(line.endswith("(resolved by mlc)") for line in out.splitlines())
