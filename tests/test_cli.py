"""The CLI contract other issues and CI rely on: commands, exit codes, the schema file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from mlc import __version__
from mlc.cli import main
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.load import load_yaml_file
from mlc.schema.jsonschema import schema_text

from .conftest import ROOT


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlc", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_version():
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"mlc {__version__}"


def test_usage_errors_exit_2():
    assert run("compile", "--no-such-flag").returncode == 2
    assert run().returncode == 2


def test_validate_the_example_exits_0():
    result = run("validate")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "valid: dev, prod, staging"


def test_validate_json_on_a_valid_project():
    result = run("validate", "--format", "json", "--env", "prod")
    assert result.returncode == 0
    out = json.loads(result.stdout)
    # the example's canary serves the `production` alias, which a retrain moves
    assert [d["code"] for d in out.pop("diagnostics")] == ["MLC343"]
    assert out == {"environments": ["prod"], "valid": True}


def test_internal_errors_exit_3_without_a_traceback(monkeypatch, capsys):
    import mlc.compiler.pipeline as pipeline

    def boom(*a, **k):
        raise RuntimeError("a bug")

    monkeypatch.setattr(pipeline, "check_environment", boom)
    assert main(["validate", "-C", str(ROOT)]) == 3
    err = capsys.readouterr().err
    assert "internal error" in err and "Traceback" not in err


def test_checked_in_schema_is_current():
    assert (ROOT / "ml.schema.json").read_text() == schema_text(), \
        "ml.schema.json is stale: run `mlc schema > ml.schema.json`"


def test_schema_accepts_the_example_and_its_environments():
    """Editors validate with the JSON Schema: it must agree with mlc on the example."""
    schema = json.loads(schema_text())
    diags = Diagnostics()
    doc = load_yaml_file(ROOT / "ml.yaml", "ml.yaml", diags)
    assert doc is not None
    jsonschema.validate(doc.data, schema)


def test_schema_rejects_an_unknown_key():
    schema = json.loads(schema_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"apiVersion": "mlc.dev/v1", "kind": "Project",
                             "metadata": {"name": "x"}, "modles": {}}, schema)


def test_explain_shows_value_and_origin(capsys):
    assert main(["explain", "-C", str(ROOT), "prod",
                 "serving.fraud-api.autoscaling.maxReplicas"]) == 0
    out = capsys.readouterr().out
    assert out.split() == ["serving.fraud-api.autoscaling.maxReplicas", "12",
                           "(environments/prod.yaml:30:48)"]


def test_explain_shows_defaults(capsys):
    assert main(["explain", "-C", str(ROOT), "dev", "serving.fraud-api.slo.window"]) == 0
    assert capsys.readouterr().out.split() == ["serving.fraud-api.slo.window", '"30d"',
                                               "(default)"]


def test_explain_names_the_layer_that_deleted_nothing_and_the_base(capsys):
    assert main(["explain", "-C", str(ROOT), "staging", "serving.fraud-api.model",
                 "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["value"] == "fraud-classifier"
    assert result["origins"]["serving.fraud-api.model"].startswith("ml.yaml:")


def test_explain_unknown_path_suggests(capsys):
    assert main(["explain", "-C", str(ROOT), "prod", "serving.fraud-api.autoscalling"]) == 1
    err = capsys.readouterr().err
    assert "MLC016" in err and "did you mean `autoscaling`?" in err


def test_every_diagnostic_code_is_documented():
    import re

    used = set()
    for path in (ROOT / "mlc").rglob("*.py"):
        used |= set(re.findall(r'"(MLC\d{3})"', path.read_text()))
    documented = set(re.findall(r"^## (MLC\d{3}):", (ROOT / "docs" / "diagnostics.md")
                                .read_text(), re.M))
    assert used - documented == set(), "document these codes in docs/diagnostics.md"
    assert documented - used == set(), "these documented codes are not used anywhere"
