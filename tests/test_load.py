"""Loading user YAML: values, source spans, and every refusal with its exact position."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlc.compiler.diagnostics import Diagnostics, Severity, Span
from mlc.compiler.load import (
    MAX_ALIASED_NODES,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_NODES,
    Document,
    load_yaml_file,
    load_yaml_text,
)

PLAIN_TYPES = (dict, list, str, int, float, bool, type(None))


def load(tmp_path: Path, text: str | bytes, name: str = "ml.yaml") -> tuple[Document | None,
                                                                            Diagnostics]:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    diags = Diagnostics()
    return load_yaml_file(path, name, diags), diags


def where(diags: Diagnostics) -> list[tuple[str, str]]:
    return [(d.code, str(d.span)) for d in diags]


def assert_plain(value: object) -> None:
    assert type(value) in PLAIN_TYPES, type(value)
    if isinstance(value, dict):
        for key, child in value.items():
            assert type(key) is str
            assert_plain(child)
    elif isinstance(value, list):
        for child in value:
            assert_plain(child)


# ---------------------------------------------------------------------------------------
# Values


def test_yaml_12_scalars(tmp_path):
    doc, diags = load(tmp_path, """\
a: no
b: yes
c: on
d: off
e: y
f: true
g: False
h: 1e-4
i: 1.0e3
j: 0x1F
k: 0o17
l: 017
m: ~
n: null
o:
p: 2024-01-01
q: 2024-01-01T10:00:00Z
r: ".inf"
s: '-.Inf'
t: "123"
u: '1e3'
v: !!str 12
w: !!float 3
x: 12
y: -3.5
z: 1_000
""")
    # the values YAML 1.1 reads otherwise are kept, with a warning each (MLC385)
    assert not diags.errors
    assert [(d.code, d.span.line) for d in diags.warnings] == [
        ("MLC385", line) for line in (1, 2, 3, 4, 5, 8, 9, 11, 12, 14, 16, 17, 25, 26)]
    assert doc is not None
    assert doc.data == {
        "a": "no", "b": "yes", "c": "on", "d": "off", "e": "y", "f": True, "g": False,
        "h": 1e-4, "i": 1000.0, "j": 31, "k": 15, "l": 17, "m": None, "n": None, "o": None,
        "p": "2024-01-01", "q": "2024-01-01T10:00:00Z", "r": ".inf",
        "s": "-.Inf", "t": "123", "u": "1e3", "v": "12", "w": 3.0, "x": 12, "y": -3.5,
        "z": "1_000",
    }
    assert type(doc.data["h"]) is float and type(doc.data["w"]) is float
    assert type(doc.data["x"]) is int
    assert_plain(doc.data)


@pytest.mark.parametrize("text", [".nan", ".NaN", ".inf", "-.Inf", "+.INF", "1e400", "-1e400",
                                  "!!float .nan", "!!float 1e999"])
def test_non_finite_numbers_are_refused(tmp_path, text):
    # NaN compares false with everything: a `min: .nan` gate would always pass
    doc, diags = load(tmp_path, f"x: 1\na: {text}\n")
    assert doc is None
    assert where(diags) == [("MLC020", "ml.yaml:2:4")]


@pytest.mark.parametrize("text", [str(2**63), str(-(2**63) - 1), "0x" + "f" * 17, "9" * 5000])
def test_integers_beyond_64_bits_are_refused(tmp_path, text):
    doc, diags = load(tmp_path, f"a: {text}\n")
    assert doc is None
    assert where(diags) == [("MLC021", "ml.yaml:1:4")]


def test_64_bit_integers_load(tmp_path):
    doc, diags = load(tmp_path, f"a: {2**63 - 1}\nb: {-(2**63)}\n")
    assert not diags.items and doc is not None
    assert doc.data == {"a": 2**63 - 1, "b": -(2**63)}


def test_block_scalars_and_key_order(tmp_path):
    text = "z: |\n  line one\n  line two\na: >\n  folded\n  text\nm: [1, {k: v}]\n"
    doc, diags = load(tmp_path, text)
    assert not diags.items and doc is not None
    assert list(doc.data) == ["z", "a", "m"]
    assert doc.data == {"z": "line one\nline two\n", "a": "folded text\n", "m": [1, {"k": "v"}]}
    assert_plain(doc.data)


def test_utf8_bom_is_ignored(tmp_path):
    doc, diags = load(tmp_path, b"\xef\xbb\xbfa: 1\n")
    assert not diags.items and doc is not None
    assert doc.data == {"a": 1}
    assert doc.spans[("a",)] == Span("ml.yaml", 1, 4, 5)


# ---------------------------------------------------------------------------------------
# Spans


def test_spans_for_values_and_keys(tmp_path):
    doc, _ = load(tmp_path, """\
name: demo
training:
  epochs: 10
  layers:
    - size: 64
    - "quoted"
""")
    assert doc is not None
    assert doc.spans[()] == Span("ml.yaml", 1, 1, 2)
    assert doc.spans[("name",)] == Span("ml.yaml", 1, 7, 11)
    assert doc.spans[("training", "epochs")] == Span("ml.yaml", 3, 11, 13)
    assert doc.spans[("training", "layers", 0, "size")] == Span("ml.yaml", 5, 13, 15)
    assert doc.spans[("training", "layers", 1)] == Span("ml.yaml", 6, 7, 15)
    assert doc.key_spans[("training", "epochs")] == Span("ml.yaml", 3, 3, 9)
    assert doc.key_spans[("training",)] == Span("ml.yaml", 2, 1, 9)
    assert ("training", "layers", 0) not in doc.key_spans


def test_span_for_falls_back_to_the_deepest_existing_parent(tmp_path):
    doc, _ = load(tmp_path, "training:\n  epochs: 10\n")
    assert doc is not None
    assert doc.span_for(("training", "epochs")) == Span("ml.yaml", 2, 11, 13)
    assert doc.span_for(("training", "missing", 3)) == doc.spans[("training",)]
    assert doc.span_for(("nothing",)) == doc.spans[()]
    assert Document("x.yaml", {}, {}, {}).span_for(("a",)) is None


def test_multiline_scalar_span_is_one_column_wide(tmp_path):
    doc, _ = load(tmp_path, "a: |\n  x\n  y\n")
    assert doc is not None
    assert doc.spans[("a",)] == Span("ml.yaml", 1, 4, 5)


# ---------------------------------------------------------------------------------------
# Aliases


def test_anchor_reused_twice_is_accepted(tmp_path):
    doc, diags = load(tmp_path, """\
defaults: &defaults
  cpu: 2
  env: [a, b]
train: *defaults
serve: *defaults
""")
    assert not diags.items and doc is not None
    assert doc.data["train"] == doc.data["serve"] == {"cpu": 2, "env": ["a", "b"]}
    # copies, not shared objects: a later pass may change one without touching the others
    assert doc.data["train"] is not doc.data["serve"]
    assert doc.data["train"]["env"] is not doc.data["defaults"]["env"]
    # the alias itself points where it is used; its insides where they are written
    assert doc.spans[("train",)] == Span("ml.yaml", 4, 8, 17)
    assert doc.spans[("serve", "cpu")] == Span("ml.yaml", 2, 8, 9)
    assert doc.spans[("serve", "env", 1)] == Span("ml.yaml", 3, 12, 13)
    assert doc.key_spans[("serve", "env")] == Span("ml.yaml", 3, 3, 6)


def test_scalar_alias(tmp_path):
    doc, diags = load(tmp_path, "image: &img repo/app:1\nserve: *img\n")
    assert not diags.items and doc is not None
    assert doc.data == {"image": "repo/app:1", "serve": "repo/app:1"}


def test_alias_bomb_is_refused_quickly(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 9):
        name, prev = chr(ord("a") + level), chr(ord("a") + level - 1)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    start = time.perf_counter()
    doc, diags = load(tmp_path, "\n".join(lines) + "\n")
    elapsed = time.perf_counter() - start
    assert doc is None
    assert [d.code for d in diags] == ["MLC006"]
    assert str(MAX_ALIASED_NODES) in diags.items[0].message
    assert elapsed < 1.0


def test_recursive_alias_is_refused(tmp_path):
    doc, diags = load(tmp_path, "a: &x [1, *x]\n")
    assert doc is None
    assert where(diags) == [("MLC006", "ml.yaml:1:11")]


def test_unknown_alias(tmp_path):
    doc, diags = load(tmp_path, "a: *nope\n")
    assert doc is None
    assert where(diags) == [("MLC002", "ml.yaml:1:4")]


# ---------------------------------------------------------------------------------------
# Refusals, one per code, with exact positions


def test_mlc001_missing_file(tmp_path):
    diags = Diagnostics()
    assert load_yaml_file(tmp_path / "nope.yaml", "nope.yaml", diags) is None
    assert where(diags) == [("MLC001", "nope.yaml")]
    assert "not found" in diags.items[0].message


def test_mlc001_directory(tmp_path):
    diags = Diagnostics()
    assert load_yaml_file(tmp_path, "environments", diags) is None
    assert [d.code for d in diags] == ["MLC018"]


def test_mlc001_not_utf8(tmp_path):
    doc, diags = load(tmp_path, b"a: 1\nb: caf\xe9\n")
    assert doc is None
    assert where(diags) == [("MLC001", "ml.yaml:2:7")]
    assert "UTF-8" in diags.items[0].message


@pytest.mark.parametrize(("text", "position", "problem"), [
    ("a: b\n  c: d\n", "ml.yaml:2:4", "mapping values are not allowed here"),
    ("a: [1, 2\nb: 3\n", "ml.yaml:2:2", "expected ',' or ']'"),
    ("a: 'open\n", "ml.yaml:2:1", "found unexpected end of stream"),
    ("a: b\n\tc: d\n", "ml.yaml:2:1", "found character '\\t' that cannot start any token"),
])
def test_mlc002_syntax_error(tmp_path, text, position, problem):
    doc, diags = load(tmp_path, text)
    assert doc is None
    assert where(diags) == [("MLC002", position)]
    assert problem in diags.items[0].message


def test_mlc002_control_character(tmp_path):
    doc, diags = load(tmp_path, "a: 1\nb: x\x07y\n")
    assert doc is None
    assert where(diags) == [("MLC002", "ml.yaml:2:5")]


def test_mlc003_duplicate_key(tmp_path):
    doc, diags = load(tmp_path, "a: 1\nb:\n  x: 1\n  x: 2\na: 3\n")
    assert doc is None
    assert where(diags) == [("MLC003", "ml.yaml:4:3"), ("MLC003", "ml.yaml:5:1")]
    assert diags.items[0].notes == ("`x` is first defined at line 3",)
    assert diags.items[1].notes == ("`a` is first defined at line 1",)


def test_same_key_in_different_mappings_is_fine(tmp_path):
    doc, diags = load(tmp_path, "a: {x: 1}\nb: {x: 2}\nc: [{x: 1}, {x: 2}]\n")
    assert not diags.items and doc is not None


def test_mlc004_file_too_large(tmp_path):
    text = "a: " + "x" * MAX_FILE_BYTES + "\n"
    start = time.perf_counter()
    doc, diags = load(tmp_path, text)
    assert doc is None
    assert where(diags) == [("MLC004", "ml.yaml")]
    assert time.perf_counter() - start < 1.0
    diags = Diagnostics()
    assert load_yaml_text(text, "ml.yaml", diags) is None
    assert [d.code for d in diags] == ["MLC004"]


@pytest.mark.parametrize("text", [
    "[" * 100_000,
    "a: {" * 100_000,
    "- " * 100_000 + "x\n",
    "a: [" * 100_000,
    "{a: " * 100_000,
])
def test_mlc005_deep_nesting_is_refused_quickly(tmp_path, text):
    start = time.perf_counter()
    doc, diags = load(tmp_path, text)  # a RecursionError here would fail the test
    assert doc is None
    assert [d.code for d in diags] == ["MLC005"]
    assert time.perf_counter() - start < 1.0


def test_mlc005_boundary(tmp_path):
    # the top-level mapping is level 1
    ok = "a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n"
    doc, diags = load(tmp_path, ok)
    assert not diags.items and doc is not None
    deep = "a: " + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "\n"
    doc, diags = load(tmp_path, deep)
    assert doc is None
    assert where(diags) == [("MLC005", f"ml.yaml:1:{3 + MAX_DEPTH}")]


def test_mlc005_block_nesting(tmp_path):
    text = "".join("  " * i + f"k{i}:\n" for i in range(MAX_DEPTH + 1)) + "  " * 65 + "v: 1\n"
    doc, diags = load(tmp_path, text)
    assert doc is None
    assert where(diags) == [("MLC005", f"ml.yaml:{MAX_DEPTH + 1}:{2 * MAX_DEPTH + 1}")]


@pytest.mark.parametrize(("text", "position", "found"), [
    ("", "ml.yaml:1:1", "empty"),
    ("# only a comment\n", "ml.yaml:1:1", "empty"),
    ("---\n", "ml.yaml:1:1", "empty"),
    ("- a\n- b\n", "ml.yaml:1:1", "a list"),
    ("\n\njust text\n", "ml.yaml:3:1", "a string"),
    ("a: 1\n---\nb: 2\n", "ml.yaml:2:1", "more than one YAML document"),
])
def test_mlc007_top_level_must_be_one_mapping(tmp_path, text, position, found):
    doc, diags = load(tmp_path, text)
    assert doc is None
    assert where(diags) == [("MLC007", position)]
    assert found in diags.items[0].message


@pytest.mark.parametrize(("text", "position"), [
    ("1: x\n", "ml.yaml:1:1"),
    ("a: 1\n? [a]\n: z\n", "ml.yaml:2:3"),
    ("a:\n  null: x\n", "ml.yaml:2:3"),
    ("{true: x}\n", "ml.yaml:1:2"),
    ("a: {{b: 1}: 2}\n", "ml.yaml:1:5"),
])
def test_mlc008_keys_must_be_strings(tmp_path, text, position):
    doc, diags = load(tmp_path, text)
    assert doc is None
    assert where(diags) == [("MLC008", position)]


def test_quoted_number_key_is_a_string(tmp_path):
    doc, diags = load(tmp_path, '"1": x\n')
    assert not diags.items and doc is not None
    assert doc.data == {"1": "x"}


@pytest.mark.parametrize(("text", "position", "tag"), [
    ("a: !!binary aGVsbG8=\n", "ml.yaml:1:4", "!!binary"),
    ("a: 1\nb: !custom x\n", "ml.yaml:2:4", "!custom"),
    ("a: !!set {x}\n", "ml.yaml:1:4", "!!set"),
    ("a: !!timestamp 2024-01-01\n", "ml.yaml:1:4", "!!timestamp"),
    ("a: !!python/object:os.system x\n", "ml.yaml:1:4", "!!python/object:os.system"),
])
def test_mlc009_unsupported_tags(tmp_path, text, position, tag):
    doc, diags = load(tmp_path, text)
    assert doc is None
    assert where(diags) == [("MLC009", position)]
    assert f"`{tag}`" in diags.items[0].message


def test_mlc009_tag_value_mismatch(tmp_path):
    doc, diags = load(tmp_path, "a: !!int abc\n")
    assert doc is None
    assert where(diags) == [("MLC009", "ml.yaml:1:4")]


def test_mlc010_merge_keys_are_refused(tmp_path):
    doc, diags = load(tmp_path, "base: &b {x: 1}\nother:\n  <<: *b\n  z: 2\n")
    assert doc is None
    assert where(diags) == [("MLC010", "ml.yaml:3:3")]
    assert "environments/" in (diags.items[0].help or "")


def test_mlc002_unsupported_yaml_version(tmp_path):
    doc, diags = load(tmp_path, "%YAML 1.3\n---\na: 1\n")
    assert doc is None
    assert where(diags) == [("MLC002", "ml.yaml:1:1")]
    assert "1.3" in diags.items[0].message


def test_alias_as_key(tmp_path):
    doc, diags = load(tmp_path, "a: &k b\n*k : 3\n")
    assert not diags.items and doc is not None
    assert doc.data == {"a": "b", "b": 3}


@pytest.mark.parametrize(("text", "expected"), [
    ("*nope : 1\n", [("MLC002", "ml.yaml:1:1")]),
    ("!!int abc: 1\n", [("MLC009", "ml.yaml:1:1")]),
    ("a: &m {x: 1}\n*m : 2\n", [("MLC008", "ml.yaml:2:1")]),
    ("a: 1" + "0" * 5000 + "\n", [("MLC021", "ml.yaml:1:4")]),
])
def test_one_diagnostic_per_problem(tmp_path, text, expected):
    doc, diags = load(tmp_path, text)
    assert doc is None
    assert where(diags) == expected


def test_quoted_merge_key_is_an_ordinary_key(tmp_path):
    doc, diags = load(tmp_path, '"<<": x\n')
    assert not diags.items and doc is not None


def test_several_problems_are_reported_together(tmp_path):
    doc, diags = load(tmp_path, "a: 1\na: 2\n1: x\nb: !!binary eA==\n")
    assert doc is None
    assert where(diags) == [("MLC003", "ml.yaml:2:1"), ("MLC008", "ml.yaml:3:1"),
                            ("MLC009", "ml.yaml:4:4")]
    assert all(d.severity is Severity.ERROR for d in diags)


# ---------------------------------------------------------------------------------------
# Fuzzing: no input escapes as an exception


def check_never_raises(text: str) -> None:
    diags = Diagnostics()
    doc = load_yaml_text(text, "fuzz.yaml", diags)
    if doc is None:
        assert diags.has_errors()
    else:
        assert not diags.has_errors()
        assert isinstance(doc.data, dict)
        assert_plain(doc.data)
        assert all(isinstance(s, Span) and s.line >= 1 for s in doc.spans.values())
    assert not any("internal error" in d.message for d in diags)


YAML_TOKENS = [*"ab1.-:,?[]{}&*!|>'\"#%@`~<\n\t \\", "- ", ": ", "&a ", "*a", "!!str ",
               "!!binary ", "<<", "---\n", "...\n", "  ", "0x1F", "1e-4", "no", "null",
               "\ufeff", "\x00", "\u2028", "\r\n", "%YAML 1.1\n", "%YAML 1.3\n", "? ", "!<tag:x> "]
YAMLISH = st.lists(st.sampled_from(YAML_TOKENS), max_size=60).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_fuzz_arbitrary_text(text):
    check_never_raises(text)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(YAMLISH)
def test_fuzz_yaml_like_text(text):
    check_never_raises(text)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_bytes_from_file(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("fuzz") / "f.yaml"
    path.write_bytes(raw)
    diags = Diagnostics()
    doc = load_yaml_file(path, "f.yaml", diags)
    assert (doc is None) == diags.has_errors()


def test_the_same_bytes_are_composed_once_and_each_caller_gets_its_own_copy(tmp_path):
    text = "a: {b: [1, 2, {c: x}]}\nd: text\n"
    first, _ = load(tmp_path, text)
    second, diags = load(tmp_path, text)
    assert not diags.items and first.data == second.data and first.spans == second.spans
    first.data["a"]["b"][2]["c"] = "changed"  # later passes may change what they were given
    assert second.data["a"]["b"][2]["c"] == "x"
    third, _ = load(tmp_path, text)
    assert third.data["a"]["b"][2]["c"] == "x"
    edited, _ = load(tmp_path, text.replace("text", "other"))
    assert edited.data["d"] == "other"


def test_a_file_with_problems_reports_them_on_every_load(tmp_path):
    for _ in range(2):
        doc, diags = load(tmp_path, "a: 1\na: 2\n")
        assert doc is None and [d.code for d in diags] == ["MLC003"]


def test_a_thousand_model_project_fits_the_bounds():
    # the benchmark's platform project: the size and node bounds must not be its ceiling
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_compile", Path(__file__).parent.parent / "bench" / "bench_compile.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert len(bench.project_text(1000).encode()) * 2 < MAX_FILE_BYTES
    diags = Diagnostics()
    ten = load_yaml_text(bench.project_text(10), "ml.yaml", diags)
    assert ten is not None and not diags.items
    per_model = len(ten.spans) / 10
    assert per_model * 1000 * 2 < MAX_NODES
