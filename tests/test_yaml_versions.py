"""MLC385: plain scalars that YAML 1.1 reads differently from YAML 1.2, checked against a
real YAML 1.1 reader (PyYAML) and mlc's own YAML 1.2 loader."""

from __future__ import annotations

import datetime

import pytest
import yaml

from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.load import load_yaml_text
from mlc.compiler.yaml_versions import read_11, same_in_both

DIFFERENT = ["no", "yes", "on", "off", "No", "OFF", "1e-3", "1e3", "1.0e3", "1E-7", "0o17",
             "017", "08", "-017", "1:30", "-1:30", "1:30.5", "1_000", "0b101", "+0x1F",
             "2024-01-01", "2024-01-01 10:00:00", "2024-01-01T10:00:00Z"]
SAME = ["true", "False", "null", "~", "", "0.001", "1.0e-10", "1.0e+3", "15", "0", "-0",
        "0x1F", "1.", ".5", "-2.5", "1.4.0", "v1", "500m", "1Gi", "0 3 * * 1", "a:b",
        "12:345"]


def _pyyaml(text: str):
    return yaml.safe_load(f"v: {text}\n")["v"]


def _mlc(text: str, diags: Diagnostics | None = None):
    doc = load_yaml_text(f"v: {text}\n", "ml.yaml", Diagnostics() if diags is None else diags)
    return doc.data["v"]


@pytest.mark.parametrize("text", DIFFERENT + SAME)
def test_the_yaml_11_reading_is_pyyamls(text):
    expected = _pyyaml(text)
    got = read_11(text)
    if isinstance(expected, (datetime.date, datetime.datetime)):
        assert isinstance(got, str) and got == text  # a timestamp, kept as its text
    else:
        assert type(got) is type(expected) and got == expected, (text, got, expected)


def test_y_and_n_are_booleans_to_go_yaml_v2_only():
    assert _pyyaml("y") == "y" and read_11("y") is True and read_11("N") is False


@pytest.mark.parametrize("text", DIFFERENT + ["y", "n"])
def test_a_scalar_read_differently_is_warned_about_where_it_is(text):
    diags = Diagnostics()
    doc = load_yaml_text(f"a: 1\nkey: {text}\n", "ml.yaml", diags)
    assert doc is not None
    [warning] = diags.warnings
    assert warning.code == "MLC385" and not diags.errors
    assert (warning.span.line, warning.span.column) == (2, 6)
    assert f"`{text}`" in warning.message and "YAML 1.1" in warning.message
    assert warning.help


@pytest.mark.parametrize("text", SAME)
def test_a_scalar_read_alike_is_not(text):
    diags = Diagnostics()
    load_yaml_text(f"key: {text}\n", "ml.yaml", diags)
    assert diags.items == []


@pytest.mark.parametrize("text", ["'yes'", '"1e-3"', "!!str 017", "!!float 1"])
def test_quoted_and_tagged_scalars_are_not_linted(text):
    diags = Diagnostics()
    load_yaml_text(f"key: {text}\n", "ml.yaml", diags)
    assert diags.items == []


def test_keys_are_linted_too():
    diags = Diagnostics()
    doc = load_yaml_text("on: 1\nn: 2\n", "ml.yaml", diags)
    assert [d.code for d in diags.warnings] == ["MLC385", "MLC385"]
    assert doc.data == {"on": 1, "n": 2}  # a warning keeps the key


@pytest.mark.parametrize("text", ["1e-3", "1e3", "1E-7", "1e-10", "2.5e300", "1.0e3", "0o17",
                                  "017", "08"])
def test_the_suggested_spelling_reads_the_same_in_both(text):
    diags = Diagnostics()
    value = _mlc(text, diags)
    [warning] = diags.warnings
    suggestion = warning.help.split("`")[1]
    assert _pyyaml(suggestion) == value and _mlc(suggestion) == value
    assert type(_pyyaml(suggestion)) is type(value)
    if isinstance(value, float):
        assert suggestion == same_in_both(value)


def test_the_example_reads_the_same_in_both():
    from .conftest import ROOT

    for path in [ROOT / "ml.yaml", *sorted((ROOT / "environments").glob("*.yaml"))]:
        diags = Diagnostics()
        doc = load_yaml_text(path.read_text(), path.name, diags)
        assert [d for d in diags.items if d.code == "MLC385"] == [], path.name
        assert yaml.safe_load(path.read_text()) == doc.data, path.name
