"""Merging environments/<env>.yaml over ml.yaml: values, provenance, and directives."""

from __future__ import annotations

import copy
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from mlc.compiler.diagnostics import Diagnostics, Severity, Span
from mlc.compiler.load import Document, load_yaml_file
from mlc.compiler.overlay import merge_documents

BASE = """\
apiVersion: mlc/v1
kind: Project
name: churn
training:
  epochs: 10
  learning_rate: 0.01
  resources: {cpu: 2, memory: 4Gi}
models:
  - name: small
    layers: 2
    tags: [a, b]
  - name: large
    layers: 8
features: [age, income]
"""

ENV = "environments/prod.yaml"


def write(tmp_path: Path, name: str, text: str) -> Document:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    diags = Diagnostics()
    doc = load_yaml_file(path, name, diags)
    assert doc is not None, [str(d) for d in diags]
    return doc


def merge(tmp_path: Path, overlay: str, base: str = BASE) -> tuple[Document, Diagnostics]:
    diags = Diagnostics()
    merged = merge_documents(write(tmp_path, "ml.yaml", base), write(tmp_path, ENV, overlay),
                             diags)
    return merged, diags


def where(diags: Diagnostics) -> list[tuple[str, str]]:
    return [(d.code, str(d.span)) for d in diags]


# ---------------------------------------------------------------------------------------
# Mappings


def test_mappings_merge_key_by_key_with_provenance(tmp_path):
    merged, diags = merge(tmp_path, "training:\n  epochs: 50\n  resources:\n    gpu: 1\n")
    assert not diags.items
    assert merged.file == "ml.yaml"
    assert merged.data["training"] == {
        "epochs": 50, "learning_rate": 0.01, "resources": {"cpu": 2, "memory": "4Gi", "gpu": 1},
    }
    # overridden and added values point at the overlay, the rest at the base
    assert merged.spans[("training", "epochs")] == Span(ENV, 2, 11, 13)
    assert merged.key_spans[("training", "epochs")] == Span(ENV, 2, 3, 9)
    assert merged.spans[("training", "resources", "gpu")] == Span(ENV, 4, 10, 11)
    assert merged.key_spans[("training", "resources", "gpu")] == Span(ENV, 4, 5, 8)
    assert merged.spans[("training", "learning_rate")] == Span("ml.yaml", 6, 18, 22)
    assert merged.spans[("training", "resources", "cpu")] == Span("ml.yaml", 7, 20, 21)
    assert merged.spans[("training",)] == Span("ml.yaml", 5, 3, 4)
    assert merged.spans[("name",)] == Span("ml.yaml", 3, 7, 12)
    assert merged.span_for(("training", "epochs", "nope")) == Span(ENV, 2, 11, 13)


def test_key_order_is_base_then_new_overlay_keys(tmp_path):
    merged, _ = merge(tmp_path, "zeta: 1\ntraining:\n  extra: 1\n  epochs: 2\nalpha: 2\n")
    assert list(merged.data) == ["apiVersion", "kind", "name", "training", "models", "features",
                                 "zeta", "alpha"]
    assert list(merged.data["training"]) == ["epochs", "learning_rate", "resources", "extra"]


def test_null_sets_a_value_rather_than_deleting_it(tmp_path):
    merged, diags = merge(tmp_path, "training:\n  learning_rate: null\n")
    assert not diags.items
    assert merged.data["training"]["learning_rate"] is None
    assert merged.spans[("training", "learning_rate")] == Span(ENV, 2, 18, 22)


def test_inputs_are_not_changed(tmp_path):
    base = write(tmp_path, "ml.yaml", BASE)
    overlay = write(tmp_path, ENV, "training: {epochs: 3}\nmodels: [{name: small, layers: 1}]\n")
    before = copy.deepcopy((base.data, overlay.data))
    merged = merge_documents(base, overlay, Diagnostics())
    assert (base.data, overlay.data) == before
    merged.data["training"]["resources"]["cpu"] = 99
    assert base.data["training"]["resources"]["cpu"] == 2


# ---------------------------------------------------------------------------------------
# Lists


def test_named_list_merges_by_name_and_appends_new_names(tmp_path):
    merged, diags = merge(tmp_path, """\
models:
  - name: new
    layers: 1
  - name: large
    layers: 16
""")
    assert not diags.items
    assert merged.data["models"] == [
        {"name": "small", "layers": 2, "tags": ["a", "b"]},
        {"name": "large", "layers": 16},
        {"name": "new", "layers": 1},
    ]
    assert merged.spans[("models", 1, "layers")] == Span(ENV, 5, 13, 15)
    assert merged.spans[("models", 1)] == Span("ml.yaml", 12, 5, 6)
    assert merged.spans[("models", 0, "layers")] == Span("ml.yaml", 10, 13, 14)
    assert merged.spans[("models", 2)] == Span(ENV, 2, 5, 6)
    assert merged.spans[("models", 2, "layers")] == Span(ENV, 3, 13, 14)


def test_named_list_item_delete(tmp_path):
    merged, diags = merge(tmp_path, "models:\n  - name: small\n    $patch: delete\n")
    assert not diags.items
    assert merged.data["models"] == [{"name": "large", "layers": 8}]
    # indexes shift: what was item 1 in the base is item 0 now, with the base's spans
    assert merged.spans[("models", 0, "layers")] == Span("ml.yaml", 13, 13, 14)
    assert ("models", 1) not in merged.spans


def test_named_list_item_replace(tmp_path):
    merged, diags = merge(tmp_path, """\
models:
  - name: small
    $patch: replace
    layers: 3
""")
    assert not diags.items
    assert merged.data["models"][0] == {"name": "small", "layers": 3}
    assert merged.spans[("models", 0)] == Span(ENV, 2, 5, 6)
    assert merged.spans[("models", 0, "layers")] == Span(ENV, 4, 13, 14)


def test_other_lists_replace_wholesale(tmp_path):
    merged, diags = merge(tmp_path, "features: [tenure]\nmodels:\n  - name: small\n    tags: [c]\n")
    assert not diags.items
    assert merged.data["features"] == ["tenure"]
    assert merged.spans[("features",)] == Span(ENV, 1, 11, 12)
    assert merged.spans[("features", 0)] == Span(ENV, 1, 12, 18)
    assert merged.data["models"][0]["tags"] == ["c"]


def test_list_of_unnamed_mappings_is_replaced(tmp_path):
    base = "apiVersion: mlc/v1\nsteps:\n  - run: a\n  - run: b\n"
    merged, diags = merge(tmp_path, "steps:\n  - run: c\n", base=base)
    assert not diags.items
    assert merged.data["steps"] == [{"run": "c"}]


def test_empty_overlay_list_clears_a_named_list(tmp_path):
    merged, diags = merge(tmp_path, "models: []\n")
    assert not diags.items
    assert merged.data["models"] == []


# ---------------------------------------------------------------------------------------
# Directives and type changes


def test_delete_a_key(tmp_path):
    merged, diags = merge(tmp_path, "training:\n  resources:\n    $patch: delete\n")
    assert not diags.items
    assert "resources" not in merged.data["training"]
    assert ("training", "resources") not in merged.spans
    assert ("training", "resources", "cpu") not in merged.spans


def test_replace_a_mapping(tmp_path):
    merged, diags = merge(tmp_path, "training:\n  resources:\n    $patch: replace\n    gpu: 1\n")
    assert not diags.items
    assert merged.data["training"]["resources"] == {"gpu": 1}
    assert merged.spans[("training", "resources")] == Span(ENV, 3, 5, 6)
    assert merged.key_spans[("training", "resources")] == Span(ENV, 2, 3, 12)


def test_type_changes_replace_the_base_value(tmp_path):
    merged, diags = merge(tmp_path, "training: off\nname: {first: a}\n")
    assert not diags.items
    assert merged.data["training"] == "off"
    assert merged.data["name"] == {"first": "a"}
    assert merged.spans[("training",)] == Span(ENV, 1, 11, 14)
    assert merged.spans[("name", "first")] == Span(ENV, 2, 15, 16)
    assert ("training", "epochs") not in merged.spans


def test_mlc011_patch_value_typo_has_did_you_mean(tmp_path):
    merged, diags = merge(tmp_path, "training:\n  resources:\n    $patch: delet\n")
    assert where(diags) == [("MLC011", f"{ENV}:3:13")]
    assert diags.items[0].help == "did you mean `delete`?"
    assert merged.data["training"]["resources"] == {"cpu": 2, "memory": "4Gi"}


def test_mlc011_patch_key_typo_has_did_you_mean(tmp_path):
    _, diags = merge(tmp_path, "training:\n  $pach: delete\n")
    assert where(diags) == [("MLC011", f"{ENV}:2:3")]
    assert diags.items[0].help == "did you mean `$patch`?"


def test_mlc011_patch_in_base(tmp_path):
    _, diags = merge(tmp_path, "name: x\n", base=BASE + "serving:\n  $patch: replace\n")
    assert where(diags) == [("MLC011", "ml.yaml:16:3")]
    assert "overlays" in diags.items[0].message


def test_dollar_keys_in_the_base_are_left_for_the_schema(tmp_path):
    merged, diags = merge(tmp_path, "name: x\n", base="apiVersion: mlc/v1\n$schema: s\n")
    assert not diags.items
    assert merged.data == {"apiVersion": "mlc/v1", "$schema": "s", "name": "x"}


def test_mlc011_delete_the_whole_file(tmp_path):
    _, diags = merge(tmp_path, "$patch: delete\n")
    assert where(diags) == [("MLC011", f"{ENV}:1:9")]


def test_mlc012_deleting_what_is_not_there_warns(tmp_path):
    merged, diags = merge(tmp_path, """\
training:
  schedule: {$patch: delete}
models:
  - name: medium
    $patch: delete
""")
    assert where(diags) == [("MLC012", f"{ENV}:2:22"), ("MLC012", f"{ENV}:5:13")]
    assert all(d.severity is Severity.WARNING for d in diags)
    assert "key `schedule`" in diags.items[0].message
    assert "item named `medium`" in diags.items[1].message
    assert "schedule" not in merged.data["training"]
    assert [m["name"] for m in merged.data["models"]] == ["small", "large"]


def test_mlc013_overlay_may_not_change_api_version_or_kind(tmp_path):
    merged, diags = merge(tmp_path, "name: x\nkind: Other\napiVersion: mlc/v2\n")
    assert where(diags) == [("MLC013", f"{ENV}:3:13"), ("MLC013", f"{ENV}:2:7")]
    assert merged.data["kind"] == "Project"
    assert merged.spans[("kind",)] == Span("ml.yaml", 2, 7, 14)


def test_repeating_api_version_and_kind_is_allowed(tmp_path):
    merged, diags = merge(tmp_path, "apiVersion: mlc/v1\nkind: Project\nname: x\n")
    assert not diags.items
    assert merged.data["name"] == "x"


# ---------------------------------------------------------------------------------------
# Properties


KEYS = st.sampled_from(["a", "b", "c", "name", "d"])
SCALARS = st.one_of(st.integers(), st.text(max_size=3), st.booleans(), st.none())
TREES = st.recursive(SCALARS, lambda inner: st.dictionaries(KEYS, inner, max_size=4),
                     max_leaves=12)


def reference_merge(base, overlay):
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = dict(base)
        for key, value in overlay.items():
            out[key] = reference_merge(base[key], value) if key in base else value
        return out
    return overlay


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, TREES, max_size=4), st.dictionaries(KEYS, TREES, max_size=4))
def test_mapping_merge_matches_the_rule(base, overlay):
    diags = Diagnostics()
    merged = merge_documents(Document("ml.yaml", base), Document(ENV, overlay), diags)
    assert not diags.items
    assert merged.data == reference_merge(base, overlay)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(KEYS, TREES, max_size=4))
def test_empty_overlay_keeps_base(base):
    merged = merge_documents(Document("ml.yaml", base), Document(ENV, {}), Diagnostics())
    assert merged.data == base
