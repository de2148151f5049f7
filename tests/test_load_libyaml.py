"""The loader's libyaml path (load._load_with_libyaml): where it answers, its document is the
ruamel path's, value for value (types included) and span for span; where it cannot be sure,
it leaves the text to the ruamel path, which reports whatever there is to report."""

from __future__ import annotations

import math
import random

import pytest

from mlc.compiler import load
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.load import load_yaml_text
from mlc.compiler.yaml_compose import libyaml_kinds

from . import bad_inputs
from .conftest import ROOT

pytestmark = pytest.mark.skipif(libyaml_kinds() is None, reason="PyYAML without libyaml")

# What YAML 1.1 (libyaml) and YAML 1.2 (ruamel) might read or place apart, and the ordinary
SNIPPETS = [
    "k: v", "k: 'single ''quoted'' text'", 'k: "dq \\" esc \\n \\t \\u00e9 \\x41 \\/ \\\\ end"',
    "k: multi\n  line\n  plain", "k: >\n  folded\n  text\n\n  para\n", "k: |\n  literal\n   in\n",
    "k: |-\n  strip\n", "k: |+\n  keep\n\n", "k: >2\n   indented by indicator\n",
    'k: "multi\n  line dq"', "k: 'multi\n\n  line sq'", "k: [a, b, {c: d}, [e, f]]",
    "k: {a: 1, b: [x, y], c: {d: e}}", "k: [http://x.y/z, 'q', \"r\"]", "k: {url: http://a:80/c}",
    "k: [a:b, c]", "k: {a: b:c}", "k:\n- a\n- b: 1\n  c: 2\n- - x\n  - y", "k:\n  - a\n  -   b",
    "k: &x {a: 1}\nj: *x", "k: &s scalar\nj: *s", "k: 1 # comment\n# full comment\nj: 2  #c",
    "k: v   ", "'quoted key': 1", '"dq key": 2', "k: ~", "k: null", "k: true", "k: yes",
    "k: 0o17", "k: 0x1F", "k: 1e3", "k: .5", "k: -.inf", "k: .nan", "k: 2024-01-01", "k: 12:30",
    "k: +1", "k: 1_000", "k: 0b101", "k: 010", "k: 99999999999999999999999",
    "k: émoji 😀 中文", "k: a\u00a0b", "k:   spaced", "k: a - b", "k: '#not comment'", "k: a#b",
    "? complex\n: value", "k: !!str 1", "k: {a: 1,}", "k: [a, b,]", "k: [\n  a,\n  b\n]",
    "---\nk: 1", "k: 1\n...\n", "k: x\n\n\nj: y", "k: [a, [b, [c, [d]]]]", "k:", "k: ''",
    "k: 'unterminated", "k: [a, b", "k:\n\tj: 1", "k: 1\nk: 2", "<<: {a: 1}", "k: *nope",
    "k: a: b", "%YAML 1.2\n---\nk: 1", "k: 1\r\nj: 2", "k: \x85x",
]


def _same(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def _both(text: str, monkeypatch) -> tuple[load.Document | None, load.Document | None, Diagnostics]:
    """(libyaml's document or None, ruamel's document, ruamel's diagnostics)."""
    fast = load._load_with_libyaml(text, "ml.yaml", False)
    diags = Diagnostics()
    with monkeypatch.context() as patch:
        patch.setattr(load, "_load_with_libyaml", lambda *args: None)
        slow = load_yaml_text(text, "ml.yaml", diags)
    return fast, slow, diags


def _check(text: str, monkeypatch) -> bool:
    fast, slow, diags = _both(text, monkeypatch)
    if fast is None:
        return False
    assert slow is not None and not diags.items, (text, [d.code for d in diags.items])
    assert _same(fast.data, slow.data), text
    assert dict(fast.spans) == dict(slow.spans), text
    assert dict(fast.key_spans) == dict(slow.key_spans), text
    return True


def test_the_bundled_example_is_read_by_libyaml_as_ruamel_reads_it(monkeypatch):
    files = [ROOT / "ml.yaml", *sorted((ROOT / "environments").glob("*.yaml"))]
    # every file of the example takes the fast path (else validate gains nothing) ...
    assert all(_check(f.read_text(), monkeypatch) for f in files)
    assert _check(bad_inputs.BASE, monkeypatch)


def test_snippets_and_their_combinations_read_alike(monkeypatch):
    taken = sum(_check(s + "\n", monkeypatch) for s in SNIPPETS)
    rng = random.Random(1)
    for _ in range(300):
        parts = rng.sample(SNIPPETS, rng.randint(2, 5))
        text = "\n".join(p.replace("k:", f"k{i}:", 1).replace("j:", f"j{i}:")
                         for i, p in enumerate(parts))
        if rng.random() < 0.3:
            text = "top:\n" + "\n".join("  " + line for line in text.split("\n"))
        taken += _check(text + "\n", monkeypatch)
    assert taken > 50  # enough of them are ordinary enough for the fast path


def test_edited_examples_read_alike(monkeypatch):
    """Random one-character edits of real files: broken ones go to ruamel, the rest agree."""
    rng = random.Random(7)
    texts = [(ROOT / "ml.yaml").read_text(), bad_inputs.BASE]
    chars = list(" :-#'\"[]{},&*!|>?\nab0.")
    taken = 0
    for _ in range(150):
        text = rng.choice(texts)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(text))
            text = text[:at] + rng.choice(chars) + text[at + rng.randint(0, 1):]
        taken += _check(text, monkeypatch)
    assert taken > 30


@pytest.mark.parametrize("text", [
    "k: !!str 1\n",  # a tag
    "k:\nj: 1\n",  # an empty value: the libraries place it apart
    "k: 1\r\nj: 2\n",  # a carriage return
    "k:\n\tj: 1\n",  # a tab
    "%YAML 1.2\n---\nk: 1\n",  # a directive
    "k: \x85x\n",  # YAML 1.1's next-line break
    "k: 1\nk: 2\n",  # a diagnostic (duplicate key)
    "k: yes\n",  # a warning (MLC385) is a diagnostic too
    "k: [a, b\n",  # a syntax error
    "- a\n",  # not a mapping
    "k: " + "x" * (load.MAX_LINE_CHARS + 1) + "\n",  # a line over the bound
])
def test_what_libyaml_might_read_otherwise_goes_to_ruamel(text, monkeypatch):
    assert load._load_with_libyaml(text, "ml.yaml", False) is None
    _, slow, diags = _both(text, monkeypatch)
    # and the ruamel path still answers it as before: a document, or its diagnostics
    assert slow is not None or diags.items


def test_bounds_hit_under_libyaml_are_reported_by_ruamel(monkeypatch):
    deep = "k: " + "[" * (load.MAX_DEPTH + 5) + "]" * (load.MAX_DEPTH + 5) + "\n"
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, n in zip("abcde", "bcdef", strict=True))
    for text, code in ((deep, "MLC005"), (bomb, "MLC006")):
        assert load._load_with_libyaml(text, "ml.yaml", False) is None
        diags = Diagnostics()
        assert load_yaml_text(text, "ml.yaml", diags) is None
        assert [d.code for d in diags.errors] == [code]
