"""The serializer: exact bytes, YAML that every parser reads back as written, determinism."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import types

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from mlc.compiler.output import OutputFile
from mlc.compiler.render import HEADER, dump_yaml, render, render_file

HEAD = "# " + HEADER.format(source="ml.yaml + environments/prod.yaml") + "\n"

# Strings that YAML 1.1 (PyYAML, Go yaml.v2), YAML 1.2 (ruamel, yaml.v3) or Go's strconv read
# as something other than the string, or that are not plain-safe for syntactic reasons.
AMBIGUOUS = [
    "no", "No", "NO", "yes", "Yes", "on", "On", "off", "OFF", "y", "Y", "n", "N",
    "true", "True", "false", "FALSE", "null", "Null", "NULL", "~", "",
    "1e3", "1E3", "1e-3", "12e4567", "1234567", "0x1F", "0X1f", "0o17", "0O17", "017", "0b101",
    "1_000", "1_0.5", "_", "._", "-_", "+_", "._1", "1:20", "-1:20:30.5", "190:20:30",
    ".inf", "-.inf", "+.inf", ".Inf", ".NaN", ".nan", "inf", "-inf", "+Infinity", "nan", "NaN",
    "0x1p-2", "0x1.8p3", "1.", ".5", "+.5", "-0", "+12", "0", "3.14", "-2.5e+10",
    "2024-01-01", "2024-1-1", "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10 -5",
    "<<", "=", "-", "--", "---", "--- x", "...", "?", "? x", ":", ": x", "x:", "a: b", "a #b",
    "#comment", "*alias", "&anchor", "!tag", "!!str", "|", ">", "'q'", '"q"', "%YAML",
    "@at", "`tick`", " lead", "trail ", " both ", "\t", "a\tb", "[a]", "{a: 1}", ",", "a,b",
    "line\nbreak", "\n", "\n\n", "\nlead", "trail\n", "trail\n\n", " lead\nline", "a\n b\n",
    "a\r\nb", "\r", "\x00", "\x07bell", "\x1b[0m", "\x7f", "\x85", "\u2028", "\u2029",
    "\ufeff", "\xa0", "\u200b", "snow\u2603man", "日本語", "emoji 😀", "\U0001F600",
    "C:\\path", 'say "hi"', "back\\slash", "#", " #", "a#b", "100%", "key=value", "-flag",
    "--flag=1", "http://x.y/z?q=1#frag", "image:tag", "sha256:abc", "a  b", "x" * 300,
]


def round_trip_both(text: str) -> tuple[list, list]:
    pyyaml = list(yaml.safe_load_all(text))
    ruamel = list(YAML(typ="safe", pure=True).load_all(text))
    return pyyaml, ruamel


def same(a, b) -> bool:
    """Equality that also tells True from 1, 1.0 from 1 and -0.0 from 0.0."""
    if isinstance(a, dict):
        return (isinstance(b, dict) and a.keys() == b.keys()
                and all(same(a[k], b[k]) for k in a))
    if isinstance(a, (list, tuple)):
        return (isinstance(b, (list, tuple)) and len(a) == len(b)
                and all(same(x, y) for x, y in zip(a, b, strict=True)))
    if isinstance(a, float):
        if not isinstance(b, float):
            return False
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return type(a) is type(b) and a == b


def test_kubernetes_object_layout() -> None:
    doc = {
        "spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "server", "image": "ghcr.io/acme/fraud:1a2b3c4", "args": ["--port", "8080"],
             "env": [{"value": "no", "name": "FLAG"}]}]}}},
        "metadata": {"namespace": "ml", "name": "fraud", "labels": {"version": "1.0", "app": "x"}},
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "extra": {},
        "list": [],
    }
    out = render_file(OutputFile("k8s/deploy.yaml", doc, "ml.yaml + environments/prod.yaml"))
    assert out.decode() == HEAD + textwrap.dedent("""\
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: fraud
          namespace: ml
          labels:
            app: x
            version: "1.0"
        spec:
          replicas: 2
          template:
            spec:
              containers:
                - name: server
                  args:
                    - --port
                    - "8080"
                  env:
                    - name: FLAG
                      value: "no"
                  image: ghcr.io/acme/fraud:1a2b3c4
        extra: {}
        list: []
        """)


def test_scalars() -> None:
    doc = {"a": None, "b": True, "c": False, "d": 3, "e": -0.0, "f": 1e-05, "g": 1e16,
           "h": float("inf"), "i": float("-inf"), "j": 2.5, "k": 10**30}
    assert dump_yaml(doc) == textwrap.dedent("""\
        a: null
        b: true
        c: false
        d: 3
        e: -0.0
        f: 1.0e-05
        g: 1.0e+16
        h: .inf
        i: -.inf
        j: 2.5
        k: 1000000000000000000000000000000
        """)
    for loaded in round_trip_both(dump_yaml(doc)):
        assert same(loaded, [doc])
    nan = round_trip_both(dump_yaml({"x": float("nan")}))
    assert all(math.isnan(docs[0]["x"]) for docs in nan)


@pytest.mark.parametrize("text", AMBIGUOUS, ids=repr)
def test_ambiguous_strings_round_trip(text: str) -> None:
    doc = {"value": text, "list": [text], text: "as key"}
    out = dump_yaml(doc)
    for loaded in round_trip_both(out):
        assert same(loaded, [doc]), out


@pytest.mark.parametrize("text", ["no", "yes", "on", "off", "y", "n", "true", "null", "~", "",
                                  "1e3", "0x1F", "0o17", "017", "1_000", "1:20", ".inf",
                                  "2024-01-01", "1234567", "12e4567", " lead", "a: b", "a #b"])
def test_ambiguous_strings_are_double_quoted(text: str) -> None:
    assert dump_yaml({"k": text}) == f'k: "{text}"\n'


@pytest.mark.parametrize("text", ["fraud-detector", "ghcr.io/acme/img:1a2b3c4", "10Gi", "500m",
                                  "a1b2c3d", "--flag", "v1.2.3", "1.2.3", "http://x/y#z",
                                  "snow\u2603man", "a,b", "C:\\path"])
def test_ordinary_strings_stay_plain(text: str) -> None:
    assert dump_yaml({"k": text}) == f"k: {text}\n"


def test_multiline_strings_use_literal_blocks() -> None:
    doc = {"clip": "a\nb\n", "strip": "a\nb", "keep": "a\n\n", "lead": " x\ny\n",
           "nested": [{"script": "set -e\n  echo hi\n"}]}
    out = dump_yaml(doc)
    assert out == textwrap.dedent("""\
        clip: |
          a
          b
        keep: |+
          a

        lead: |2
           x
          y
        nested:
          - script: |
              set -e
                echo hi
        strip: |-
          a
          b
        """)
    for loaded in round_trip_both(out):
        assert same(loaded, [doc])


def test_strings_a_literal_block_cannot_show_are_quoted() -> None:
    assert dump_yaml({"k": "trailing \nspace"}) == 'k: "trailing \\nspace"\n'
    assert dump_yaml({"k": "bell\x07\nx"}) == 'k: "bell\\x07\\nx"\n'
    assert dump_yaml({"multi\nline key": 1}) == '"multi\\nline key": 1\n'


def test_no_folding_no_anchors_no_tags() -> None:
    shared = {"a": ["x"]}
    long = "word " * 200 + "end"
    out = dump_yaml({"one": shared, "two": shared, "long": long})
    assert f"long: {long}\n" in out
    assert "&" not in out and "*" not in out and "!" not in out


def test_very_long_keys_use_explicit_form() -> None:
    key = "k" * 1500
    doc = {key: {"a": [1]}, "b": {key: "v"}, "c": [{key: "multi\nline"}]}
    for loaded in round_trip_both(dump_yaml(doc)):
        assert same(loaded, [doc])


def test_multi_document() -> None:
    out = dump_yaml([{"kind": "A"}, {}, ({"kind": "B"})])
    assert out == "kind: A\n---\n{}\n---\nkind: B\n"


def test_rejects_what_it_cannot_render_deterministically() -> None:
    with pytest.raises(TypeError):
        dump_yaml({"s": {1, 2}})
    with pytest.raises(TypeError):
        dump_yaml({1: "x"})
    with pytest.raises(TypeError):
        dump_yaml("not a mapping")
    with pytest.raises(TypeError):
        dump_yaml([])


def test_render_files() -> None:
    files = [
        OutputFile("z/train.py", "#!/usr/bin/env python\nprint(1)", "ml.yaml"),
        OutputFile("docs/README.md", "# Title\n", "ml.yaml"),
        OutputFile("a.json", {"b": [1, "ü"], "a": None}, "ml.yaml"),
        OutputFile("rules.promql", "up == 0\n", "ml.yaml"),
        OutputFile("m.yaml", [{"kind": "A"}, {"kind": "B"}], "ml.yaml"),
    ]
    out = render(files)
    line = HEADER.format(source="ml.yaml")
    assert list(out) == ["a.json", "docs/README.md", "m.yaml", "rules.promql", "z/train.py"]
    assert out["a.json"] == '{\n  "a": null,\n  "b": [\n    1,\n    "ü"\n  ]\n}\n'.encode()
    assert out["docs/README.md"] == f"<!-- {line} -->\n# Title\n".encode()
    assert out["m.yaml"] == f"# {line}\nkind: A\n---\nkind: B\n".encode()
    assert out["rules.promql"] == f"# {line}\nup == 0\n".encode()
    assert out["z/train.py"] == f"#!/usr/bin/env python\n# {line}\nprint(1)\n".encode()


def test_header_cannot_be_broken_by_the_source() -> None:
    out = render_file(OutputFile("a.yaml", {"a": 1}, "evil\nkind: Secret"))
    assert out.decode().splitlines()[:2] == [
        "# " + HEADER.format(source="evil kind: Secret"), "a: 1"]


def test_render_rejects_clashing_paths() -> None:
    with pytest.raises(ValueError, match="two output files"):
        render([OutputFile("a.yaml", {}, "s"), OutputFile("a.yaml", {}, "s")])
    with pytest.raises(ValueError, match="case"):
        render([OutputFile("a.yaml", {}, "s"), OutputFile("A.yaml", {}, "s")])
    with pytest.raises(ValueError, match="under the file"):
        render([OutputFile("a", "x", "s"), OutputFile("a/b.yaml", {}, "s")])
    with pytest.raises(ValueError):
        render_file(OutputFile("a.json", {"x": float("nan")}, "s"))


@pytest.mark.parametrize("path", ["", "/abs.yaml", "../up.yaml", "a/../b.yaml", "a//b.yaml",
                                  "./a.yaml", "a\\b.yaml", "sp ace.yaml", "a/", "ü.yaml"])
def test_output_paths_are_validated(path: str) -> None:
    with pytest.raises(ValueError):
        OutputFile(path, {}, "ml.yaml")


def test_same_bytes_under_any_hash_seed() -> None:
    program = (
        "import sys; from mlc.compiler.render import dump_yaml;"
        "doc = {f'k{i}': {f'n{j}': [str(j), j] for j in range(20)} for i in range(20)};"
        "sys.stdout.write(dump_yaml(doc))"
    )
    outputs = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        outputs.add(subprocess.run([sys.executable, "-c", program], env=env, check=True,
                                   capture_output=True).stdout)
    assert len(outputs) == 1


# ---------------------------------------------------------------------------------------
# Properties

ADVERSARIAL_CHARS = " \t\n\r#:-?,[]{}&*!|>'\"%@`\\~.=<_0123456789eExXoObB+ynYN\x00\x85\u2028é😀"
strings = st.one_of(
    st.sampled_from(AMBIGUOUS),
    st.text(),
    st.text(alphabet=ADVERSARIAL_CHARS, max_size=12),
    st.lists(st.sampled_from(AMBIGUOUS), min_size=1, max_size=3).map("".join),
)
keys = st.one_of(st.sampled_from(AMBIGUOUS), st.text(max_size=30),
                 st.text(alphabet=ADVERSARIAL_CHARS, max_size=8))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), strings)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(keys, inner, max_size=4)),
    max_leaves=25,
)
documents = st.dictionaries(keys, values, max_size=6)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(documents, min_size=1, max_size=3))
def test_round_trip_yaml_1_1_and_1_2(docs: list[dict]) -> None:
    out = dump_yaml(docs)
    out.encode("utf-8")  # always encodable: anything unusual is escaped
    for loaded in round_trip_both(out):
        assert same(loaded, docs), out


def _shuffled(value, rnd):
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return {k: _shuffled(v, rnd) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rnd) for v in value]
    return value


@settings(max_examples=100, deadline=None)
@given(documents, st.randoms(use_true_random=False))
def test_key_insertion_order_does_not_matter(doc: dict, rnd) -> None:
    assert dump_yaml(_shuffled(doc, rnd)) == dump_yaml(doc)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(),
              st.floats(allow_nan=False, allow_infinity=False), strings),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(keys, inner, max_size=4)),
    max_leaves=25,
)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(keys, json_values, max_size=4))
def test_json_round_trip(doc: dict) -> None:
    out = render_file(OutputFile("x.json", doc, "s"))
    assert same(json.loads(out), doc)


class _Key(str):
    """A str subclass as a key (like a `str` Enum): the general path unwraps it."""


# What the fast path hands to the general path: other mappings, str-subclass keys, keys over
# the implicit-key limit; and tuples, which both paths take as sequences.
mixed_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(keys, inner, max_size=4),
        st.dictionaries(keys, inner, max_size=3).map(types.MappingProxyType),
        st.dictionaries(keys.map(_Key), inner, max_size=3),
        st.dictionaries(st.sampled_from(["x" * 1001, "spec", "name"]), inner, max_size=2)),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, mixed_values, min_size=1, max_size=6))
def test_fast_path_writes_what_the_general_path_writes(doc: dict) -> None:
    from mlc.compiler import render as r

    general: list[str] = []
    r._mapping(doc, 0, general)
    assert r.dump_document(doc) == "\n".join(general) + "\n"


def _literal_ok_by_line(text: str) -> bool:
    """The literal-block rule stated line by line, as the renderer once tested it."""
    for line in text.split("\n"):
        if line != line.rstrip(" \t") or line.startswith("\t"):
            return False
        if not line.replace("\t", " ").isprintable():
            return False
    return True


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab \t\n\r\x07\x85\u2028\u00e9#:-")), max_size=12)
       | st.text(max_size=20))
def test_literal_check_on_the_whole_text_is_the_line_by_line_rule(text: str) -> None:
    from mlc.compiler.render import _literal_ok
    assert _literal_ok(text) == _literal_ok_by_line(text)
