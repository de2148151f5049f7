"""`--format github` and `--format sarif` for validate and plan: every diagnostic at its
file:line:col (the same places the text format names), every plan risk at the project file,
escaped as GitHub's workflow commands require, and SARIF 2.1.0's required structure."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import jsonschema
import pytest

from mlc.cli import main
from mlc.compiler.report.findings import Finding
from mlc.compiler.report.github import annotation, escape_data, escape_property

from .bad_inputs import BASE, edit
from .conftest import write_project

# Two independent mistakes: both must be reported in one run.
BROKEN = edit("    cpu: 500m\n", "    cpu: 500 m\n",
              edit("    memory: 1Gi\n", "    memory: 1GB\n"))

# What SARIF 2.1.0 requires of a log, a run, a result, a location and a rule (the OASIS
# standard's sections 3.13, 3.14, 3.19, 3.27, 3.28-3.30, 3.49), written out for this test.
_MESSAGE = {"type": "object", "required": ["text"],
            "properties": {"text": {"type": "string", "minLength": 1}}}
_POSITIVE = {"type": "integer", "minimum": 1}
_REGION = {"type": "object", "required": ["startLine"],
           "properties": {"startLine": _POSITIVE, "startColumn": _POSITIVE,
                          "endColumn": _POSITIVE}}
_PHYSICAL = {"type": "object", "required": ["artifactLocation"], "properties": {
    "artifactLocation": {"type": "object", "required": ["uri"],
                         "properties": {"uri": {"type": "string", "minLength": 1}}},
    "region": _REGION}}
_RESULT = {"type": "object", "required": ["message"], "properties": {
    "ruleId": {"type": "string"},
    "ruleIndex": {"type": "integer", "minimum": -1},
    "level": {"enum": ["none", "note", "warning", "error"]},
    "message": _MESSAGE,
    "locations": {"type": "array", "items": {"type": "object",
                                             "properties": {"physicalLocation": _PHYSICAL}}}}}
_RULE = {"type": "object", "required": ["id"],
         "properties": {"id": {"type": "string"}, "shortDescription": _MESSAGE,
                        "help": _MESSAGE}}
_DRIVER = {"type": "object", "required": ["name"],
           "properties": {"name": {"type": "string", "minLength": 1},
                          "version": {"type": "string"},
                          "rules": {"type": "array", "items": _RULE}}}
_RUN = {"type": "object", "required": ["tool"], "properties": {
    "tool": {"type": "object", "required": ["driver"], "properties": {"driver": _DRIVER}},
    "columnKind": {"enum": ["utf16CodeUnits", "unicodeCodePoints"]},
    "results": {"type": "array", "items": _RESULT}}}
SARIF_REQUIRED = {"type": "object", "required": ["version", "runs"], "properties": {
    "version": {"const": "2.1.0"},
    "$schema": {"type": "string", "pattern": "^https://"},
    "runs": {"type": "array", "minItems": 1, "items": _RUN}}}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def _json_places(capsys, project: str) -> set[tuple[str, int, int, str]]:
    code, out, _ = _run(capsys, "validate", "-C", project, "--format", "json")
    return {(d["file"], d["line"], d["column"], d["code"])
            for d in json.loads(out)["diagnostics"]}


ANNOTATION = re.compile(r"::(error|warning|notice) file=([^,]+),line=(\d+),col=(\d+)"
                        r"(,endColumn=\d+)?,title=(MLC\d{3})::(.*)")


def test_github_annotations_at_each_diagnostic(workdir, capsys):
    write_project(workdir / "project", {"ml.yaml": BROKEN})
    code, out, err = _run(capsys, "validate", "-C", "project", "--format", "github")
    assert code == 1 and err == ""
    lines = out.splitlines()
    found = set()
    for line in lines:
        m = ANNOTATION.fullmatch(line)
        assert m, line
        found.add((m.group(2), int(m.group(3)), int(m.group(4)), m.group(6)))
    # the project lies in project/: paths as the repository names them
    expected = {(f"project/{f}", li, c, k) for f, li, c, k in _json_places(capsys, "project")}
    assert found == expected
    assert {k for *_, k in found} == {"MLC105"} and len(found) == 2  # both at once
    assert "%0Ahelp: " in out


def test_github_on_a_valid_project(workdir, capsys):
    write_project(workdir / "project", {"ml.yaml": BASE})
    code, out, _ = _run(capsys, "validate", "-C", "project", "--format", "github")
    assert code == 0
    assert out.splitlines()[-1] == "valid: default"
    assert not any(line.startswith("::error") for line in out.splitlines())


def test_github_escaping():
    f = Finding("MLC101", "error", "100% sure: a,b\r\nc", ("help: x:y",), "dir,a:b/ml.yaml",
                3, 5, 9)
    assert annotation(f) == ("::error file=dir%2Ca%3Ab/ml.yaml,line=3,col=5,endColumn=8,"
                             "title=MLC101::100%25 sure: a,b%0D%0Ac%0Ahelp: x:y")
    assert escape_data("%0A") == "%250A"  # a literal escape in the text stays literal
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"


def _sarif_checked(text: str) -> dict:
    log = json.loads(text)
    validator = jsonschema.Draft202012Validator(SARIF_REQUIRED)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(log)]
    assert errors == []
    [run] = log["runs"]
    rules = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert len(rules) == len(set(rules))
    for result in run["results"]:
        assert rules[result["ruleIndex"]] == result["ruleId"]
        for loc in result.get("locations", []):
            uri = loc["physicalLocation"]["artifactLocation"]["uri"]
            # a relative URI reference (SARIF 3.10): no scheme, escaped, forward slashes
            assert urlsplit(uri).scheme == "" and quote(unquote(uri)) == uri, uri
    return run


def test_sarif_for_validate(workdir, capsys):
    write_project(workdir / "project", {"ml.yaml": BROKEN})
    code, out, err = _run(capsys, "validate", "-C", "project", "--format", "sarif")
    assert code == 1 and err == ""
    run = _sarif_checked(out)
    places = {(loc["physicalLocation"]["artifactLocation"]["uri"],
               loc["physicalLocation"]["region"]["startLine"],
               loc["physicalLocation"]["region"]["startColumn"], r["ruleId"])
              for r in run["results"] for loc in r["locations"]}
    assert places == {(f"project/{f}", li, c, k)
                      for f, li, c, k in _json_places(capsys, "project")}
    assert {r["level"] for r in run["results"]} == {"error"}


def test_plan_risks_as_annotations_and_sarif(workdir, capsys):
    project = write_project(workdir / "project", {"ml.yaml": BASE})
    assert main(["apply", "-C", "project", "--out", "out"]) == 0
    (project / "ml.yaml").write_text(BASE.replace("platform:\n", "platform:\n  namespace: x2\n"))
    code, out, _ = _run(capsys, "plan", "-C", "project", "--out", "out", "--format", "github",
                        "--detailed-exitcode")
    assert code == 2
    lines = out.splitlines()
    risk = [x for x in lines if "title=delete-stateful" in x]
    assert risk and risk[0].startswith("::error file=project/ml.yaml,title=delete-stateful::")
    assert "apply refuses this without --allow-delete" in risk[0]
    assert lines[-1].startswith("default: Plan: ")
    code, out, _ = _run(capsys, "plan", "-C", "project", "--out", "out", "--format", "sarif")
    run = _sarif_checked(out)
    stateful = [r for r in run["results"] if r["ruleId"] == "delete-stateful"]
    assert stateful and stateful[0]["level"] == "error"
    assert stateful[0]["locations"][0]["physicalLocation"]["region"] == {"startLine": 1}


def test_plan_with_errors_reports_them_in_the_format(workdir, capsys):
    write_project(workdir / "project", {"ml.yaml": BROKEN})
    code, out, _ = _run(capsys, "plan", "-C", "project", "--out", "out", "--format", "sarif")
    assert code == 1
    run = _sarif_checked(out)
    assert {r["ruleId"] for r in run["results"]} == {"MLC105"}


def test_independent_errors_are_reported_together(workdir, capsys):
    """A bad duration does not hide a bad cron (or a bad quantity) until the next run."""
    broken = edit("      hardware: cpu-small\nserving", "      hardware: cpu-small\n"
                  "      schedule: \"61 3 * * 1\"\n      timeout: 90 days\nserving", BROKEN)
    write_project(workdir / "project", {"ml.yaml": broken})
    code, out, _ = _run(capsys, "validate", "-C", "project", "--format", "json")
    assert code == 1
    codes = sorted(d["code"] for d in json.loads(out)["diagnostics"])
    assert codes == ["MLC105", "MLC105", "MLC106", "MLC107"]
