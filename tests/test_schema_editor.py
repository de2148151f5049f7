"""ml.schema.json as an editor reads it: every field titled and described, and every
constrained string checked by a pattern that agrees with mlc's own validators.

The agreement is tested on a table of good and bad values, on both sides: pydantic (what
`mlc validate` runs) and the JSON Schema (Python's `jsonschema`, and node's own RegExp where
node is installed, since yaml-language-server runs the patterns in JavaScript). The few
rules a pattern cannot state are listed in GAPS, each with the side that refuses it, so a
new gap fails the test instead of slipping in.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess

import jsonschema
import pytest
from pydantic import ConfigDict, TypeAdapter, ValidationError

from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.load import load_yaml_file
from mlc.compiler.pipeline import check_environment
from mlc.schema import types as t
from mlc.schema.jsonschema import overlay_schema_text
from mlc.schema.jsonschema import schema as _schema

from .conftest import ROOT, write_project

LONG_PREFIX = ("a" * 63 + ".") * 3 + "b"  # a 193-character DNS prefix
DIGEST = "sha256:" + "a" * 64

TABLE = {
    "Name": (t.Name, ["fraud-classifier", "a", "transactions_v2", "a" * 63],
             ["Fraud", "1abc", "a-", "-a", "a" * 64, "a b", "ü", ""]),
    "FieldName": (t.FieldName, ["amount_avg_7d", "_x", "A1"], ["1a", "a-b", "a.b", ""]),
    "DnsLabel": (t.DnsLabel, ["risk-ml", "0a", "a"], ["Risk", "a_b", "-a", "a-", "a" * 64]),
    "LabelKey": (t.LabelKey, ["team", "example.com/tier", "a.b-c_d", "x" * 63,
                              LONG_PREFIX + "/x"],
                 ["/x", "Example.com/x", "a/b/c", "-x", "x" * 64,
                  LONG_PREFIX + "." + "a" * 63 + "/x"]),
    "LabelValue": (t.LabelValue, ["", "risk", "v1.2"], ["-x", "x-", "a b", "x" * 64]),
    "ProjectNamespace": (t.ProjectNamespace, ["fraud-prod", "kube", "defaults"],
                         ["default", "kube-system", "Fraud"]),
    "EnvVarName": (t.EnvVarName, ["BATCH_SIZE", "log.level", "-x", "HOME2", "MLCX", ".x"],
                   ["1X", "HOME", "MLC_X", "PET_RANK", "..x", ".", "..", "A B"]),
    "SecretKey": (t.SecretKey, ["password", "tls.crt", ".x"], ["..x", "..", ".", "a/b", ""]),
    "SourcePath": (t.SourcePath, ["data/x.parquet", "s3://bucket/x/", "x/../y", "..x"],
                   ["/abs", "~/x", "C:/x", "../x", "..\\x", ".."]),
    "Quantity": (t.Quantity, ["500m", "2", "0.5", ".5", "512Mi", "1e3", 2, 0.5],
                 ["0", "0Mi", "0.0", "1GB", "1.5.5", "-1", "1 Gi", "", 0, -1, True]),
    "MemoryQuantity": (t.MemoryQuantity, ["512Mi", "16Gi", "1Mi", 2**20, "1G"],
                       ["512m", "0Gi", "1GB", 0, 100, True]),
    "Duration": (t.Duration, ["30s", "15m", "1h30m", "7d", "500ms", "1w"],
                 ["90 days", "0s", "1y", "1.5h", "h", "", "30"]),
    "Seconds": (t.Seconds, ["90s", "1h", "1000ms", "7d", "1m30s"],
                ["500ms", "1500ms", "0s", "90", "1 h"]),
    "Cron": (t.Cron, ["0 3 * * 1", "*/15 * * * *", "@daily", "@every 1h30m", "@every 2000ms",
                      "0 0 1 jan,JUL *", "0 9 * * mon-fri", "  0 3 * * 1  ", "0 0 * * 7",
                      "59 23 31 12 6", "0005 * * * *", "0 0 ? * *", "0-30/5 * * * *"],
             ["61 3 * * 1", "0 24 * * *", "0 0 0 * *", "0 0 * 13 *", "0 0 * * 8",
              "@every 500ms", "@fortnightly", "* * * *", "*/0 * * * *", "*/61 * * * *",
              "0 0 * foo *", "1,,2 * * * *", "00005 * * * *", "0 3 * * 1 2020"]),
    "ImageRef": (t.ImageRef, ["ghcr.io/acme/trainer:1.2.0", "localhost:5000/x:1",
                              "x@" + DIGEST, "x:1@" + DIGEST],
                 ["x", "X:1", "ghcr.io/acme/trainer", "x:", "x@sha256:abc"]),
    "Percent": (t.Percent, [99.9, 50, 0.1], [0, 100, 101, -1]),
    "Fraction": (t.Fraction, [0, 1, 0.05], [-0.1, 1.1]),
}

# Rules no pattern states, and which side therefore refuses the value alone.
GAPS = {
    "SourcePath": {"a/../../x": "mlc", "./../x": "mlc"},
    "Quantity": {"99999999999Ei": "mlc"},  # magnitude: no machine has that much
    "MemoryQuantity": {"512Ki": "mlc", "100": "mlc"},  # below 1Mi
    "Duration": {"3651d": "mlc"},  # longer than ten years
    "Seconds": {"500ms500ms": "schema"},  # a sum of milliseconds that is a whole second
    "Cron": {"5-1 * * * *": "mlc", "@every 87601h": "mlc"},  # backwards; over ten years
}


schema = functools.cache(_schema)


def _mlc_accepts(annotation, value) -> bool:
    try:
        TypeAdapter(annotation, config=ConfigDict(strict=True)).validate_python(value)
    except ValidationError:
        return False
    return True


def _schema_of(annotation) -> dict:
    return TypeAdapter(annotation).json_schema()


def _schema_accepts(annotation, value) -> bool:
    return jsonschema.Draft202012Validator(_schema_of(annotation)).is_valid(value)


@pytest.mark.parametrize("name", sorted(TABLE))
def test_patterns_agree_with_mlc(name):
    annotation, good, bad = TABLE[name]
    for value in good:
        assert _mlc_accepts(annotation, value), f"{name}: mlc refuses good {value!r}"
        assert _schema_accepts(annotation, value), f"{name}: schema refuses good {value!r}"
    for value in bad:
        assert not _mlc_accepts(annotation, value), f"{name}: mlc accepts bad {value!r}"
        assert not _schema_accepts(annotation, value), f"{name}: schema accepts bad {value!r}"
    for value, refuser in GAPS.get(name, {}).items():
        assert _mlc_accepts(annotation, value) == (refuser == "schema"), (name, value)
        assert _schema_accepts(annotation, value) == (refuser == "mlc"), (name, value)


def _string_patterns() -> dict[str, str]:
    out = {}
    for name, (annotation, _, _) in TABLE.items():
        node = _schema_of(annotation)
        for branch in node.get("anyOf", [node]):
            if "pattern" in branch:
                out[name] = branch["pattern"]
    return out


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed: the "
                    "patterns are checked with Python's re only")
def test_patterns_mean_the_same_in_javascript():
    """yaml-language-server runs the patterns as JavaScript RegExps (unicode mode)."""
    patterns = _string_patterns()
    cases = []
    for name, pattern in patterns.items():
        _, good, bad = TABLE[name]
        gaps = GAPS.get(name, {})
        for value in [*good, *bad, *gaps]:
            if isinstance(value, str):
                cases.append([pattern, value, re.search(pattern, value) is not None])
    script = ("const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
              "const bad = cases.filter(([p, v, py]) => new RegExp(p, 'u').test(v) !== py);"
              "process.stdout.write(JSON.stringify(bad));")
    result = subprocess.run(["node", "-e", script], input=json.dumps(cases), text=True,
                            capture_output=True, timeout=30, check=True)
    assert json.loads(result.stdout) == []
    assert len(cases) > 150


def _properties(node, where=""):
    if isinstance(node, dict):
        for key, value in node.get("properties", {}).items():
            yield f"{where}.{key}", key, value
        for key, value in node.items():
            yield from _properties(value, f"{where}/{key}" if key != "properties" else where)
    elif isinstance(node, list):
        for item in node:
            yield from _properties(item, where)


def test_every_field_has_a_title_and_a_description():
    fields = list(_properties(schema()))
    assert len(fields) > 400
    for where, key, prop in fields:
        assert prop.get("description", "").strip(), f"{where}: no description"
        title = prop.get("title", "")
        assert title, f"{where}: no title"
        # `Maxlatencyp99` is what a title made from the camelCase key looks like
        if re.search(r"[a-z][A-Z]", key):
            assert title != key.capitalize() and " " in title, f"{where}: title {title!r}"


def test_every_constrained_string_has_examples():
    """An editor offers the examples on completion: a pattern alone reads as a riddle."""
    for where, _, prop in _properties(schema()):
        branches = prop.get("anyOf", [prop])
        if any("pattern" in b for b in branches) or "propertyNames" in prop:
            examples = prop.get("examples") or [e for b in branches for e in b.get("examples", [])]
            if "propertyNames" in prop and not any("pattern" in b for b in branches):
                examples = prop["propertyNames"].get("examples")
            assert examples, f"{where}: a pattern without examples"


def test_issue_examples_are_refused_by_the_schema():
    """The three values the schema used to let through while mlc refused them."""
    assert not _schema_accepts(t.MemoryQuantity, "1GB")
    assert not _schema_accepts(t.Cron, "61 3 * * 1")
    assert not _schema_accepts(t.Seconds, "90 days")


# ---------------------------------------------------------------------------------------
# environments/*.yaml: the overlay schema


def test_checked_in_overlay_schema_is_current():
    assert (ROOT / "ml.overlay.schema.json").read_text() == overlay_schema_text(), \
        "ml.overlay.schema.json is stale: run `mlc schema --overlay > ml.overlay.schema.json`"


@functools.cache
def _overlay_validator():
    return jsonschema.Draft202012Validator(json.loads(overlay_schema_text()))


def test_overlay_schema_accepts_the_example_environments():
    validator = _overlay_validator()
    jsonschema.Draft202012Validator.check_schema(validator.schema)
    for path in sorted((ROOT / "environments").glob("*.yaml")):
        doc = load_yaml_file(path, f"environments/{path.name}", Diagnostics())
        assert doc is not None
        errors = [f"{list(e.absolute_path)}: {e.message[:200]}"
                  for e in validator.iter_errors(doc.data)]
        assert errors == [], path.name


DELETE = {"$patch": "delete"}
OVERLAYS_ACCEPTED = [
    {"models": {"fraud-classifier": {"training": {"schedule": DELETE}}}},
    {"serving": {"fraud-api": DELETE}},
    {"metadata": {"labels": {"cost-center": DELETE}}},
    {"hardware": {"small": {"cpu": "1", "memory": "2Gi"}}},
    {"platform": {"mlflow": {"$patch": "replace", "trackingUri": "http://mlflow:5000"}}},
    {"sources": {"transactions": {"path": "data/other.parquet"}}},  # no `type`: merged
    {"apiVersion": "mlc.dev/v1", "kind": "Project"},
    {"$patch": "replace"},
]
OVERLAYS_REFUSED = [
    DELETE,  # an overlay cannot delete the whole project (MLC011)
    {"platform": {"$patch": "remove"}},
    {"modles": {}},
    {"platform": {"$schema": "x"}},
    {"models": {"fraud-classifier": {"training": {"schedule": "61 3 * * 1"}}}},
    {"hardware": {"small": {"memory": "1GB"}}},
    {"serving": {"fraud-api": {"slo": {"window": "90 days"}}}},
    {"models": {"Fraud Classifier": {}}},
]


@pytest.mark.parametrize("overlay", OVERLAYS_ACCEPTED, ids=lambda o: json.dumps(o)[:60])
def test_overlay_schema_accepts(overlay):
    errors = [e.message[:200] for e in _overlay_validator().iter_errors(overlay)]
    assert errors == []


@pytest.mark.parametrize("overlay", OVERLAYS_REFUSED, ids=lambda o: json.dumps(o)[:60])
def test_overlay_schema_refuses(overlay):
    assert not _overlay_validator().is_valid(overlay)


def test_what_the_overlay_schema_accepts_mlc_merges(tmp_path):
    """A deletion the editor lets through is one `mlc validate` takes too."""
    shutil.copy(ROOT / "ml.yaml", tmp_path / "ml.yaml")
    shutil.copytree(ROOT / "data", tmp_path / "data")
    overlay = ("platform: {development: true, imagePolicy: tag}\n"
               "models:\n  fraud-classifier:\n    training:\n      schedule: {$patch: delete}\n"
               "metadata:\n  labels:\n    cost-center: {$patch: delete}\n")
    write_project(tmp_path, {"environments/dev.yaml": overlay})
    data = load_yaml_file(tmp_path / "environments/dev.yaml", "environments/dev.yaml",
                          Diagnostics()).data
    assert _overlay_validator().is_valid(data)
    diags = Diagnostics()
    resolved = check_environment(tmp_path, "dev", diags)
    assert resolved is not None, [d.message for d in diags.sorted()]
    assert not diags.has_errors()


def test_vscode_settings_map_both_schemas():
    settings = json.loads((ROOT / ".vscode" / "settings.json").read_text())
    schemas = settings["yaml.schemas"]
    assert schemas == {"./ml.schema.json": ["ml.yaml"],
                       "./ml.overlay.schema.json": ["environments/*.yaml"]}
    for target, globs in schemas.items():
        assert (ROOT / target).is_file()
        assert all(list(ROOT.glob(g)) for g in globs)
    for path in (ROOT / "environments").glob("*.yaml"):
        first = path.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=../ml.overlay.schema.json", path.name
